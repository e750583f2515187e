/* llhttp glue: each callback fills the request being parsed, bounding every peer-controlled
 * size; conn_feed hands complete requests to the application one at a time. */
#include "internal.h"

#include <string.h>

#include "slipway/common.h"
#include "slipway/framing.h"

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
    sw_http_req_t *r = sw_http__req_new(c);
    sw_http__conn_enqueue(c, r);
    c->parsing = r;
    memcpy(r->client_addr, c->peer, sizeof(r->client_addr));
    c->header_bytes = 0;
    sw_buf_reset(&c->field);
    sw_buf_reset(&c->value);
    sw_http__conn_set_timer(c, TIMER_HEADER);
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
    /* Interim answers must not overtake earlier responses: send only at the queue head. If
     * the socket cannot take 25 bytes now, the client sends its body after its own timeout. */
    if (c->head == c->parsing && c->writes_pending == 0)
        sw_http__conn_send_small(c, cont, sizeof(cont) - 1);
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
        /* The parser stops at an upgrade; we keep it parsing as HTTP and let sw_http__conn_feed
         * hold back whatever follows the request, which belongs to the new protocol if the handler
         * upgrades and is never parsed as HTTP if it does not. */
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
        sw_http__conn_set_timer(c, TIMER_BODY);
    } else {
        sw_http__conn_set_timer(c, TIMER_NONE);
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
    sw_http__conn_set_timer(c, TIMER_NONE);
    /* Stop after each message so the connection decides whether to parse the next one. */
    return HPE_PAUSED;
}

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
        r = sw_http__req_new(c);
        sw_http__conn_enqueue(c, r);
    }
    if (!r->request_id[0])
        sw_request_id_new(r->request_id);
    c->parsing = NULL;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->read_paused = true;
    c->state = CONN_CLOSING;
    sw_http__conn_set_timer(c, TIMER_NONE);
    r->keep_alive = false;
    const char *msg = c->parse_why    ? c->parse_why
                      : status == 431 ? "request headers are too large"
                      : status == 413 ? "request body is too large"
                      : status == 414 ? "request target is too long"
                      : status == 417 ? "only Expect: 100-continue is supported"
                                      : "malformed HTTP request";
    sw_http_respond_error(r, status, NULL, msg, NULL);
}

void sw_http__conn_feed(sw_http_conn_t *c, const char *data, size_t len)
{
    c->in_feed = true;
    while (len > 0 && c->state == CONN_OPEN) {
        if (sw_http__conn_saturated(c) && !c->parsing) {
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
        sw_http__conn_close(c);
}

void sw_http__parse_settings(llhttp_settings_t *settings)
{
    llhttp_settings_init(settings);
    settings->on_message_begin = on_message_begin;
    settings->on_url = on_url;
    settings->on_url_complete = on_url_complete;
    settings->on_header_field = on_header_field;
    settings->on_header_value = on_header_value;
    settings->on_header_value_complete = on_header_value_complete;
    settings->on_headers_complete = on_headers_complete;
    settings->on_body = on_body;
    settings->on_chunk_header = on_chunk_header;
    settings->on_message_complete = on_message_complete;
}
