/* Fuzz target: bytes from a client on one connection to the HTTP server (src/http: llhttp
 * glue, header and body limits, chunked bodies, pipelining, keep-alive, streams), through a
 * real socket. The handler answers by path: /echo with the body, /later on a later loop
 * iteration (answers complete out of order), /stream with a chunked stream, /q with what
 * the query, headers and cookies hold, anything else 404.
 *
 * Input: byte 0 is how many bytes the peer sends per loop iteration (0: all at once); the
 * rest is what it sends. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "slipway/server.h"

#define FUZZ_MAX_INPUT 65536

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    uv_timer_t timer;
    sw_http_req_t *req;
} later_t;

static void on_later_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_later(uv_timer_t *t)
{
    later_t *l = t->data;
    sw_http_respond(l->req, 202, "text/plain", "later\n", 6);
    uv_close((uv_handle_t *)&l->timer, on_later_closed);
}

static bool path_is(const sw_http_req_t *req, const char *path)
{
    return req->path.len == strlen(path) && memcmp(req->path.base, path, req->path.len) == 0;
}

static void on_request(sw_http_req_t *req, void *payload)
{
    (void)payload;
    if (path_is(req, "/echo")) {
        sw_http_add_header(req, "X-Method", req->method);
        sw_http_respond(req, 200, "application/octet-stream", req->body.base, req->body.len);
    } else if (path_is(req, "/later")) {
        later_t *l = calloc(1, sizeof(*l));
        l->req = req;
        uv_timer_init(fuzz_conn_loop(), &l->timer);
        l->timer.data = l;
        uv_timer_start(&l->timer, on_later, 0, 0);
    } else if (path_is(req, "/stream")) {
        sw_http_stream_cbs_t cbs = {0};
        sw_http_stream_t *st =
            sw_http_stream_open(req, 200, "text/plain", SW_HTTP_STREAM_CHUNKED, &cbs, NULL);
        if (st) {
            sw_http_stream_write(st, "one\n", 4);
            sw_http_stream_write(st, "", 0);
            sw_http_stream_write(st, "two\n", 4);
            sw_http_stream_end(st);
        }
    } else if (path_is(req, "/q")) {
        sw_buf_t out = SW_BUF_INIT;
        const char *v = sw_http_req_query(req, "a");
        sw_iov_t h = sw_http_req_header(req, "x-a");
        sw_iov_t c = sw_http_req_cookie(req, "a");
        sw_buf_printf(&out, "%s|%.*s|%.*s", v ? v : "", (int)h.len, h.base ? h.base : "",
                      (int)c.len, c.base ? c.base : "");
        /* A header value from the peer goes back as a header: CR and LF must not pass. */
        sw_http_add_header(req, "X-A", out.base);
        sw_http_respond(req, 200, "text/plain", out.base, out.len);
        sw_buf_free(&out);
    } else {
        sw_http_respond_error(req, 404, "RESOURCE_NOT_FOUND", "no such path", NULL);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > FUZZ_MAX_INPUT)
        return 0;
    fuzz_conn_run(data + 1, size - 1, data[0], on_request);
    return 0;
}
