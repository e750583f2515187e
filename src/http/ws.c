/* WebSocket server connections (RFC 6455) on an upgraded HTTP stream.
 *
 * wslay parses the peer's frames (masking, fragments, the message cap, UTF-8 of text and
 * close reasons, close codes) and makes the control frames we answer with: pongs, the close
 * echo, and the close that fails a connection. Data frames we send never go through wslay:
 * they are encoded once by sw_ws_encode_text and written by reference.
 *
 * Invariant that makes this safe: the send callback hands every byte wslay gives it to the
 * stream and reports all of them taken, so after each wslay_event_send wslay holds no frame
 * half-written, and bytes written directly to the stream between two wslay_event_send calls
 * always fall on a frame boundary. The stream, not wslay, is the one output queue.
 *
 * Memory: wslay's context (8 KiB) is made only when the peer sends something other than pongs
 * or we close. Pings are written directly and whole pong frames are skipped here, so a
 * watcher that only listens never has one.
 *
 * Liveness: a ping goes out every ping_interval_ms; any bytes from the peer after it count as
 * an answer (a pong may sit behind a large message the peer is still sending, and a peer
 * that sends is alive). A peer silent for pong_timeout_ms after a ping is dropped. */
#include "slipway/ws.h"

#include <errno.h>
#include <openssl/evp.h>
#include <string.h>
#include <uv.h>
#include <wslay/wslay.h>

#include "slipway/common.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
/* Input is not handed to wslay while this much output waits for the peer: the answers it
 * would make (pongs, the close echo) must not pile up behind a peer that does not read. */
#define INPUT_PAUSE_PENDING (4u * SW_HTTP_STREAM_LOW_WATER)
/* Input kept while paused; a peer that sends more than this without reading is dropped. The
 * server keeps reading the socket, so the bound has to be here. */
#define INPUT_HELD_MAX   (64u * 1024u)
#define CLOSE_REASON_MAX 123

typedef enum {
    WS_OPEN,    /* messages flow both ways */
    WS_CLOSING, /* our close frame is out; waiting for the peer's up to close_timeout_ms */
    WS_ENDING,  /* the stream is ending or closed; waiting for its on_close */
    WS_CLOSED,  /* the stream is gone; the timer is closing and frees us */
    WS_MAX
} ws_state_t;

/* Frame boundaries in the peer's input, followed ahead of wslay: wslay reads a frame's length
 * only once payload bytes follow it, so a peer announcing a message over the cap would be
 * refused only after sending it. */
typedef struct {
    uint8_t head[14];
    uint8_t have;     /* bytes of head received */
    uint64_t left;    /* payload bytes of the current frame still to come */
    uint64_t message; /* payload of the data message so far, fragments included */
} frame_scan_t;

struct sw_ws {
    sw_http_stream_t *st;        /* NULL once the stream is gone */
    wslay_event_context_ptr ctx; /* NULL until needed (see Memory above) */
    sw_ws_opts_t opts;
    sw_ws_cbs_t cbs;
    void *ud;
    ws_state_t state;
    uv_timer_t timer; /* ping, pong timeout or close timeout, by state */
    bool ping_out;    /* a ping went out and nothing came back yet */
    bool in_recv;     /* inside wslay_event_recv: its caller sends what is queued */
    uint16_t code;    /* close code sent or received; 0 when none */
    const char *in;   /* input being fed to wslay */
    size_t in_len;
    sw_buf_t held;     /* input kept while output is backed up */
    frame_scan_t scan; /* where the peer's frames begin, to read their lengths early */
};

static sw_ws_stats_t stats;

/* ---- handshake ---- */

void sw_ws_accept_key(const char *key, size_t len, char out[29])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *mc = EVP_MD_CTX_new();
    if (!mc)
        sw_oom();
    EVP_DigestInit_ex(mc, EVP_sha1(), NULL);
    EVP_DigestUpdate(mc, key, len);
    EVP_DigestUpdate(mc, WS_GUID, sizeof(WS_GUID) - 1);
    EVP_DigestFinal_ex(mc, md, &mdlen);
    EVP_MD_CTX_free(mc);
    /* 20 bytes of SHA-1 are 28 base64 characters; EVP_EncodeBlock adds the NUL. */
    EVP_EncodeBlock((unsigned char *)out, md, (int)mdlen);
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static sw_iov_t trim(sw_iov_t v)
{
    while (v.len && is_ows(v.base[0])) {
        v.base++;
        v.len--;
    }
    while (v.len && is_ows(v.base[v.len - 1]))
        v.len--;
    return v;
}

/* Whether any header called name lists token (comma-separated, case-insensitive). */
static bool header_has_token(const sw_http_req_t *req, const char *name, const char *token)
{
    for (uint32_t i = 0; i < req->nheaders; i++) {
        if (!sw_iov_caseeq(req->headers[i].name, name))
            continue;
        const char *p = req->headers[i].value.base;
        const char *end = p + req->headers[i].value.len;
        while (p < end) {
            const char *comma = memchr(p, ',', (size_t)(end - p));
            const char *stop = comma ? comma : end;
            if (sw_iov_caseeq(trim((sw_iov_t){(char *)p, (size_t)(stop - p)}), token))
                return true;
            p = comma ? comma + 1 : end;
        }
    }
    return false;
}

static bool is_b64(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

/* 16 bytes in base64: 22 characters and "==". */
static bool key_valid(sw_iov_t key)
{
    if (key.len != 24 || key.base[22] != '=' || key.base[23] != '=')
        return false;
    for (size_t i = 0; i < 22; i++)
        if (!is_b64(key.base[i]))
            return false;
    return true;
}

bool sw_ws_requested(const sw_http_req_t *req)
{
    return header_has_token(req, "upgrade", "websocket");
}

/* ---- output ---- */

/* The one way wslay writes: everything is taken (see the invariant at the top). */
static ssize_t on_wslay_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len,
                             int flags, void *user)
{
    sw_ws_t *ws = user;
    (void)flags;
    if (!ws->st || sw_http_stream_write(ws->st, data, len) != 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

static ssize_t on_wslay_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                             void *user)
{
    sw_ws_t *ws = user;
    (void)flags;
    if (ws->in_len == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = SW_MIN(len, ws->in_len);
    memcpy(buf, ws->in, n);
    ws->in += n;
    ws->in_len -= n;
    return (ssize_t)n;
}

/* The length of a frame header whose second byte is h1. */
static uint8_t frame_head_len(uint8_t h1)
{
    uint8_t len = h1 & 0x7F;
    return (uint8_t)(2 + (len == 126 ? 2 : len == 127 ? 8 : 0) + (h1 & 0x80 ? 4 : 0));
}

/* Follows the frames in data; false once a data frame's header announces a message longer
 * than max. Malformed headers are left to wslay, which refuses them itself. */
static bool scan_frames(frame_scan_t *sc, const uint8_t *data, size_t len, uint64_t max)
{
    while (len > 0) {
        if (sc->left > 0) {
            size_t n = (size_t)SW_MIN(sc->left, (uint64_t)len);
            sc->left -= n;
            data += n;
            len -= n;
            continue;
        }
        sc->head[sc->have++] = *data++;
        len--;
        if (sc->have < 2 || sc->have < frame_head_len(sc->head[1]))
            continue;
        uint64_t plen = sc->head[1] & 0x7F;
        if (plen >= 126) {
            size_t n = plen == 126 ? 2 : 8;
            plen = 0;
            for (size_t i = 0; i < n; i++)
                plen = plen << 8 | sc->head[2 + i];
        }
        uint8_t opcode = sc->head[0] & 0x0F;
        sc->have = 0;
        sc->left = plen;
        if (opcode == WSLAY_TEXT_FRAME || opcode == WSLAY_BINARY_FRAME)
            sc->message = 0;
        if (opcode == WSLAY_CONTINUATION_FRAME || opcode == WSLAY_TEXT_FRAME ||
            opcode == WSLAY_BINARY_FRAME) {
            if (plen > max - SW_MIN(sc->message, max))
                return false;
            sc->message += plen;
        }
    }
    return true;
}

/* Writes the control frames wslay has queued. */
static void flush(sw_ws_t *ws)
{
    if (ws->ctx && ws->st && !ws->in_recv)
        (void)wslay_event_send(ws->ctx); /* a failure means the stream is closing */
}

static void on_wslay_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                         void *user);

static wslay_event_context_ptr ctx_get(sw_ws_t *ws)
{
    if (ws->ctx)
        return ws->ctx;
    struct wslay_event_callbacks wcb = {
        .recv_callback = on_wslay_recv,
        .send_callback = on_wslay_send,
        .on_msg_recv_callback = on_wslay_msg,
    };
    if (wslay_event_context_server_init(&ws->ctx, &wcb, ws) != 0)
        sw_oom();
    wslay_event_config_set_max_recv_msg_length(ws->ctx, ws->opts.max_message);
    stats.parsers++;
    return ws->ctx;
}

/* Whether data is nothing but whole pong frames from a client (FIN, no RSV bits, masked,
 * at most 125 bytes each): those need no answer and no parser state, so no context. */
static bool only_pongs(const char *data, size_t len)
{
    const uint8_t *p = (const uint8_t *)data, *end = p + len;
    while (p < end) {
        if (end - p < 2 || p[0] != 0x8A || !(p[1] & 0x80) || (p[1] & 0x7F) > 125)
            return false;
        size_t frame = 2 + 4 + (p[1] & 0x7F);
        if ((size_t)(end - p) < frame)
            return false; /* a pong split across reads: wslay keeps the half */
        p += frame;
    }
    return true;
}

static size_t frame_header(uint8_t *h, uint8_t first, size_t len)
{
    h[0] = first;
    if (len < 126) {
        h[1] = (uint8_t)len;
        return 2;
    }
    if (len <= UINT16_MAX) {
        h[1] = 126;
        h[2] = (uint8_t)(len >> 8);
        h[3] = (uint8_t)len;
        return 4;
    }
    h[1] = 127;
    for (int i = 0; i < 8; i++)
        h[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
    return 10;
}

sw_shared_t *sw_ws_encode_text(const void *data, size_t len)
{
    uint8_t h[10];
    size_t hl = frame_header(h, 0x81, len); /* FIN, text */
    if (len > UINT32_MAX - hl)
        sw_oom(); /* sw_shared_t counts in 32 bits; nothing we send comes near */
    sw_shared_t *s = sw_shared_alloc(hl + len);
    memcpy(s->data, h, hl);
    if (len)
        memcpy(s->data + hl, data, len);
    return s;
}

int sw_ws_send_frame(sw_ws_t *ws, sw_shared_t *frame)
{
    if (ws->state != WS_OPEN || !ws->st)
        return -EPIPE;
    int r = sw_http_stream_write_shared(ws->st, frame);
    if (r == 0)
        stats.frames_sent++;
    return r;
}

int sw_ws_send_text(sw_ws_t *ws, const void *data, size_t len)
{
    if (ws->state != WS_OPEN || !ws->st)
        return -EPIPE;
    sw_shared_t *f = sw_ws_encode_text(data, len);
    int r = sw_ws_send_frame(ws, f);
    sw_shared_unref(f);
    return r;
}

size_t sw_ws_pending(const sw_ws_t *ws)
{
    return ws->st ? sw_http_stream_pending(ws->st) : 0;
}

void sw_ws_set_user(sw_ws_t *ws, void *ud)
{
    ws->ud = ud;
}

void sw_ws_stats(sw_ws_stats_t *out)
{
    *out = stats;
}

/* ---- state ---- */

static void on_timer(uv_timer_t *t);

/* Moves to state: the one place that starts and stops the timer and ends the stream. drop
 * closes the connection without flushing (a peer that reads nothing would hold it open). */
static void ws_set_state(sw_ws_t *ws, ws_state_t state, bool drop)
{
    ws->state = state;
    switch (state) {
    case WS_CLOSING:
        uv_timer_start(&ws->timer, on_timer, ws->opts.close_timeout_ms, 0);
        break;
    case WS_ENDING:
        uv_timer_stop(&ws->timer);
        if (drop)
            sw_http_stream_close(ws->st);
        else
            sw_http_stream_end(ws->st);
        break;
    default:
        uv_timer_stop(&ws->timer);
        break;
    }
}

/* Fails the connection with code, written directly: wslay's own close for this case would
 * carry no code. Once our close is queued or sent, no second one may follow. */
static void fail(sw_ws_t *ws, uint16_t code)
{
    stats.protocol_errors++;
    if (ws->state == WS_OPEN) {
        uint8_t f[4] = {0x88, 2, (uint8_t)(code >> 8), (uint8_t)code};
        ws->code = code;
        (void)sw_http_stream_write(ws->st, f, sizeof(f));
    } else {
        flush(ws);
    }
    ws_set_state(ws, WS_ENDING, false);
}

static void on_wslay_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                         void *user)
{
    sw_ws_t *ws = user;
    if (arg->opcode == WSLAY_CONNECTION_CLOSE && arg->msg_length == 1) {
        /* A close payload is empty or starts with a two-byte code; wslay would read this one
         * as empty and echo an empty close. Its queued echo must not follow ours. */
        wslay_event_shutdown_write(ctx);
        fail(ws, WSLAY_CODE_PROTOCOL_ERROR);
        return;
    }
    if (ws->state != WS_OPEN || !ws->cbs.on_message)
        return;
    if (arg->opcode != WSLAY_TEXT_FRAME && arg->opcode != WSLAY_BINARY_FRAME)
        return; /* control frames: wslay answers pings and closes itself */
    const char *data = arg->msg ? (const char *)arg->msg : "";
    ws->cbs.on_message(ws, arg->opcode == WSLAY_TEXT_FRAME, data, arg->msg_length, ws->ud);
}

/* Feeds input to wslay, sends what it answers, and ends the connection when it is done. */
static void process(sw_ws_t *ws, const char *data, size_t len)
{
    bool too_big = !scan_frames(&ws->scan, (const uint8_t *)data, len, ws->opts.max_message);
    if (!ws->ctx && !too_big && only_pongs(data, len))
        return;
    ctx_get(ws);
    ws->in = data;
    ws->in_len = len;
    ws->in_recv = true;
    int r = wslay_event_recv(ws->ctx);
    ws->in_recv = false;
    ws->in = NULL;
    ws->in_len = 0;
    if (ws->state == WS_ENDING || ws->state == WS_CLOSED)
        return;
    if (r == WSLAY_ERR_NOMEM)
        sw_oom();
    if (r != 0) {
        /* Our recv callback never fails, so this is a malformed frame header. */
        fail(ws, WSLAY_CODE_PROTOCOL_ERROR);
        return;
    }
    flush(ws);
    if (wslay_event_get_read_enabled(ws->ctx)) {
        /* wslay waits for the payload of a frame it would refuse: refuse it now. */
        if (too_big)
            fail(ws, WSLAY_CODE_MESSAGE_TOO_BIG);
        return;
    }
    if (wslay_event_get_close_received(ws->ctx)) {
        /* The handshake is complete (the echo just went out, or ours went out earlier). */
        if (!ws->code)
            ws->code = wslay_event_get_status_code_received(ws->ctx);
    } else {
        /* wslay failed the connection (1002, 1007, 1009) and sent its close. */
        stats.protocol_errors++;
        ws->code = wslay_event_get_status_code_sent(ws->ctx);
    }
    ws_set_state(ws, WS_ENDING, false);
}

static bool output_backed_up(const sw_ws_t *ws)
{
    return sw_http_stream_pending(ws->st) > INPUT_PAUSE_PENDING;
}

static void on_stream_data(sw_http_stream_t *st, const char *data, size_t len, void *ud)
{
    sw_ws_t *ws = ud;
    (void)st;
    if (ws->state != WS_OPEN && ws->state != WS_CLOSING)
        return;
    if (ws->ping_out && ws->state == WS_OPEN) {
        ws->ping_out = false;
        uv_timer_start(&ws->timer, on_timer, ws->opts.ping_interval_ms, 0);
    }
    if (ws->ctx && !wslay_event_get_read_enabled(ws->ctx))
        return;
    if (ws->held.len || output_backed_up(ws)) {
        if (ws->held.len + len > INPUT_HELD_MAX) {
            ws_set_state(ws, WS_ENDING, true);
            return;
        }
        sw_buf_append(&ws->held, data, len);
        return;
    }
    process(ws, data, len);
}

static void on_stream_writable(sw_http_stream_t *st, void *ud)
{
    sw_ws_t *ws = ud;
    (void)st;
    if (ws->held.len && !output_backed_up(ws) &&
        (ws->state == WS_OPEN || ws->state == WS_CLOSING)) {
        sw_buf_t held = ws->held;
        ws->held = SW_BUF_INIT;
        process(ws, held.base, held.len);
        sw_buf_free(&held);
    }
    if (ws->state == WS_CLOSING && sw_http_stream_pending(ws->st) > 0)
        /* Our close frame is still behind data a slow reader is taking: the wait for its
         * answer starts when it has had the chance to read it. */
        uv_timer_start(&ws->timer, on_timer, ws->opts.close_timeout_ms, 0);
    if (ws->state == WS_OPEN && ws->cbs.on_writable)
        ws->cbs.on_writable(ws, ws->ud);
}

static void on_stream_shutdown(sw_http_stream_t *st, void *ud)
{
    (void)st;
    sw_ws_close(ud, WSLAY_CODE_GOING_AWAY, "server shutting down");
}

static void on_timer_closed(uv_handle_t *h)
{
    sw_ws_t *ws = h->data;
    if (ws->ctx) {
        wslay_event_context_free(ws->ctx);
        stats.parsers--;
    }
    sw_buf_free(&ws->held);
    free(ws);
}

static void on_stream_close(sw_http_stream_t *st, void *ud)
{
    sw_ws_t *ws = ud;
    (void)st;
    ws->st = NULL;
    ws_set_state(ws, WS_CLOSED, false);
    stats.connections--;
    if (ws->cbs.on_close)
        ws->cbs.on_close(ws, ws->code ? ws->code : WSLAY_CODE_ABNORMAL_CLOSURE, ws->ud);
    uv_close((uv_handle_t *)&ws->timer, on_timer_closed);
}

static void on_timer(uv_timer_t *t)
{
    sw_ws_t *ws = t->data;
    if (ws->state == WS_CLOSING) {
        /* The peer never answered our close. */
        ws_set_state(ws, WS_ENDING, true);
        return;
    }
    if (ws->state != WS_OPEN)
        return;
    if (ws->ping_out) {
        /* Silent since the last ping: gone or not reading. */
        ws_set_state(ws, WS_ENDING, true);
        return;
    }
    /* Written directly, like fail()'s close: wslay never holds half a frame (see the top). */
    static const uint8_t ping[2] = {0x89, 0}; /* FIN, ping, no payload */
    (void)sw_http_stream_write(ws->st, ping, sizeof(ping));
    ws->ping_out = true;
    uv_timer_start(&ws->timer, on_timer, ws->opts.pong_timeout_ms, 0);
}

/* ---- accept and close ---- */

sw_ws_t *sw_ws_accept(sw_http_req_t *req, const sw_ws_opts_t *opts, const sw_ws_cbs_t *cbs,
                      void *ud)
{
    if (strcmp(req->method, "GET") != 0) {
        sw_http_respond_error(req, 400, NULL, "a WebSocket handshake is a GET", NULL);
        return NULL;
    }
    if (!sw_ws_requested(req) || !header_has_token(req, "connection", "upgrade")) {
        sw_http_respond_error(req, 400, NULL, "expected Upgrade: websocket, Connection: upgrade",
                              NULL);
        return NULL;
    }
    if (!sw_iov_eq_cstr(trim(sw_http_req_header(req, "sec-websocket-version")), "13")) {
        sw_http_add_header(req, "Sec-WebSocket-Version", "13");
        sw_http_respond_error(req, 426, NULL, "only WebSocket version 13 is supported", NULL);
        return NULL;
    }
    sw_iov_t key = trim(sw_http_req_header(req, "sec-websocket-key"));
    if (!key_valid(key)) {
        sw_http_respond_error(req, 400, NULL, "Sec-WebSocket-Key must be 16 bytes in base64", NULL);
        return NULL;
    }

    sw_ws_t *ws = sw_calloc(1, sizeof(*ws));
    ws->opts = *opts;
    ws->cbs = *cbs;
    ws->ud = ud;
    ws->state = WS_OPEN;

    char accept[29];
    sw_ws_accept_key(key.base, key.len, accept);
    sw_http_add_header(req, "Upgrade", "websocket");
    sw_http_add_header(req, "Connection", "Upgrade");
    sw_http_add_header(req, "Sec-WebSocket-Accept", accept);
    static const sw_http_stream_cbs_t scb = {
        .on_data = on_stream_data,
        .on_writable = on_stream_writable,
        .on_shutdown = on_stream_shutdown,
        .on_close = on_stream_close,
    };
    uv_loop_t *loop = sw_http_server_loop(req->server);
    ws->st = sw_http_stream_open(req, 101, NULL, 0, &scb, ws);
    if (!ws->st) {
        free(ws);
        return NULL;
    }
    uv_timer_init(loop, &ws->timer);
    ws->timer.data = ws;
    if (opts->ping_interval_ms)
        uv_timer_start(&ws->timer, on_timer, opts->ping_interval_ms, 0);
    stats.connections++;
    return ws;
}

/* The longest prefix of s within max bytes that does not split a UTF-8 sequence. */
static size_t utf8_prefix(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n <= max)
        return n;
    n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    return n;
}

void sw_ws_close(sw_ws_t *ws, uint16_t code, const char *reason)
{
    if (ws->state != WS_OPEN)
        return;
    reason = reason ? reason : "";
    ws->code = code ? code : WSLAY_CODE_NO_STATUS_RCVD;
    (void)wslay_event_queue_close(ctx_get(ws), code, (const uint8_t *)reason,
                                  code ? utf8_prefix(reason, CLOSE_REASON_MAX) : 0);
    ws_set_state(ws, WS_CLOSING, false);
    flush(ws);
}
