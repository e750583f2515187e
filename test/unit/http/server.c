/* Tests for src/http/server.c: a real loop and server, a blocking client on a thread. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "slipway/http.h"

typedef struct {
    uv_loop_t loop;
    sw_http_server_t *server;
    uv_async_t done;
    uint16_t port;
    const char *request; /* what the client sends */
    size_t request_len;
    sw_buf_t reply; /* everything the client read until EOF */
    /* deferred answers: answered in reverse arrival order */
    sw_http_req_t *held[64];
    unsigned nheld;
    unsigned hold; /* how many to hold before answering them all */
    uv_timer_t release;
    int drained;
} fixture_t;

static void answer(sw_http_req_t *req)
{
    sw_buf_t b = SW_BUF_INIT;
    const char *q = sw_http_req_query(req, "q");
    sw_buf_printf(&b, "%s %.*s body=%zu q=%s", req->method, (int)req->path.len, req->path.base,
                  req->body.len, q ? q : "(none)");
    sw_http_respond(req, 200, "text/plain", b.base, b.len);
    sw_buf_free(&b);
}

static void on_release(uv_timer_t *t)
{
    fixture_t *f = t->data;
    while (f->nheld > 0)
        answer(f->held[--f->nheld]); /* newest first: the server must restore the order */
}

static void on_request(sw_http_req_t *req, void *payload)
{
    fixture_t *f = payload;
    if (f->hold && f->nheld < SW_ARRAY_SIZE(f->held)) {
        f->held[f->nheld++] = req;
        if (f->nheld == f->hold)
            uv_timer_start(&f->release, on_release, 5, 0);
        return;
    }
    answer(req);
}

static void on_drained(sw_http_server_t *s, void *payload)
{
    fixture_t *f = payload;
    (void)s;
    f->drained = 1;
    uv_close((uv_handle_t *)&f->done, NULL);
    uv_close((uv_handle_t *)&f->release, NULL);
}

static void on_done(uv_async_t *a)
{
    fixture_t *f = a->data;
    sw_http_server_drain(f->server);
}

static void *client(void *arg)
{
    fixture_t *f = arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(f->port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        size_t off = 0;
        while (off < f->request_len) {
            ssize_t n = send(fd, f->request + off, f->request_len - off, MSG_NOSIGNAL);
            if (n <= 0)
                break;
            off += (size_t)n;
        }
        char buf[4096];
        for (;;) {
            ssize_t n = recv(fd, buf, sizeof(buf), 0);
            if (n <= 0)
                break;
            sw_buf_append(&f->reply, buf, (size_t)n);
        }
    }
    close(fd);
    uv_async_send(&f->done);
    return NULL;
}

static void run(fixture_t *f, const sw_http_server_opts_t *extra)
{
    sw_http_server_opts_t o = {
        .max_header_bytes = 16384,
        .max_headers = 100,
        .max_body_bytes = 1 << 20,
        .max_connections = 100,
        .max_pipelined = 32,
        .header_timeout_ms = 5000,
        .body_timeout_ms = 5000,
        .idle_timeout_ms = 5000,
        .drain_timeout_ms = 1000,
    };
    if (extra) {
        o.max_pipelined = extra->max_pipelined ? extra->max_pipelined : o.max_pipelined;
        o.max_headers = extra->max_headers ? extra->max_headers : o.max_headers;
        o.max_body_bytes = extra->max_body_bytes ? extra->max_body_bytes : o.max_body_bytes;
    }
    o.on_request = on_request;
    o.on_drained = on_drained;
    o.payload = f;
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(sw_http_server_new(&f->server, &f->loop, &o), 0);
    assert_int_equal(sw_http_server_listen(f->server, "127.0.0.1:0"), 0);
    char addr[64];
    assert_int_equal(sw_http_server_address(f->server, 0, addr, sizeof(addr)), 0);
    f->port = (uint16_t)atoi(strrchr(addr, ':') + 1);
    uv_async_init(&f->loop, &f->done, on_done);
    f->done.data = f;
    uv_timer_init(&f->loop, &f->release);
    f->release.data = f;

    pthread_t th;
    pthread_create(&th, NULL, client, f);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    pthread_join(th, NULL);
    assert_true(f->drained);
    sw_http_server_free(f->server);
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

/* The X-Request-Id values of every response, in the order they arrived. */
static void request_ids(const char *reply, char *out, size_t size)
{
    out[0] = '\0';
    for (const char *p = reply; (p = strstr(p, "X-Request-Id: ")); p++) {
        p += 14;
        size_t n = strcspn(p, "\r");
        strncat(out, p, SW_MIN(n, size - strlen(out) - 2));
        strcat(out, ",");
    }
}

static void test_pipelined_answers_keep_request_order(void **state)
{
    (void)state;
    fixture_t f = {0};
    static const char req[] = "GET /a HTTP/1.1\r\nHost: x\r\nX-Request-Id: r1\r\n\r\n"
                              "GET /b HTTP/1.1\r\nHost: x\r\nX-Request-Id: r2\r\n\r\n"
                              "GET /c HTTP/1.1\r\nHost: x\r\nX-Request-Id: r3\r\n\r\n"
                              "GET /d HTTP/1.1\r\nHost: x\r\nX-Request-Id: r4\r\n"
                              "Connection: close\r\n\r\n";
    f.request = req;
    f.request_len = sizeof(req) - 1;
    f.hold = 4;
    run(&f, NULL);
    char ids[256];
    request_ids(f.reply.base, ids, sizeof(ids));
    assert_string_equal(ids, "r1,r2,r3,r4,");
    assert_non_null(strstr(f.reply.base, "GET /a body=0"));
    assert_non_null(strstr(f.reply.base, "Connection: close"));
    sw_buf_free(&f.reply);
}

static void test_pipeline_cap_pauses_and_resumes(void **state)
{
    (void)state;
    fixture_t f = {0};
    sw_buf_t req = SW_BUF_INIT;
    for (int i = 0; i < 20; i++)
        sw_buf_printf(&req, "GET /p%d HTTP/1.1\r\nX-Request-Id: p%d\r\n%s\r\n", i, i,
                      i == 19 ? "Connection: close\r\n" : "");
    f.request = req.base;
    f.request_len = req.len;
    sw_http_server_opts_t extra = {.max_pipelined = 2};
    run(&f, &extra);
    char ids[512], want[512] = "";
    request_ids(f.reply.base, ids, sizeof(ids));
    for (int i = 0; i < 20; i++)
        snprintf(want + strlen(want), sizeof(want) - strlen(want), "p%d,", i);
    assert_string_equal(ids, want);
    sw_buf_free(&req);
    sw_buf_free(&f.reply);
}

static void test_chunked_body_and_query(void **state)
{
    (void)state;
    fixture_t f = {0};
    static const char req[] = "POST /up?x=1&q=a%20b+c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                              "Connection: close\r\n\r\n"
                              "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    f.request = req;
    f.request_len = sizeof(req) - 1;
    run(&f, NULL);
    assert_non_null(strstr(f.reply.base, "HTTP/1.1 200 OK"));
    assert_non_null(strstr(f.reply.base, "POST /up body=11 q=a b c"));
    sw_buf_free(&f.reply);
}

static void test_too_many_headers_is_431(void **state)
{
    (void)state;
    fixture_t f = {0};
    sw_buf_t req = SW_BUF_INIT;
    sw_buf_append_cstr(&req, "GET / HTTP/1.1\r\n");
    for (int i = 0; i < 20; i++)
        sw_buf_printf(&req, "X-H%d: v\r\n", i);
    sw_buf_append_cstr(&req, "\r\n");
    f.request = req.base;
    f.request_len = req.len;
    sw_http_server_opts_t extra = {.max_headers = 10};
    run(&f, &extra);
    assert_non_null(strstr(f.reply.base, "HTTP/1.1 431 "));
    assert_non_null(strstr(f.reply.base, "Connection: close"));
    sw_buf_free(&req);
    sw_buf_free(&f.reply);
}

static void test_chunked_body_over_limit_is_413(void **state)
{
    (void)state;
    fixture_t f = {0};
    static const char req[] = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "10\r\n0123456789abcdef\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n";
    f.request = req;
    f.request_len = sizeof(req) - 1;
    sw_http_server_opts_t extra = {.max_body_bytes = 20};
    run(&f, &extra);
    assert_non_null(strstr(f.reply.base, "HTTP/1.1 413 "));
    assert_non_null(strstr(f.reply.base, "PAYLOAD_TOO_LARGE"));
    sw_buf_free(&f.reply);
}

static void test_garbage_is_400_and_head_has_no_body(void **state)
{
    (void)state;
    fixture_t f = {0};
    static const char req[] = "HEAD /h HTTP/1.1\r\n\r\nNOT HTTP AT ALL\r\n\r\n";
    f.request = req;
    f.request_len = sizeof(req) - 1;
    run(&f, NULL);
    const char *head = strstr(f.reply.base, "HTTP/1.1 200 OK");
    const char *bad = strstr(f.reply.base, "HTTP/1.1 400 ");
    assert_non_null(head);
    assert_non_null(bad);
    /* The HEAD answer announces a length but the next bytes are the 400's status line. */
    const char *end = strstr(head, "\r\n\r\n");
    assert_ptr_equal(end + 4, bad);
    assert_non_null(strstr(head, "Content-Length: 23"));
    sw_buf_free(&f.reply);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pipelined_answers_keep_request_order),
        cmocka_unit_test(test_pipeline_cap_pauses_and_resumes),
        cmocka_unit_test(test_chunked_body_and_query),
        cmocka_unit_test(test_too_many_headers_is_431),
        cmocka_unit_test(test_chunked_body_over_limit_is_413),
        cmocka_unit_test(test_garbage_is_400_and_head_has_no_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
