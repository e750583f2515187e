/* One PostgreSQL connection's lifetime: nonblocking connect, pipeline mode, its socket
 * watched with uv_poll, results matched to the in-flight FIFO, and reconnect with backoff. */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <libpq-fe.h>
#include <uv.h>

#include "slipway/common.h"
#include "slipway/log.h"
#include "slipway/pg.h"

#include "internal.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

static void on_conn_timer(uv_timer_t *t);

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

static void poll_close(pg_conn_t *c)
{
    if (c->poll_state == PG_POLL_OPEN) {
        uv_close((uv_handle_t *)&c->poll, sw_pg__handle_closed);
        c->poll_state = PG_POLL_CLOSING;
    }
    c->poll_events = 0;
}

/* Ends the session: every query still waiting on it is answered with status. The poll
 * handle is closed before PQfinish so the loop stops watching the socket before it goes. */
void sw_pg__conn_close(pg_conn_t *c, int status)
{
    sw_pg_pool_t *pool = c->pool;
    pg_query_t *q;

    while ((q = pg_list_pop(&c->inflight))) {
        q->linked = false;
        if (!q->answered)
            sw_pg__query_answer(pool, q, status);
        else
            sw_pg__query_release(q);
    }
    poll_close(c);
    c->want_events = 0;
    c->want_write = false;
    if (c->pg) {
        PQfinish(c->pg);
        c->pg = NULL;
    }
    sw_pg__stmts_clear(c);
    if (c->state == PG_CONN_UP)
        pool->n_up--;
    c->state = PG_CONN_DOWN;
    c->listening = false;
}

/* The connection failed or dropped: answer its queries, schedule the next attempt. A zero
 * delay is used after a timeout reset, where the server itself is fine. */
void sw_pg__conn_down(pg_conn_t *c, int status, const char *why, bool immediate)
{
    sw_pg_pool_t *pool = c->pool;
    bool was_up = c->state == PG_CONN_UP;
    char reason[256];

    reason_copy(reason, sizeof(reason), why);
    sw_pg__conn_close(c, status);
    pool->failure_seen = true;
    if (!c->reported_down || was_up) {
        c->reported_down = true;
        sw_warn("postgresql connection %u down: %s", c->index, reason);
        sw_pg__pool_notify(pool);
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
        sw_pg__pool_fail_queue(pool, SW_EUNAVAIL);
}

static void conn_fail(pg_conn_t *c, int status)
{
    sw_pg__conn_down(c, status, c->pg ? PQerrorMessage(c->pg) : "connection failed", false);
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

static void conn_up(pg_conn_t *c)
{
    sw_pg_pool_t *pool = c->pool;

    if (PQsetnonblocking(c->pg, 1) != 0 || !PQenterPipelineMode(c->pg)) {
        conn_fail(c, SW_EUNAVAIL);
        return;
    }
    uv_timer_stop(&c->timer);
    c->state = PG_CONN_UP;
    c->backoff_ms = 0;
    pool->n_up++;
    warn_without_password(c->pg);
    if (c->reported_down)
        sw_info("postgresql connection %u up", c->index);
    c->reported_down = false;
    sw_pg__pool_notify(pool);
    if (sw_pg__conn_watch(c, UV_READABLE) < 0) {
        sw_pg__conn_down(c, SW_EUNAVAIL, "cannot watch the socket", false);
        return;
    }
    if (pool->listen_sql) {
        /* Ahead of every query: whatever runs after it is covered by the notifications. */
        pg_query_t *q = sw_pg__query_new(pool, pool->listen_sql, 0, NULL, on_listened, NULL);
        q->listen = true;
        sw_pg__pool_send(c, q);
        if (c->state != PG_CONN_UP)
            return;
        if (!uv_is_active((uv_handle_t *)&pool->deadline_timer))
            sw_pg__pool_arm_deadlines(pool);
    }
    sw_pg__pool_dispatch(pool);
}

/* ---- I/O ---- */

static void on_poll(uv_poll_t *h, int status, int events);

/* Watches the connection's socket for events; returns 0 or a negative errno and leaves
 * the reaction to the caller. libpq may replace the socket while it connects (another
 * address, SSL or GSS fallback), possibly under the same descriptor number, so the socket's
 * inode is compared too; a changed socket needs a fresh handle. */
int sw_pg__conn_watch(pg_conn_t *c, int events)
{
    sw_pg_pool_t *pool = c->pool;
    int fd = PQsocket(c->pg);
    struct stat st = {0};
    int rc;

    c->want_events = events;
    if (c->poll_state == PG_POLL_CLOSING)
        return 0; /* the close callback re-opens it */
    if (fd < 0)
        return -EBADF;
    /* libpq marks its sockets close-on-exec itself; this holds whatever version is linked. */
    (void)sw_fd_cloexec(fd);
    if (c->state == PG_CONN_CONNECTING || c->poll_state == PG_POLL_NONE) {
        if (fstat(fd, &st) != 0)
            return -errno;
        if (c->poll_state == PG_POLL_OPEN && (c->poll_fd != fd || c->poll_ino != st.st_ino)) {
            poll_close(c);
            return 0;
        }
    }
    if (c->poll_state == PG_POLL_NONE) {
        rc = uv_poll_init(pool->loop, &c->poll, fd);
        if (rc < 0)
            return rc;
        pool->handles_open++;
        c->poll_state = PG_POLL_OPEN;
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

static int conn_flush(pg_conn_t *c)
{
    int r = PQflush(c->pg);
    if (r < 0)
        return -EIO;
    c->want_write = r == 1;
    return sw_pg__conn_watch(c, UV_READABLE | (c->want_write ? UV_WRITABLE : 0));
}

/* Pipelines q on c: Parse if this connection has not seen the statement, then
 * Bind/Execute and a Sync of its own. */
int sw_pg__conn_send(pg_conn_t *c, pg_query_t *q)
{
    char name[24];
    bool need_prepare;

    sw_pg__stmt_lookup(c, q, name, &need_prepare);
    q->stage = need_prepare ? PG_STAGE_PREPARE : PG_STAGE_EXEC;
    q->linked = true;
    pg_list_push(&c->inflight, q);
    if (need_prepare && !PQsendPrepare(c->pg, name, q->sql, q->nparams, NULL))
        return -EIO;
    if (!PQsendQueryPrepared(c->pg, name, q->nparams, q->params, NULL, NULL, 0))
        return -EIO;
    if (!PQpipelineSync(c->pg))
        return -EIO;
    return conn_flush(c);
}

/* Returns -EPROTO when the session cannot go on: a LISTEN that failed or timed out. */
static int conn_complete(pg_conn_t *c, pg_query_t *q)
{
    bool listen_ok = q->listen && !q->answered && q->status == 0;
    bool listen_failed = q->listen && !listen_ok;

    q->linked = false;
    if (q->answered)
        sw_pg__query_release(q);
    else
        sw_pg__query_answer(c->pool, q, q->status);
    if (listen_ok) {
        c->listening = true;
        c->pool->listen_sessions++;
        sw_pg__pool_notify(c->pool);
    }
    return listen_failed ? -EPROTO : 0;
}

/* Matches results to the in-flight FIFO. Each query yields, in order: [Parse result, NULL],
 * Execute result, NULL, PGRES_PIPELINE_SYNC. Returns 0 or -EPROTO when they do not line up. */
static int conn_read_results(pg_conn_t *c)
{
    int nulls = 0;

    while (!PQisBusy(c->pg)) {
        PGresult *r = PQgetResult(c->pg);
        pg_query_t *q = c->inflight.head;

        if (!r) {
            if (q && (q->stage == PG_STAGE_PREPARE_END || q->stage == PG_STAGE_EXEC_END)) {
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
        case PG_STAGE_PREPARE:
            if (st != PGRES_COMMAND_OK) {
                sw_pg__stmt_forget(c, q);
                if (!q->answered) {
                    q->res.pg = r;
                    q->status = map_error(r);
                    r = NULL;
                }
            }
            q->stage = PG_STAGE_PREPARE_END;
            break;
        case PG_STAGE_EXEC:
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
            q->stage = PG_STAGE_EXEC_END;
            break;
        case PG_STAGE_SYNC:
            if (st != PGRES_PIPELINE_SYNC) {
                PQclear(r);
                return -EPROTO;
            }
            pg_list_pop(&c->inflight);
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
        if (pool->listen_channel && strcmp(n->relname, pool->listen_channel) == 0) {
            pool->notified++;
            pool->notified_bare |= !n->extra || !n->extra[0];
        }
        PQfreemem(n);
    }
    if (pool->notified && !pool->closing)
        uv_idle_start(&pool->deliver_idle, sw_pg__on_deliver);
    return 0;
}

static void conn_connect_step(pg_conn_t *c)
{
    switch (PQconnectPoll(c->pg)) {
    case PGRES_POLLING_READING:
        if (sw_pg__conn_watch(c, UV_READABLE) < 0)
            conn_fail(c, SW_EUNAVAIL);
        break;
    case PGRES_POLLING_WRITING:
        if (sw_pg__conn_watch(c, UV_WRITABLE) < 0)
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

static void conn_io(pg_conn_t *c, int events)
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
        sw_pg__conn_down(c, SW_EUNAVAIL, PQerrorMessage(c->pg), false);
        return;
    }
    /* answers free capacity on this connection */
    if (pool->queue.count)
        sw_pg__pool_dispatch(pool);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    pg_conn_t *c = sw_container_of(h, pg_conn_t, poll);

    if (c->pool->closing || !c->pg)
        return;
    if (status < 0) {
        /* libuv reports POLLERR as an error and stops the handle; libpq knows the real
         * cause (and, while connecting, may still have other addresses to try) */
        c->poll_events = 0;
        if (c->state == PG_CONN_CONNECTING) {
            conn_connect_step(c);
            return;
        }
        conn_io(c, UV_READABLE);
        if (c->state == PG_CONN_UP)
            sw_pg__conn_down(c, SW_EUNAVAIL, uv_strerror(status), false);
        return;
    }
    if (c->state == PG_CONN_CONNECTING)
        conn_connect_step(c);
    else if (c->state == PG_CONN_UP)
        conn_io(c, events);
}

static void on_conn_timer(uv_timer_t *t)
{
    pg_conn_t *c = sw_container_of(t, pg_conn_t, timer);

    if (c->pool->closing)
        return;
    if (c->state == PG_CONN_DOWN) {
        sw_pg__conn_connect(c);
    } else if (c->state == PG_CONN_CONNECTING) {
        /* After the loop was held up (a loaded host, a sanitizer build), libuv runs this
         * timer before it polls: the server's answer may be waiting already. That is the
         * connect going on, not a timeout; it gets another connect timeout from here. */
        short events = (short)(((c->want_events & UV_READABLE) ? POLLIN : 0) |
                               ((c->want_events & UV_WRITABLE) ? POLLOUT : 0));
        if (c->pg && events && sw_fd_ready(PQsocket(c->pg), events)) {
            conn_connect_step(c);
            if (c->state == PG_CONN_CONNECTING)
                uv_timer_start(&c->timer, on_conn_timer, c->pool->connect_timeout_ms, 0);
            return;
        }
        sw_pg__conn_down(c, SW_EUNAVAIL, "connect timeout", false);
    }
}

static void notice_ignore(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

void sw_pg__conn_connect(pg_conn_t *c)
{
    sw_pg_pool_t *pool = c->pool;

    c->pg = PQconnectStart(pool->conninfo);
    if (!c->pg)
        sw_oom();
    c->state = PG_CONN_CONNECTING;
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        conn_fail(c, SW_EUNAVAIL);
        return;
    }
    /* the default processor prints NOTICEs on stderr, which is not ours to write to */
    PQsetNoticeProcessor(c->pg, notice_ignore, NULL);
    uv_timer_start(&c->timer, on_conn_timer, pool->connect_timeout_ms, 0);
    /* libpq: after PQconnectStart, behave as if PQconnectPoll had said WRITING */
    if (sw_pg__conn_watch(c, UV_WRITABLE) < 0)
        conn_fail(c, SW_EUNAVAIL);
}
