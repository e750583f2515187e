/* HTTP/1.1 connections: lifetime, writing answers in order, timeouts and keep-alive.
 *
 * A connection parses one message at a time: on_message_complete pauses the parser, the
 * request is handed to the application, and parsing resumes while fewer than max_pipelined
 * requests are unanswered. Requests queue on the connection in arrival order; a response is
 * written only when every response before it has been, so pipelined answers keep their order
 * however the handlers finish. */
#include "internal.h"

#include <string.h>

#include "slipway/common.h"

static void conn_free(sw_http_conn_t *c);
static void conn_maybe_resume(sw_http_conn_t *c);

void sw_http__conn_enqueue(sw_http_conn_t *c, sw_http_req_t *r)
{
    if (c->tail)
        c->tail->next = r;
    else
        c->head = r;
    c->tail = r;
    c->queued++;
}

sw_http_req_t *sw_http__conn_dequeue(sw_http_conn_t *c)
{
    sw_http_req_t *r = c->head;
    c->head = r->next;
    if (!c->head)
        c->tail = NULL;
    r->next = NULL;
    c->queued--;
    return r;
}

static void write_done(sw_http_conn_t *c, sw_http_req_t *r)
{
    bool keep = r->keep_alive;
    sw_http__req_release(r);
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
        sw_http__conn_close(c);
        return;
    }
    /* Read and discard what the peer still sends, so closing does not reset the connection
     * before the peer has read our answer; the linger timer bounds it. */
    sw_http__conn_set_timer(c, TIMER_LINGER);
    if (c->read_paused) {
        c->read_paused = false;
        uv_read_start((uv_stream_t *)&c->tcp, sw_http__on_alloc, sw_http__on_read);
    }
}

/* After the last queued response is written on a connection that must close. */
void sw_http__conn_finish_closing(sw_http_conn_t *c)
{
    if (c->state != CONN_CLOSING || c->head || c->writes_pending)
        return;
    if (c->read_eof) {
        sw_http__conn_close(c);
        return;
    }
    c->shutdown_req.data = c;
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        sw_http__conn_close(c);
        return;
    }
    c->closes_pending++;
    c->state = CONN_LINGERING;
}

void sw_http__on_write(uv_write_t *wreq, int status)
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
        sw_http__conn_close(c);
        return;
    }
    if (c->stream && c->stream->active) {
        sw_http__stream_watch_stall(c);
        sw_http__stream_after_write(c);
    } else {
        sw_http__conn_flush(c);
    }
}

void sw_http__conn_flush(sw_http_conn_t *c)
{
    while (c->head && c->head->state == SW_HTTP_REQ_DONE && c->state != CONN_CLOSED &&
           c->state != CONN_LINGERING) {
        sw_http_req_t *r = sw_http__conn_dequeue(c);
        /* A stream's response head: once it is on its way, the stream owns the connection. */
        bool opens_stream = c->stream && c->stream->head == r;
        uv_buf_t buf = uv_buf_init(r->out.base, (unsigned)r->out.len);
        int n = c->writes_pending ? UV_EAGAIN : uv_try_write((uv_stream_t *)&c->tcp, &buf, 1);
        if (n == (int)buf.len) {
            write_done(c, r);
            if (opens_stream) {
                sw_http__stream_activate(c);
                return;
            }
            continue;
        }
        if (n < 0 && n != UV_EAGAIN) {
            sw_http__req_release(r);
            sw_http__conn_close(c);
            return;
        }
        if (n > 0) {
            buf.base += n;
            buf.len -= (size_t)n;
        }
        write_ctx_t *w = sw_calloc(1, sizeof(*w));
        w->conn = c;
        w->http_req = r;
        if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, sw_http__on_write) != 0) {
            free(w);
            sw_http__req_release(r);
            sw_http__conn_close(c);
            return;
        }
        c->writes_pending++;
        if (opens_stream) {
            sw_http__stream_activate(c);
            return;
        }
    }
    if (c->state == CONN_CLOSED)
        return;
    if (c->state == CONN_CLOSING) {
        sw_http__conn_finish_closing(c);
        return;
    }
    if (c->state == CONN_OPEN) {
        if (!c->head && !c->parsing) {
            if (c->server->draining) {
                c->state = CONN_CLOSING;
                sw_http__conn_finish_closing(c);
                return;
            }
            if (c->read_eof) {
                sw_http__conn_close(c);
                return;
            }
            sw_http__conn_set_timer(c, TIMER_IDLE);
        }
        conn_maybe_resume(c);
    }
}

void sw_http__on_timer(uv_timer_t *t)
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
            sw_http__conn_close(c);
        }
        break;
    case TIMER_IDLE:
    case TIMER_LINGER:
        sw_http__conn_close(c);
        break;
    case TIMER_STREAM_START:
        sw_http__stream_start_input(c);
        break;
    case TIMER_STREAM_STALL:
        sw_http__conn_close(c);
        break;
    default:
        break;
    }
}

void sw_http__conn_set_timer(sw_http_conn_t *c, timer_kind_t kind)
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
        uv_timer_start(&c->timer, sw_http__on_timer, ms, 0);
}

void sw_http__on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
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

void sw_http__on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    sw_http_conn_t *c = stream->data;
    sw_http_server_t *s = c->server;
    if (buf->base == s->rbuf)
        s->rbuf_busy = false;
    if (nread == 0)
        return;
    if (c->state == CONN_STREAM) {
        sw_http__stream_read(c, nread, buf);
        return;
    }
    if (nread < 0) {
        c->read_eof = true;
        uv_read_stop(stream);
        if (c->state == CONN_LINGERING || nread != UV_EOF) {
            sw_http__conn_close(c);
            return;
        }
        if (c->parsing) {
            /* The peer ended mid-request: nothing can complete it. */
            sw_http__conn_close(c);
            return;
        }
        /* Half-close after complete requests: answer them, then close. */
        if (!c->head)
            sw_http__conn_close(c);
        else if (c->state == CONN_OPEN)
            c->state = CONN_CLOSING;
        return;
    }
    if (c->state == CONN_LINGERING)
        return;
    if (c->state != CONN_OPEN)
        return;
    sw_http__conn_feed(c, buf->base, (size_t)nread);
}

/* A peer that sends requests but does not read answers must not make us buffer without
 * bound: unanswered requests and unwritten answers both count against the pipeline. */
bool sw_http__conn_saturated(const sw_http_conn_t *c)
{
    return c->queued + c->writes_pending >= c->server->opts.max_pipelined ||
           uv_stream_get_write_queue_size((const uv_stream_t *)&c->tcp) >= WRITE_QUEUE_MAX;
}

static void conn_maybe_resume(sw_http_conn_t *c)
{
    if (!c->read_paused || c->in_feed || c->state != CONN_OPEN || c->read_eof || c->upgrade_wait)
        return;
    if (sw_http__conn_saturated(c))
        return;
    c->read_paused = false;
    if (c->pending.len) {
        sw_buf_t pending = c->pending;
        c->pending = SW_BUF_INIT;
        sw_http__conn_feed(c, pending.base, pending.len);
        sw_buf_free(&pending);
        if (c->read_paused || c->state != CONN_OPEN)
            return;
    }
    uv_read_start((uv_stream_t *)&c->tcp, sw_http__on_alloc, sw_http__on_read);
}

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
    if (c->stream)
        sw_http__stream_free(c);
    sw_buf_free(&c->field);
    sw_buf_free(&c->value);
    sw_buf_free(&c->pending);
    free(c);
    sw_http__server_check_drained(s);
}

static void on_conn_handle_closed(uv_handle_t *h)
{
    sw_http_conn_t *c = h->data;
    if (--c->closes_pending == 0)
        conn_free(c);
}

void sw_http__conn_close(sw_http_conn_t *c)
{
    if (c->state == CONN_CLOSED) {
        return;
    }
    c->state = CONN_CLOSED;
    /* Requests still with their handlers finish into the void; the rest go now. */
    while (c->head) {
        sw_http_req_t *r = sw_http__conn_dequeue(c);
        if (r->state == SW_HTTP_REQ_HANDLING)
            r->conn = NULL;
        else
            sw_http__req_release(r);
    }
    c->parsing = NULL;
    c->closes_pending += 2;
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
}
