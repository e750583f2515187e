/* Fuzz target: WebSocket frames from a client (src/http/ws.c over wslay: masking,
 * fragmentation, control frames, sizes, close codes, UTF-8), after a valid handshake, on a
 * real connection to the HTTP server. The server echoes each message; the text "close"
 * makes it start the close handshake itself.
 *
 * Input: byte 0 is how many bytes the peer sends per loop iteration (0: all at once); byte 1
 * picks the message limit (bit 0: 64 bytes, else 4096); the rest is the frames, which a
 * client must mask. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "slipway/server.h"
#include "slipway/ws.h"

#define FUZZ_MAX_INPUT 65536

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char handshake[] = "GET /ws HTTP/1.1\r\n"
                                "Host: fuzz\r\n"
                                "Upgrade: websocket\r\n"
                                "Connection: Upgrade\r\n"
                                "Sec-WebSocket-Version: 13\r\n"
                                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                "\r\n";

static uint32_t max_message;

static void on_message(sw_ws_t *ws, bool text, const char *data, size_t len, void *ud)
{
    (void)ud;
    if (len > max_message)
        abort();
    if (text && len == 5 && memcmp(data, "close", 5) == 0) {
        sw_ws_close(ws, 1000, "bye");
    } else if (text) {
        sw_ws_send_text(ws, data, len);
    } else {
        char msg[32];
        int n = snprintf(msg, sizeof(msg), "binary %zu", len);
        sw_ws_send_text(ws, msg, (size_t)n);
    }
}

static void on_close(sw_ws_t *ws, uint16_t code, void *ud)
{
    (void)ws;
    (void)ud;
    if (code < 1000 || code >= 5000)
        abort(); /* a close code on the wire is from 1000 to 4999; 1006 when none was */
}

static void on_request(sw_http_req_t *req, void *payload)
{
    (void)payload;
    if (!sw_ws_requested(req)) {
        sw_http_respond(req, 400, "text/plain", "not a websocket\n", 16);
        return;
    }
    sw_ws_opts_t opts = {
        .max_message = max_message,
        .ping_interval_ms = 10000,
        .pong_timeout_ms = 10000,
        .close_timeout_ms = 10000,
    };
    static const sw_ws_cbs_t cbs = {.on_message = on_message, .on_close = on_close};
    sw_ws_accept(req, &opts, &cbs, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size > FUZZ_MAX_INPUT)
        return 0;
    max_message = (data[1] & 1) ? 64 : 4096;
    size_t n = sizeof(handshake) - 1 + size - 2;
    uint8_t *in = malloc(n);
    memcpy(in, handshake, sizeof(handshake) - 1);
    memcpy(in + sizeof(handshake) - 1, data + 2, size - 2);
    fuzz_conn_run(in, n, data[0], on_request);
    free(in);
    return 0;
}
