/* Private to src/db: what the files of the PostgreSQL pool and of the Redis client share.
 * Functions shared across files are named sw_pg__* and sw_redis__* (libuv's uv__ habit):
 * callable from any file of the module, never from outside it. */
#ifndef SLIPWAY_DB_INTERNAL_H
#define SLIPWAY_DB_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/async.h>
#include <libpq-fe.h>
#include <sys/types.h>
#include <uv.h>

#include "slipway/pg.h"
#include "slipway/redis.h"

/* ==== PostgreSQL ============================================================================== */

struct sw_pg_result {
    PGresult *pg;
};

typedef enum {
    PG_STAGE_PREPARE,     /* waiting for the Parse result */
    PG_STAGE_PREPARE_END, /* waiting for the NULL that ends it */
    PG_STAGE_EXEC,        /* waiting for the Execute result */
    PG_STAGE_EXEC_END,    /* waiting for the NULL that ends it */
    PG_STAGE_SYNC,        /* waiting for PGRES_PIPELINE_SYNC */
    PG_STAGE_MAX
} pg_query_stage_t;

typedef struct pg_query pg_query_t;
struct pg_query {
    pg_query_t *next;  /* pool queue or connection in-flight FIFO */
    pg_query_t *dnext; /* delivery list */
    sw_pg_cb cb;
    void *payload;
    uint64_t deadline;
    uint64_t start_ns;
    uint64_t hash;
    struct sw_pg_result res;
    int status;
    int nparams;
    pg_query_stage_t stage;
    bool linked;     /* in the queue or an in-flight list */
    bool answered;   /* its callback is decided; a late result is discarded */
    bool delivering; /* in the delivery list */
    bool listen;     /* the LISTEN of a listening pool's connection */
    const char *sql;
    const char **params;
    /* sql and params follow in the same allocation */
};

typedef struct {
    pg_query_t *head;
    pg_query_t *tail;
    size_t count;
} pg_query_list_t;

typedef enum {
    PG_CONN_DOWN,       /* waiting for the next attempt */
    PG_CONN_CONNECTING, /* PQconnectPoll in progress */
    PG_CONN_UP,         /* pipeline mode, accepting queries */
    PG_CONN_MAX
} pg_conn_state_t;

typedef enum { PG_POLL_NONE, PG_POLL_OPEN, PG_POLL_CLOSING, PG_POLL_MAX } pg_poll_state_t;

typedef struct {
    uint64_t hash;
    char *sql; /* NULL: empty slot */
    bool prepared;
} pg_stmt_slot_t;

typedef struct {
    sw_pg_pool_t *pool;
    unsigned index;
    pg_conn_state_t state;
    PGconn *pg;
    uv_poll_t poll;
    pg_poll_state_t poll_state;
    int poll_fd;
    ino_t poll_ino;
    int poll_events;  /* events the open handle watches */
    int want_events;  /* events to watch once the handle is (re)opened */
    bool want_write;  /* PQflush left data behind */
    uv_timer_t timer; /* connect timeout, or reconnect backoff */
    uint32_t backoff_ms;
    bool reported_down; /* the last transition reported was down */
    bool listening;     /* its LISTEN is confirmed; cleared when the session ends */
    pg_query_list_t inflight;
    pg_stmt_slot_t *stmts;
    size_t stmts_cap;
    size_t stmts_count;
} pg_conn_t;

struct sw_pg_pool {
    uv_loop_t *loop;
    char *conninfo;
    uint32_t query_timeout_ms;
    uint32_t connect_timeout_ms;
    void (*on_state)(sw_pg_pool_t *pool, void *payload);
    void *payload;
    pg_conn_t *conns;
    unsigned size;
    unsigned n_up;
    bool failure_seen; /* an attempt failed or a connection dropped */
    bool state_changed;
    pg_query_list_t queue;
    pg_query_list_t deliver;
    uv_timer_t deadline_timer;
    uv_idle_t deliver_idle;
    uint64_t rng;
    bool closing;
    unsigned handles_open;
    void (*on_closed)(void *payload);
    void *closed_payload;
    sw_histogram_t durations; /* from submission to the decided outcome */
    char *listen_channel;     /* a listening pool's channel, else NULL */
    char *listen_sql;         /* "LISTEN <channel>" */
    void (*on_notify)(sw_pg_pool_t *pool, unsigned count, void *payload);
    unsigned notified;        /* notifications not yet handed to on_notify */
    bool notified_bare;       /* one of any since came without a payload */
    uint64_t listen_sessions; /* LISTENs confirmed so far */
};

static inline void pg_list_push(pg_query_list_t *l, pg_query_t *q)
{
    q->next = NULL;
    if (l->tail)
        l->tail->next = q;
    else
        l->head = q;
    l->tail = q;
    l->count++;
}

static inline pg_query_t *pg_list_pop(pg_query_list_t *l)
{
    pg_query_t *q = l->head;
    if (!q)
        return NULL;
    l->head = q->next;
    if (!l->head)
        l->tail = NULL;
    l->count--;
    q->next = NULL;
    return q;
}

/* pg.c */
void sw_pg__query_release(pg_query_t *q);
void sw_pg__query_answer(sw_pg_pool_t *pool, pg_query_t *q, int status);
void sw_pg__pool_notify(sw_pg_pool_t *pool);
void sw_pg__pool_fail_queue(sw_pg_pool_t *pool, int status);
void sw_pg__pool_send(pg_conn_t *c, pg_query_t *q);
void sw_pg__pool_dispatch(sw_pg_pool_t *pool);
void sw_pg__pool_arm_deadlines(sw_pg_pool_t *pool);
void sw_pg__on_deliver(uv_idle_t *h);
void sw_pg__handle_closed(uv_handle_t *h);
pg_query_t *sw_pg__query_new(sw_pg_pool_t *pool, const char *sql, int nparams,
                             const char *const *params, sw_pg_cb cb, void *payload);

/* pg_conn.c */
void sw_pg__conn_close(pg_conn_t *c, int status);
void sw_pg__conn_down(pg_conn_t *c, int status, const char *why, bool immediate);
int sw_pg__conn_watch(pg_conn_t *c, int events);
int sw_pg__conn_send(pg_conn_t *c, pg_query_t *q);
void sw_pg__conn_connect(pg_conn_t *c);

/* pg_stmt.c */
void sw_pg__stmts_clear(pg_conn_t *c);
bool sw_pg__stmt_lookup(pg_conn_t *c, const pg_query_t *q, char name[24], bool *need_prepare);
void sw_pg__stmt_forget(pg_conn_t *c, const pg_query_t *q);

/* ==== Redis =================================================================================== */

#define REDIS_BACKOFF_MIN_MS  100
#define REDIS_HOST_MAX        253
#define REDIS_SECRET_MAX      512
#define REDIS_CHANNEL_BUCKETS 64 /* a power of two */

typedef enum { REDIS_CONN_CMD, REDIS_CONN_SUB, REDIS_CONN_KIND_MAX } redis_conn_kind_t;

typedef enum {
    REDIS_CONN_DOWN,       /* no context; the timer waits out the backoff */
    REDIS_CONN_RESOLVING,  /* name lookup on the threadpool; the timer is the connect deadline */
    REDIS_CONN_CONNECTING, /* connect(2) in flight; the timer is the connect deadline */
    REDIS_CONN_HANDSHAKE,  /* AUTH/SELECT in flight, still under the connect deadline */
    REDIS_CONN_UP,         /* the timer tracks the oldest command's deadline */
    REDIS_CONN_DYING,      /* found dead inside hiredis; the reaper frees the context */
    REDIS_CONN_STATE_MAX
} redis_conn_state_t;

typedef struct redis_conn redis_conn_t;

typedef struct redis_cmd {
    struct redis_cmd *next;
    redis_conn_t *conn;
    sw_redis_cb cb; /* NULL once delivered, so a late reply is dropped */
    void *payload;
    uint64_t deadline; /* uv_now() time */
    int status;        /* for deferred delivery */
} redis_cmd_t;

struct redis_conn {
    sw_redis_t *r;
    redis_conn_kind_t kind;
    redis_conn_state_t state;
    redisAsyncContext *ac;
    uv_timer_t timer;
    uv_getaddrinfo_t gai;     /* hiredis would resolve names with a blocking getaddrinfo */
    bool resolving;           /* gai is in flight; it is counted in r->handles until it returns */
    unsigned attempts;        /* picks among a name's addresses */
    redis_cmd_t *head, *tail; /* mirrors hiredis's reply queue, so head is the next reply */
    size_t inflight;
    unsigned handshake; /* handshake replies still to come */
    uint32_t backoff_ms;
    char reason[128]; /* why the connection last went down, for the log */
};

typedef struct redis_channel {
    struct redis_channel *next;
    sw_redis_message_cb cb;
    void *payload;
    size_t len;
    char name[];
} redis_channel_t;

typedef struct {
    bool is_unix;
    char addr[REDIS_HOST_MAX + 1]; /* host, or the socket path */
    int port;
    long db;
    bool has_user, has_password;
    char user[REDIS_SECRET_MAX + 1];
    char password[REDIS_SECRET_MAX + 1];
} redis_url_t;

struct sw_redis {
    uv_loop_t *loop;
    redis_conn_t conns[REDIS_CONN_KIND_MAX];
    uv_idle_t reaper; /* delivers deferred callbacks and frees dead contexts */
    redis_cmd_t *deferred_head, *deferred_tail;
    unsigned handles; /* initialised handles whose close callback has not run */
    bool closing, finalizing;
    void (*on_closed)(void *payload);
    void *closed_payload;
    void (*on_state)(sw_redis_t *r, void *payload);
    void *payload;
    uint32_t timeout_ms;
    uint64_t rng;
    redis_url_t url;
    redis_channel_t *channels[REDIS_CHANNEL_BUCKETS];
    size_t nchannels;
};

/* redis.c */
void sw_redis__handle_closed(sw_redis_t *r);
void sw_redis__on_reap(uv_idle_t *h);

/* redis_conn.c */
void sw_redis__conn_set_state(redis_conn_t *c, redis_conn_state_t state);
void sw_redis__conn_lost(redis_conn_t *c, const redisAsyncContext *ac);
void sw_redis__conn_kill(redis_conn_t *c, const char *reason);
void sw_redis__conn_drop(redis_conn_t *c);
int sw_redis__conn_send(redis_conn_t *c, sw_redis_cb cb, void *payload, int argc, const char **argv,
                        const size_t *argvlen);
void sw_redis__conn_connect(redis_conn_t *c);

/* redis_url.c */
int sw_redis__parse_url(const char *url, redis_url_t *u, char *err, size_t err_size);

/* redis_reply.c */
void sw_redis__deliver_reply(sw_redis_cb cb, void *payload, const redisReply *rep);

/* redis_sock.c */
int sw_redis__sock_attach(redis_conn_t *c, redisAsyncContext *ac);

/* redis_sub.c */
void sw_redis__sub_send(redis_conn_t *c, const char *verb, const redis_channel_t *ch);

#endif
