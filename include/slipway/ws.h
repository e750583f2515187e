/* WebSocket (RFC 6455) server connections on top of an upgraded HTTP stream, with wslay
 * parsing the peer's frames. Server frames are unmasked, so one encoded frame can be written
 * to any number of connections (sw_ws_encode_text + sw_ws_send_frame). */
#ifndef SLIPWAY_WS_H
#define SLIPWAY_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slipway/buf.h"
#include "slipway/server.h"

typedef struct sw_ws sw_ws_t;

typedef struct {
    uint32_t max_message;      /* a reassembled message beyond it closes with 1009 */
    uint32_t ping_interval_ms; /* a ping this often... */
    uint32_t pong_timeout_ms;  /* ...and a peer silent this long after one is closed */
    uint32_t close_timeout_ms; /* waiting for the peer's close frame before dropping it */
} sw_ws_opts_t;

typedef struct {
    /* A complete message from the peer (text is valid UTF-8). */
    void (*on_message)(sw_ws_t *ws, bool text, const char *data, size_t len, void *ud);
    /* Queued bytes fell to SW_HTTP_STREAM_LOW_WATER or below. */
    void (*on_writable)(sw_ws_t *ws, void *ud);
    /* The connection is gone; code is the close code sent or received (1006 when none). The
     * last call: ws is invalid when it returns. Never called from inside sw_ws_* calls. */
    void (*on_close)(sw_ws_t *ws, uint16_t code, void *ud);
} sw_ws_cbs_t;

typedef struct {
    uint64_t connections; /* open now */
    uint64_t frames_sent; /* data frames written, total */
    uint64_t protocol_errors;
    uint64_t parsers; /* connections holding a wslay context now (not pong-only listeners) */
} sw_ws_stats_t;

/* Whether req asks for a WebSocket (Upgrade: websocket). */
bool sw_ws_requested(const sw_http_req_t *req);
/* Checks the handshake (GET, Connection: upgrade, Sec-WebSocket-Version 13, a 16-byte
 * base64 key), answers 101 with Sec-WebSocket-Accept and takes the connection. A bad
 * handshake is answered (400, or 426 with Sec-WebSocket-Version: 13) and NULL returned;
 * NULL also when the connection is already gone. */
sw_ws_t *sw_ws_accept(sw_http_req_t *req, const sw_ws_opts_t *opts, const sw_ws_cbs_t *cbs,
                      void *ud);
/* A server text frame holding data, for sw_ws_send_frame. */
sw_shared_t *sw_ws_encode_text(const void *data, size_t len);
int sw_ws_send_text(sw_ws_t *ws, const void *data, size_t len);
/* Writes an encoded frame by reference. 0, or -EPIPE once closing. */
int sw_ws_send_frame(sw_ws_t *ws, sw_shared_t *frame);
size_t sw_ws_pending(const sw_ws_t *ws);
/* Starts the close handshake (a close frame with code and reason), then closes the
 * connection when the peer answers or after close_timeout_ms. */
void sw_ws_close(sw_ws_t *ws, uint16_t code, const char *reason);
void sw_ws_set_user(sw_ws_t *ws, void *ud);
void sw_ws_stats(sw_ws_stats_t *out);

/* Sec-WebSocket-Accept for a key: base64(SHA-1(key + GUID)); out holds 29 bytes. */
void sw_ws_accept_key(const char *key, size_t len, char out[29]);

#endif
