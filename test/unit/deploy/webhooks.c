/* Tests for src/deploy/webhooks.c: the address classifier behind the SSRF rule, target URLs,
 * the signature and headers, answer excerpts, and resolving under the rule on a real loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sodium.h>
#include <string.h>
#include <sys/socket.h>

#include "slipway/buf.h"
#include "slipway/client.h"
#include "slipway/webhooks.h"
#include "sw_version.h"

static sw_addr_kind_t kind_of(const char *ip)
{
    struct sockaddr_storage ss = {0};
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, ip, &a->sin6_addr), 1);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, ip, &a->sin_addr), 1);
    }
    return sw_addr_classify((const struct sockaddr *)&ss);
}

static void test_classify_ipv4(void **state)
{
    (void)state;
    static const struct {
        const char *ip;
        sw_addr_kind_t kind;
    } cases[] = {
        {"10.0.0.1", SW_ADDR_PRIVATE},
        {"10.255.255.255", SW_ADDR_PRIVATE},
        {"172.16.0.1", SW_ADDR_PRIVATE},
        {"172.31.255.254", SW_ADDR_PRIVATE},
        {"172.15.255.255", SW_ADDR_PUBLIC},
        {"172.32.0.1", SW_ADDR_PUBLIC},
        {"192.168.1.1", SW_ADDR_PRIVATE},
        {"192.169.0.1", SW_ADDR_PUBLIC},
        {"127.0.0.1", SW_ADDR_LOOPBACK},
        {"127.255.0.9", SW_ADDR_LOOPBACK},
        {"169.254.169.254", SW_ADDR_LINK_LOCAL},
        {"0.0.0.0", SW_ADDR_UNSPECIFIED},
        {"0.1.2.3", SW_ADDR_UNSPECIFIED},
        {"100.64.0.1", SW_ADDR_PRIVATE},
        {"100.128.0.1", SW_ADDR_PUBLIC},
        {"192.0.2.7", SW_ADDR_RESERVED},
        {"198.18.0.1", SW_ADDR_RESERVED},
        {"198.51.100.1", SW_ADDR_RESERVED},
        {"203.0.113.9", SW_ADDR_RESERVED},
        {"224.0.0.1", SW_ADDR_MULTICAST},
        {"255.255.255.255", SW_ADDR_MULTICAST},
        {"240.0.0.1", SW_ADDR_RESERVED},
        {"8.8.8.8", SW_ADDR_PUBLIC},
        {"93.184.216.34", SW_ADDR_PUBLIC},
        {"1.1.1.1", SW_ADDR_PUBLIC},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sw_addr_kind_t got = kind_of(cases[i].ip);
        if (got != cases[i].kind)
            fail_msg("%s: %s, want %s", cases[i].ip, sw_addr_kind_name(got),
                     sw_addr_kind_name(cases[i].kind));
    }
}

static void test_classify_ipv6(void **state)
{
    (void)state;
    static const struct {
        const char *ip;
        sw_addr_kind_t kind;
    } cases[] = {
        {"::1", SW_ADDR_LOOPBACK},
        {"::", SW_ADDR_UNSPECIFIED},
        {"fc00::1", SW_ADDR_PRIVATE},
        {"fd12:3456::1", SW_ADDR_PRIVATE},
        {"fe80::1", SW_ADDR_LINK_LOCAL},
        {"febf::1", SW_ADDR_LINK_LOCAL},
        {"fec0::1", SW_ADDR_PRIVATE},
        {"ff02::1", SW_ADDR_MULTICAST},
        {"::ffff:10.0.0.1", SW_ADDR_PRIVATE},
        {"::ffff:127.0.0.1", SW_ADDR_LOOPBACK},
        {"::ffff:169.254.0.1", SW_ADDR_LINK_LOCAL},
        {"::ffff:8.8.8.8", SW_ADDR_PUBLIC},
        {"::10.0.0.1", SW_ADDR_RESERVED},
        {"64:ff9b::a00:1", SW_ADDR_PRIVATE},  /* NAT64 of 10.0.0.1 */
        {"64:ff9b::808:808", SW_ADDR_PUBLIC}, /* NAT64 of 8.8.8.8 */
        {"64:ff9b:1::1", SW_ADDR_PRIVATE},
        {"2002:a00:1::1", SW_ADDR_PRIVATE}, /* 6to4 of 10.0.0.1 */
        {"2002:808:808::1", SW_ADDR_PUBLIC},
        {"2001::1", SW_ADDR_RESERVED},
        {"2001:db8::1", SW_ADDR_RESERVED},
        {"100::1", SW_ADDR_RESERVED},
        {"2606:4700:4700::1111", SW_ADDR_PUBLIC},
        {"2a00:1450:4001::200e", SW_ADDR_PUBLIC},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sw_addr_kind_t got = kind_of(cases[i].ip);
        if (got != cases[i].kind)
            fail_msg("%s: %s, want %s", cases[i].ip, sw_addr_kind_name(got),
                     sw_addr_kind_name(cases[i].kind));
    }
    struct sockaddr other = {.sa_family = AF_UNIX};
    assert_int_equal(sw_addr_classify(&other), SW_ADDR_RESERVED);
    assert_int_equal(sw_addr_classify(NULL), SW_ADDR_RESERVED);
}

static void test_url_parse(void **state)
{
    (void)state;
    sw_webhook_url_t u;
    assert_null(sw_webhook_url_parse("http://Example.COM/hook?x=1", &u));
    assert_false(u.https);
    assert_string_equal(u.host, "example.com");
    assert_int_equal(u.port, 80);
    assert_string_equal(u.path, "/hook?x=1");

    assert_null(sw_webhook_url_parse("HTTPS://hooks.example.com:8443", &u));
    assert_true(u.https);
    assert_int_equal(u.port, 8443);
    assert_string_equal(u.path, "/");

    assert_null(sw_webhook_url_parse("http://[::1]:9000?q", &u));
    assert_true(u.host_v6);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 9000);
    assert_string_equal(u.path, "/?q");

    assert_null(sw_webhook_url_parse("http://10.0.0.1/", &u));
    assert_string_equal(u.host, "10.0.0.1");

    static const char *const bad[] = {
        "",
        "ftp://example.com/",
        "example.com/hook",
        "http://user:pw@example.com/",
        "http://user@example.com/",
        "http:///path",
        "http://:80/",
        "http://example.com:0/",
        "http://example.com:65536/",
        "http://example.com:8o/",
        "http://example.com:/",
        "http://exa mple.com/",
        "http://example.com/a b",
        "http://example.com/#top",
        "http://[::1/",
        "http://[nope]/",
        "http://[::1]x/",
        "http://exa..mple.com/",
        "http://.example.com/",
        "http://ex%41mple.com/",
        "http://example.com/\x7f",
        "http://\xc3\xa9.example/",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (!sw_webhook_url_parse(bad[i], &u))
            fail_msg("accepted %s", bad[i]);

    char long_url[SW_WEBHOOK_URL_MAX + 2];
    memset(long_url, 'a', sizeof(long_url) - 1);
    long_url[sizeof(long_url) - 1] = '\0';
    memcpy(long_url, "http://x.io/", 12);
    assert_non_null(sw_webhook_url_parse(long_url, &u)); /* 2049 characters */
    long_url[SW_WEBHOOK_URL_MAX] = '\0';
    assert_null(sw_webhook_url_parse(long_url, &u)); /* exactly 2048 */
    assert_int_equal(strlen(u.path), SW_WEBHOOK_URL_MAX - 11);
}

static void test_sign(void **state)
{
    (void)state;
    char sig[SW_WEBHOOK_SIGNATURE];
    /* RFC 4231 test case 2 */
    const char *data = "what do ya want for nothing?";
    sw_webhook_sign("Jefe", 4, data, strlen(data), sig);
    assert_string_equal(sig,
                        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    /* RFC 4231 test case 6: a key longer than the block is hashed first */
    unsigned char key[131];
    memset(key, 0xaa, sizeof(key));
    const char *big = "Test Using Larger Than Block-Size Key - Hash Key First";
    sw_webhook_sign((const char *)key, sizeof(key), big, strlen(big), sig);
    assert_string_equal(sig,
                        "sha256=60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

static void test_headers(void **state)
{
    (void)state;
    sw_webhook_headers_t h;
    const char *secret = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    const char *body = "{\"event\":\"app.created\"}";
    char sig[SW_WEBHOOK_SIGNATURE], want[160];
    assert_int_equal(sw_webhook_headers_build(&h, "app.created",
                                              "5d3c7a58-5c1f-4b0e-9a57-0d8f7e6b1c2a", secret,
                                              strlen(secret), body, strlen(body)),
                     0);
    sw_webhook_sign(secret, strlen(secret), body, strlen(body), sig);
    assert_string_equal(h.list[0], "Content-Type: application/json");
    snprintf(want, sizeof(want), "User-Agent: slipway/%s", SW_VERSION);
    assert_string_equal(h.list[1], want);
    assert_string_equal(h.list[2], "X-Slipway-Event: app.created");
    assert_string_equal(h.list[3], "X-Slipway-Delivery: 5d3c7a58-5c1f-4b0e-9a57-0d8f7e6b1c2a");
    snprintf(want, sizeof(want), "X-Slipway-Signature: %s", sig);
    assert_string_equal(h.list[4], want);
    assert_null(h.list[5]);
    /* the signature covers the exact bytes */
    char other[SW_WEBHOOK_SIGNATURE];
    sw_webhook_sign(secret, strlen(secret), body, strlen(body) - 1, other);
    assert_string_not_equal(sig, other);

    assert_int_equal(sw_webhook_headers_build(&h, "app.created\r\nX-Evil: 1", "id", secret, 64,
                                              body, strlen(body)),
                     -EINVAL);
    assert_int_equal(sw_webhook_headers_build(&h, "", "id", secret, 64, body, strlen(body)),
                     -EINVAL);
    assert_int_equal(
        sw_webhook_headers_build(&h, "app.created", "a b", secret, 64, body, strlen(body)),
        -EINVAL);
}

static void test_excerpt(void **state)
{
    (void)state;
    sw_buf_t b = SW_BUF_INIT;
    sw_webhook_excerpt("ok\n\tdone", 8, 1024, &b);
    assert_string_equal(b.base, "ok\n\tdone");
    sw_buf_reset(&b);
    sw_webhook_excerpt("a\0b\x01\x7f", 5, 1024, &b);
    assert_string_equal(b.base, "a?b??");
    sw_buf_reset(&b);
    /* invalid UTF-8 (a lone continuation, an overlong '/', a surrogate) becomes '?' */
    sw_webhook_excerpt("\x80x\xc0\xafy\xed\xa0\x80z", 9, 1024, &b);
    assert_string_equal(b.base, "?x??y???z");
    sw_buf_reset(&b);
    /* valid characters stay whole, and the cap never splits one */
    sw_webhook_excerpt("h\xc3\xa9llo", 6, 1024, &b);
    assert_string_equal(b.base, "h\xc3\xa9llo");
    sw_buf_reset(&b);
    sw_webhook_excerpt("ab\xe2\x82\xac", 5, 4, &b);
    assert_string_equal(b.base, "ab");
    sw_buf_reset(&b);
    sw_webhook_excerpt("\xe2\x82", 2, 10, &b); /* cut short */
    assert_string_equal(b.base, "??");
    sw_buf_reset(&b);
    char big[3000];
    memset(big, 'x', sizeof(big));
    sw_webhook_excerpt(big, sizeof(big), 1024, &b);
    assert_int_equal(b.len, 1024);
    sw_buf_free(&b);
}

/* ---- resolving under the rule, on a real loop ---- */

typedef struct {
    int calls;
    int status;
    sw_addr_kind_t kind;
    char ip[64];
} resolved_t;

static void on_resolved(int status, const struct sockaddr *addr, sw_addr_kind_t kind, void *payload)
{
    resolved_t *r = payload;
    r->calls++;
    r->status = status;
    r->kind = kind;
    r->ip[0] = '\0';
    if (addr && addr->sa_family == AF_INET)
        uv_ip4_name((const struct sockaddr_in *)addr, r->ip, sizeof(r->ip));
    else if (addr && addr->sa_family == AF_INET6)
        uv_ip6_name((const struct sockaddr_in6 *)addr, r->ip, sizeof(r->ip));
}

static resolved_t resolve(const char *host, bool allow_private)
{
    uv_loop_t loop;
    resolved_t r = {0};
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(sw_webhook_resolve(&loop, host, 8080, allow_private, on_resolved, &r, NULL),
                     0);
    assert_int_equal(r.calls, 0); /* never from inside the call */
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(r.calls, 1);
    return r;
}

static void test_resolve(void **state)
{
    (void)state;
    resolved_t r = resolve("127.0.0.1", false);
    assert_int_equal(r.status, -EACCES);
    assert_int_equal(r.kind, SW_ADDR_LOOPBACK);
    assert_string_equal(r.ip, "127.0.0.1");

    r = resolve("localhost", false); /* a name: checked after resolution */
    assert_int_equal(r.status, -EACCES);
    assert_int_equal(r.kind, SW_ADDR_LOOPBACK);

    r = resolve("10.1.2.3", false);
    assert_int_equal(r.status, -EACCES);
    assert_int_equal(r.kind, SW_ADDR_PRIVATE);

    r = resolve("127.0.0.1", true);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.ip, "127.0.0.1");

    r = resolve("93.184.216.34", false); /* a public literal needs no network */
    assert_int_equal(r.status, 0);
    assert_int_equal(r.kind, SW_ADDR_PUBLIC);
    assert_string_equal(r.ip, "93.184.216.34");

    uv_loop_t loop;
    resolved_t none = {0};
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(sw_webhook_resolve(&loop, "", 80, false, on_resolved, &none, NULL), -EINVAL);
    assert_int_equal(sw_webhook_resolve(&loop, "x.io", 0, false, on_resolved, &none, NULL),
                     -EINVAL);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(none.calls, 0);
}

/* ---- the client connects to the vetted address, never resolving the name again ---- */

typedef struct {
    uv_tcp_t listener, conn;
    uv_write_t wreq;
    sw_buf_t got;
    bool accepted;
    int calls, status, http_status;
} vetted_t;

static void on_srv_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
    (void)h;
    buf->base = malloc(size);
    buf->len = size;
}

static void on_srv_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    vetted_t *v = s->data;
    static const char reply[] = "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n";
    if (n > 0) {
        sw_buf_append(&v->got, buf->base, (size_t)n);
        if (strstr(v->got.base, "\r\n\r\n") && strstr(v->got.base, "}")) {
            uv_buf_t b = uv_buf_init((char *)reply, sizeof(reply) - 1);
            uv_read_stop(s);
            uv_write(&v->wreq, s, &b, 1, NULL);
        }
    }
    free(buf->base);
}

static void on_srv_conn(uv_stream_t *l, int status)
{
    vetted_t *v = l->data;
    assert_int_equal(status, 0);
    uv_tcp_init(l->loop, &v->conn);
    v->conn.data = v;
    assert_int_equal(uv_accept(l, (uv_stream_t *)&v->conn), 0);
    v->accepted = true;
    uv_read_start((uv_stream_t *)&v->conn, on_srv_alloc, on_srv_read);
}

static void on_vetted_answer(int status, int http_status, const char *body, size_t len,
                             void *payload)
{
    vetted_t *v = payload;
    (void)body;
    (void)len;
    v->calls++;
    v->status = status;
    v->http_status = http_status;
    uv_close((uv_handle_t *)&v->listener, NULL);
    if (v->accepted)
        uv_close((uv_handle_t *)&v->conn, NULL);
}

static void test_client_uses_vetted_address(void **state)
{
    (void)state;
    uv_loop_t loop;
    vetted_t v = {0};
    struct sockaddr_in bind_addr, bound;
    int len = sizeof(bound);
    assert_int_equal(uv_loop_init(&loop), 0);
    uv_tcp_init(&loop, &v.listener);
    v.listener.data = &v;
    uv_ip4_addr("127.0.0.1", 0, &bind_addr);
    assert_int_equal(uv_tcp_bind(&v.listener, (const struct sockaddr *)&bind_addr, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&v.listener, 4, on_srv_conn), 0);
    uv_tcp_getsockname(&v.listener, (struct sockaddr *)&bound, &len);

    const char *secret = "k";
    const char *body = "{\"event\":\"app.created\"}";
    sw_webhook_headers_t h;
    assert_int_equal(
        sw_webhook_headers_build(&h, "app.created", "d-1", secret, 1, body, strlen(body)), 0);
    sw_httpc_t *c = NULL;
    sw_httpc_req_t req = {
        .method = "POST",
        .host = "receiver.invalid", /* would not resolve: only the Host header names it */
        .port = 8080,
        .path = "/in",
        .headers = h.list,
        .body = body,
        .body_len = strlen(body),
        .addr = (const struct sockaddr *)&bound,
    };
    assert_int_equal(sw_httpc_request(&loop, &req, on_vetted_answer, &v, &c), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(v.calls, 1);
    assert_int_equal(v.status, 0);
    assert_int_equal(v.http_status, 204);
    assert_non_null(strstr(v.got.base, "POST /in HTTP/1.1\r\n"));
    assert_non_null(strstr(v.got.base, "Host: receiver.invalid:8080\r\n"));
    assert_non_null(strstr(v.got.base, "X-Slipway-Event: app.created\r\n"));
    assert_non_null(strstr(v.got.base, "X-Slipway-Signature: sha256="));
    assert_non_null(strstr(v.got.base, "\r\n\r\n{\"event\":\"app.created\"}"));
    assert_int_equal(uv_loop_close(&loop), 0);
    sw_buf_free(&v.got);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify_ipv4), cmocka_unit_test(test_classify_ipv6),
        cmocka_unit_test(test_url_parse),     cmocka_unit_test(test_sign),
        cmocka_unit_test(test_headers),       cmocka_unit_test(test_excerpt),
        cmocka_unit_test(test_resolve),       cmocka_unit_test(test_client_uses_vetted_address),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
