/* The asynchronous PostgreSQL pool: libpq nonblocking connections in pipeline mode, driven by
 * uv_poll. Every query is Parse (once per connection) + Bind/Execute + Sync, so a failing query
 * aborts only its own pipeline segment. User callbacks are never run from inside the pool's
 * own processing: answers are queued and delivered from a uv_idle handle, which keeps the
 * connection code free of re-entrancy. */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <libpq-fe.h>
#include <uv.h>

#include "slipway/common.h"
#include "slipway/log.h"
#include "slipway/pg.h"

#define POOL_SIZE_DEFAULT          4
#define POOL_SIZE_MAX              256
#define QUERY_TIMEOUT_DEFAULT_MS   30000
#define CONNECT_TIMEOUT_DEFAULT_MS 10000
#define INFLIGHT_MAX               64    /* queries pipelined on one connection */
#define QUEUE_MAX                  10000 /* queries waiting for a connection */
#define PARAMS_MAX                 65535 /* the protocol's limit */
#define BACKOFF_MIN_MS             100
#define BACKOFF_MAX_MS             5000
#define STMT_CACHE_MAX             1024 /* named statements per connection; beyond, unnamed */

struct sw_pg_result {
    PGresult *pg;
};

typedef enum {
    STAGE_PREPARE,     /* waiting for the Parse result */
    STAGE_PREPARE_END, /* waiting for the NULL that ends it */
    STAGE_EXEC,        /* waiting for the Execute result */
    STAGE_EXEC_END,    /* waiting for the NULL that ends it */
    STAGE_SYNC,        /* waiting for PGRES_PIPELINE_SYNC */
    STAGE_MAX
} query_stage_t;

typedef struct query query_t;
struct query {
    query_t *next;  /* pool queue or connection in-flight FIFO */
    query_t *dnext; /* delivery list */
    sw_pg_cb cb;
    void *payload;
    uint64_t deadline;
    uint64_t start_ns;
    uint64_t hash;
    struct sw_pg_result res;
    int status;
    int nparams;
    query_stage_t stage;
    bool linked;     /* in the queue or an in-flight list */
    bool answered;   /* its callback is decided; a late result is discarded */
    bool delivering; /* in the delivery list */
    bool listen;     /* the LISTEN of a listening pool's connection */
    const char *sql;
    const char **params;
    /* sql and params follow in the same allocation */
};

typedef struct {
    query_t *head;
    query_t *tail;
    size_t count;
} query_list_t;

typedef enum {
    CONN_DOWN,       /* waiting for the next attempt */
    CONN_CONNECTING, /* PQconnectPoll in progress */
    CONN_UP,         /* pipeline mode, accepting queries */
    CONN_MAX
} conn_state_t;

typedef enum { POLL_NONE, POLL_OPEN, POLL_CLOSING, POLL_MAX } poll_state_t;

typedef struct {
    uint64_t hash;
    char *sql; /* NULL: empty slot */
    bool prepared;
} stmt_slot_t;

typedef struct {
    sw_pg_pool_t *pool;
    unsigned index;
    conn_state_t state;
    PGconn *pg;
    uv_poll_t poll;
    poll_state_t poll_state;
    int poll_fd;
    ino_t poll_ino;
    int poll_events;  /* events the open handle watches */
    int want_events;  /* events to watch once the handle is (re)opened */
    bool want_write;  /* PQflush left data behind */
    uv_timer_t timer; /* connect timeout, or reconnect backoff */
    uint32_t backoff_ms;
    bool reported_down; /* the last transition reported was down */
    bool listening;     /* its LISTEN is confirmed; cleared when the session ends */
    query_list_t inflight;
    stmt_slot_t *stmts;
    size_t stmts_cap;
    size_t stmts_count;
} conn_t;

struct sw_pg_pool {
    uv_loop_t *loop;
    char *conninfo;
    uint32_t query_timeout_ms;
    uint32_t connect_timeout_ms;
    void (*on_state)(sw_pg_pool_t *pool, void *payload);
    void *payload;
    conn_t *conns;
    unsigned size;
    unsigned n_up;
    bool failure_seen; /* an attempt failed or a connection dropped */
    bool state_changed;
    query_list_t queue;
    query_list_t deliver;
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
    uint64_t listen_sessions; /* LISTENs confirmed so far */
};

static void conn_connect(conn_t *c);
static int conn_watch(conn_t *c, int events);
static void on_conn_timer(uv_timer_t *t);
static void on_deliver(uv_idle_t *h);
static void pool_dispatch(sw_pg_pool_t *pool);
static void pool_send(conn_t *c, query_t *q);
static void pool_arm_deadlines(sw_pg_pool_t *pool);
static query_t *query_new(sw_pg_pool_t *pool, const char *sql, int nparams,
                          const char *const *params, sw_pg_cb cb, void *payload);

/* ---- small helpers ---- */

static void list_push(query_list_t *l, query_t *q)
{
    q->next = NULL;
    if (l->tail)
        l->tail->next = q;
    else
        l->head = q;
    l->tail = q;
    l->count++;
}

static query_t *list_pop(query_list_t *l)
{
    query_t *q = l->head;
    if (!q)
        return NULL;
    l->head = q->next;
    if (!l->head)
        l->tail = NULL;
    l->count--;
    q->next = NULL;
    return q;
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    return h;
}

static uint64_t pool_random(sw_pg_pool_t *pool)
{
    /* xorshift64: jitter only needs to spread reconnects apart, not be unpredictable */
    uint64_t x = pool->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    pool->rng = x;
    return x;
}

static int map_error(const PGresult *r)
{
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    if (state && strcmp(state, "23505") == 0)
        return SW_EUNIQUE;
    if (state && strcmp(state, "23503") == 0)
        return SW_EREFERENCED;
    return SW_EDB;
}

static void query_free(query_t *q)
{
    PQclear(q->res.pg);
    free(q);
}

/* Frees q once it is in neither the queue/in-flight lists nor the delivery list. */
static void query_release(query_t *q)
{
    if (!q->linked && !q->delivering)
        query_free(q);
}

static void handle_closed(uv_handle_t *h);

/* Decides q's outcome; the callback runs later from the idle handle. */
static void query_answer(sw_pg_pool_t *pool, query_t *q, int status)
{
    q->answered = true;
    q->status = status;
    sw_histogram_observe(&pool->durations, (double)(sw_now_ns() - q->start_ns) / 1e9);
    if (status != 0 && status != SW_EDB && status != SW_EUNIQUE && status != SW_EREFERENCED) {
        PQclear(q->res.pg);
        q->res.pg = NULL;
    }
    q->delivering = true;
    q->dnext = NULL;
    if (pool->deliver.tail)
        pool->deliver.tail->dnext = q;
    else
        pool->deliver.head = q;
    pool->deliver.tail = q;
    pool->deliver.count++;
    if (!pool->closing)
        uv_idle_start(&pool->deliver_idle, on_deliver);
}

static void pool_notify(sw_pg_pool_t *pool)
{
    pool->state_changed = true;
    if (!pool->closing)
        uv_idle_start(&pool->deliver_idle, on_deliver);
}

/* ---- prepared statement cache (per connection, open addressing) ---- */

static void stmts_clear(conn_t *c)
{
    for (size_t i = 0; i < c->stmts_cap; i++)
        free(c->stmts[i].sql);
    free(c->stmts);
    c->stmts = NULL;
    c->stmts_cap = 0;
    c->stmts_count = 0;
}

static stmt_slot_t *stmts_find(conn_t *c, uint64_t hash)
{
    if (!c->stmts_cap)
        return NULL;
    size_t mask = c->stmts_cap - 1;
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
        stmt_slot_t *s = &c->stmts[i];
        if (!s->sql || s->hash == hash)
            return s;
    }
}

static void stmts_grow(conn_t *c)
{
    stmt_slot_t *old = c->stmts;
    size_t old_cap = c->stmts_cap;
    c->stmts_cap = old_cap ? old_cap * 2 : 32;
    c->stmts = sw_calloc(c->stmts_cap, sizeof(*c->stmts));
    for (size_t i = 0; i < old_cap; i++) {
        if (old[i].sql)
            *stmts_find(c, old[i].hash) = old[i];
    }
    free(old);
}

/* The statement name for q on c, and whether a Parse must precede the execute. The name
 * comes from a 64-bit hash of the text; a collision, or a full cache, falls back to the
 * unnamed statement, which is re-parsed every time. */
static bool stmt_lookup(conn_t *c, const query_t *q, char name[24], bool *need_prepare)
{
    stmt_slot_t *s = stmts_find(c, q->hash);
    if (s && s->sql && strcmp(s->sql, q->sql) != 0)
        s = NULL; /* collision */
    else if ((!s || !s->sql) && c->stmts_count < STMT_CACHE_MAX) {
        if ((c->stmts_count + 1) * 2 > c->stmts_cap)
            stmts_grow(c);
        s = stmts_find(c, q->hash);
        s->hash = q->hash;
        s->sql = sw_strdup(q->sql);
        s->prepared = false;
        c->stmts_count++;
    } else if (!s || !s->sql) {
        s = NULL;
    }
    if (!s) {
        name[0] = '\0';
        *need_prepare = true;
        return false;
    }
    snprintf(name, 24, "sw_%016llx", (unsigned long long)q->hash);
    *need_prepare = !s->prepared;
    /* Marked now so that queries pipelined behind this one do not Parse it again. */
    s->prepared = true;
    return true;
}

static void stmt_forget(conn_t *c, const query_t *q)
{
    stmt_slot_t *s = stmts_find(c, q->hash);
    if (s && s->sql && strcmp(s->sql, q->sql) == 0)
        s->prepared = false;
}

/* ---- connection state ---- */

/* Copies libpq's message into msg as one line: it lives in the PGconn about to be freed. */
static void reason_copy(char *msg, size_t size, const char *why)
{
    snprintf(msg, size, "%s", why);
    for (char *p = msg; *p; p++) {
        if (*p == '\n' || *p == '\r' || *p == '\t')
            *p = ' ';
    }
    size_t n = strlen(msg);
    while (n && msg[n - 1] == ' ')
        msg[--n] = '\0';
}

static void poll_close(conn_t *c)
{
    if (c->poll_state == POLL_OPEN) {
        uv_close((uv_handle_t *)&c->poll, handle_closed);
        c->poll_state = POLL_CLOSING;
    }
    c->poll_events = 0;
}

/* Ends the session: every query still waiting on it is answered with status. The poll
 * handle is closed before PQfinish so the loop stops watching the socket before it goes. */
static void conn_close(conn_t *c, int status)
{
    sw_pg_pool_t *pool = c->pool;
    query_t *q;

    while ((q = list_pop(&c->inflight))) {
        q->linked = false;
        if (!q->answered)
            query_answer(pool, q, status);
        else
            query_release(q);
    }
    poll_close(c);
    c->want_events = 0;
    c->want_write = false;
    if (c->pg) {
        PQfinish(c->pg);
        c->pg = NULL;
    }
    stmts_clear(c);
    if (c->state == CONN_UP)
        pool->n_up--;
    c->state = CONN_DOWN;
    c->listening = false;
}

static void pool_fail_queue(sw_pg_pool_t *pool, int status)
{
    query_t *q;
    while ((q = list_pop(&pool->queue))) {
        q->linked = false;
        query_answer(pool, q, status);
    }
}

/* The connection failed or dropped: answer its queries, schedule the next attempt. A zero
 * delay is used after a timeout reset, where the server itself is fine. */
static void conn_down(conn_t *c, int status, const char *why, bool immediate)
{
    sw_pg_pool_t *pool = c->pool;
    bool was_up = c->state == CONN_UP;
    char reason[256];

    reason_copy(reason, sizeof(reason), why);
    conn_close(c, status);
    pool->failure_seen = true;
    if (!c->reported_down || was_up) {
        c->reported_down = true;
        sw_warn("postgresql connection %u down: %s", c->index, reason);
        pool_notify(pool);
    }

    uint64_t delay = 0;
    if (!immediate) {
        c->backoff_ms = c->backoff_ms ? SW_MIN(c->backoff_ms * 2, BACKOFF_MAX_MS) : BACKOFF_MIN_MS;
        /* jitter in [backoff/2, backoff] keeps a fleet from reconnecting in lockstep */
        delay = c->backoff_ms / 2 + pool_random(pool) % (c->backoff_ms / 2 + 1);
    }
    uv_timer_start(&c->timer, on_conn_timer, delay, 0);

    /* Nothing can take queued queries now: fail them instead of letting them time out. */
    if (pool->n_up == 0)
        pool_fail_queue(pool, SW_EUNAVAIL);
}

static void conn_fail(conn_t *c, int status)
{
    conn_down(c, status, c->pg ? PQerrorMessage(c->pg) : "connection failed", false);
}

static void on_listened(int status, sw_pg_result_t *res, void *payload)
{
    (void)status; /* conn_complete has acted on it already */
    (void)res;
    (void)payload;
}

/* Once per process: a server that let slipwayd in without a password lets in anything else
 * on the host that can reach it, builds and app instances included. */
static void warn_without_password(PGconn *pg)
{
    static bool warned;
    if (warned || PQconnectionUsedPassword(pg))
        return;
    warned = true;
    sw_log_kv(SW_LOG_WARN, NULL,
              "PostgreSQL let slipwayd in without a password: builds and app instances on this "
              "host may connect the same way; require password authentication (scram-sha-256)",
              NULL);
}

static void conn_up(conn_t *c)
{
    sw_pg_pool_t *pool = c->pool;

    if (PQsetnonblocking(c->pg, 1) != 0 || !PQenterPipelineMode(c->pg)) {
        conn_fail(c, SW_EUNAVAIL);
        return;
    }
    uv_timer_stop(&c->timer);
    c->state = CONN_UP;
    c->backoff_ms = 0;
    pool->n_up++;
    warn_without_password(c->pg);
    if (c->reported_down)
        sw_info("postgresql connection %u up", c->index);
    c->reported_down = false;
    pool_notify(pool);
    if (conn_watch(c, UV_READABLE) < 0) {
        conn_down(c, SW_EUNAVAIL, "cannot watch the socket", false);
        return;
    }
    if (pool->listen_sql) {
        /* Ahead of every query: whatever runs after it is covered by the notifications. */
        query_t *q = query_new(pool, pool->listen_sql, 0, NULL, on_listened, NULL);
        q->listen = true;
        pool_send(c, q);
        if (c->state != CONN_UP)
            return;
        if (!uv_is_active((uv_handle_t *)&pool->deadline_timer))
            pool_arm_deadlines(pool);
    }
    pool_dispatch(pool);
}

/* ---- I/O ---- */

static void on_poll(uv_poll_t *h, int status, int events);

/* Watches the connection's socket for events; returns 0 or a negative errno and leaves
 * the reaction to the caller. libpq may replace the socket while it connects (another
 * address, SSL or GSS fallback), possibly under the same descriptor number, so the socket's
 * inode is compared too; a changed socket needs a fresh handle. */
static int conn_watch(conn_t *c, int events)
{
    sw_pg_pool_t *pool = c->pool;
    int fd = PQsocket(c->pg);
    struct stat st = {0};
    int rc;

    c->want_events = events;
    if (c->poll_state == POLL_CLOSING)
        return 0; /* the close callback re-opens it */
    if (fd < 0)
        return -EBADF;
    /* libpq marks its sockets close-on-exec itself; this holds whatever version is linked. */
    (void)sw_fd_cloexec(fd);
    if (c->state == CONN_CONNECTING || c->poll_state == POLL_NONE) {
        if (fstat(fd, &st) != 0)
            return -errno;
        if (c->poll_state == POLL_OPEN && (c->poll_fd != fd || c->poll_ino != st.st_ino)) {
            poll_close(c);
            return 0;
        }
    }
    if (c->poll_state == POLL_NONE) {
        rc = uv_poll_init(pool->loop, &c->poll, fd);
        if (rc < 0)
            return rc;
        pool->handles_open++;
        c->poll_state = POLL_OPEN;
        c->poll_fd = fd;
        c->poll_ino = st.st_ino;
        c->poll_events = 0;
    }
    if (events != c->poll_events) {
        rc = uv_poll_start(&c->poll, events, on_poll);
        if (rc < 0)
            return rc;
        c->poll_events = events;
    }
    return 0;
}

static int conn_flush(conn_t *c)
{
    int r = PQflush(c->pg);
    if (r < 0)
        return -EIO;
    c->want_write = r == 1;
    return conn_watch(c, UV_READABLE | (c->want_write ? UV_WRITABLE : 0));
}

/* Pipelines q on c: Parse if this connection has not seen the statement, then
 * Bind/Execute and a Sync of its own. */
static int conn_send(conn_t *c, query_t *q)
{
    char name[24];
    bool need_prepare;

    stmt_lookup(c, q, name, &need_prepare);
    q->stage = need_prepare ? STAGE_PREPARE : STAGE_EXEC;
    q->linked = true;
    list_push(&c->inflight, q);
    if (need_prepare && !PQsendPrepare(c->pg, name, q->sql, q->nparams, NULL))
        return -EIO;
    if (!PQsendQueryPrepared(c->pg, name, q->nparams, q->params, NULL, NULL, 0))
        return -EIO;
    if (!PQpipelineSync(c->pg))
        return -EIO;
    return conn_flush(c);
}

/* Returns -EPROTO when the session cannot go on: a LISTEN that failed or timed out. */
static int conn_complete(conn_t *c, query_t *q)
{
    bool listen_ok = q->listen && !q->answered && q->status == 0;
    bool listen_failed = q->listen && !listen_ok;

    q->linked = false;
    if (q->answered)
        query_release(q);
    else
        query_answer(c->pool, q, q->status);
    if (listen_ok) {
        c->listening = true;
        c->pool->listen_sessions++;
        pool_notify(c->pool);
    }
    return listen_failed ? -EPROTO : 0;
}

/* Matches results to the in-flight FIFO. Each query yields, in order: [Parse result, NULL],
 * Execute result, NULL, PGRES_PIPELINE_SYNC. Returns 0 or -EPROTO when they do not line up. */
static int conn_read_results(conn_t *c)
{
    int nulls = 0;

    while (!PQisBusy(c->pg)) {
        PGresult *r = PQgetResult(c->pg);
        query_t *q = c->inflight.head;

        if (!r) {
            if (q && (q->stage == STAGE_PREPARE_END || q->stage == STAGE_EXEC_END)) {
                q->stage++;
                nulls = 0;
                continue;
            }
            /* libpq repeats NULL when it has nothing more; stop rather than spin */
            if (++nulls >= 2)
                break;
            continue;
        }
        nulls = 0;
        ExecStatusType st = PQresultStatus(r);
        if (!q) {
            PQclear(r);
            return -EPROTO;
        }
        switch (q->stage) {
        case STAGE_PREPARE:
            if (st != PGRES_COMMAND_OK) {
                stmt_forget(c, q);
                if (!q->answered) {
                    q->res.pg = r;
                    q->status = map_error(r);
                    r = NULL;
                }
            }
            q->stage = STAGE_PREPARE_END;
            break;
        case STAGE_EXEC:
            if (st == PGRES_PIPELINE_SYNC) {
                PQclear(r);
                return -EPROTO;
            }
            if (!q->answered && !q->res.pg) {
                /* After a failed Parse, the execute only reports the aborted pipeline;
                 * the Parse error already stored is the one worth showing. */
                if (st == PGRES_PIPELINE_ABORTED) {
                    q->status = SW_EDB;
                } else {
                    q->status =
                        (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) ? 0 : map_error(r);
                    q->res.pg = r;
                    r = NULL;
                }
            }
            q->stage = STAGE_EXEC_END;
            break;
        case STAGE_SYNC:
            if (st != PGRES_PIPELINE_SYNC) {
                PQclear(r);
                return -EPROTO;
            }
            list_pop(&c->inflight);
            if (conn_complete(c, q) < 0)
                return -EPROTO;
            break;
        default:
            /* an extra result inside one statement's round: only a sync would be wrong */
            if (st == PGRES_PIPELINE_SYNC) {
                PQclear(r);
                return -EPROTO;
            }
            break;
        }
        PQclear(r);
    }

    /* Counted for a listening pool; a stray one must not pile up in libpq either way. */
    sw_pg_pool_t *pool = c->pool;
    PGnotify *n;
    while ((n = PQnotifies(c->pg))) {
        if (pool->listen_channel && strcmp(n->relname, pool->listen_channel) == 0)
            pool->notified++;
        PQfreemem(n);
    }
    if (pool->notified && !pool->closing)
        uv_idle_start(&pool->deliver_idle, on_deliver);
    return 0;
}

static void conn_connect_step(conn_t *c)
{
    switch (PQconnectPoll(c->pg)) {
    case PGRES_POLLING_READING:
        if (conn_watch(c, UV_READABLE) < 0)
            conn_fail(c, SW_EUNAVAIL);
        break;
    case PGRES_POLLING_WRITING:
        if (conn_watch(c, UV_WRITABLE) < 0)
            conn_fail(c, SW_EUNAVAIL);
        break;
    case PGRES_POLLING_OK:
        conn_up(c);
        break;
    default:
        conn_fail(c, SW_EUNAVAIL);
        break;
    }
}

static void conn_io(conn_t *c, int events)
{
    sw_pg_pool_t *pool = c->pool;
    int rc = 0;

    if (events & UV_WRITABLE) {
        rc = conn_flush(c);
        if (rc < 0)
            goto out;
    }
    if (events & UV_READABLE) {
        if (!PQconsumeInput(c->pg)) {
            rc = -EIO;
            goto out;
        }
        rc = conn_read_results(c);
        if (rc < 0)
            goto out;
        /* reading may have let libpq send more, or want to */
        rc = conn_flush(c);
        if (rc < 0)
            goto out;
    }
    if (PQstatus(c->pg) == CONNECTION_BAD)
        rc = -EIO;
out:
    if (rc < 0) {
        conn_down(c, SW_EUNAVAIL, PQerrorMessage(c->pg), false);
        return;
    }
    /* answers free capacity on this connection */
    if (pool->queue.count)
        pool_dispatch(pool);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    conn_t *c = sw_container_of(h, conn_t, poll);

    if (c->pool->closing || !c->pg)
        return;
    if (status < 0) {
        /* libuv reports POLLERR as an error and stops the handle; libpq knows the real
         * cause (and, while connecting, may still have other addresses to try) */
        c->poll_events = 0;
        if (c->state == CONN_CONNECTING) {
            conn_connect_step(c);
            return;
        }
        conn_io(c, UV_READABLE);
        if (c->state == CONN_UP)
            conn_down(c, SW_EUNAVAIL, uv_strerror(status), false);
        return;
    }
    if (c->state == CONN_CONNECTING)
        conn_connect_step(c);
    else if (c->state == CONN_UP)
        conn_io(c, events);
}

static void on_conn_timer(uv_timer_t *t)
{
    conn_t *c = sw_container_of(t, conn_t, timer);

    if (c->pool->closing)
        return;
    if (c->state == CONN_DOWN)
        conn_connect(c);
    else if (c->state == CONN_CONNECTING)
        conn_down(c, SW_EUNAVAIL, "connect timeout", false);
}

static void notice_ignore(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

static void conn_connect(conn_t *c)
{
    sw_pg_pool_t *pool = c->pool;

    c->pg = PQconnectStart(pool->conninfo);
    if (!c->pg)
        sw_oom();
    c->state = CONN_CONNECTING;
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        conn_fail(c, SW_EUNAVAIL);
        return;
    }
    /* the default processor prints NOTICEs on stderr, which is not ours to write to */
    PQsetNoticeProcessor(c->pg, notice_ignore, NULL);
    uv_timer_start(&c->timer, on_conn_timer, pool->connect_timeout_ms, 0);
    /* libpq: after PQconnectStart, behave as if PQconnectPoll had said WRITING */
    if (conn_watch(c, UV_WRITABLE) < 0)
        conn_fail(c, SW_EUNAVAIL);
}

/* ---- dispatch and deadlines ---- */

/* The connected connection with the fewest queries in flight. One whose oldest query has
 * timed out is stuck behind it and takes nothing new until it answers or is reset. */
static conn_t *pool_pick(sw_pg_pool_t *pool)
{
    conn_t *best = NULL;

    for (unsigned i = 0; i < pool->size; i++) {
        conn_t *c = &pool->conns[i];
        if (c->state != CONN_UP || c->inflight.count >= INFLIGHT_MAX)
            continue;
        if (c->inflight.head && c->inflight.head->answered)
            continue;
        if (!best || c->inflight.count < best->inflight.count)
            best = c;
    }
    return best;
}

static void pool_send(conn_t *c, query_t *q)
{
    if (conn_send(c, q) < 0)
        conn_down(c, SW_EUNAVAIL, PQerrorMessage(c->pg), false);
}

static void pool_dispatch(sw_pg_pool_t *pool)
{
    conn_t *c;

    while (pool->queue.head && (c = pool_pick(pool))) {
        query_t *q = list_pop(&pool->queue);
        q->linked = false;
        pool_send(c, q);
    }
}

static void on_deadline_timer(uv_timer_t *t);

/* Arms the deadline timer for the earliest moment anything needs attention. Deadlines grow
 * in submission order and dispatch keeps that order, so only list heads need looking at. */
static void pool_arm_deadlines(sw_pg_pool_t *pool)
{
    uint64_t next = UINT64_MAX;

    if (pool->queue.head)
        next = pool->queue.head->deadline;
    for (unsigned i = 0; i < pool->size; i++) {
        conn_t *c = &pool->conns[i];
        query_t *q = c->inflight.head;
        if (!q)
            continue;
        next = SW_MIN(next, q->deadline + pool->query_timeout_ms);
        while (q && q->answered)
            q = q->next;
        if (q)
            next = SW_MIN(next, q->deadline);
    }
    if (next == UINT64_MAX) {
        uv_timer_stop(&pool->deadline_timer);
        return;
    }
    uint64_t now = uv_now(pool->loop);
    uv_timer_start(&pool->deadline_timer, on_deadline_timer, next > now ? next - now : 0, 0);
}

static void on_deadline_timer(uv_timer_t *t)
{
    sw_pg_pool_t *pool = sw_container_of(t, sw_pg_pool_t, deadline_timer);
    uint64_t now = uv_now(pool->loop);

    if (pool->closing)
        return;
    while (pool->queue.head && pool->queue.head->deadline <= now) {
        query_t *q = list_pop(&pool->queue);
        q->linked = false;
        query_answer(pool, q, -ETIMEDOUT);
    }
    for (unsigned i = 0; i < pool->size; i++) {
        conn_t *c = &pool->conns[i];
        for (query_t *q = c->inflight.head; q && q->deadline <= now; q = q->next) {
            if (!q->answered)
                query_answer(pool, q, -ETIMEDOUT);
        }
        /* Still no answer a whole timeout after giving up on it: the session is stuck
         * (a runaway statement, a dead peer), and everything behind it with it. */
        if (c->inflight.head && now >= c->inflight.head->deadline + pool->query_timeout_ms)
            conn_down(c, -ETIMEDOUT, "query timeout", true);
    }
    pool_dispatch(pool);
    pool_arm_deadlines(pool);
}

/* ---- delivery ---- */

static void deliver_run(sw_pg_pool_t *pool)
{
    query_t *list = pool->deliver.head;

    pool->deliver.head = pool->deliver.tail = NULL;
    pool->deliver.count = 0;

    if (pool->state_changed && !pool->closing) {
        pool->state_changed = false;
        if (pool->on_state)
            pool->on_state(pool, pool->payload);
    }
    if (pool->notified && !pool->closing) {
        unsigned count = pool->notified;
        pool->notified = 0;
        if (pool->on_notify)
            pool->on_notify(pool, count, pool->payload);
    }
    /* Callbacks may query or even close the pool: the detached list stays ours, and the
     * pool's memory lives until its handles' close callbacks, which come after this. */
    while (list) {
        query_t *q = list;
        list = q->dnext;
        q->delivering = false;
        q->cb(q->status, q->res.pg ? &q->res : NULL, q->payload);
        /* a late result for a timed-out query still needs its FIFO slot */
        PQclear(q->res.pg);
        q->res.pg = NULL;
        query_release(q);
    }
}

static void on_deliver(uv_idle_t *h)
{
    sw_pg_pool_t *pool = sw_container_of(h, sw_pg_pool_t, deliver_idle);

    uv_idle_stop(h);
    deliver_run(pool);
}

/* ---- public ---- */

/* A channel is spliced into LISTEN's text, so only a plain lower-case identifier is taken. */
static bool channel_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63 || (s[0] >= '0' && s[0] <= '9'))
        return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
            return false;
    return true;
}

int sw_pg_pool_new(sw_pg_pool_t **out, uv_loop_t *loop, const sw_pg_pool_opts_t *opts)
{
    if (!opts || !opts->conninfo || opts->size > POOL_SIZE_MAX)
        return -EINVAL;
    if (opts->listen_channel && (opts->size > 1 || !channel_valid(opts->listen_channel)))
        return -EINVAL;
    /* Checked here because libpq's parse errors, which would reach the log, quote the
     * string, and it may hold a password. */
    PQconninfoOption *parsed = PQconninfoParse(opts->conninfo, NULL);
    if (!parsed)
        return -EINVAL;
    PQconninfoFree(parsed);

    sw_pg_pool_t *pool = sw_calloc(1, sizeof(*pool));
    pool->loop = loop;
    pool->conninfo = sw_strdup(opts->conninfo);
    pool->size = opts->size ? opts->size : POOL_SIZE_DEFAULT;
    pool->query_timeout_ms =
        opts->query_timeout_ms ? opts->query_timeout_ms : QUERY_TIMEOUT_DEFAULT_MS;
    pool->connect_timeout_ms =
        opts->connect_timeout_ms ? opts->connect_timeout_ms : CONNECT_TIMEOUT_DEFAULT_MS;
    pool->on_state = opts->on_state;
    pool->payload = opts->payload;
    if (opts->listen_channel) {
        pool->size = 1;
        pool->listen_channel = sw_strdup(opts->listen_channel);
        size_t n = strlen(opts->listen_channel) + sizeof("LISTEN ");
        pool->listen_sql = sw_malloc(n);
        snprintf(pool->listen_sql, n, "LISTEN %s", opts->listen_channel);
        pool->on_notify = opts->on_notify;
    }
    pool->rng = (uint64_t)(uintptr_t)pool ^ uv_hrtime() ^ 0x9e3779b97f4a7c15ULL;
    if (!pool->rng)
        pool->rng = 1;

    uv_timer_init(loop, &pool->deadline_timer);
    uv_idle_init(loop, &pool->deliver_idle);
    pool->handles_open = 2;

    pool->conns = sw_calloc(pool->size, sizeof(*pool->conns));
    for (unsigned i = 0; i < pool->size; i++) {
        conn_t *c = &pool->conns[i];
        c->pool = pool;
        c->index = i;
        c->state = CONN_DOWN;
        uv_timer_init(loop, &c->timer);
        pool->handles_open++;
    }
    for (unsigned i = 0; i < pool->size; i++)
        conn_connect(&pool->conns[i]);
    *out = pool;
    return 0;
}

static void pool_finish(sw_pg_pool_t *pool)
{
    void (*on_closed)(void *) = pool->on_closed;
    void *payload = pool->closed_payload;

    /* Callbacks run here may submit more queries; those are cancelled in the same sweep. */
    while (pool->deliver.head)
        deliver_run(pool);
    for (unsigned i = 0; i < pool->size; i++)
        stmts_clear(&pool->conns[i]);
    free(pool->conns);
    free(pool->conninfo);
    free(pool->listen_channel);
    free(pool->listen_sql);
    free(pool);
    if (on_closed)
        on_closed(payload);
}

static void handle_closed(uv_handle_t *h)
{
    sw_pg_pool_t *pool;

    if (h->type == UV_POLL) {
        conn_t *c = sw_container_of((uv_poll_t *)h, conn_t, poll);
        pool = c->pool;
        c->poll_state = POLL_NONE;
        if (!pool->closing && c->pg && c->want_events)
            conn_watch(c, c->want_events);
    } else {
        pool = h->data;
    }
    if (--pool->handles_open == 0 && pool->closing)
        pool_finish(pool);
}

void sw_pg_pool_close(sw_pg_pool_t *pool, void (*on_closed)(void *payload), void *payload)
{
    if (!pool || pool->closing)
        return;
    pool->closing = true;
    pool->on_closed = on_closed;
    pool->closed_payload = payload;

    pool_fail_queue(pool, SW_ECANCELED);
    for (unsigned i = 0; i < pool->size; i++) {
        conn_t *c = &pool->conns[i];
        conn_close(c, SW_ECANCELED);
        c->timer.data = pool;
        uv_close((uv_handle_t *)&c->timer, handle_closed);
    }
    pool->deadline_timer.data = pool;
    uv_close((uv_handle_t *)&pool->deadline_timer, handle_closed);
    pool->deliver_idle.data = pool;
    uv_close((uv_handle_t *)&pool->deliver_idle, handle_closed);
}

static query_t *query_new(sw_pg_pool_t *pool, const char *sql, int nparams,
                          const char *const *params, sw_pg_cb cb, void *payload)
{
    /* one allocation: the query, its parameter array, the SQL text, the parameter texts */
    size_t sql_len = strlen(sql) + 1;
    size_t size = sizeof(query_t) + (size_t)nparams * sizeof(char *) + sql_len;
    for (int i = 0; i < nparams; i++)
        size += params[i] ? strlen(params[i]) + 1 : 0;
    query_t *q = sw_malloc(size);
    memset(q, 0, sizeof(*q));
    q->params = (const char **)(q + 1);
    char *p = (char *)(q->params + nparams);
    memcpy(p, sql, sql_len);
    q->sql = p;
    p += sql_len;
    for (int i = 0; i < nparams; i++) {
        if (!params[i]) {
            q->params[i] = NULL;
            continue;
        }
        size_t n = strlen(params[i]) + 1;
        memcpy(p, params[i], n);
        q->params[i] = p;
        p += n;
    }
    q->nparams = nparams;
    q->cb = cb;
    q->payload = payload;
    q->hash = fnv1a(sql);
    q->deadline = uv_now(pool->loop) + pool->query_timeout_ms;
    q->start_ns = sw_now_ns();
    return q;
}

int sw_pg_query(sw_pg_pool_t *pool, const char *sql, int nparams, const char *const *params,
                sw_pg_cb cb, void *payload)
{
    if (!pool || !sql || !cb || nparams < 0 || nparams > PARAMS_MAX || (nparams && !params))
        return -EINVAL;

    query_t *q = query_new(pool, sql, nparams, params, cb, payload);
    if (pool->closing) {
        query_answer(pool, q, SW_ECANCELED);
        return 0;
    }
    if (pool->n_up == 0 && pool->failure_seen) {
        query_answer(pool, q, SW_EUNAVAIL);
        return 0;
    }
    conn_t *c = pool->queue.head ? NULL : pool_pick(pool);
    if (c) {
        pool_send(c, q);
    } else if (pool->queue.count >= QUEUE_MAX) {
        query_answer(pool, q, SW_ELIMIT);
        return 0;
    } else {
        q->linked = true;
        list_push(&pool->queue, q);
    }
    if (!uv_is_active((uv_handle_t *)&pool->deadline_timer))
        pool_arm_deadlines(pool);
    return 0;
}

const sw_histogram_t *sw_pg_pool_durations(const sw_pg_pool_t *pool)
{
    return &pool->durations;
}

bool sw_pg_pool_up(const sw_pg_pool_t *pool)
{
    return pool && !pool->closing && pool->n_up > 0;
}

uint64_t sw_pg_pool_listen_session(const sw_pg_pool_t *pool)
{
    if (!pool || pool->closing || !pool->listen_channel || !pool->conns[0].listening)
        return 0;
    return pool->listen_sessions;
}

void sw_pg_pool_stats(const sw_pg_pool_t *pool, sw_pg_pool_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    out->total = pool->size;
    out->queued = pool->queue.count;
    for (unsigned i = 0; i < pool->size; i++) {
        const conn_t *c = &pool->conns[i];
        switch (c->state) {
        case CONN_UP:
            if (c->inflight.count)
                out->busy++;
            else
                out->idle++;
            break;
        case CONN_CONNECTING:
            out->connecting++;
            break;
        default:
            out->down++;
            break;
        }
    }
}

int sw_pg_result_rows(const sw_pg_result_t *res)
{
    return res && res->pg ? PQntuples(res->pg) : 0;
}

int sw_pg_result_cols(const sw_pg_result_t *res)
{
    return res && res->pg ? PQnfields(res->pg) : 0;
}

const char *sw_pg_result_value(const sw_pg_result_t *res, int row, int col)
{
    if (!res || !res->pg || row < 0 || col < 0 || row >= PQntuples(res->pg) ||
        col >= PQnfields(res->pg) || PQgetisnull(res->pg, row, col))
        return NULL;
    return PQgetvalue(res->pg, row, col);
}

int sw_pg_result_col(const sw_pg_result_t *res, const char *name)
{
    if (!res || !res->pg || !name)
        return -1;
    /* exact match: PQfnumber would fold case and parse quotes */
    for (int i = 0; i < PQnfields(res->pg); i++) {
        if (strcmp(PQfname(res->pg, i), name) == 0)
            return i;
    }
    return -1;
}

const char *sw_pg_result_colname(const sw_pg_result_t *res, int col)
{
    if (!res || !res->pg || col < 0 || col >= PQnfields(res->pg))
        return NULL;
    return PQfname(res->pg, col);
}

const char *sw_pg_result_error(const sw_pg_result_t *res)
{
    if (!res || !res->pg)
        return "";
    const char *msg = PQresultErrorField(res->pg, PG_DIAG_MESSAGE_PRIMARY);
    return msg ? msg : "";
}

long long sw_pg_result_affected(const sw_pg_result_t *res)
{
    if (!res || !res->pg)
        return 0;
    const char *n = PQcmdTuples(res->pg);
    return *n ? strtoll(n, NULL, 10) : 0;
}
