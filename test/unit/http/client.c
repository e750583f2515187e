/* Tests for src/http/client.c: a real loop with a scripted HTTP server on the same loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "slipway/buf.h"
#include "slipway/common.h"
#include "slipway/client.h"

typedef struct {
    uv_loop_t loop;

    /* the server: answers the first request on its one connection with reply */
    uv_tcp_t listener;
    bool listening;
    uv_tcp_t conn;
    bool accepted;
    uv_write_t wreq[2];
    uv_timer_t split_timer; /* sends the rest of a split reply */
    const char *reply;      /* NULL: never answers */
    size_t reply_len;
    size_t split;     /* nonzero: send this many bytes, then the rest a little later */
    bool close_after; /* close after the reply (a body delimited by the close) */
    bool answered;
    sw_buf_t got; /* everything the server read */
    uint16_t port;

    /* the client */
    sw_httpc_t *client;
    uv_timer_t cancel_timer;
    bool in_request; /* sw_httpc_request is running: cb must not come now */
    bool cb_sync;
    int calls;
    int status;
    int http_status;
    sw_buf_t body;
    bool body_null;
    uint64_t started_ns, elapsed_ms;
} fx_t;

/* ---- the server ---- */

static void server_close_conn(fx_t *f)
{
    if (f->accepted && !uv_is_closing((uv_handle_t *)&f->conn))
        uv_close((uv_handle_t *)&f->conn, NULL);
}

static void on_reply_written(uv_write_t *w, int status)
{
    fx_t *f = w->data;
    (void)status;
    if (w == &f->wreq[1] || !f->split) {
        if (f->close_after)
            server_close_conn(f);
    }
}

static void server_write(fx_t *f, int i, const char *data, size_t len)
{
    if (uv_is_closing((uv_handle_t *)&f->conn))
        return;
    uv_buf_t buf = uv_buf_init((char *)data, (unsigned)len);
    f->wreq[i].data = f;
    assert_int_equal(uv_write(&f->wreq[i], (uv_stream_t *)&f->conn, &buf, 1, on_reply_written), 0);
}

static void on_split_timer(uv_timer_t *t)
{
    fx_t *f = t->data;
    server_write(f, 1, f->reply + f->split, f->reply_len - f->split);
}

/* A request is whole once its headers and the body its Content-Length announces are in. */
static bool request_complete(const sw_buf_t *b)
{
    if (!b->base)
        return false;
    const char *end = strstr(b->base, "\r\n\r\n");
    if (!end)
        return false;
    size_t head = (size_t)(end - b->base) + 4;
    const char *cl = strcasestr(b->base, "\r\nContent-Length:");
    size_t body = cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0;
    return b->len >= head + body;
}

static void on_server_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    buf->base = sw_malloc(suggested);
    buf->len = suggested;
}

static void on_server_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    fx_t *f = s->data;
    if (nread > 0)
        sw_buf_append(&f->got, buf->base, (size_t)nread);
    free(buf->base);
    if (nread < 0) {
        server_close_conn(f);
        return;
    }
    if (f->answered || !f->reply || !request_complete(&f->got))
        return;
    f->answered = true;
    if (f->split) {
        server_write(f, 0, f->reply, f->split);
        uv_timer_start(&f->split_timer, on_split_timer, 20, 0);
    } else if (f->reply_len) {
        server_write(f, 0, f->reply, f->reply_len);
    } else if (f->close_after) {
        server_close_conn(f);
    }
}

static void on_connection(uv_stream_t *l, int status)
{
    fx_t *f = l->data;
    assert_int_equal(status, 0);
    assert_false(f->accepted); /* one request, one connection */
    uv_tcp_init(&f->loop, &f->conn);
    f->conn.data = f;
    f->accepted = true;
    assert_int_equal(uv_accept(l, (uv_stream_t *)&f->conn), 0);
    uv_read_start((uv_stream_t *)&f->conn, on_server_alloc, on_server_read);
}

static int server_listen(fx_t *f, const struct sockaddr *addr)
{
    uv_tcp_init(&f->loop, &f->listener);
    f->listener.data = f;
    f->listening = true;
    int rc = uv_tcp_bind(&f->listener, addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&f->listener, 8, on_connection);
    if (rc < 0)
        return rc;
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    uv_tcp_getsockname(&f->listener, (struct sockaddr *)&ss, &len);
    f->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                             : ((struct sockaddr_in *)&ss)->sin_port);
    return 0;
}

static void server_stop(fx_t *f)
{
    if (f->listening && !uv_is_closing((uv_handle_t *)&f->listener))
        uv_close((uv_handle_t *)&f->listener, NULL);
}

/* ---- fixture ---- */

static void fx_init(fx_t *f)
{
    memset(f, 0, sizeof(*f));
    assert_int_equal(uv_loop_init(&f->loop), 0);
    uv_timer_init(&f->loop, &f->split_timer);
    uv_timer_init(&f->loop, &f->cancel_timer);
    f->split_timer.data = f->cancel_timer.data = f;
}

static void fx_init_v4(fx_t *f)
{
    struct sockaddr_in sa;
    fx_init(f);
    uv_ip4_addr("127.0.0.1", 0, &sa);
    assert_int_equal(server_listen(f, (const struct sockaddr *)&sa), 0);
}

static void fx_reply(fx_t *f, const char *reply, bool close_after)
{
    f->reply = reply;
    f->reply_len = strlen(reply);
    f->close_after = close_after;
}

static void on_client_done(int status, int http_status, const char *body, size_t len, void *payload)
{
    fx_t *f = payload;
    f->calls++;
    f->cb_sync = f->in_request;
    f->status = status;
    f->http_status = http_status;
    f->body_null = body == NULL;
    if (body)
        sw_buf_append(&f->body, body, len);
    f->elapsed_ms = (uv_hrtime() - f->started_ns) / 1000000u;
    /* Calling cancel from the callback is harmless. */
    sw_httpc_cancel(f->client);
    f->client = NULL;
    server_stop(f);
    if (!uv_is_closing((uv_handle_t *)&f->split_timer))
        uv_close((uv_handle_t *)&f->split_timer, NULL);
    if (!uv_is_closing((uv_handle_t *)&f->cancel_timer))
        uv_close((uv_handle_t *)&f->cancel_timer, NULL);
}

static int fx_start(fx_t *f, sw_httpc_req_t *req)
{
    if (!req->port)
        req->port = f->port;
    f->started_ns = uv_hrtime();
    f->in_request = true;
    int rc = sw_httpc_request(&f->loop, req, on_client_done, f, &f->client);
    f->in_request = false;
    assert_int_equal(f->calls, 0);
    return rc;
}

/* Runs the loop until everything is closed, then checks the callback ran once, later. */
static void fx_finish(fx_t *f)
{
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->calls, 1);
    assert_false(f->cb_sync);
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

static void fx_free(fx_t *f)
{
    sw_buf_free(&f->got);
    sw_buf_free(&f->body);
}

static void fx_request(fx_t *f, sw_httpc_req_t *req)
{
    assert_int_equal(fx_start(f, req), 0);
    fx_finish(f);
}

static void assert_body(const fx_t *f, const char *expected)
{
    assert_false(f->body_null);
    assert_int_equal(f->body.len, strlen(expected));
    if (f->body.len)
        assert_memory_equal(f->body.base, expected, f->body.len);
}

static void assert_got(const fx_t *f, const char *expected)
{
    assert_non_null(f->got.base);
    assert_string_equal(f->got.base, expected);
}

/* ---- tests ---- */

static void test_get_with_content_length(void **state)
{
    (void)state;
    fx_t f;
    fx_init_v4(&f);
    fx_reply(&f, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false);
    sw_httpc_req_t req = {.host = "127.0.0.1", .path = "/health"};
    fx_request(&f, &req);
    assert_int_equal(f.status, 0);
    assert_int_equal(f.http_status, 200);
    assert_body(&f, "hello");
    char expected[256];
    snprintf(expected, sizeof(expected),
             "GET /health HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nUser-Agent: slipway\r\n"
             "Connection: close\r\n\r\n",
             f.port);
    assert_got(&f, expected);
    fx_free(&f);
}

static void test_chunked_body_in_two_reads(void **state)
{
    (void)state;
    fx_t f;
    fx_init_v4(&f);
    fx_reply(&f,
             "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n"
             "0\r\n\r\n",
             false);
    f.split = 52; /* inside the second chunk */
    sw_httpc_req_t req = {.host = "127.0.0.1", .path = "/"};
    fx_request(&f, &req);
    assert_int_equal(f.status, 0);
    assert_int_equal(f.http_status, 200);
    assert_body(&f, "hello world");
    fx_free(&f);
}

static void test_body_ends_at_close(void **state)
{
    (void)state;
    fx_t f;
    fx_init_v4(&f);
    fx_reply(&f, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end", true);
    f.split = 50;
    sw_httpc_req_t req = {.host = "127.0.0.1", .path = "/"};
    fx_request(&f, &req);
    assert_int_equal(f.status, 0);
    assert_int_equal(f.http_status, 200);
    assert_body(&f, "until the end");
    fx_free(&f);
}

static void test_large_body_over_many_reads(void **state)
{
    (void)state;
    fx_t f;
    fx_init_v4(&f);
    size_t n = 300000;
    sw_buf_t reply = SW_BUF_INIT;
    sw_buf_printf(&reply, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", n);
    size_t head = reply.len;
    for (size_t i = 0; i < n; i++)
        sw_buf_append_char(&reply, (char)('a' + i % 26));
    f.reply = reply.base;
    f.reply_len = reply.len;
    sw_httpc_req_t req = {.host = "127.0.0.1", .path = "/big"};
    fx_request(&f, &req);
    assert_int_equal(f.status, 0);
    assert_int_equal(f.body.len, n);
    assert_memory_equal(f.body.base, reply.base + head, n);
    sw_buf_free(&reply);
    fx_free(&f);
}

static void test_404_is_passed_through(void **state)
{
    (void)state;
    fx_t f;
    fx_init_v4(&f);
    fx_reply(&f, "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found", false);
    sw_httpc_req_t req = {.host = "127.0.0.1", .path = "/missing"};
    fx_request(&f, &req);
    assert_int_equal(f.status, 0);
    assert_int_equal(f.http_status, 404);
    assert_body(&f, "not found");
    fx_free(&f);
}

static void test_head_has_no_body(void **state)
{
    (void)state;
    fx_t f;
    fx_init_v4(&f);
    /* The server keeps the connection open: the client must not wait for 1000 bytes. */
    fx_reply(&f, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", false);
    sw_httpc_req_t req = {.method = "HEAD", .host = "127.0.0.1", .path = "/", .timeout_ms = 3000};
    fx_request(&f, &req);
    assert_int_equal(f.status, 0);
    assert_int_equal(f.http_status, 200);
    assert_body(&f, "");
    assert_non_null(f.got.base);
    assert_true(strncmp(f.got.base, "HEAD / HTTP/1.1\r\n", 17) == 0);
    fx_free(&f);
}

static void test_204_and_interim_100(void **state)
{
    (void)state;
    fx_t f;
    fx_init_v4(&f);
    fx_reply(&f, "HTTP/1.1 204 No Content\r\n\r\n", false);
    sw_httpc_req_t req = {
        .method = "DELETE", .host = "127.0.0.1", .path = "/x", .timeout_ms = 3000};
    fx_request(&f, &req);
    assert_int_equal(f.status, 0);
    assert_int_equal(f.http_status, 204);
    assert_body(&f, "");
    fx_free(&f);

    fx_init_v4(&f);
    fx_reply(&f, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
             false);
    sw_httpc_req_t req2 = {
        .method = "POST", .host = "127.0.0.1", .path = "/x", .body = "", .timeout_ms = 3000};
    fx_request(&f, &req2);
    assert_int_equal(f.status, 0);
    assert_int_equal(f.http_status, 201);
    assert_body(&f, "ok");
    fx_free(&f);
}

static void test_post_body_and_headers_reach_server(void **state)
{
    (void)state;
    fx_t f;
    fx_init_v4(&f);
    fx_reply(&f, "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n", false);
    const char *headers[] = {"X-Slipway-Signature: sha256=abc", "Content-Type: application/json",
                             NULL};
    const char *body = "{\"event\":\"deployment.success\"}";
    sw_httpc_req_t req = {.method = "POST",
                          .host = "127.0.0.1",
                          .path = "/hook?x=1",
                          .headers = headers,
                          .body = body,
                          .body_len = strlen(body)};
    fx_request(&f, &req);
    assert_int_equal(f.status, 0);
    assert_int_equal(f.http_status, 202);
    assert_body(&f, "");
    char expected[512];
    snprintf(expected, sizeof(expected),
             "POST /hook?x=1 HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nUser-Agent: slipway\r\n"
             "Connection: close\r\nX-Slipway-Signature: sha256=abc\r\n"
             "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
             f.port, strlen(body), body);
    assert_got(&f, expected);
    fx_free(&f);
}

static void test_caller_host_and_agent_replace_defaults(void **state)
{
    (void)state;
    fx_t f;
    fx_init_v4(&f);
    fx_reply(&f, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false);
    const char *headers[] = {"host: admin.internal", "User-Agent: probe/1", NULL};
    sw_httpc_req_t req = {.host = "127.0.0.1", .path = "/config/", .headers = headers};
    fx_request(&f, &req);
    assert_int_equal(f.status, 0);
    assert_got(&f, "GET /config/ HTTP/1.1\r\nConnection: close\r\nhost: admin.internal\r\n"
                   "User-Agent: probe/1\r\n\r\n");
    fx_free(&f);
}

static void test_silent_server_times_out(void **state)
{
    (void)state;
    fx_t f;
    fx_init_v4(&f);
    sw_httpc_req_t req = {.host = "127.0.0.1", .path = "/", .timeout_ms = 200};
    fx_request(&f, &req);
    assert_int_equal(f.status, -ETIMEDOUT);
    assert_int_equal(f.http_status, 0);
    assert_true(f.body_null);
    assert_in_range(f.elapsed_ms, 150, 3000);
    assert_true(request_complete(&f.got)); /* it did connect and send */
    fx_free(&f);
}

static void test_closed_port_is_refused(void **state)
{
    (void)state;
    fx_t f;
    fx_init_v4(&f);
    uint16_t port = f.port;
    server_stop(&f);
    uv_run(&f.loop, UV_RUN_NOWAIT); /* the port is closed once the close callback ran */
    sw_httpc_req_t req = {.host = "127.0.0.1", .port = port, .path = "/"};
    fx_request(&f, &req);
    assert_int_equal(f.status, -ECONNREFUSED);
    fx_free(&f);
}

static void test_announced_body_over_max_body(void **state)
{
    (void)state;
    fx_t f;
    fx_init_v4(&f);
    fx_reply(&f, "HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n01234567890123456789", false);
    sw_httpc_req_t req = {.host = "127.0.0.1", .path = "/", .max_body = 10, .timeout_ms = 3000};
    fx_request(&f, &req);
    assert_int_equal(f.status, -EMSGSIZE);
    assert_true(f.body_null);
    fx_free(&f);
}

static void test_streamed_body_over_max_body(void **state)
{
    (void)state;
    fx_t f;
    fx_init_v4(&f);
    /* Chunked, and the server stays open: the client must stop at the cap, not time out. */
    fx_reply(&f,
             "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n01234567\r\n"
             "8\r\n89abcdef\r\n",
             false);
    f.split = 60;
    sw_httpc_req_t req = {.host = "127.0.0.1", .path = "/", .max_body = 10, .timeout_ms = 3000};
    fx_request(&f, &req);
    assert_int_equal(f.status, -EMSGSIZE);
    fx_free(&f);

    /* A body delimited by the close: the cap still holds. */
    fx_init_v4(&f);
    fx_reply(&f, "HTTP/1.1 200 OK\r\n\r\n0123456789abcdef", true);
    sw_httpc_req_t req2 = {.host = "127.0.0.1", .path = "/", .max_body = 16};
    fx_request(&f, &req2);
    assert_int_equal(f.status, 0); /* exactly the cap is allowed */
    assert_body(&f, "0123456789abcdef");
    fx_free(&f);

    fx_init_v4(&f);
    fx_reply(&f, "HTTP/1.1 200 OK\r\n\r\n0123456789abcdefg", true);
    sw_httpc_req_t req3 = {.host = "127.0.0.1", .path = "/", .max_body = 16};
    fx_request(&f, &req3);
    assert_int_equal(f.status, -EMSGSIZE);
    fx_free(&f);
}

static void test_truncate_body_keeps_the_first_bytes(void **state)
{
    (void)state;
    fx_t f;
    /* Announced longer than the cap, and the server keeps the connection open: the answer is
     * the first max_body bytes, at once, with its status. */
    fx_init_v4(&f);
    fx_reply(&f, "HTTP/1.1 201 Created\r\nContent-Length: 20\r\n\r\n0123456789", false);
    sw_httpc_req_t req = {
        .host = "127.0.0.1", .path = "/", .max_body = 4, .truncate_body = true, .timeout_ms = 3000};
    fx_request(&f, &req);
    assert_int_equal(f.status, 0);
    assert_int_equal(f.http_status, 201);
    assert_body(&f, "0123");
    assert_in_range(f.elapsed_ms, 0, 2000);
    fx_free(&f);

    /* Exactly the cap arrives and the server stalls: the answer is complete all the same. */
    fx_init_v4(&f);
    fx_reply(&f, "HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n0123", false);
    sw_httpc_req_t req_exact = {
        .host = "127.0.0.1", .path = "/", .max_body = 4, .truncate_body = true, .timeout_ms = 3000};
    fx_request(&f, &req_exact);
    assert_int_equal(f.status, 0);
    assert_body(&f, "0123");
    assert_in_range(f.elapsed_ms, 0, 2000);
    fx_free(&f);

    /* Chunked, cut inside the second chunk. */
    fx_init_v4(&f);
    fx_reply(&f,
             "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n01234567\r\n"
             "8\r\n89abcdef\r\n",
             false);
    f.split = 60;
    sw_httpc_req_t req2 = {.host = "127.0.0.1",
                           .path = "/",
                           .max_body = 10,
                           .truncate_body = true,
                           .timeout_ms = 3000};
    fx_request(&f, &req2);
    assert_int_equal(f.status, 0);
    assert_body(&f, "0123456789");
    fx_free(&f);

    /* Shorter than the cap: the whole body, as without the flag. */
    fx_init_v4(&f);
    fx_reply(&f, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", false);
    sw_httpc_req_t req3 = {.host = "127.0.0.1", .path = "/", .max_body = 10, .truncate_body = true};
    fx_request(&f, &req3);
    assert_int_equal(f.status, 0);
    assert_body(&f, "abc");
    fx_free(&f);
}

static void test_garbage_and_truncated_answers_are_eproto(void **state)
{
    (void)state;
    static const struct {
        const char *reply;
        bool close_after;
    } cases[] = {
        {"garbage\r\n\r\n", false},
        {"HTTP/1.1 abc OK\r\n\r\n", false},
        {"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", true},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", true},
        {"HTTP/1.1 200 OK\r\nContent-Le", true},
        {"", true}, /* closed without a word */
    };
    for (size_t i = 0; i < SW_ARRAY_SIZE(cases); i++) {
        fx_t f;
        fx_init_v4(&f);
        fx_reply(&f, cases[i].reply, cases[i].close_after);
        sw_httpc_req_t req = {.host = "127.0.0.1", .path = "/", .timeout_ms = 3000};
        fx_request(&f, &req);
        if (f.status != -EPROTO)
            fail_msg("case %zu: status %d", i, f.status);
        fx_free(&f);
    }
}

static void on_cancel_timer(uv_timer_t *t)
{
    fx_t *f = t->data;
    sw_httpc_cancel(f->client);
    sw_httpc_cancel(f->client); /* twice: still one callback */
    assert_int_equal(f->calls, 0);
}

static void test_cancel_calls_back_once(void **state)
{
    (void)state;
    fx_t f;
    fx_init_v4(&f);
    sw_httpc_req_t req = {.host = "127.0.0.1", .path = "/"};
    assert_int_equal(fx_start(&f, &req), 0);
    uv_timer_start(&f.cancel_timer, on_cancel_timer, 50, 0);
    fx_finish(&f);
    assert_int_equal(f.status, -ECANCELED);
    assert_in_range(f.elapsed_ms, 0, 2000);
    fx_free(&f);
}

static void test_cancel_before_the_loop_runs(void **state)
{
    (void)state;
    /* While connecting, and while resolving a name. */
    const char *hosts[] = {"127.0.0.1", "localhost"};
    for (size_t i = 0; i < SW_ARRAY_SIZE(hosts); i++) {
        fx_t f;
        fx_init_v4(&f);
        sw_httpc_req_t req = {.host = hosts[i], .path = "/"};
        assert_int_equal(fx_start(&f, &req), 0);
        sw_httpc_cancel(f.client);
        assert_int_equal(f.calls, 0);
        fx_finish(&f);
        assert_int_equal(f.status, -ECANCELED);
        fx_free(&f);
    }
}

static void test_localhost_is_resolved(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f);
    /* Listen where the client will connect: the first address the resolver gives. */
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_protocol = IPPROTO_TCP,
                             .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    assert_int_equal(getaddrinfo("localhost", "0", &hints, &res), 0);
    assert_int_equal(server_listen(&f, res->ai_addr), 0);
    freeaddrinfo(res);
    fx_reply(&f, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false);
    sw_httpc_req_t req = {.host = "localhost", .path = "/ready"};
    fx_request(&f, &req);
    assert_int_equal(f.status, 0);
    assert_int_equal(f.http_status, 200);
    assert_body(&f, "ok");
    char host[64];
    snprintf(host, sizeof(host), "\r\nHost: localhost:%u\r\n", f.port);
    assert_non_null(strstr(f.got.base, host));
    fx_free(&f);
}

static void test_ipv6_literal(void **state)
{
    (void)state;
    struct sockaddr_in6 sa;
    fx_t f;
    fx_init(&f);
    uv_ip6_addr("::1", 0, &sa);
    if (server_listen(&f, (const struct sockaddr *)&sa) != 0) {
        server_stop(&f);
        uv_close((uv_handle_t *)&f.split_timer, NULL);
        uv_close((uv_handle_t *)&f.cancel_timer, NULL);
        uv_run(&f.loop, UV_RUN_DEFAULT);
        assert_int_equal(uv_loop_close(&f.loop), 0);
        skip(); /* no IPv6 loopback here */
    }
    fx_reply(&f, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nv6", false);
    sw_httpc_req_t req = {.host = "[::1]", .path = "/"};
    fx_request(&f, &req);
    assert_int_equal(f.status, 0);
    assert_body(&f, "v6");
    char host[64];
    snprintf(host, sizeof(host), "\r\nHost: [::1]:%u\r\n", f.port);
    assert_non_null(strstr(f.got.base, host));
    fx_free(&f);
}

static void test_invalid_requests_are_refused_at_once(void **state)
{
    (void)state;
    const char *crlf_header[] = {"X-A: 1\r\nX-Injected: 1", NULL};
    const char *no_colon[] = {"NoColon", NULL};
    const char *own_length[] = {"Content-Length: 5", NULL};
    const char *spaced_length[] = {"Content-Length : 5", NULL};
    const char *own_connection[] = {"X-A: 1", "connection: keep-alive", NULL};
    const sw_httpc_req_t bad[] = {
        {.host = "127.0.0.1", .port = 80, .path = "health"},
        {.host = "127.0.0.1", .port = 80, .path = ""},
        {.host = "127.0.0.1", .port = 80, .path = "/a b"},
        {.host = "127.0.0.1", .port = 80, .path = "/a\r\nX-Injected: 1"},
        {.host = "127.0.0.1", .port = 80},
        {.method = "GE T", .host = "127.0.0.1", .port = 80, .path = "/"},
        {.method = "GET\r\n", .host = "127.0.0.1", .port = 80, .path = "/"},
        {.method = "", .host = "127.0.0.1", .port = 80, .path = "/"},
        {.host = "", .port = 80, .path = "/"},
        {.port = 80, .path = "/"},
        {.host = "bad host", .port = 80, .path = "/"},
        {.host = "evil\r\nX: 1", .port = 80, .path = "/"},
        {.host = "[1.2.3.4]", .port = 80, .path = "/"},
        {.host = "[::1", .port = 80, .path = "/"},
        {.host = "1:2:zz::", .port = 80, .path = "/"},
        {.host = "127.0.0.1", .port = 0, .path = "/"},
        {.host = "127.0.0.1", .port = 80, .path = "/", .headers = crlf_header},
        {.host = "127.0.0.1", .port = 80, .path = "/", .headers = no_colon},
        {.host = "127.0.0.1", .port = 80, .path = "/", .headers = own_length},
        {.host = "127.0.0.1", .port = 80, .path = "/", .headers = spaced_length},
        {.host = "127.0.0.1", .port = 80, .path = "/", .headers = own_connection},
        {.host = "127.0.0.1", .port = 80, .path = "/", .body = NULL, .body_len = 3},
    };
    fx_t f;
    fx_init(&f);
    for (size_t i = 0; i < SW_ARRAY_SIZE(bad); i++) {
        sw_httpc_t *c = (sw_httpc_t *)&f; /* a sentinel: must stay untouched */
        int rc = sw_httpc_request(&f.loop, &bad[i], on_client_done, &f, &c);
        if (rc != -EINVAL || c != (sw_httpc_t *)&f)
            fail_msg("case %zu: rc %d", i, rc);
    }
    sw_httpc_req_t ok = {.host = "127.0.0.1", .port = 80, .path = "/"};
    assert_int_equal(sw_httpc_request(NULL, &ok, on_client_done, &f, &f.client), -EINVAL);
    assert_int_equal(sw_httpc_request(&f.loop, &ok, NULL, &f, &f.client), -EINVAL);
    assert_int_equal(sw_httpc_request(&f.loop, &ok, on_client_done, &f, NULL), -EINVAL);
    uv_close((uv_handle_t *)&f.split_timer, NULL);
    uv_close((uv_handle_t *)&f.cancel_timer, NULL);
    uv_run(&f.loop, UV_RUN_DEFAULT);
    assert_int_equal(f.calls, 0);
    assert_int_equal(uv_loop_close(&f.loop), 0);
    fx_free(&f);
}

static void test_immediate_failure_is_asynchronous(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f);
    /* connect() to the broadcast address fails inside uv_tcp_connect itself. */
    sw_httpc_req_t req = {.host = "255.255.255.255", .port = 80, .path = "/", .timeout_ms = 3000};
    assert_int_equal(fx_start(&f, &req), 0);
    fx_finish(&f);
    assert_true(f.status < 0);
    assert_int_not_equal(f.status, -ETIMEDOUT);
    fx_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_with_content_length),
        cmocka_unit_test(test_chunked_body_in_two_reads),
        cmocka_unit_test(test_body_ends_at_close),
        cmocka_unit_test(test_large_body_over_many_reads),
        cmocka_unit_test(test_404_is_passed_through),
        cmocka_unit_test(test_head_has_no_body),
        cmocka_unit_test(test_204_and_interim_100),
        cmocka_unit_test(test_post_body_and_headers_reach_server),
        cmocka_unit_test(test_caller_host_and_agent_replace_defaults),
        cmocka_unit_test(test_silent_server_times_out),
        cmocka_unit_test(test_closed_port_is_refused),
        cmocka_unit_test(test_announced_body_over_max_body),
        cmocka_unit_test(test_streamed_body_over_max_body),
        cmocka_unit_test(test_truncate_body_keeps_the_first_bytes),
        cmocka_unit_test(test_garbage_and_truncated_answers_are_eproto),
        cmocka_unit_test(test_cancel_calls_back_once),
        cmocka_unit_test(test_cancel_before_the_loop_runs),
        cmocka_unit_test(test_localhost_is_resolved),
        cmocka_unit_test(test_ipv6_literal),
        cmocka_unit_test(test_invalid_requests_are_refused_at_once),
        cmocka_unit_test(test_immediate_failure_is_asynchronous),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
