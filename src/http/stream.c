/* Streams: long responses (chunked or to the close) and upgraded connections handed to
 * another protocol. Writes are corked and go out in one writev before the loop polls. */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "slipway/common.h"

static void on_flush(uv_prepare_t *h);

static void stream_begin_closing(sw_http_conn_t *c)
{
    c->state = CONN_CLOSING;
    sw_http__conn_finish_closing(c);
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

/* While writes are queued, each one that completes restarts the stall timer; with none
 * queued it is off. The start timer (upgrades) runs first and then calls this itself. */
void sw_http__stream_watch_stall(sw_http_conn_t *c)
{
    if (c->timer_kind == TIMER_STREAM_START || c->state == CONN_CLOSED)
        return;
    if (c->writes_pending == 0) {
        if (c->timer_kind == TIMER_STREAM_STALL)
            sw_http__conn_set_timer(c, TIMER_NONE);
        return;
    }
    c->timer_kind = TIMER_STREAM_STALL;
    uv_timer_start(&c->timer, sw_http__on_timer, STREAM_STALL_MS, 0);
}

static void stream_mark_dirty(sw_http_stream_t *st)
{
    sw_http_server_t *s = st->conn->server;
    if (st->dirty || !st->active)
        return; /* not active: sw_http__stream_activate marks it once its head has gone */
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
            int r = sw_http__conn_try_write(c, bufs, nb);
            if (r < 0 && r != UV_EAGAIN) {
                sw_http__conn_close(c);
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
        if (sw_http__conn_write(c, w, bufs, nb) != 0) {
            for (uint32_t i = 0; i < n; i++)
                sw_shared_unref(w->corks[i].blk);
            free(w->corks);
            free(w);
            memmove(st->cork, st->cork + off, (st->ncork - off) * sizeof(*st->cork));
            st->ncork -= off;
            sw_http__conn_close(c);
            return;
        }
        c->writes_pending++;
        st->queued += w->bytes;
        if (c->timer_kind != TIMER_STREAM_STALL)
            sw_http__stream_watch_stall(c);
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
void sw_http__stream_activate(sw_http_conn_t *c)
{
    sw_http_stream_t *st = c->stream;
    st->active = true;
    st->head = NULL;
    while (c->head) {
        sw_http_req_t *r = sw_http__conn_dequeue(c);
        if (r->state == SW_HTTP_REQ_HANDLING)
            r->conn = NULL; /* its handler finishes into the void */
        else
            sw_http__req_release(r);
    }
    c->parsing = NULL;
    if (st->ncork || st->ending)
        stream_mark_dirty(st);
    if (st->upgraded) {
        /* The bytes that came with the request go to on_data from the loop, not from inside
         * the call that opened the stream. */
        sw_http__conn_set_timer(c, TIMER_STREAM_START);
    } else {
        /* Read (and drop) what the peer sends, to see it go; reading may have been paused,
         * or never restarted when the stream opened from a pipelined feed. */
        sw_buf_free(&c->pending);
        if (!c->read_eof) {
            c->read_paused = false;
            uv_read_start((uv_stream_t *)&c->tcp, sw_http__on_alloc, sw_http__on_read);
        }
    }
}

void sw_http__stream_start_input(sw_http_conn_t *c)
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
        uv_read_start((uv_stream_t *)&c->tcp, sw_http__on_alloc, sw_http__on_read);
    }
    if (c->timer_kind == TIMER_NONE)
        sw_http__stream_watch_stall(c);
}

void sw_http__stream_read(sw_http_conn_t *c, ssize_t nread, const uv_buf_t *buf)
{
    sw_http_stream_t *st = c->stream;
    if (nread < 0) {
        /* The peer is gone (or half-closed: a stream has nothing more to hear from it). */
        c->read_eof = true;
        sw_http__conn_close(c);
        return;
    }
    if (st->active && st->upgraded && st->cbs.on_data)
        st->cbs.on_data(st, buf->base, (size_t)nread, st->ud);
    /* Anything else a stream's peer sends is read and dropped. */
}

void sw_http__stream_after_write(sw_http_conn_t *c)
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

void sw_http__stream_free(sw_http_conn_t *c)
{
    sw_http_server_t *s = c->server;
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

sw_http_stream_t *sw_http_stream_open(sw_http_req_t *req, int status, const char *content_type,
                                      unsigned flags, const sw_http_stream_cbs_t *cbs, void *ud)
{
    if (req->state != SW_HTTP_REQ_HANDLING && req->state != SW_HTTP_REQ_PARSING)
        return NULL;
    sw_http_conn_t *c = req->conn;
    sw_http_server_t *s = req->server;
    if (req->head) {
        /* The head of what a GET would stream, and no stream. */
        sw_http__req_finish(req, status == 101 ? 400 : status, content_type, NULL, 0);
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
    sw_http__conn_set_timer(c, TIMER_NONE);

    req->status = status;
    req->keep_alive = false;
    sw_buf_reset(&req->out);
    sw_buf_printf(&req->out, "HTTP/1.1 %d %s\r\nDate: %s\r\nX-Request-Id: %s\r\n", status,
                  sw_http_status_text(status), sw_http__server_date(s), req->request_id);
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
    sw_http__conn_flush(c);
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
    sw_http__conn_close(st->conn);
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
