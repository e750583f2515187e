/* HTTP/1.1 connections: lifetime, writing answers in order, timeouts and keep-alive.
 *
 * A connection parses one message at a time: on_message_complete pauses the parser, the
 * request is handed to the application, and parsing resumes while fewer than max_pipelined
 * requests are unanswered. Requests queue on the connection in arrival order; a response is
 * written only when every response before it has been, so pipelined answers keep their order
 * however the handlers finish. */
#include "internal.h"

#include <errno.h>
#include <string.h>

#include "slipway/common.h"
#include "slipway/tls.h"

static void conn_free(sw_http_conn_t *c);
static void conn_maybe_resume(sw_http_conn_t *c);
static void tls_send_output(sw_http_conn_t *c);

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
    if (c->tls) {
        /* close_notify first, so the peer can tell our end from a cut connection. */
        sw_tls_shutdown(c->tls);
        tls_send_output(c);
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
    free(w->cipher);
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
        int n = c->writes_pending ? UV_EAGAIN : sw_http__conn_try_write(c, &buf, 1);
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
        if (sw_http__conn_write(c, w, &buf, 1) != 0) {
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

static void tls_read(sw_http_conn_t *c, const char *data, size_t len);

/* What the peer sent, in plaintext (decrypted first on a TLS connection), or the end. */
static void conn_on_bytes(sw_http_conn_t *c, ssize_t nread, const uv_buf_t *buf)
{
    uv_stream_t *stream = (uv_stream_t *)&c->tcp;
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

void sw_http__on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    sw_http_conn_t *c = stream->data;
    sw_http_server_t *s = c->server;
    if (buf->base == s->rbuf)
        s->rbuf_busy = false;
    if (nread == 0)
        return;
    if (c->tls && nread > 0) {
        /* Still in the buffer: nothing reads into it before this returns. */
        tls_read(c, buf->base, (size_t)nread);
        return;
    }
    conn_on_bytes(c, nread, buf);
}

/* ---- TLS ----
 *
 * A TLS connection decrypts each socket read whole before the HTTP code sees it, so that
 * code runs unchanged: it pauses, keeps what it cannot take yet in c->pending and bounds
 * every size as for plaintext, and the session never holds a complete record back (only
 * the part of one still arriving). A read of READ_BUF_SIZE ciphertext decrypts to less. */

#define TLS_RECORD_MAX 16384

typedef struct {
    uv_write_t req;
    char data[];
} tls_write_t;

static void on_tls_write(uv_write_t *req, int status)
{
    (void)status; /* a failed write shows as a failed read, which closes the connection */
    free(sw_container_of(req, tls_write_t, req));
}

/* Sends what the session queued outside any response: handshake, alerts, close_notify. */
static void tls_send_output(sw_http_conn_t *c)
{
    size_t n = sw_tls_output_len(c->tls);
    if (n == 0 || c->state == CONN_CLOSED)
        return;
    tls_write_t *w = sw_malloc(sizeof(*w) + n);
    n = sw_tls_output_take(c->tls, w->data, n);
    uv_buf_t buf = uv_buf_init(w->data, (unsigned)n);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, on_tls_write) != 0) {
        free(w);
        sw_http__conn_close(c);
    }
}

void sw_http__conn_refuse(sw_http_conn_t *c, const char *answer, size_t len)
{
    uv_buf_t buf = uv_buf_init((char *)answer, (unsigned)len);
    (void)uv_try_write((uv_stream_t *)&c->tcp, &buf, 1);
    sw_http__conn_close(c);
}

/* Like nginx, a plain request to a TLS port hears why in plaintext, then the port closes. */
static void answer_plain_http(sw_http_conn_t *c)
{
    static const char msg[] =
        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nConnection: close\r\n"
        "Content-Length: 105\r\n\r\n"
        "{\"error\":{\"code\":\"BAD_REQUEST\",\"message\":\"a plain HTTP request was sent to an "
        "HTTPS port\",\"details\":[]}}\n";
    sw_http__conn_refuse(c, msg, sizeof(msg) - 1);
}

static void tls_read(sw_http_conn_t *c, const char *data, size_t len)
{
    sw_http_server_t *s = c->server;
    if (c->state == CONN_CLOSED || c->state == CONN_LINGERING)
        return; /* what a closing peer still sends is discarded */
    if (sw_tls_input(c->tls, data, len) != 0) {
        sw_http__conn_close(c);
        return;
    }
    if (!sw_tls_handshaken(c->tls)) {
        /* The header timer, started at accept, bounds the handshake. */
        int r = sw_tls_handshake(c->tls);
        tls_send_output(c);
        if (r == -EAGAIN)
            return;
        sw_tls_clear_errors();
        if (r == -EBADMSG) {
            answer_plain_http(c);
            return;
        }
        if (r < 0) {
            sw_http__conn_close(c);
            return;
        }
    }
    /* One buffer per server, as for reads: decrypted input is handed on before the next. */
    sw_buf_t local = SW_BUF_INIT, *plain = s->tls_plain.len ? &local : &s->tls_plain;
    ssize_t n;
    for (;;) {
        sw_buf_reserve(plain, TLS_RECORD_MAX);
        n = sw_tls_read(c->tls, plain->base + plain->len, TLS_RECORD_MAX);
        if (n <= 0)
            break;
        plain->len += (size_t)n;
    }
    sw_tls_clear_errors();
    tls_send_output(c);
    if (plain->len) {
        uv_buf_t buf = uv_buf_init(plain->base, (unsigned)plain->len);
        conn_on_bytes(c, (ssize_t)plain->len, &buf);
    }
    sw_buf_reset(plain);
    sw_buf_free(&local);
    if (c->state == CONN_CLOSED)
        return;
    if (n == -ESHUTDOWN && !c->read_paused) {
        /* close_notify: the peer sends nothing more. A paused connection sees the socket's
         * own end when it reads again. */
        uv_buf_t none = uv_buf_init(NULL, 0);
        conn_on_bytes(c, UV_EOF, &none);
    } else if (n != -EAGAIN && n != -ESHUTDOWN) {
        sw_http__conn_close(c);
    }
}

/* Encrypts bufs, joining small ones so a chunk's size line is not a record of its own. */
static int tls_encrypt(sw_http_conn_t *c, const uv_buf_t *bufs, unsigned n)
{
    sw_buf_t *g = &c->server->tls_gather;
    int rc = 0;
    sw_buf_reset(g);
    for (unsigned i = 0; i < n && rc == 0; i++) {
        if (bufs[i].len >= TLS_RECORD_MAX) {
            rc = sw_tls_write(c->tls, g->base, g->len);
            sw_buf_reset(g);
            if (rc == 0)
                rc = sw_tls_write(c->tls, bufs[i].base, bufs[i].len);
            continue;
        }
        sw_buf_append(g, bufs[i].base, bufs[i].len);
        if (g->len >= TLS_RECORD_MAX) {
            rc = sw_tls_write(c->tls, g->base, g->len);
            sw_buf_reset(g);
        }
    }
    if (rc == 0)
        rc = sw_tls_write(c->tls, g->base, g->len);
    sw_buf_reset(g);
    if (g->cap > 4 * TLS_RECORD_MAX)
        sw_buf_free(g); /* a burst's buffer is not kept */
    sw_tls_clear_errors();
    return rc;
}

int sw_http__conn_try_write(sw_http_conn_t *c, const uv_buf_t *bufs, unsigned n)
{
    uv_stream_t *tcp = (uv_stream_t *)&c->tcp;
    if (!c->tls)
        return uv_try_write(tcp, bufs, n);
    /* An answer the socket takes at once costs no write request and no callback, as in
     * plaintext. Records cannot be taken back, so the rest is held, not re-encrypted. */
    size_t total = 0;
    for (unsigned i = 0; i < n; i++)
        total += bufs[i].len;
    if (tls_encrypt(c, bufs, n) != 0)
        return UV_EPROTO;
    sw_buf_t *out = &c->server->tls_out;
    size_t len = sw_tls_output_len(c->tls);
    sw_buf_reset(out);
    sw_buf_reserve(out, len);
    out->len = sw_tls_output_take(c->tls, out->base, len);
    uv_buf_t buf = uv_buf_init(out->base, (unsigned)out->len);
    int r = uv_try_write(tcp, &buf, 1);
    size_t sent = r > 0 ? (size_t)r : 0;
    if (sent < out->len && (r >= 0 || r == UV_EAGAIN))
        sw_buf_append(&c->tls_held, out->base + sent, out->len - sent);
    if (out->cap > 4 * READ_BUF_SIZE)
        sw_buf_free(out); /* a large answer's buffer is not kept */
    if (r < 0 && r != UV_EAGAIN)
        return r;
    return c->tls_held.len ? 0 : (int)total;
}

int sw_http__conn_write(sw_http_conn_t *c, write_ctx_t *w, const uv_buf_t *bufs, unsigned n)
{
    uv_stream_t *tcp = (uv_stream_t *)&c->tcp;
    if (!c->tls)
        return uv_write(&w->req, tcp, bufs, n, sw_http__on_write);
    size_t len;
    if (c->tls_held.len) {
        len = c->tls_held.len; /* these bytes, already encrypted by sw_http__conn_try_write */
        w->cipher = sw_buf_steal(&c->tls_held);
    } else {
        if (tls_encrypt(c, bufs, n) != 0)
            return UV_EPROTO;
        len = sw_tls_output_len(c->tls);
        w->cipher = sw_malloc(len ? len : 1);
        len = sw_tls_output_take(c->tls, w->cipher, len);
    }
    uv_buf_t buf = uv_buf_init(w->cipher, (unsigned)len);
    int rc = uv_write(&w->req, tcp, &buf, 1, sw_http__on_write);
    if (rc != 0) {
        free(w->cipher);
        w->cipher = NULL;
    }
    return rc;
}

void sw_http__conn_send_small(sw_http_conn_t *c, const char *data, size_t len)
{
    if (c->tls) {
        if (sw_tls_write(c->tls, data, len) == 0)
            tls_send_output(c);
        sw_tls_clear_errors();
        return;
    }
    uv_buf_t buf = uv_buf_init((char *)data, (unsigned)len);
    (void)uv_try_write((uv_stream_t *)&c->tcp, &buf, 1);
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
    sw_tls_session_free(c->tls);
    sw_buf_free(&c->tls_held);
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
