/* HTTP/1.1 server on libuv and llhttp: keep-alive, pipelining with responses in request
 * order, chunked bodies, Expect: 100-continue, and every peer-controlled size and time
 * bounded before memory is spent. */
#ifndef SLIPWAY_SERVER_H
#define SLIPWAY_SERVER_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "slipway/arena.h"
#include "slipway/buf.h"

typedef struct sw_http_server sw_http_server_t;
typedef struct sw_http_conn sw_http_conn_t;
typedef struct sw_http_req sw_http_req_t;

typedef struct {
    sw_iov_t name;
    sw_iov_t value;
} sw_http_header_t;

#define SW_HTTP_MAX_PARAMS 8

typedef enum {
    SW_HTTP_REQ_PARSING,  /* line, headers or body still arriving */
    SW_HTTP_REQ_HANDLING, /* complete; the handler owes a response */
    SW_HTTP_REQ_DONE,     /* response serialised, waiting for its turn to be written */
    SW_HTTP_REQ_MAX
} sw_http_req_state_t;

/* A request and its response. Everything a handler reads lives in req->arena. */
struct sw_http_req {
    sw_http_req_t *next;  /* in the connection's queue, or the free list */
    sw_http_conn_t *conn; /* NULL once the connection is gone: the response is discarded */
    sw_http_server_t *server;
    sw_http_req_state_t state;
    sw_arena_t arena;

    const char *method; /* "GET", ... */
    int method_id;      /* llhttp_method_t */
    sw_iov_t target;    /* as sent: path and query */
    sw_iov_t path;      /* up to '?' */
    sw_iov_t query;     /* after '?', without it */
    sw_http_header_t *headers;
    uint32_t nheaders, headers_cap;
    sw_buf_t body;
    bool keep_alive;
    bool head;    /* HEAD: respond without the body */
    bool upgrade; /* asked for a protocol upgrade (Connection: upgrade) */
    char request_id[65];
    char client_addr[48]; /* the peer's IP address, without the port */
    uint64_t start_ns;

    /* filled by the router */
    const void *route;
    const char *route_pattern;
    uint32_t nparams;
    sw_iov_t param_names[SW_HTTP_MAX_PARAMS];
    sw_iov_t param_values[SW_HTTP_MAX_PARAMS];

    /* response */
    int status;
    sw_buf_t resp_headers; /* extra "Name: value\r\n" lines */
    sw_buf_t out;          /* the serialised response */
    void *user;            /* for the application layer */
};

typedef struct {
    uint32_t max_header_bytes;
    uint32_t max_headers;
    uint64_t max_body_bytes;
    uint32_t max_connections;
    uint32_t max_pipelined;
    uint32_t header_timeout_ms;
    uint32_t body_timeout_ms;
    uint32_t idle_timeout_ms;
    uint32_t drain_timeout_ms;
    bool reuse_port;
    /* A complete request: the handler must eventually call one of the respond functions. */
    void (*on_request)(sw_http_req_t *req, void *payload);
    /* A response was serialised (including ones the server made itself: 408, 413, 431...). */
    void (*on_response)(sw_http_req_t *req, void *payload);
    /* Draining finished: no connection is left. */
    void (*on_drained)(sw_http_server_t *server, void *payload);
    void *payload;
} sw_http_server_opts_t;

typedef struct {
    uint64_t connections; /* open now */
    uint64_t accepted;    /* total */
    uint64_t rejected;    /* over the connection cap */
    uint64_t requests;    /* total */
} sw_http_server_stats_t;

int sw_http_server_new(sw_http_server_t **out, uv_loop_t *loop, const sw_http_server_opts_t *opts);
/* Binds and listens on "host:port" ("[v6]:port" for IPv6); may be called several times. */
int sw_http_server_listen(sw_http_server_t *server, const char *hostport);
/* The bound address of the n-th listener, e.g. "127.0.0.1:8080", into out. */
int sw_http_server_address(sw_http_server_t *server, unsigned n, char *out, size_t size);
/* Serves fd, a connected stream socket (TCP, or AF_UNIX for a peer in the same process), as
 * if a listener had accepted it; the server owns it from then on. 0, or a negative code (then
 * fd is still the caller's). */
int sw_http_server_adopt(sw_http_server_t *server, uv_os_sock_t fd);
/* Stops accepting, closes idle connections, lets in-flight requests finish within the drain
 * timeout, then closes the rest and calls on_drained. */
void sw_http_server_drain(sw_http_server_t *server);
/* Frees the server; only after on_drained (all handles closed). */
void sw_http_server_free(sw_http_server_t *server);
void sw_http_server_stats(const sw_http_server_t *server, sw_http_server_stats_t *out);
struct ssl_ctx_st;
/* Connections accepted from now on speak TLS with ctx (a server context from tls.h; the server
 * takes its own reference), or plain HTTP when ctx is NULL. Open connections keep theirs. */
void sw_http_server_set_tls(sw_http_server_t *server, struct ssl_ctx_st *ctx);

/* Request accessors. */
sw_iov_t sw_http_req_header(const sw_http_req_t *req, const char *name);
/* The value of cookie name (first match), or SW_IOV_NULL. */
sw_iov_t sw_http_req_cookie(const sw_http_req_t *req, const char *name);
/* Decoded value of name in an application/x-www-form-urlencoded string, into the arena; NULL
 * when absent or malformed. Query strings use the same format. */
const char *sw_http_form_value(sw_arena_t *arena, sw_iov_t form, const char *name);
sw_iov_t sw_http_req_param(const sw_http_req_t *req, const char *name);
/* Decoded value of a query parameter into the arena; NULL when absent. */
const char *sw_http_req_query(sw_http_req_t *req, const char *name);

/* Adds a response header; name and value must not contain CR or LF (they are dropped). */
void sw_http_add_header(sw_http_req_t *req, const char *name, const char *value);
/* Finishes the request. Each request is answered exactly once. */
void sw_http_respond(sw_http_req_t *req, int status, const char *content_type, const void *body,
                     size_t len);
/* Serialises value (reference stolen) as the JSON body. */
void sw_http_respond_json(sw_http_req_t *req, int status, json_t *value);
/* The error envelope: {"error":{"code","message","details","request_id"}}; details stolen. */
void sw_http_respond_error(sw_http_req_t *req, int status, const char *code, const char *message,
                           json_t *details);
const char *sw_http_status_text(int status);
/* The envelope code for an HTTP status: 404 -> RESOURCE_NOT_FOUND, ... */
const char *sw_http_error_code(int status);

/* ---- streams: long responses and upgraded connections ----
 *
 * A handler may answer with a stream instead of a body: the status line and headers go out
 * without a length, and the connection stops reading requests. With SW_HTTP_STREAM_CHUNKED
 * each write is one chunk of a chunked body and sw_http_stream_end sends the last chunk, so
 * the client can tell a complete stream from a cut one. With status 101 the connection is
 * upgraded: bytes are written raw and the peer's bytes (including any that arrived after
 * the request) go to on_data. The connection closes when the stream ends. */
typedef struct sw_http_stream sw_http_stream_t;

typedef struct {
    /* Bytes from the peer. Without it, input is read and discarded (so a close is seen). */
    void (*on_data)(sw_http_stream_t *st, const char *data, size_t len, void *ud);
    /* A write completed and the bytes still queued fell to SW_HTTP_STREAM_LOW_WATER or
     * below: room to write more. */
    void (*on_writable)(sw_http_stream_t *st, void *ud);
    /* The server is draining: finish soon (a WebSocket says 1001). The drain timeout
     * closes streams that do not. */
    void (*on_shutdown)(sw_http_stream_t *st, void *ud);
    /* The connection is gone, for whatever reason (including sw_http_stream_end and _close).
     * The last call: st is invalid when it returns. Not called from inside
     * sw_http_stream_open, _write, _end or _close: always later, from the loop. */
    void (*on_close)(sw_http_stream_t *st, void *ud);
} sw_http_stream_cbs_t;

#define SW_HTTP_STREAM_CHUNKED   1u
#define SW_HTTP_STREAM_LOW_WATER (16u * 1024u)

/* Answers req with status, content_type (may be NULL) and the headers added so far, and
 * turns the connection into a stream (a HEAD request gets the head alone, and NULL). The request is
 * finished by this call (do not respond to it again; its arena is released on the next loop
 * iteration). Returns NULL when the connection is already gone; then nothing was sent and no
 * callback will come. If earlier pipelined responses are still unwritten, the stream's bytes queue
 * behind them. */
sw_http_stream_t *sw_http_stream_open(sw_http_req_t *req, int status, const char *content_type,
                                      unsigned flags, const sw_http_stream_cbs_t *cbs, void *ud);
/* Queues bytes (copied); they go out together with the stream's other writes of this loop
 * iteration, in one writev, before the loop next polls. Returns 0, -EMSGSIZE beyond 4 GiB,
 * or -EPIPE once the stream is closing or closed. Writes of zero bytes are ignored (a
 * zero-length chunk would end a chunked body). A stream whose queued bytes see no progress
 * for 60 s is closed: its peer stopped reading. */
int sw_http_stream_write(sw_http_stream_t *st, const void *data, size_t len);
/* Queues a shared block by reference (the stream takes its own reference). */
int sw_http_stream_write_shared(sw_http_stream_t *st, sw_shared_t *block);
/* Bytes queued and not yet taken by the kernel. */
size_t sw_http_stream_pending(const sw_http_stream_t *st);
/* Ends the stream gracefully: the last chunk if chunked, everything queued flushed, then
 * the connection shut down and closed. */
void sw_http_stream_end(sw_http_stream_t *st);
/* Closes the connection now, dropping anything unwritten. */
void sw_http_stream_close(sw_http_stream_t *st);
/* The peer's address (without port), for logs. */
const char *sw_http_stream_peer(const sw_http_stream_t *st);
void sw_http_stream_set_user(sw_http_stream_t *st, void *ud);

/* Open streams on this server, for metrics. */
uint64_t sw_http_server_streams(const sw_http_server_t *server);
/* The loop the server runs on, for the timers of a protocol that takes over a stream. */
uv_loop_t *sw_http_server_loop(const sw_http_server_t *server);

#endif
