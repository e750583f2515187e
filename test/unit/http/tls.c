/* Tests for src/http/tls.c and https in src/http/client.c: the client on a real loop against
 * an OpenSSL server on a thread, and two memory-BIO sessions talking to each other, with
 * certificates made here (a CA, leaves for names, addresses, the wrong name, an expired one)
 * so every verification outcome is real. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "slipway/buf.h"
#include "slipway/common.h"
#include "slipway/client.h"
#include "slipway/tls.h"

/* ---- certificates ---- */

typedef struct {
    EVP_PKEY *key;
    X509 *cert;
} pair_t;

static char tmpdir[64];
static pair_t ca, other_ca;

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *ex = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    assert_non_null(ex);
    assert_int_equal(X509_add_ext(x, ex, -1), 1);
    X509_EXTENSION_free(ex);
}

/* issuer NULL: a self-signed CA. Validity is [now + from_s, now + to_s]. */
static pair_t make_cert(const char *cn, const char *san, const pair_t *issuer, long from_s,
                        long to_s)
{
    static long serial = 1;
    pair_t p = {.key = EVP_EC_gen("P-256"), .cert = X509_new()};
    assert_non_null(p.key);
    X509 *x = p.cert;
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), from_s);
    X509_gmtime_adj(X509_getm_notAfter(x), to_s);
    X509_set_pubkey(x, p.key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer->cert) : name);
    X509 *signer = issuer ? issuer->cert : x;
    if (!issuer) {
        add_ext(x, signer, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(x, signer, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
        add_ext(x, signer, NID_basic_constraints, "CA:FALSE");
        add_ext(x, signer, NID_ext_key_usage, "serverAuth");
    }
    if (san)
        add_ext(x, signer, NID_subject_alt_name, san);
    assert_true(X509_sign(x, issuer ? issuer->key : p.key, EVP_sha256()) > 0);
    return p;
}

static void pair_free(pair_t *p)
{
    EVP_PKEY_free(p->key);
    X509_free(p->cert);
    memset(p, 0, sizeof(*p));
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Writes cert as PEM to tmpdir/name and returns the path (static storage per call site). */
static const char *write_pem(const char *name, X509 *cert, char *path, size_t len)
{
    snprintf(path, len, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, cert), 1);
    fclose(f);
    return path;
}

/* Trust exactly ca (plus the system store, which holds none of these). */
static void trust(const pair_t *p)
{
    char path[128], why[256] = "";
    write_pem("trusted.pem", p->cert, path, sizeof(path));
    assert_int_equal(sw_httpc_tls_init(path, why, sizeof(why)), 0);
}

/* ---- the server: one connection, on a thread, with blocking OpenSSL ---- */

typedef enum { SRV_TLS, SRV_PLAIN } srv_mode_t;

typedef struct {
    int lfd;
    uint16_t port;
    pthread_t thread;
    srv_mode_t mode;
    SSL_CTX *ctx;
    const char *reply;
    size_t reply_len;
    bool close_notify; /* end with close_notify (else just close the socket) */
    /* what it saw */
    char sni[256];
    bool handshake_ok;
    char got[8192];
    size_t got_len;
} srv_t;

static void read_request(srv_t *s, SSL *ssl)
{
    while (s->got_len < sizeof(s->got) - 1) {
        int n = SSL_read(ssl, s->got + s->got_len, (int)(sizeof(s->got) - 1 - s->got_len));
        if (n <= 0)
            return;
        s->got_len += (size_t)n;
        s->got[s->got_len] = '\0';
        if (strstr(s->got, "\r\n\r\n"))
            return;
    }
}

static void *serve(void *arg)
{
    srv_t *s = arg;
    struct pollfd pfd = {.fd = s->lfd, .events = POLLIN};
    if (poll(&pfd, 1, 10000) != 1) /* never hangs a failing test */
        return NULL;
    int fd = accept(s->lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (s->mode == SRV_PLAIN) {
        /* One read: the ClientHello holds no blank line to wait for. */
        ssize_t n = read(fd, s->got, sizeof(s->got) - 1);
        s->got_len = n > 0 ? (size_t)n : 0;
        ssize_t w = write(fd, s->reply, s->reply_len);
        (void)w;
        close(fd);
        return NULL;
    }
    SSL *ssl = SSL_new(s->ctx);
    SSL_set_fd(ssl, fd);
    if (SSL_accept(ssl) == 1) {
        s->handshake_ok = true;
        const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
        snprintf(s->sni, sizeof(s->sni), "%s", sni ? sni : "");
        read_request(s, ssl);
        size_t off = 0;
        while (off < s->reply_len) {
            int n = SSL_write(ssl, s->reply + off, (int)(s->reply_len - off));
            if (n <= 0)
                break;
            off += (size_t)n;
        }
        if (s->close_notify)
            SSL_shutdown(ssl);
    }
    SSL_free(ssl);
    close(fd);
    return NULL;
}

static void srv_start(srv_t *s, srv_mode_t mode, const pair_t *leaf, const char *reply)
{
    memset(s, 0, sizeof(*s));
    s->mode = mode;
    s->reply = reply;
    s->reply_len = strlen(reply);
    s->close_notify = true;
    if (leaf) {
        s->ctx = SSL_CTX_new(TLS_server_method());
        assert_int_equal(SSL_CTX_use_certificate(s->ctx, leaf->cert), 1);
        assert_int_equal(SSL_CTX_use_PrivateKey(s->ctx, leaf->key), 1);
    }
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(s->lfd, 4), 0);
    assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&sin, &len), 0);
    s->port = ntohs(sin.sin_port);
}

static void srv_run(srv_t *s)
{
    assert_int_equal(pthread_create(&s->thread, NULL, serve, s), 0);
}

static void srv_join(srv_t *s)
{
    pthread_join(s->thread, NULL);
    close(s->lfd);
    SSL_CTX_free(s->ctx);
}

/* ---- the client ---- */

typedef struct {
    int calls;
    int status;
    int http_status;
    bool body_null;
    sw_buf_t body;
} result_t;

static void on_done(int status, int http_status, const char *body, size_t len, void *payload)
{
    result_t *r = payload;
    r->calls++;
    r->status = status;
    r->http_status = http_status;
    r->body_null = body == NULL;
    if (body)
        sw_buf_append(&r->body, body, len);
}

/* host names the request (Host, SNI, the name verified); it always connects to the server on
 * 127.0.0.1, as the webhook dispatcher connects to the address it vetted. */
static void request(srv_t *s, const char *host, result_t *r)
{
    uv_loop_t loop;
    sw_httpc_t *c = NULL;
    struct sockaddr_in sin;
    uv_ip4_addr("127.0.0.1", s->port, &sin);
    memset(r, 0, sizeof(*r));
    uv_loop_init(&loop);
    srv_run(s);
    sw_httpc_req_t req = {.host = host,
                          .port = s->port,
                          .path = "/hook",
                          .method = "POST",
                          .body = "{}",
                          .body_len = 2,
                          .addr = (const struct sockaddr *)&sin,
                          .tls = true};
    assert_int_equal(sw_httpc_request(&loop, &req, on_done, r, &c), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    srv_join(s);
    assert_int_equal(r->calls, 1);
}

static void assert_reason(const result_t *r, int status, const char *reason)
{
    assert_int_equal(r->status, status);
    assert_false(r->body_null);
    char text[256];
    snprintf(text, sizeof(text), "%.*s", (int)r->body.len, r->body.base);
    if (!strstr(text, reason))
        fail_msg("reason \"%s\" does not hold \"%s\"", text, reason);
}

#define OK_REPLY "HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nreceived"

/* One https exchange: a server presenting leaf answers OK_REPLY to a request naming host. */
static void exchange(srv_t *s, const pair_t *leaf, const char *host, result_t *r)
{
    srv_start(s, SRV_TLS, leaf, OK_REPLY);
    request(s, host, r);
}

/* ---- tests ---- */

static void test_name_verified_with_sni(void **state)
{
    (void)state;
    pair_t leaf = make_cert("localhost", "DNS:localhost", &ca, -60, 3600);
    srv_t s;
    result_t r;
    exchange(&s, &leaf, "localhost", &r);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.http_status, 200);
    assert_int_equal(r.body.len, 8);
    assert_memory_equal(r.body.base, "received", 8);
    assert_string_equal(s.sni, "localhost");
    /* The request went through TLS whole; the Host header carries the port (not 443). */
    char host[64];
    snprintf(host, sizeof(host), "\r\nHost: localhost:%u\r\n", s.port);
    assert_non_null(strstr(s.got, "POST /hook HTTP/1.1\r\n"));
    assert_non_null(strstr(s.got, host));
    assert_non_null(strstr(s.got, "\r\n\r\n{}"));
    sw_buf_free(&r.body);
    pair_free(&leaf);
}

static void test_ip_literal_verified_without_sni(void **state)
{
    (void)state;
    pair_t leaf = make_cert("loopback", "IP:127.0.0.1", &ca, -60, 3600);
    srv_t s;
    result_t r;
    exchange(&s, &leaf, "127.0.0.1", &r);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.http_status, 200);
    assert_string_equal(s.sni, ""); /* RFC 6066: SNI never carries an address */
    sw_buf_free(&r.body);
    pair_free(&leaf);
}

static void test_untrusted_issuer_is_rejected_before_the_request(void **state)
{
    (void)state;
    pair_t leaf = make_cert("localhost", "DNS:localhost", &other_ca, -60, 3600);
    srv_t s;
    result_t r;
    exchange(&s, &leaf, "localhost", &r);
    assert_reason(&r, -EKEYREJECTED, "certificate verify failed: unable to get local issuer");
    assert_false(s.handshake_ok);
    assert_int_equal(s.got_len, 0); /* the signed body never left */
    sw_buf_free(&r.body);
    pair_free(&leaf);
}

static void test_wrong_name_and_wrong_address_are_rejected(void **state)
{
    (void)state;
    pair_t leaf = make_cert("other.test", "DNS:other.test, DNS:*.other.test", &ca, -60, 3600);
    srv_t s;
    result_t r;
    exchange(&s, &leaf, "localhost", &r);
    assert_reason(&r, -EKEYREJECTED, "certificate verify failed: hostname mismatch");
    assert_int_equal(s.got_len, 0);
    sw_buf_free(&r.body);
    /* A name certificate does not vouch for an address, and a wildcard covers one label. */
    exchange(&s, &leaf, "127.0.0.1", &r);
    assert_reason(&r, -EKEYREJECTED, "IP address mismatch");
    sw_buf_free(&r.body);
    exchange(&s, &leaf, "a.b.other.test", &r);
    assert_reason(&r, -EKEYREJECTED, "hostname mismatch");
    sw_buf_free(&r.body);
    exchange(&s, &leaf, "hooks.other.test.", &r); /* the trailing dot names the same host */
    assert_int_equal(r.status, 0);
    assert_string_equal(s.sni, "hooks.other.test");
    sw_buf_free(&r.body);
    pair_free(&leaf);
}

static void test_expired_certificate_is_rejected(void **state)
{
    (void)state;
    pair_t leaf = make_cert("localhost", "DNS:localhost", &ca, -7200, -3600);
    srv_t s;
    result_t r;
    exchange(&s, &leaf, "localhost", &r);
    assert_reason(&r, -EKEYREJECTED, "certificate has expired");
    sw_buf_free(&r.body);
    pair_free(&leaf);
}

static void test_plain_http_server_fails_the_handshake(void **state)
{
    (void)state;
    srv_t s;
    result_t r;
    srv_start(&s, SRV_PLAIN, NULL, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    request(&s, "localhost", &r);
    assert_reason(&r, -EPROTO, "TLS handshake failed");
    sw_buf_free(&r.body);
    /* A server that closes without a word. */
    srv_start(&s, SRV_PLAIN, NULL, "");
    request(&s, "localhost", &r);
    assert_reason(&r, -EPROTO, "closed the connection during the TLS handshake");
    sw_buf_free(&r.body);
}

static void test_large_body_ended_by_close_notify(void **state)
{
    (void)state;
    pair_t leaf = make_cert("localhost", "DNS:localhost", &ca, -60, 3600);
    const char *head = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"; /* ends at the close */
    sw_buf_t reply = SW_BUF_INIT;
    sw_buf_append_cstr(&reply, head);
    for (int i = 0; i < 20000; i++)
        sw_buf_printf(&reply, "%09d\n", i); /* 200,000 bytes over many TLS records */
    srv_t s;
    result_t r;
    srv_start(&s, SRV_TLS, &leaf, reply.base);
    request(&s, "localhost", &r);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.body.len, 200000);
    assert_memory_equal(r.body.base, reply.base + strlen(head), 200000);
    sw_buf_free(&r.body);
    /* The same answer cut by a bare close may be truncated by anyone on the path. */
    srv_start(&s, SRV_TLS, &leaf, reply.base);
    s.close_notify = false;
    request(&s, "localhost", &r);
    assert_reason(&r, -EPROTO, "without TLS close_notify");
    sw_buf_free(&r.body);
    sw_buf_free(&reply);
    pair_free(&leaf);
}

static void test_ca_file_errors_keep_the_old_context(void **state)
{
    (void)state;
    char why[256] = "", path[128];
    snprintf(path, sizeof(path), "%s/missing.pem", tmpdir);
    assert_int_equal(sw_httpc_tls_init(path, why, sizeof(why)), -ENOENT);
    assert_non_null(strstr(why, "missing.pem"));
    snprintf(path, sizeof(path), "%s/garbage.pem", tmpdir);
    write_file(path, "not a certificate\n");
    assert_int_equal(sw_httpc_tls_init(path, why, sizeof(why)), -EINVAL);
    assert_non_null(strstr(why, "holds no usable PEM certificate"));
    /* After both failures the context built by trust() still serves. */
    trust(&ca);
    assert_int_equal(sw_httpc_tls_init(path, why, sizeof(why)), -EINVAL);
    pair_t leaf = make_cert("localhost", "DNS:localhost", &ca, -60, 3600);
    srv_t s;
    result_t r;
    exchange(&s, &leaf, "localhost", &r);
    assert_int_equal(r.status, 0);
    sw_buf_free(&r.body);
    pair_free(&leaf);
}

static void test_plain_requests_report_no_reason(void **state)
{
    (void)state;
    /* A refused connection over https is a socket error, not a TLS one: no reason text. */
    srv_t s;
    result_t r;
    srv_start(&s, SRV_PLAIN, NULL, "");
    uint16_t port = s.port;
    close(s.lfd);
    uv_loop_t loop;
    sw_httpc_t *c = NULL;
    memset(&r, 0, sizeof(r));
    uv_loop_init(&loop);
    sw_httpc_req_t req = {.host = "127.0.0.1", .port = port, .path = "/", .tls = true};
    assert_int_equal(sw_httpc_request(&loop, &req, on_done, &r, &c), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, -ECONNREFUSED);
    assert_true(r.body_null);
}

/* Every test starts trusting ca alone. */
/* ---- memory-BIO sessions (tls.c) ---- */

static const char *write_key(const char *name, EVP_PKEY *key, char *path, size_t len)
{
    snprintf(path, len, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
    return path;
}

/* A server context for a fresh leaf of ca. */
static SSL_CTX *server_ctx(pair_t *leaf)
{
    char cert[128], key[128], why[768] = "";
    SSL_CTX *ctx = NULL;
    *leaf = make_cert("localhost", "DNS:localhost", &ca, -60, 3600);
    write_pem("leaf.pem", leaf->cert, cert, sizeof(cert));
    write_key("leaf.key", leaf->key, key, sizeof(key));
    assert_int_equal(sw_tls_server_ctx_new(&ctx, cert, key, why, sizeof(why)), 0);
    return ctx;
}

static SSL_CTX *client_ctx(int max_version)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), ca.cert);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (max_version) {
        SSL_CTX_set_min_proto_version(ctx, TLS1_VERSION);
        SSL_CTX_set_max_proto_version(ctx, max_version);
        SSL_CTX_set_security_level(ctx, 0);
        SSL_CTX_set_cipher_list(ctx, "DEFAULT:@SECLEVEL=0");
    }
    static const unsigned char alpn[] = "\x02h2\x08http/1.1";
    SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn) - 1);
    return ctx;
}

/* Moves what from queued for its peer into to; false when nothing was queued. */
static bool carry(SSL *from, SSL *to)
{
    static char buf[65536];
    size_t n = sw_tls_output_len(from);
    if (n == 0)
        return false;
    assert_true(n <= sizeof(buf));
    assert_int_equal(sw_tls_output_take(from, buf, n), n);
    assert_int_equal(sw_tls_input(to, buf, n), 0);
    return true;
}

/* Steps both handshakes until neither has anything to say; the server's last result. */
static int handshake(SSL *cli, SSL *srv)
{
    int rs = -EAGAIN;
    for (int i = 0; i < 20; i++) {
        int rc = sw_tls_handshake(cli);
        assert_true(rc == 0 || rc == -EAGAIN || rc == -EPROTO);
        bool moved = carry(cli, srv);
        rs = sw_tls_handshake(srv);
        moved |= carry(srv, cli);
        if (rs != -EAGAIN && rs != 0)
            break;
        if (!moved && rs == 0)
            break;
    }
    sw_tls_clear_errors();
    return rs;
}

static void test_sessions_handshake_and_exchange(void **state)
{
    (void)state;
    pair_t leaf;
    SSL_CTX *sctx = server_ctx(&leaf), *cctx = client_ctx(0);
    SSL *srv = NULL, *cli = NULL;
    assert_int_equal(sw_tls_session_new(&srv, sctx, true), 0);
    assert_int_equal(sw_tls_session_new(&cli, cctx, false), 0);
    SSL_set_tlsext_host_name(cli, "localhost");
    SSL_set1_host(cli, "localhost");
    assert_int_equal(handshake(cli, srv), 0);
    assert_true(sw_tls_handshaken(srv));
    assert_int_equal(sw_tls_handshake(cli), 0);
    const unsigned char *proto = NULL;
    unsigned plen = 0;
    SSL_get0_alpn_selected(cli, &proto, &plen);
    assert_int_equal(plen, 8);
    assert_memory_equal(proto, "http/1.1", 8);

    /* A request larger than one record arrives whole; a read with nothing new asks for more. */
    char big[40000], got[40000];
    memset(big, 'x', sizeof(big));
    assert_int_equal(sw_tls_write(cli, big, sizeof(big)), 0);
    assert_true(carry(cli, srv));
    size_t total = 0;
    for (;;) {
        ssize_t n = sw_tls_read(srv, got + total, sizeof(got) - total);
        if (n == -EAGAIN)
            break;
        assert_true(n > 0);
        total += (size_t)n;
    }
    assert_int_equal(total, sizeof(big));
    assert_memory_equal(got, big, sizeof(big));
    carry(srv, cli); /* TLS 1.3 tickets, if any */

    /* close_notify reads as the end, not an error */
    sw_tls_shutdown(cli);
    assert_true(carry(cli, srv));
    assert_int_equal(sw_tls_read(srv, got, sizeof(got)), -ESHUTDOWN);
    sw_tls_session_free(srv);
    sw_tls_session_free(cli);
    sw_tls_ctx_free(sctx);
    SSL_CTX_free(cctx);
    pair_free(&leaf);
}

static void test_plain_http_and_old_versions_are_refused(void **state)
{
    (void)state;
    pair_t leaf;
    SSL_CTX *sctx = server_ctx(&leaf);
    SSL *srv = NULL, *cli = NULL;
    static const char req[] = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(sw_tls_session_new(&srv, sctx, true), 0);
    assert_int_equal(sw_tls_input(srv, req, sizeof(req) - 1), 0);
    assert_int_equal(sw_tls_handshake(srv), -EBADMSG);
    sw_tls_clear_errors();
    sw_tls_session_free(srv);

    SSL_CTX *old = client_ctx(TLS1_1_VERSION);
    assert_int_equal(sw_tls_session_new(&srv, sctx, true), 0);
    assert_int_equal(sw_tls_session_new(&cli, old, false), 0);
    assert_int_equal(handshake(cli, srv), -EPROTO);
    assert_false(sw_tls_handshaken(srv));
    sw_tls_session_free(srv);
    sw_tls_session_free(cli);
    SSL_CTX_free(old);
    sw_tls_ctx_free(sctx);
    pair_free(&leaf);
}

static void test_server_files_are_checked(void **state)
{
    (void)state;
    char cert[128], key[128], other[128], garbage[128], why[768] = "";
    SSL_CTX *ctx = NULL;
    pair_t a = make_cert("localhost", "DNS:localhost", &ca, -60, 3600);
    pair_t b = make_cert("localhost", "DNS:localhost", &ca, -60, 3600);
    write_pem("leaf.pem", a.cert, cert, sizeof(cert));
    write_key("leaf.key", a.key, key, sizeof(key));
    write_key("other.key", b.key, other, sizeof(other));
    snprintf(garbage, sizeof(garbage), "%s/garbage.pem", tmpdir);
    write_file(garbage, "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n");

    assert_int_equal(sw_tls_server_ctx_new(&ctx, cert, other, why, sizeof(why)), -EINVAL);
    assert_non_null(strstr(why, "does not match"));
    assert_non_null(strstr(why, other));
    assert_int_equal(sw_tls_server_ctx_new(&ctx, garbage, key, why, sizeof(why)), -EINVAL);
    assert_non_null(strstr(why, "SLIPWAY_TLS_CERT_FILE"));
    assert_non_null(strstr(why, garbage));
    assert_int_equal(sw_tls_server_ctx_new(&ctx, cert, garbage, why, sizeof(why)), -EINVAL);
    assert_non_null(strstr(why, "SLIPWAY_TLS_KEY_FILE"));
    assert_int_equal(sw_tls_server_ctx_new(&ctx, "/nonexistent/c.pem", key, why, sizeof(why)),
                     -ENOENT);
    assert_non_null(strstr(why, "/nonexistent/c.pem"));
    assert_null(ctx);
    assert_int_equal(ERR_peek_error(), 0);
    assert_int_equal(sw_tls_server_ctx_new(&ctx, cert, key, why, sizeof(why)), 0);
    sw_tls_ctx_free(ctx);
    pair_free(&a);
    pair_free(&b);
}

static int trust_ca(void **state)
{
    (void)state;
    trust(&ca);
    return 0;
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/slipway-tls-XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    ca = make_cert("Slipway test CA", NULL, NULL, -3600, 3600);
    other_ca = make_cert("Someone else's CA", NULL, NULL, -3600, 3600);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    const char *names[] = {"trusted.pem", "garbage.pem", "leaf.pem", "leaf.key", "other.key"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char path[128];
        snprintf(path, sizeof(path), "%s/%s", tmpdir, names[i]);
        unlink(path);
    }
    rmdir(tmpdir);
    pair_free(&ca);
    pair_free(&other_ca);
    sw_httpc_tls_cleanup();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_name_verified_with_sni, trust_ca),
        cmocka_unit_test_setup(test_ip_literal_verified_without_sni, trust_ca),
        cmocka_unit_test_setup(test_untrusted_issuer_is_rejected_before_the_request, trust_ca),
        cmocka_unit_test_setup(test_wrong_name_and_wrong_address_are_rejected, trust_ca),
        cmocka_unit_test_setup(test_expired_certificate_is_rejected, trust_ca),
        cmocka_unit_test_setup(test_plain_http_server_fails_the_handshake, trust_ca),
        cmocka_unit_test_setup(test_large_body_ended_by_close_notify, trust_ca),
        cmocka_unit_test_setup(test_ca_file_errors_keep_the_old_context, trust_ca),
        cmocka_unit_test_setup(test_plain_requests_report_no_reason, trust_ca),
        cmocka_unit_test(test_sessions_handshake_and_exchange),
        cmocka_unit_test(test_plain_http_and_old_versions_are_refused),
        cmocka_unit_test(test_server_files_are_checked),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
