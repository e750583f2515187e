/* What the files of src/http/ share about a server, its connections, requests and streams.
 * Private to src/http/: other modules see include/slipway/server.h. */
#ifndef SLIPWAY_HTTP_INTERNAL_H
#define SLIPWAY_HTTP_INTERNAL_H

#include <llhttp.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "slipway/buf.h"
#include "slipway/server.h"

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
    struct ssl_st *tls; /* a TLS listener's session (tls.h); NULL on plain HTTP */
    sw_buf_t tls_held;  /* records sw_http__conn_try_write made but the socket did not take */
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
    char *cipher; /* TLS: the records written in place of the plaintext */
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
    struct ssl_ctx_st *tls_ctx; /* new connections speak TLS with it (tls.h); NULL: plain */
    sw_buf_t tls_plain;         /* a socket read decrypted, for the connection reading */
    sw_buf_t tls_gather;        /* small buffers joined into one TLS record */
    sw_buf_t tls_out;           /* records on their way to uv_try_write */
    char rbuf[READ_BUF_SIZE];
    bool rbuf_busy;
};

/* request.c: the request pool. A request is never freed inside the call that answered it. */
sw_http_req_t *sw_http__req_new(sw_http_conn_t *c);
void sw_http__req_release(sw_http_req_t *r);
void sw_http__on_reap(uv_check_t *h);
/* Frees the requests waiting for the reaper and the free list. */
void sw_http__reqs_free(sw_http_server_t *s);

/* response.c */
const char *sw_http__server_date(sw_http_server_t *s);
void sw_http__req_finish(sw_http_req_t *req, int status, const char *content_type, const void *body,
                         size_t len);

/* conn.c: connection lifetime, writing, timers, reading. */
void sw_http__conn_enqueue(sw_http_conn_t *c, sw_http_req_t *r);
sw_http_req_t *sw_http__conn_dequeue(sw_http_conn_t *c);
void sw_http__conn_flush(sw_http_conn_t *c);
void sw_http__conn_finish_closing(sw_http_conn_t *c);
bool sw_http__conn_saturated(const sw_http_conn_t *c);
void sw_http__conn_set_timer(sw_http_conn_t *c, timer_kind_t kind);
void sw_http__conn_close(sw_http_conn_t *c);
void sw_http__on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
void sw_http__on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);
void sw_http__on_timer(uv_timer_t *t);
void sw_http__on_write(uv_write_t *wreq, int status);
/* Every byte for the peer goes through these: plaintext, or TLS records made of it. With TLS,
 * try_write encrypts everything and answers all or nothing: whatever the socket did not take
 * waits for the sw_http__conn_write the caller makes next with the same bytes. */
int sw_http__conn_try_write(sw_http_conn_t *c, const uv_buf_t *bufs, unsigned n);
int sw_http__conn_write(sw_http_conn_t *c, write_ctx_t *w, const uv_buf_t *bufs, unsigned n);
/* Writes a last plaintext answer if the socket takes it at once, and closes. */
void sw_http__conn_refuse(sw_http_conn_t *c, const char *answer, size_t len);
/* A few bytes outside any response (100 Continue), best effort. */
void sw_http__conn_send_small(sw_http_conn_t *c, const char *data, size_t len);

/* parse.c: llhttp glue. */
void sw_http__parse_settings(llhttp_settings_t *settings);
void sw_http__conn_feed(sw_http_conn_t *c, const char *data, size_t len);

/* stream.c */
void sw_http__stream_activate(sw_http_conn_t *c);
void sw_http__stream_after_write(sw_http_conn_t *c);
void sw_http__stream_start_input(sw_http_conn_t *c);
void sw_http__stream_read(sw_http_conn_t *c, ssize_t nread, const uv_buf_t *buf);
void sw_http__stream_watch_stall(sw_http_conn_t *c);
/* The connection is being freed: its stream says on_close and goes with it. */
void sw_http__stream_free(sw_http_conn_t *c);

/* server.c */
void sw_http__server_check_drained(sw_http_server_t *s);

#endif
