/* HTTP/1.1 server: connections, llhttp glue, pipelining, limits, timeouts and draining.
 *
 * A connection parses one message at a time: on_message_complete pauses the parser, the
 * request is handed to the application, and parsing resumes while fewer than max_pipelined
 * requests are unanswered. Requests queue on the connection in arrival order; a response is
 * written only when every response before it has been, so pipelined answers keep their order
 * however the handlers finish. */
#include "slipway/http.h"

#include <errno.h>
#include <llhttp.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "slipway/common.h"
#include "slipway/config.h"
#include "slipway/framing.h"
#include "slipway/json.h"

#define READ_BUF_SIZE  65536
#define MAX_LISTENERS  16
#define LINGER_MS      2000
#define REQ_FREE_MAX   256
#define KEEP_BUF_BYTES 65536
/* Answers written but not yet taken by the peer; beyond this, reading pauses. */
#define WRITE_QUEUE_MAX (1u << 20)
/* A stream whose queued bytes see no progress this long is closed: a peer that stopped
 * reading must not hold a connection and its queue for ever. */
#define STREAM_STALL_MS 60000

typedef enum {
    CONN_OPEN,      /* reading and answering */
    CONN_STREAM,    /* a stream (long response or upgraded connection) owns it */
    CONN_CLOSING,   /* answering what is queued, then closing (no more requests read) */
    CONN_LINGERING, /* write side shut; discarding input until EOF or the linger timer */
    CONN_CLOSED,    /* uv_close called */
    CONN_MAX
} conn_state_t;

typedef enum {
    TIMER_NONE,
    TIMER_HEADER,
    TIMER_BODY,
    TIMER_IDLE,
    TIMER_LINGER,
    TIMER_STREAM_START, /* hands an upgraded stream the bytes that came with its request */
    TIMER_STREAM_STALL, /* a stream's peer has taken nothing for this long: it is gone */
    TIMER_MAX
} timer_kind_t;

struct sw_http_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_shutdown_t shutdown_req;
    llhttp_t parser;
    sw_http_server_t *server;
    sw_http_conn_t *prev, *next; /* in server->conns */
    conn_state_t state;
    timer_kind_t timer_kind;
    int closes_pending;

    sw_http_req_t *head, *tail; /* unanswered and unwritten requests, in order */
    uint32_t queued;
    sw_http_req_t *parsing; /* the request being parsed (also in the queue) */

    uint32_t header_bytes;
    sw_buf_t field, value; /* the header being parsed; bounded by max_header_bytes */
    int parse_error;       /* status to answer with when a callback refuses input */
    const char *parse_why; /* and why, when the status alone does not say */
    bool in_feed;
    bool read_paused;
    bool read_eof;
    sw_buf_t pending; /* unparsed input kept while reading is paused */
    uint32_t writes_pending;
    bool upgrade_wait; /* an upgrade request is with its handler: input is held back */
    sw_http_stream_t *stream;
    char peer[48];
};

/* A block queued on a stream during this loop iteration, with its chunk framing. */
typedef struct {
    sw_shared_t *blk;
    uint8_t head_len; /* a chunk-size line goes before the block... */
    bool crlf;        /* ...and "\r\n" after it */
    char head[14];
} cork_t;

struct sw_http_stream {
    sw_http_conn_t *conn;
    sw_http_stream_cbs_t cbs;
    void *ud;
    bool chunked;
    bool upgraded;
    bool active; /* its response head has been handed to the socket */
    bool ending;
    sw_http_req_t *head; /* the request whose answer opens the stream, until it is written */
    size_t queued;       /* bytes handed to uv_write and not yet written */
    /* Writes wait here until the loop is about to poll, then go out in one writev: a line
     * fanned out to a watcher costs an append, not a system call. */
    cork_t *cork;
    uint32_t ncork, cork_cap;
    size_t cork_bytes;
    bool dirty;
    sw_http_stream_t *dirty_next;
};

typedef struct {
    uv_write_t req;
    sw_http_conn_t *conn;
    sw_http_req_t *http_req; /* a response, or NULL for stream bytes */
    cork_t *corks;           /* stream blocks, held until written */
    uint32_t ncorks;
    size_t bytes; /* stream bytes this write accounts for */
} write_ctx_t;

struct sw_http_server {
    uv_loop_t *loop;
    sw_http_server_opts_t opts;
    llhttp_settings_t settings;
    uv_tcp_t listeners[MAX_LISTENERS];
    unsigned nlisteners;
    unsigned listeners_open;
    sw_http_conn_t *conns;
    sw_http_req_t *free_reqs;
    unsigned nfree;
    bool draining;
    bool drained;
    uv_timer_t drain_timer;
    uv_check_t reaper;       /* releases answered requests after the callback that answered */
    uv_prepare_t flusher;    /* writes the streams' corked blocks before the loop polls */
    sw_http_stream_t *dirty; /* streams with corked blocks */
    sw_http_req_t *dead;     /* waiting for the reaper */
    unsigned handles_open;   /* drain_timer, reaper and flusher */
    uint64_t live;           /* requests not yet recycled, with or without a connection */
    bool handles_closing;
    uint64_t streams;
    sw_http_server_stats_t stats;
    char date[40];
    uint64_t date_at;
    char rbuf[READ_BUF_SIZE];
    bool rbuf_busy;
};

static void conn_close(sw_http_conn_t *c);
static bool conn_saturated(const sw_http_conn_t *c);
static void conn_free(sw_http_conn_t *c);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);
static void conn_flush(sw_http_conn_t *c);
static void conn_feed(sw_http_conn_t *c, const char *data, size_t len);
static void conn_maybe_resume(sw_http_conn_t *c);
static void conn_set_timer(sw_http_conn_t *c, timer_kind_t kind);
static void server_check_drained(sw_http_server_t *s);
static void conn_finish_closing(sw_http_conn_t *c);
static void stream_activate(sw_http_conn_t *c);
static void stream_after_write(sw_http_conn_t *c);
static void stream_start_input(sw_http_conn_t *c);
static void stream_read(sw_http_conn_t *c, ssize_t nread, const uv_buf_t *buf);
static void stream_watch_stall(sw_http_conn_t *c);

/* ---- requests ---- */

static sw_http_req_t *req_new(sw_http_conn_t *c)
{
    sw_http_server_t *s = c->server;
    sw_http_req_t *r = s->free_reqs;
    if (r) {
        s->free_reqs = r->next;
        s->nfree--;
    } else {
        r = sw_calloc(1, sizeof(*r));
    }
    r->next = NULL;
    r->conn = c;
    r->server = s;
    r->state = SW_HTTP_REQ_PARSING;
    r->start_ns = sw_now_ns();
    s->stats.requests++;
    s->live++;
    return r;
}

static void req_recycle(sw_http_req_t *r)
{
    sw_http_server_t *s = r->server;
    s->live--;
    sw_arena_reset(&r->arena);
    /* Keep small buffers for reuse; give big ones back. */
    if (r->body.cap > KEEP_BUF_BYTES)
        sw_buf_free(&r->body);
    if (r->out.cap > KEEP_BUF_BYTES)
        sw_buf_free(&r->out);
    sw_buf_reset(&r->body);
    sw_buf_reset(&r->out);
    sw_buf_reset(&r->resp_headers);
    sw_arena_t arena = r->arena;
    sw_buf_t body = r->body, out = r->out, rh = r->resp_headers;
    if (s->nfree >= REQ_FREE_MAX || s->handles_closing) {
        sw_arena_free(&arena);
        sw_buf_free(&body);
        sw_buf_free(&out);
        sw_buf_free(&rh);
        free(r);
        return;
    }
    memset(r, 0, sizeof(*r));
    r->arena = arena;
    r->body = body;
    r->out = out;
    r->resp_headers = rh;
    r->next = s->free_reqs;
    s->free_reqs = r;
    s->nfree++;
}

static void server_check_drained(sw_http_server_t *s);

static void on_reap(uv_check_t *h)
{
    sw_http_server_t *s = h->data;
    while (s->dead) {
        sw_http_req_t *r = s->dead;
        s->dead = r->next;
        req_recycle(r);
    }
    uv_check_stop(h);
    /* Requests that outlived their connection have finished: draining may be over. */
    if (s->draining && !s->handles_closing)
        server_check_drained(s);
}

/* A request is never freed inside the call that answered it: handlers may still hold its
 * arena when sw_http_respond returns, so it is released on the loop's next check phase. */
static void req_release(sw_http_req_t *r)
{
    sw_http_server_t *s = r->server;
    r->conn = NULL;
    r->next = s->dead;
    s->dead = r;
    if (!s->handles_closing)
        uv_check_start(&s->reaper, on_reap);
}

static void conn_enqueue(sw_http_conn_t *c, sw_http_req_t *r)
{
    if (c->tail)
        c->tail->next = r;
    else
        c->head = r;
    c->tail = r;
    c->queued++;
}

static sw_http_req_t *conn_dequeue(sw_http_conn_t *c)
{
    sw_http_req_t *r = c->head;
    c->head = r->next;
    if (!c->head)
        c->tail = NULL;
    r->next = NULL;
    c->queued--;
    return r;
}

/* ---- responses ---- */

const char *sw_http_status_text(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 422:
        return "Unprocessable Content";
    case 426:
        return "Upgrade Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

const char *sw_http_error_code(int status)
{
    switch (status) {
    case 400:
    case 422:
        return "VALIDATION_ERROR";
    case 401:
        return "AUTHENTICATION_ERROR";
    case 403:
        return "INSUFFICIENT_ROLE";
    case 404:
        return "RESOURCE_NOT_FOUND";
    case 405:
        return "METHOD_NOT_ALLOWED";
    case 408:
        return "REQUEST_TIMEOUT";
    case 409:
        return "RESOURCE_CONFLICT";
    case 413:
        return "PAYLOAD_TOO_LARGE";
    case 414:
        return "URI_TOO_LONG";
    case 417:
        return "EXPECTATION_FAILED";
    case 426:
        return "UPGRADE_REQUIRED";
    case 429:
        return "RATE_LIMIT_EXCEEDED";
    case 431:
        return "HEADERS_TOO_LARGE";
    case 503:
        return "SERVICE_UNAVAILABLE";
    case 505:
        return "HTTP_VERSION_NOT_SUPPORTED";
    default:
        return status >= 500 ? "INTERNAL_ERROR" : "BAD_REQUEST";
    }
}

static bool header_safe(const char *s)
{
    return strpbrk(s, "\r\n") == NULL;
}

void sw_http_add_header(sw_http_req_t *req, const char *name, const char *value)
{
    if (!header_safe(name) || !header_safe(value) || !*name)
        return;
    sw_buf_append_cstr(&req->resp_headers, name);
    sw_buf_append(&req->resp_headers, ": ", 2);
    sw_buf_append_cstr(&req->resp_headers, value);
    sw_buf_append(&req->resp_headers, "\r\n", 2);
}

static const char *server_date(sw_http_server_t *s)
{
    uint64_t now = uv_now(s->loop) / 1000u;
    if (now != s->date_at || !s->date[0]) {
        time_t t = time(NULL);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(s->date, sizeof(s->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        s->date_at = now;
    }
    return s->date;
}

static void req_finish(sw_http_req_t *req, int status, const char *content_type, const void *body,
                       size_t len)
{
    sw_http_conn_t *c = req->conn;
    sw_http_server_t *s = req->server;
    bool keep = req->keep_alive && c && c->state == CONN_OPEN && !s->draining;
    bool no_body = req->head || status == 204 || status == 304 || (status >= 100 && status < 200);

    req->status = status;
    req->keep_alive = keep;
    sw_buf_reset(&req->out);
    sw_buf_reserve(&req->out, 256 + req->resp_headers.len + (no_body ? 0 : len));
    sw_buf_printf(&req->out, "HTTP/1.1 %d %s\r\nDate: %s\r\nX-Request-Id: %s\r\n", status,
                  sw_http_status_text(status), server_date(s), req->request_id);
    if (content_type && (len > 0 || req->head))
        sw_buf_printf(&req->out, "Content-Type: %s\r\n", content_type);
    if (status != 204 && status != 304)
        sw_buf_printf(&req->out, "Content-Length: %zu\r\n", len);
    sw_buf_append(&req->out, req->resp_headers.base ? req->resp_headers.base : "",
                  req->resp_headers.len);
    sw_buf_append_cstr(&req->out,
                       keep ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n");
    if (!no_body && len)
        sw_buf_append(&req->out, body, len);
    req->state = SW_HTTP_REQ_DONE;

    if (s->opts.on_response)
        s->opts.on_response(req, s->opts.payload);

    if (!c) {
        /* The connection went away while the handler worked. */
        req_release(req);
        return;
    }
    if (!keep && c->state == CONN_OPEN)
        c->state = CONN_CLOSING;
    conn_flush(c);
}

void sw_http_respond(sw_http_req_t *req, int status, const char *content_type, const void *body,
                     size_t len)
{
    if (req->state != SW_HTTP_REQ_HANDLING && req->state != SW_HTTP_REQ_PARSING)
        return; /* answered already */
    req_finish(req, status, content_type, body, len);
}

void sw_http_respond_json(sw_http_req_t *req, int status, json_t *value)
{
    sw_buf_t b = SW_BUF_INIT;
    if (value) {
        sw_json_dump(&b, value);
        json_decref(value);
    }
    sw_buf_append_char(&b, '\n');
    sw_http_respond(req, status, "application/json", b.base, b.len);
    sw_buf_free(&b);
}

void sw_http_respond_error(sw_http_req_t *req, int status, const char *code, const char *message,
                           json_t *details)
{
    json_t *err =
        json_pack("{s:s, s:s, s:o, s:s}", "code", code ? code : sw_http_error_code(status),
                  "message", message ? message : sw_http_status_text(status), "details",
                  details ? details : json_array(), "request_id", req->request_id);
    sw_http_respond_json(req, status, json_pack("{s:o}", "error", err));
}

/* ---- writing ---- */

static void write_done(sw_http_conn_t *c, sw_http_req_t *r)
{
    bool keep = r->keep_alive;
    req_release(r);
    if (!keep && c->state == CONN_OPEN)
        c->state = CONN_CLOSING;
}

static void on_shutdown(uv_shutdown_t *sreq, int status)
{
    sw_http_conn_t *c = sreq->data;
    if (c->state == CONN_CLOSED) {
        if (--c->closes_pending == 0)
            conn_free(c);
        return;
    }
    c->closes_pending--;
    if (status < 0 || c->read_eof) {
        conn_close(c);
        return;
    }
    /* Read and discard what the peer still sends, so closing does not reset the connection
     * before the peer has read our answer; the linger timer bounds it. */
    conn_set_timer(c, TIMER_LINGER);
    if (c->read_paused) {
        c->read_paused = false;
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    }
}

/* After the last queued response is written on a connection that must close. */
static void conn_finish_closing(sw_http_conn_t *c)
{
    if (c->state != CONN_CLOSING || c->head || c->writes_pending)
        return;
    if (c->read_eof) {
        conn_close(c);
        return;
    }
    c->shutdown_req.data = c;
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        conn_close(c);
        return;
    }
    c->closes_pending++;
    c->state = CONN_LINGERING;
}

static void on_write(uv_write_t *wreq, int status)
{
    write_ctx_t *w = sw_container_of(wreq, write_ctx_t, req);
    sw_http_conn_t *c = w->conn;
    c->writes_pending--;
    if (w->http_req)
        write_done(c, w->http_req);
    else if (c->stream)
        c->stream->queued -= w->bytes;
    for (uint32_t i = 0; i < w->ncorks; i++)
        sw_shared_unref(w->corks[i].blk);
    free(w->corks);
    free(w);
    if (c->state == CONN_CLOSED)
        return; /* canceled by uv_close; the close callback frees the connection */
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (c->stream && c->stream->active) {
        stream_watch_stall(c);
        stream_after_write(c);
    } else {
        conn_flush(c);
    }
}

static void conn_flush(sw_http_conn_t *c)
{
    while (c->head && c->head->state == SW_HTTP_REQ_DONE && c->state != CONN_CLOSED &&
           c->state != CONN_LINGERING) {
        sw_http_req_t *r = conn_dequeue(c);
        /* A stream's response head: once it is on its way, the stream owns the connection. */
        bool opens_stream = c->stream && c->stream->head == r;
        uv_buf_t buf = uv_buf_init(r->out.base, (unsigned)r->out.len);
        int n = c->writes_pending ? UV_EAGAIN : uv_try_write((uv_stream_t *)&c->tcp, &buf, 1);
        if (n == (int)buf.len) {
            write_done(c, r);
            if (opens_stream) {
                stream_activate(c);
                return;
            }
            continue;
        }
        if (n < 0 && n != UV_EAGAIN) {
            req_release(r);
            conn_close(c);
            return;
        }
        if (n > 0) {
            buf.base += n;
            buf.len -= (size_t)n;
        }
        write_ctx_t *w = sw_calloc(1, sizeof(*w));
        w->conn = c;
        w->http_req = r;
        if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, on_write) != 0) {
            free(w);
            req_release(r);
            conn_close(c);
            return;
        }
        c->writes_pending++;
        if (opens_stream) {
            stream_activate(c);
            return;
        }
    }
    if (c->state == CONN_CLOSED)
        return;
    if (c->state == CONN_CLOSING) {
        conn_finish_closing(c);
        return;
    }
    if (c->state == CONN_OPEN) {
        if (!c->head && !c->parsing) {
            if (c->server->draining) {
                c->state = CONN_CLOSING;
                conn_finish_closing(c);
                return;
            }
            if (c->read_eof) {
                conn_close(c);
                return;
            }
            conn_set_timer(c, TIMER_IDLE);
        }
        conn_maybe_resume(c);
    }
}

/* ---- timers ---- */

static void on_timer(uv_timer_t *t)
{
    sw_http_conn_t *c = sw_container_of(t, sw_http_conn_t, timer);
    timer_kind_t kind = c->timer_kind;
    c->timer_kind = TIMER_NONE;
    switch (kind) {
    case TIMER_HEADER:
    case TIMER_BODY:
        if (c->parsing) {
            /* Slow or stalled client: answer 408 in its turn, then close. */
            uv_read_stop((uv_stream_t *)&c->tcp);
            c->read_paused = true;
            c->state = CONN_CLOSING;
            sw_http_respond_error(c->parsing, 408, NULL,
                                  kind == TIMER_HEADER ? "request headers took too long"
                                                       : "request body took too long",
                                  NULL);
            c->parsing = NULL;
        } else {
            conn_close(c);
        }
        break;
    case TIMER_IDLE:
    case TIMER_LINGER:
        conn_close(c);
        break;
    case TIMER_STREAM_START:
        stream_start_input(c);
        break;
    case TIMER_STREAM_STALL:
        conn_close(c);
        break;
    default:
        break;
    }
}

static void conn_set_timer(sw_http_conn_t *c, timer_kind_t kind)
{
    const sw_http_server_opts_t *o = &c->server->opts;
    uint64_t ms = 0;
    if (c->state == CONN_CLOSED)
        return;
    switch (kind) {
    case TIMER_HEADER:
        ms = o->header_timeout_ms;
        break;
    case TIMER_BODY:
        ms = o->body_timeout_ms;
        break;
    case TIMER_IDLE:
        ms = o->idle_timeout_ms;
        break;
    case TIMER_LINGER:
        ms = LINGER_MS;
        break;
    case TIMER_STREAM_STALL:
        ms = STREAM_STALL_MS;
        break;
    default:
        break;
    }
    if (kind == c->timer_kind && kind != TIMER_IDLE)
        return;
    c->timer_kind = kind;
    if (kind == TIMER_NONE)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, on_timer, ms, 0);
}

/* ---- llhttp callbacks ---- */

static int refuse(sw_http_conn_t *c, int status)
{
    c->parse_error = status;
    return HPE_USER;
}

static int count_header_bytes(sw_http_conn_t *c, size_t len)
{
    c->header_bytes += (uint32_t)SW_MIN(len, (size_t)UINT32_MAX / 2);
    if (c->header_bytes > c->server->opts.max_header_bytes)
        return -1;
    return 0;
}

static int on_message_begin(llhttp_t *p)
{
    sw_http_conn_t *c = p->data;
    sw_http_req_t *r = req_new(c);
    conn_enqueue(c, r);
    c->parsing = r;
    memcpy(r->client_addr, c->peer, sizeof(r->client_addr));
    c->header_bytes = 0;
    sw_buf_reset(&c->field);
    sw_buf_reset(&c->value);
    conn_set_timer(c, TIMER_HEADER);
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    sw_http_conn_t *c = p->data;
    if (count_header_bytes(c, len) != 0)
        return refuse(c, 414);
    sw_buf_append(&c->value, at, len);
    return 0;
}

static int on_url_complete(llhttp_t *p)
{
    sw_http_conn_t *c = p->data;
    sw_http_req_t *r = c->parsing;
    r->target =
        (sw_iov_t){sw_arena_strndup(&r->arena, c->value.base ? c->value.base : "", c->value.len),
                   c->value.len};
    char *q = memchr(r->target.base, '?', r->target.len);
    if (q) {
        r->path = (sw_iov_t){r->target.base, (size_t)(q - r->target.base)};
        r->query = (sw_iov_t){q + 1, r->target.len - r->path.len - 1};
    } else {
        r->path = r->target;
        r->query = (sw_iov_t){r->target.base + r->target.len, 0};
    }
    sw_buf_reset(&c->value);
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    sw_http_conn_t *c = p->data;
    if (count_header_bytes(c, len) != 0)
        return refuse(c, 431);
    sw_buf_append(&c->field, at, len);
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    sw_http_conn_t *c = p->data;
    if (count_header_bytes(c, len) != 0)
        return refuse(c, 431);
    sw_buf_append(&c->value, at, len);
    return 0;
}

static int on_header_value_complete(llhttp_t *p)
{
    sw_http_conn_t *c = p->data;
    sw_http_req_t *r = c->parsing;
    if (r->nheaders >= c->server->opts.max_headers)
        return refuse(c, 431);
    if (r->nheaders == r->headers_cap) {
        uint32_t cap = r->headers_cap ? r->headers_cap * 2 : 16;
        sw_http_header_t *h = sw_arena_alloc(&r->arena, cap * sizeof(*h));
        if (r->nheaders)
            memcpy(h, r->headers, r->nheaders * sizeof(*h));
        r->headers = h;
        r->headers_cap = cap;
    }
    sw_http_header_t *h = &r->headers[r->nheaders++];
    h->name =
        sw_arena_iovdup(&r->arena, (sw_iov_t){c->field.base ? c->field.base : "", c->field.len});
    h->value =
        sw_arena_iovdup(&r->arena, (sw_iov_t){c->value.base ? c->value.base : "", c->value.len});
    sw_buf_reset(&c->field);
    sw_buf_reset(&c->value);
    return 0;
}

static bool request_id_sane(sw_iov_t v)
{
    if (v.len == 0 || v.len > 64)
        return false;
    for (size_t i = 0; i < v.len; i++) {
        char ch = v.base[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_' || ch == '.'))
            return false;
    }
    return true;
}

static void write_continue(sw_http_conn_t *c)
{
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    uv_buf_t buf = uv_buf_init((char *)cont, sizeof(cont) - 1);
    /* Interim answers must not overtake earlier responses: send only at the queue head. If
     * the socket cannot take 25 bytes now, the client sends its body after its own timeout. */
    if (c->head == c->parsing && c->writes_pending == 0)
        (void)uv_try_write((uv_stream_t *)&c->tcp, &buf, 1);
}

static int on_headers_complete(llhttp_t *p)
{
    sw_http_conn_t *c = p->data;
    sw_http_req_t *r = c->parsing;
    const sw_http_server_opts_t *o = &c->server->opts;

    r->method_id = p->method;
    r->method = llhttp_method_name((llhttp_method_t)p->method);
    r->head = p->method == HTTP_HEAD;
    r->keep_alive = llhttp_should_keep_alive(p);

    sw_iov_t rid = sw_http_req_header(r, "x-request-id");
    if (request_id_sane(rid)) {
        memcpy(r->request_id, rid.base, rid.len);
        r->request_id[rid.len] = '\0';
    } else {
        sw_request_id_new(r->request_id);
    }
    c->parse_why = sw_http_framing_error(r, p->http_major, p->http_minor);
    if (c->parse_why)
        return refuse(c, 400);

    if (p->upgrade) {
        /* The parser stops at an upgrade; we keep it parsing as HTTP and let conn_feed hold
         * back whatever follows the request, which belongs to the new protocol if the
         * handler upgrades and is never parsed as HTTP if it does not. */
        p->upgrade = 0;
        r->upgrade = true;
        r->keep_alive = false;
    }
    bool has_body = (p->flags & F_CHUNKED) || ((p->flags & F_CONTENT_LENGTH) && p->content_length);
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > o->max_body_bytes)
        return refuse(c, 413);
    if (has_body) {
        sw_iov_t expect = sw_http_req_header(r, "expect");
        if (expect.len) {
            if (!sw_iov_caseeq(expect, "100-continue"))
                return refuse(c, 417);
            write_continue(c);
        }
        if (p->flags & F_CONTENT_LENGTH)
            sw_buf_reserve(&r->body, (size_t)p->content_length);
        conn_set_timer(c, TIMER_BODY);
    } else {
        conn_set_timer(c, TIMER_NONE);
    }
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    sw_http_conn_t *c = p->data;
    sw_http_req_t *r = c->parsing;
    if (r->body.len + len > c->server->opts.max_body_bytes)
        return refuse(c, 413);
    sw_buf_append(&r->body, at, len);
    return 0;
}

/* A chunk larger than the body may still grow is refused on its size line, not after its
 * bytes (or the body timeout) arrive. */
static int on_chunk_header(llhttp_t *p)
{
    sw_http_conn_t *c = p->data;
    if (p->content_length > c->server->opts.max_body_bytes - c->parsing->body.len)
        return refuse(c, 413);
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    sw_http_conn_t *c = p->data;
    c->parsing->state = SW_HTTP_REQ_HANDLING;
    conn_set_timer(c, TIMER_NONE);
    /* Stop after each message so the connection decides whether to parse the next one. */
    return HPE_PAUSED;
}

/* ---- reading ---- */

static void dispatch(sw_http_conn_t *c, sw_http_req_t *r)
{
    sw_http_server_t *s = c->server;
    c->parsing = NULL;
    if (!r->body.base)
        sw_buf_reserve(&r->body, 0); /* handlers may rely on a NUL-terminated body */
    s->opts.on_request(r, s->opts.payload);
}

static void parse_failed(sw_http_conn_t *c, llhttp_errno_t err)
{
    (void)err; /* llhttp reports a refusal under the callback's own code: parse_error says why */
    int status = c->parse_error ? c->parse_error : 400;
    sw_http_req_t *r = c->parsing;
    if (!r) {
        r = req_new(c);
        conn_enqueue(c, r);
    }
    if (!r->request_id[0])
        sw_request_id_new(r->request_id);
    c->parsing = NULL;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->read_paused = true;
    c->state = CONN_CLOSING;
    conn_set_timer(c, TIMER_NONE);
    r->keep_alive = false;
    const char *msg = c->parse_why    ? c->parse_why
                      : status == 431 ? "request headers are too large"
                      : status == 413 ? "request body is too large"
                      : status == 414 ? "request target is too long"
                      : status == 417 ? "only Expect: 100-continue is supported"
                                      : "malformed HTTP request";
    sw_http_respond_error(r, status, NULL, msg, NULL);
}

static void conn_feed(sw_http_conn_t *c, const char *data, size_t len)
{
    c->in_feed = true;
    while (len > 0 && c->state == CONN_OPEN) {
        if (conn_saturated(c) && !c->parsing) {
            /* Too many unanswered requests: keep the rest and stop reading. */
            sw_buf_append(&c->pending, data, len);
            if (!c->read_paused) {
                uv_read_stop((uv_stream_t *)&c->tcp);
                c->read_paused = true;
            }
            break;
        }
        llhttp_errno_t err = llhttp_execute(&c->parser, data, len);
        if (err == HPE_OK)
            break;
        if (err == HPE_PAUSED) {
            const char *pos = llhttp_get_error_pos(&c->parser);
            size_t used = (size_t)(pos - data);
            llhttp_resume(&c->parser);
            data += used;
            len -= used;
            bool upgrade = c->parsing->upgrade;
            dispatch(c, c->parsing);
            if (upgrade) {
                /* What follows belongs to the protocol the handler may switch to: keep it,
                 * and read nothing more until the handler has decided. */
                sw_buf_append(&c->pending, data, len);
                if (c->state == CONN_OPEN)
                    c->upgrade_wait = true;
                if (!c->read_paused && !c->read_eof) {
                    uv_read_stop((uv_stream_t *)&c->tcp);
                    c->read_paused = true;
                }
                break;
            }
            continue;
        }
        parse_failed(c, err);
        break;
    }
    c->in_feed = false;
    if (c->state == CONN_OPEN && !c->head && !c->parsing && c->read_eof)
        conn_close(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    sw_http_conn_t *c = h->data;
    sw_http_server_t *s = c->server;
    (void)suggested;
    /* One read buffer per loop: a read is parsed completely before the next one starts. */
    if (s->rbuf_busy) {
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    s->rbuf_busy = true;
    *buf = uv_buf_init(s->rbuf, sizeof(s->rbuf));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    sw_http_conn_t *c = stream->data;
    sw_http_server_t *s = c->server;
    if (buf->base == s->rbuf)
        s->rbuf_busy = false;
    if (nread == 0)
        return;
    if (c->state == CONN_STREAM) {
        stream_read(c, nread, buf);
        return;
    }
    if (nread < 0) {
        c->read_eof = true;
        uv_read_stop(stream);
        if (c->state == CONN_LINGERING || nread != UV_EOF) {
            conn_close(c);
            return;
        }
        if (c->parsing) {
            /* The peer ended mid-request: nothing can complete it. */
            conn_close(c);
            return;
        }
        /* Half-close after complete requests: answer them, then close. */
        if (!c->head)
            conn_close(c);
        else if (c->state == CONN_OPEN)
            c->state = CONN_CLOSING;
        return;
    }
    if (c->state == CONN_LINGERING)
        return;
    if (c->state != CONN_OPEN)
        return;
    conn_feed(c, buf->base, (size_t)nread);
}

/* A peer that sends requests but does not read answers must not make us buffer without
 * bound: unanswered requests and unwritten answers both count against the pipeline. */
static bool conn_saturated(const sw_http_conn_t *c)
{
    return c->queued + c->writes_pending >= c->server->opts.max_pipelined ||
           uv_stream_get_write_queue_size((const uv_stream_t *)&c->tcp) >= WRITE_QUEUE_MAX;
}

static void conn_maybe_resume(sw_http_conn_t *c)
{
    if (!c->read_paused || c->in_feed || c->state != CONN_OPEN || c->read_eof || c->upgrade_wait)
        return;
    if (conn_saturated(c))
        return;
    c->read_paused = false;
    if (c->pending.len) {
        sw_buf_t pending = c->pending;
        c->pending = SW_BUF_INIT;
        conn_feed(c, pending.base, pending.len);
        sw_buf_free(&pending);
        if (c->read_paused || c->state != CONN_OPEN)
            return;
    }
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/* ---- connection lifetime ---- */

static void conn_free(sw_http_conn_t *c)
{
    sw_http_server_t *s = c->server;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->stats.connections--;
    if (c->stream) {
        sw_http_stream_t *st = c->stream;
        c->stream = NULL;
        s->streams--;
        if (st->dirty) {
            sw_http_stream_t **pp = &s->dirty;
            while (*pp != st)
                pp = &(*pp)->dirty_next;
            *pp = st->dirty_next;
        }
        if (st->cbs.on_close)
            st->cbs.on_close(st, st->ud);
        for (uint32_t i = 0; i < st->ncork; i++)
            sw_shared_unref(st->cork[i].blk);
        free(st->cork);
        free(st);
    }
    sw_buf_free(&c->field);
    sw_buf_free(&c->value);
    sw_buf_free(&c->pending);
    free(c);
    server_check_drained(s);
}

static void on_conn_handle_closed(uv_handle_t *h)
{
    sw_http_conn_t *c = h->data;
    if (--c->closes_pending == 0)
        conn_free(c);
}

static void conn_close(sw_http_conn_t *c)
{
    if (c->state == CONN_CLOSED) {
        return;
    }
    c->state = CONN_CLOSED;
    /* Requests still with their handlers finish into the void; the rest go now. */
    while (c->head) {
        sw_http_req_t *r = conn_dequeue(c);
        if (r->state == SW_HTTP_REQ_HANDLING)
            r->conn = NULL;
        else
            req_release(r);
    }
    c->parsing = NULL;
    c->closes_pending += 2;
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
}

static void on_connection(uv_stream_t *listener, int status)
{
    sw_http_server_t *s = listener->data;
    if (status < 0 || s->draining)
        return;
    sw_http_conn_t *c = sw_calloc(1, sizeof(*c));
    c->server = s;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->stats.connections++;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    s->stats.accepted++;
    if (s->stats.connections > s->opts.max_connections) {
        /* Over the cap: a short answer the peer can act on, written without queuing. */
        static const char busy[] =
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            "Connection: close\r\nRetry-After: 1\r\nContent-Length: 100\r\n\r\n"
            "{\"error\":{\"code\":\"SERVICE_UNAVAILABLE\",\"message\":\"too many connections\","
            "\"details\":[]}}                \n";
        uv_buf_t buf = uv_buf_init((char *)busy, sizeof(busy) - 1);
        (void)uv_try_write((uv_stream_t *)&c->tcp, &buf, 1);
        s->stats.rejected++;
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    struct sockaddr_storage ss;
    int sslen = sizeof(ss);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sslen) == 0) {
        if (ss.ss_family == AF_INET6)
            uv_ip6_name((struct sockaddr_in6 *)&ss, c->peer, sizeof(c->peer));
        else
            uv_ip4_name((struct sockaddr_in *)&ss, c->peer, sizeof(c->peer));
    }
    llhttp_init(&c->parser, HTTP_REQUEST, &s->settings);
    c->parser.data = c;
    c->state = CONN_OPEN;
    conn_set_timer(c, TIMER_HEADER);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/* ---- streams ---- */

static void stream_begin_closing(sw_http_conn_t *c)
{
    c->state = CONN_CLOSING;
    conn_finish_closing(c);
}

/* Drops the first skip bytes of bufs[0..*n). */
static void bufs_advance(uv_buf_t *bufs, unsigned *n, size_t skip)
{
    unsigned i = 0;
    while (i < *n && skip >= bufs[i].len) {
        skip -= bufs[i].len;
        i++;
    }
    if (i < *n) {
        bufs[i].base += skip;
        bufs[i].len -= skip;
    }
    memmove(bufs, bufs + i, (*n - i) * sizeof(*bufs));
    *n -= i;
}

static void on_flush(uv_prepare_t *h);

/* While writes are queued, each one that completes restarts the stall timer; with none
 * queued it is off. The start timer (upgrades) runs first and then calls this itself. */
static void stream_watch_stall(sw_http_conn_t *c)
{
    if (c->timer_kind == TIMER_STREAM_START || c->state == CONN_CLOSED)
        return;
    if (c->writes_pending == 0) {
        if (c->timer_kind == TIMER_STREAM_STALL)
            conn_set_timer(c, TIMER_NONE);
        return;
    }
    c->timer_kind = TIMER_STREAM_STALL;
    uv_timer_start(&c->timer, on_timer, STREAM_STALL_MS, 0);
}

static void stream_mark_dirty(sw_http_stream_t *st)
{
    sw_http_server_t *s = st->conn->server;
    if (st->dirty || !st->active)
        return; /* not active: stream_activate marks it once its head has gone */
    st->dirty = true;
    st->dirty_next = s->dirty;
    s->dirty = st;
    if (!uv_is_active((uv_handle_t *)&s->flusher))
        uv_prepare_start(&s->flusher, on_flush);
}

/* Queues blk (its reference taken) for the next flush, chunk-framed when framed. */
static void stream_cork(sw_http_stream_t *st, sw_shared_t *blk, bool framed)
{
    if (st->ncork == st->cork_cap) {
        st->cork_cap = st->cork_cap ? st->cork_cap * 2 : 8;
        st->cork = sw_realloc(st->cork, st->cork_cap * sizeof(*st->cork));
    }
    cork_t *k = &st->cork[st->ncork++];
    k->blk = blk;
    k->crlf = framed;
    k->head_len = framed ? (uint8_t)snprintf(k->head, sizeof(k->head), "%x\r\n", blk->len) : 0;
    st->cork_bytes += k->head_len + blk->len + (framed ? 2u : 0u);
    stream_mark_dirty(st);
}

#define CORK_BATCH 256 /* blocks per writev: up to three buffers each, within IOV_MAX */

/* The buffers of corks[0..n); returns their count and sets *total. */
static unsigned cork_bufs(cork_t *corks, uint32_t n, uv_buf_t *bufs, size_t *total)
{
    unsigned nb = 0;
    *total = 0;
    for (uint32_t i = 0; i < n; i++) {
        cork_t *k = &corks[i];
        if (k->head_len)
            bufs[nb++] = uv_buf_init(k->head, k->head_len);
        bufs[nb++] = uv_buf_init(k->blk->data, k->blk->len);
        if (k->crlf)
            bufs[nb++] = uv_buf_init((char *)"\r\n", 2);
        *total += k->head_len + k->blk->len + (k->crlf ? 2u : 0u);
    }
    return nb;
}

/* Writes what is corked: one writev per batch while the socket takes it all, the rest handed
 * to uv_write with the blocks it needs. */
static void stream_flush(sw_http_stream_t *st)
{
    sw_http_conn_t *c = st->conn;
    if (c->state == CONN_CLOSED)
        return;
    uv_buf_t bufs[CORK_BATCH * 3];
    uint32_t off = 0;
    while (off < st->ncork) {
        uint32_t n = SW_MIN(st->ncork - off, (uint32_t)CORK_BATCH);
        size_t total, done = 0;
        unsigned nb = cork_bufs(st->cork + off, n, bufs, &total);
        if (c->writes_pending == 0) {
            int r = uv_try_write((uv_stream_t *)&c->tcp, bufs, nb);
            if (r < 0 && r != UV_EAGAIN) {
                conn_close(c);
                return; /* conn_free releases what is still corked */
            }
            done = r > 0 ? (size_t)r : 0;
        }
        st->cork_bytes -= total;
        if (done == total) {
            for (uint32_t i = 0; i < n; i++)
                sw_shared_unref(st->cork[off + i].blk);
            off += n;
            continue;
        }
        write_ctx_t *w = sw_calloc(1, sizeof(*w));
        w->conn = c;
        w->corks = sw_malloc(n * sizeof(*w->corks));
        memcpy(w->corks, st->cork + off, n * sizeof(*w->corks));
        w->ncorks = n;
        w->bytes = total - done;
        off += n;
        nb = cork_bufs(w->corks, n, bufs, &total);
        bufs_advance(bufs, &nb, done);
        if (uv_write(&w->req, (uv_stream_t *)&c->tcp, bufs, nb, on_write) != 0) {
            for (uint32_t i = 0; i < n; i++)
                sw_shared_unref(w->corks[i].blk);
            free(w->corks);
            free(w);
            memmove(st->cork, st->cork + off, (st->ncork - off) * sizeof(*st->cork));
            st->ncork -= off;
            conn_close(c);
            return;
        }
        c->writes_pending++;
        st->queued += w->bytes;
        if (c->timer_kind != TIMER_STREAM_STALL)
            stream_watch_stall(c);
    }
    st->ncork = 0;
    if (st->cork_cap > 64) {
        free(st->cork); /* a burst's array is not kept for an idle watcher */
        st->cork = NULL;
        st->cork_cap = 0;
    }
    if (st->ending) {
        if (c->writes_pending == 0)
            stream_begin_closing(c);
        return;
    }
    /* The socket took everything at once, so no write callback will say there is room: say
     * it here (from the loop, like every callback). */
    if (c->writes_pending == 0 && st->cbs.on_writable)
        st->cbs.on_writable(st, st->ud);
}

static void on_flush(uv_prepare_t *h)
{
    sw_http_server_t *s = h->data;
    while (s->dirty) {
        sw_http_stream_t *st = s->dirty;
        s->dirty = st->dirty_next;
        st->dirty_next = NULL;
        st->dirty = false;
        stream_flush(st);
    }
    uv_prepare_stop(h);
}

/* The stream's response head is on its way: nothing behind it is HTTP any more. */
static void stream_activate(sw_http_conn_t *c)
{
    sw_http_stream_t *st = c->stream;
    st->active = true;
    st->head = NULL;
    while (c->head) {
        sw_http_req_t *r = conn_dequeue(c);
        if (r->state == SW_HTTP_REQ_HANDLING)
            r->conn = NULL; /* its handler finishes into the void */
        else
            req_release(r);
    }
    c->parsing = NULL;
    if (st->ncork || st->ending)
        stream_mark_dirty(st);
    if (st->upgraded) {
        /* The bytes that came with the request go to on_data from the loop, not from inside
         * the call that opened the stream. */
        conn_set_timer(c, TIMER_STREAM_START);
    } else {
        /* Read (and drop) what the peer sends, to see it go; reading may have been paused,
         * or never restarted when the stream opened from a pipelined feed. */
        sw_buf_free(&c->pending);
        if (!c->read_eof) {
            c->read_paused = false;
            uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
        }
    }
}

static void stream_start_input(sw_http_conn_t *c)
{
    sw_http_stream_t *st = c->stream;
    if (!st || c->state != CONN_STREAM)
        return;
    sw_buf_t pending = c->pending;
    c->pending = SW_BUF_INIT;
    if (pending.len && st->cbs.on_data)
        st->cbs.on_data(st, pending.base, pending.len, st->ud);
    sw_buf_free(&pending);
    if (c->state == CONN_STREAM && !c->read_eof) {
        c->read_paused = false;
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    }
    if (c->timer_kind == TIMER_NONE)
        stream_watch_stall(c);
}

static void stream_read(sw_http_conn_t *c, ssize_t nread, const uv_buf_t *buf)
{
    sw_http_stream_t *st = c->stream;
    if (nread < 0) {
        /* The peer is gone (or half-closed: a stream has nothing more to hear from it). */
        c->read_eof = true;
        conn_close(c);
        return;
    }
    if (st->active && st->upgraded && st->cbs.on_data)
        st->cbs.on_data(st, buf->base, (size_t)nread, st->ud);
    /* Anything else a stream's peer sends is read and dropped. */
}

static void stream_after_write(sw_http_conn_t *c)
{
    sw_http_stream_t *st = c->stream;
    if (c->state != CONN_STREAM)
        return;
    if (st->ending) {
        if (c->writes_pending == 0 && st->ncork == 0)
            stream_begin_closing(c);
        return;
    }
    if (st->queued + st->cork_bytes <= SW_HTTP_STREAM_LOW_WATER && st->cbs.on_writable)
        st->cbs.on_writable(st, st->ud);
}

sw_http_stream_t *sw_http_stream_open(sw_http_req_t *req, int status, const char *content_type,
                                      unsigned flags, const sw_http_stream_cbs_t *cbs, void *ud)
{
    if (req->state != SW_HTTP_REQ_HANDLING && req->state != SW_HTTP_REQ_PARSING)
        return NULL;
    sw_http_conn_t *c = req->conn;
    sw_http_server_t *s = req->server;
    if (req->head) {
        /* The head of what a GET would stream, and no stream. */
        req_finish(req, status == 101 ? 400 : status, content_type, NULL, 0);
        return NULL;
    }
    if (!c || c->state != CONN_OPEN || s->draining) {
        /* Gone, closing or shutting down: an ordinary answer (discarded if gone). */
        req->keep_alive = false;
        sw_http_respond_error(req, 503, NULL, "the server is shutting down", NULL);
        return NULL;
    }
    sw_http_stream_t *st = sw_calloc(1, sizeof(*st));
    st->conn = c;
    st->cbs = *cbs;
    st->ud = ud;
    st->upgraded = status == 101;
    st->chunked = !st->upgraded && (flags & SW_HTTP_STREAM_CHUNKED);
    st->head = req;
    c->stream = st;
    c->state = CONN_STREAM;
    c->upgrade_wait = false;
    s->streams++;
    conn_set_timer(c, TIMER_NONE);

    req->status = status;
    req->keep_alive = false;
    sw_buf_reset(&req->out);
    sw_buf_printf(&req->out, "HTTP/1.1 %d %s\r\nDate: %s\r\nX-Request-Id: %s\r\n", status,
                  sw_http_status_text(status), server_date(s), req->request_id);
    if (content_type)
        sw_buf_printf(&req->out, "Content-Type: %s\r\n", content_type);
    if (st->chunked)
        sw_buf_append_cstr(&req->out, "Transfer-Encoding: chunked\r\n");
    sw_buf_append(&req->out, req->resp_headers.base ? req->resp_headers.base : "",
                  req->resp_headers.len);
    /* An upgrade names its own Connection header; anything else ends with the stream. */
    sw_buf_append_cstr(&req->out, st->upgraded ? "\r\n" : "Connection: close\r\n\r\n");
    req->state = SW_HTTP_REQ_DONE;
    if (s->opts.on_response)
        s->opts.on_response(req, s->opts.payload);
    conn_flush(c);
    return st;
}

int sw_http_stream_write(sw_http_stream_t *st, const void *data, size_t len)
{
    if (st->conn->state != CONN_STREAM || st->ending)
        return -EPIPE;
    if (len == 0)
        return 0;
    if (len > UINT32_MAX - 64)
        return -EMSGSIZE;
    stream_cork(st, sw_shared_new(data, len), st->chunked);
    return 0;
}

int sw_http_stream_write_shared(sw_http_stream_t *st, sw_shared_t *block)
{
    if (st->conn->state != CONN_STREAM || st->ending)
        return -EPIPE;
    if (block->len == 0)
        return 0;
    stream_cork(st, sw_shared_ref(block), st->chunked);
    return 0;
}

size_t sw_http_stream_pending(const sw_http_stream_t *st)
{
    return st->queued + st->cork_bytes;
}

void sw_http_stream_end(sw_http_stream_t *st)
{
    sw_http_conn_t *c = st->conn;
    if (st->ending || c->state != CONN_STREAM)
        return;
    if (st->chunked)
        stream_cork(st, sw_shared_new("0\r\n\r\n", 5), false);
    st->ending = true;
    stream_mark_dirty(st); /* the flush closes once everything is written */
}

void sw_http_stream_close(sw_http_stream_t *st)
{
    conn_close(st->conn);
}

const char *sw_http_stream_peer(const sw_http_stream_t *st)
{
    return st->conn->peer;
}

void sw_http_stream_set_user(sw_http_stream_t *st, void *ud)
{
    st->ud = ud;
}

uint64_t sw_http_server_streams(const sw_http_server_t *server)
{
    return server->streams;
}

uv_loop_t *sw_http_server_loop(const sw_http_server_t *server)
{
    return server->loop;
}

/* ---- server ---- */

int sw_http_server_new(sw_http_server_t **out, uv_loop_t *loop, const sw_http_server_opts_t *opts)
{
    if (!opts->on_request)
        return -EINVAL;
    sw_http_server_t *s = sw_calloc(1, sizeof(*s));
    s->loop = loop;
    s->opts = *opts;
    llhttp_settings_init(&s->settings);
    s->settings.on_message_begin = on_message_begin;
    s->settings.on_url = on_url;
    s->settings.on_url_complete = on_url_complete;
    s->settings.on_header_field = on_header_field;
    s->settings.on_header_value = on_header_value;
    s->settings.on_header_value_complete = on_header_value_complete;
    s->settings.on_headers_complete = on_headers_complete;
    s->settings.on_body = on_body;
    s->settings.on_chunk_header = on_chunk_header;
    s->settings.on_message_complete = on_message_complete;
    uv_timer_init(loop, &s->drain_timer);
    s->drain_timer.data = s;
    uv_check_init(loop, &s->reaper);
    s->reaper.data = s;
    uv_prepare_init(loop, &s->flusher);
    s->flusher.data = s;
    s->handles_open = 3;
    *out = s;
    return 0;
}

int sw_http_server_listen(sw_http_server_t *s, const char *hostport)
{
    char host[256], portstr[8];
    uint16_t port;
    struct addrinfo hints = {0}, *res = NULL;
    int r;

    if (s->nlisteners >= MAX_LISTENERS)
        return -ENOSPC;
    if (sw_config_split_hostport(hostport, host, sizeof(host), &port) != 0)
        return -EINVAL;
    snprintf(portstr, sizeof(portstr), "%u", port);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    /* Start-up only: resolving "localhost" may block briefly before the loop runs. */
    r = getaddrinfo(host[0] ? host : NULL, portstr, &hints, &res);
    if (r != 0)
        return -EADDRNOTAVAIL;

    uv_tcp_t *t = &s->listeners[s->nlisteners];
    r = uv_tcp_init_ex(s->loop, t, res->ai_family);
    if (r == 0) {
        t->data = s;
        s->listeners_open++;
        s->nlisteners++;
        uv_os_fd_t fd;
        int one = 1;
        if (s->opts.reuse_port && uv_fileno((uv_handle_t *)t, &fd) == 0)
            setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
        r = uv_tcp_bind(t, res->ai_addr, res->ai_family == AF_INET6 ? UV_TCP_IPV6ONLY : 0);
        if (r == 0)
            r = uv_listen((uv_stream_t *)t, 1024, on_connection);
    }
    freeaddrinfo(res);
    return r;
}

int sw_http_server_address(sw_http_server_t *s, unsigned n, char *out, size_t size)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    char ip[64];
    if (n >= s->nlisteners)
        return -ENOENT;
    int r = uv_tcp_getsockname(&s->listeners[n], (struct sockaddr *)&ss, &len);
    if (r != 0)
        return r;
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        uv_ip6_name(a, ip, sizeof(ip));
        snprintf(out, size, "[%s]:%u", ip, ntohs(a->sin6_port));
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        uv_ip4_name(a, ip, sizeof(ip));
        snprintf(out, size, "%s:%u", ip, ntohs(a->sin_port));
    }
    return 0;
}

static void on_listener_closed(uv_handle_t *h)
{
    sw_http_server_t *s = h->data;
    s->listeners_open--;
    server_check_drained(s);
}

static void on_server_handle_closed(uv_handle_t *h)
{
    sw_http_server_t *s = h->data;
    if (--s->handles_open > 0)
        return;
    s->drained = true;
    if (s->opts.on_drained)
        s->opts.on_drained(s, s->opts.payload);
}

static void server_check_drained(sw_http_server_t *s)
{
    if (!s->draining || s->handles_closing || s->conns || s->listeners_open || s->live)
        return;
    s->handles_closing = true;
    on_reap(&s->reaper);
    uv_close((uv_handle_t *)&s->drain_timer, on_server_handle_closed);
    uv_close((uv_handle_t *)&s->reaper, on_server_handle_closed);
    uv_close((uv_handle_t *)&s->flusher, on_server_handle_closed);
}

static void on_drain_timeout(uv_timer_t *t)
{
    sw_http_server_t *s = t->data;
    for (sw_http_conn_t *c = s->conns, *next; c; c = next) {
        next = c->next;
        conn_close(c);
    }
}

void sw_http_server_drain(sw_http_server_t *s)
{
    if (s->draining)
        return;
    s->draining = true;
    for (unsigned i = 0; i < s->nlisteners; i++)
        uv_close((uv_handle_t *)&s->listeners[i], on_listener_closed);
    for (sw_http_conn_t *c = s->conns, *next; c; c = next) {
        next = c->next;
        if (c->state == CONN_OPEN && !c->head && !c->parsing)
            conn_close(c);
        else if (c->state == CONN_STREAM && c->stream->cbs.on_shutdown)
            c->stream->cbs.on_shutdown(c->stream, c->stream->ud);
        /* Busy connections answer what they have with Connection: close (see conn_flush). */
    }
    uv_timer_start(&s->drain_timer, on_drain_timeout, s->opts.drain_timeout_ms, 0);
    server_check_drained(s);
}

void sw_http_server_free(sw_http_server_t *s)
{
    if (!s)
        return;
    while (s->dead) {
        sw_http_req_t *r = s->dead;
        s->dead = r->next;
        req_recycle(r);
    }
    while (s->free_reqs) {
        sw_http_req_t *r = s->free_reqs;
        s->free_reqs = r->next;
        sw_arena_free(&r->arena);
        sw_buf_free(&r->body);
        sw_buf_free(&r->out);
        sw_buf_free(&r->resp_headers);
        free(r);
    }
    free(s);
}

void sw_http_server_stats(const sw_http_server_t *s, sw_http_server_stats_t *out)
{
    *out = s->stats;
}

/* ---- request accessors ---- */

sw_iov_t sw_http_req_header(const sw_http_req_t *req, const char *name)
{
    for (uint32_t i = 0; i < req->nheaders; i++)
        if (sw_iov_caseeq(req->headers[i].name, name))
            return req->headers[i].value;
    return SW_IOV_NULL;
}

sw_iov_t sw_http_req_param(const sw_http_req_t *req, const char *name)
{
    for (uint32_t i = 0; i < req->nparams; i++)
        if (sw_iov_eq_cstr(req->param_names[i], name))
            return req->param_values[i];
    return SW_IOV_NULL;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Decodes %XX and '+' into the arena; NULL for a malformed escape or an embedded NUL. */
static char *query_decode(sw_arena_t *a, const char *s, size_t len)
{
    char *out = sw_arena_alloc(a, len + 1), *o = out;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '+') {
            *o++ = ' ';
        } else if (s[i] == '%') {
            int hi, lo;
            if (i + 2 >= len || (hi = hexval(s[i + 1])) < 0 || (lo = hexval(s[i + 2])) < 0)
                return NULL;
            char ch = (char)(hi << 4 | lo);
            if (ch == '\0')
                return NULL;
            *o++ = ch;
            i += 2;
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    return out;
}

const char *sw_http_form_value(sw_arena_t *arena, sw_iov_t form, const char *name)
{
    size_t nlen = strlen(name);
    const char *p = form.base, *end = form.base + form.len;
    while (p && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        const char *kend = eq ? eq : stop;
        if ((size_t)(kend - p) == nlen && memcmp(p, name, nlen) == 0) {
            const char *v = eq ? eq + 1 : stop;
            return query_decode(arena, v, (size_t)(stop - v));
        }
        p = amp ? amp + 1 : NULL;
    }
    return NULL;
}

const char *sw_http_req_query(sw_http_req_t *req, const char *name)
{
    return sw_http_form_value(&req->arena, req->query, name);
}

sw_iov_t sw_http_req_cookie(const sw_http_req_t *req, const char *name)
{
    size_t nlen = strlen(name);
    for (uint32_t i = 0; i < req->nheaders; i++) {
        if (!sw_iov_caseeq(req->headers[i].name, "cookie"))
            continue;
        const char *p = req->headers[i].value.base;
        const char *end = p + req->headers[i].value.len;
        while (p < end) {
            while (p < end && (*p == ' ' || *p == ';'))
                p++;
            const char *semi = memchr(p, ';', (size_t)(end - p));
            const char *stop = semi ? semi : end;
            const char *eq = memchr(p, '=', (size_t)(stop - p));
            if (eq && (size_t)(eq - p) == nlen && memcmp(p, name, nlen) == 0) {
                const char *v = eq + 1;
                size_t vlen = (size_t)(stop - v);
                while (vlen && v[vlen - 1] == ' ')
                    vlen--;
                return (sw_iov_t){(char *)v, vlen};
            }
            p = stop;
        }
    }
    return SW_IOV_NULL;
}
