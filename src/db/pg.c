/* The asynchronous PostgreSQL pool: libpq nonblocking connections in pipeline mode, driven by
 * uv_poll. Every query is Parse (once per connection) + Bind/Execute + Sync, so a failing query
 * aborts only its own pipeline segment. User callbacks are never run from inside the pool's
 * own processing: answers are queued and delivered from a uv_idle handle, which keeps the
 * connection code free of re-entrancy.
 *
 * This file: the pool, its queue, dispatch, deadlines and delivery. pg_conn.c drives one
 * connection, pg_stmt.c caches its prepared statements, pg_result.c reads results. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <libpq-fe.h>
#include <uv.h>

#include "slipway/common.h"
#include "slipway/log.h"
#include "slipway/pg.h"

#include "internal.h"

#define POOL_SIZE_DEFAULT          4
#define POOL_SIZE_MAX              256
#define QUERY_TIMEOUT_DEFAULT_MS   30000
#define CONNECT_TIMEOUT_DEFAULT_MS 10000
#define INFLIGHT_MAX               64    /* queries pipelined on one connection */
#define QUEUE_MAX                  10000 /* queries waiting for a connection */
#define PARAMS_MAX                 65535 /* the protocol's limit */

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    return h;
}

static void query_free(pg_query_t *q)
{
    PQclear(q->res.pg);
    free(q);
}

/* Frees q once it is in neither the queue/in-flight lists nor the delivery list. */
void sw_pg__query_release(pg_query_t *q)
{
    if (!q->linked && !q->delivering)
        query_free(q);
}

/* Decides q's outcome; the callback runs later from the idle handle. */
void sw_pg__query_answer(sw_pg_pool_t *pool, pg_query_t *q, int status)
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
        uv_idle_start(&pool->deliver_idle, sw_pg__on_deliver);
}

void sw_pg__pool_notify(sw_pg_pool_t *pool)
{
    pool->state_changed = true;
    if (!pool->closing)
        uv_idle_start(&pool->deliver_idle, sw_pg__on_deliver);
}

void sw_pg__pool_fail_queue(sw_pg_pool_t *pool, int status)
{
    pg_query_t *q;
    while ((q = pg_list_pop(&pool->queue))) {
        q->linked = false;
        sw_pg__query_answer(pool, q, status);
    }
}

/* ---- dispatch and deadlines ---- */

/* The connected connection with the fewest queries in flight. One whose oldest query has
 * timed out is stuck behind it and takes nothing new until it answers or is reset. */
static pg_conn_t *pool_pick(sw_pg_pool_t *pool)
{
    pg_conn_t *best = NULL;

    for (unsigned i = 0; i < pool->size; i++) {
        pg_conn_t *c = &pool->conns[i];
        if (c->state != PG_CONN_UP || c->inflight.count >= INFLIGHT_MAX)
            continue;
        if (c->inflight.head && c->inflight.head->answered)
            continue;
        if (!best || c->inflight.count < best->inflight.count)
            best = c;
    }
    return best;
}

void sw_pg__pool_send(pg_conn_t *c, pg_query_t *q)
{
    if (sw_pg__conn_send(c, q) < 0)
        sw_pg__conn_down(c, SW_EUNAVAIL, PQerrorMessage(c->pg), false);
}

void sw_pg__pool_dispatch(sw_pg_pool_t *pool)
{
    pg_conn_t *c;

    while (pool->queue.head && (c = pool_pick(pool))) {
        pg_query_t *q = pg_list_pop(&pool->queue);
        q->linked = false;
        sw_pg__pool_send(c, q);
    }
}

static void on_deadline_timer(uv_timer_t *t);

/* Arms the deadline timer for the earliest moment anything needs attention. Deadlines grow
 * in submission order and dispatch keeps that order, so only list heads need looking at. */
void sw_pg__pool_arm_deadlines(sw_pg_pool_t *pool)
{
    uint64_t next = UINT64_MAX;

    if (pool->queue.head)
        next = pool->queue.head->deadline;
    for (unsigned i = 0; i < pool->size; i++) {
        pg_conn_t *c = &pool->conns[i];
        pg_query_t *q = c->inflight.head;
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
        pg_query_t *q = pg_list_pop(&pool->queue);
        q->linked = false;
        sw_pg__query_answer(pool, q, -ETIMEDOUT);
    }
    for (unsigned i = 0; i < pool->size; i++) {
        pg_conn_t *c = &pool->conns[i];
        for (pg_query_t *q = c->inflight.head; q && q->deadline <= now; q = q->next) {
            if (!q->answered)
                sw_pg__query_answer(pool, q, -ETIMEDOUT);
        }
        /* Still no answer a whole timeout after giving up on it: the session is stuck
         * (a runaway statement, a dead peer), and everything behind it with it. */
        if (c->inflight.head && now >= c->inflight.head->deadline + pool->query_timeout_ms)
            sw_pg__conn_down(c, -ETIMEDOUT, "query timeout", true);
    }
    sw_pg__pool_dispatch(pool);
    sw_pg__pool_arm_deadlines(pool);
}

/* ---- delivery ---- */

static void deliver_run(sw_pg_pool_t *pool)
{
    pg_query_t *list = pool->deliver.head;

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
        pg_query_t *q = list;
        list = q->dnext;
        q->delivering = false;
        q->cb(q->status, q->res.pg ? &q->res : NULL, q->payload);
        /* a late result for a timed-out query still needs its FIFO slot */
        PQclear(q->res.pg);
        q->res.pg = NULL;
        sw_pg__query_release(q);
    }
}

void sw_pg__on_deliver(uv_idle_t *h)
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
        pg_conn_t *c = &pool->conns[i];
        c->pool = pool;
        c->index = i;
        c->state = PG_CONN_DOWN;
        uv_timer_init(loop, &c->timer);
        pool->handles_open++;
    }
    for (unsigned i = 0; i < pool->size; i++)
        sw_pg__conn_connect(&pool->conns[i]);
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
        sw_pg__stmts_clear(&pool->conns[i]);
    free(pool->conns);
    free(pool->conninfo);
    free(pool->listen_channel);
    free(pool->listen_sql);
    free(pool);
    if (on_closed)
        on_closed(payload);
}

void sw_pg__handle_closed(uv_handle_t *h)
{
    sw_pg_pool_t *pool;

    if (h->type == UV_POLL) {
        pg_conn_t *c = sw_container_of((uv_poll_t *)h, pg_conn_t, poll);
        pool = c->pool;
        c->poll_state = PG_POLL_NONE;
        if (!pool->closing && c->pg && c->want_events)
            sw_pg__conn_watch(c, c->want_events);
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

    sw_pg__pool_fail_queue(pool, SW_ECANCELED);
    for (unsigned i = 0; i < pool->size; i++) {
        pg_conn_t *c = &pool->conns[i];
        sw_pg__conn_close(c, SW_ECANCELED);
        c->timer.data = pool;
        uv_close((uv_handle_t *)&c->timer, sw_pg__handle_closed);
    }
    pool->deadline_timer.data = pool;
    uv_close((uv_handle_t *)&pool->deadline_timer, sw_pg__handle_closed);
    pool->deliver_idle.data = pool;
    uv_close((uv_handle_t *)&pool->deliver_idle, sw_pg__handle_closed);
}

pg_query_t *sw_pg__query_new(sw_pg_pool_t *pool, const char *sql, int nparams,
                             const char *const *params, sw_pg_cb cb, void *payload)
{
    /* one allocation: the query, its parameter array, the SQL text, the parameter texts */
    size_t sql_len = strlen(sql) + 1;
    size_t size = sizeof(pg_query_t) + (size_t)nparams * sizeof(char *) + sql_len;
    for (int i = 0; i < nparams; i++)
        size += params[i] ? strlen(params[i]) + 1 : 0;
    pg_query_t *q = sw_malloc(size);
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

    pg_query_t *q = sw_pg__query_new(pool, sql, nparams, params, cb, payload);
    if (pool->closing) {
        sw_pg__query_answer(pool, q, SW_ECANCELED);
        return 0;
    }
    if (pool->n_up == 0 && pool->failure_seen) {
        sw_pg__query_answer(pool, q, SW_EUNAVAIL);
        return 0;
    }
    pg_conn_t *c = pool->queue.head ? NULL : pool_pick(pool);
    if (c) {
        sw_pg__pool_send(c, q);
    } else if (pool->queue.count >= QUEUE_MAX) {
        sw_pg__query_answer(pool, q, SW_ELIMIT);
        return 0;
    } else {
        q->linked = true;
        pg_list_push(&pool->queue, q);
    }
    if (!uv_is_active((uv_handle_t *)&pool->deadline_timer))
        sw_pg__pool_arm_deadlines(pool);
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

bool sw_pg_pool_take_bare(sw_pg_pool_t *pool)
{
    bool bare = pool->notified_bare;
    pool->notified_bare = false;
    return bare;
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
        const pg_conn_t *c = &pool->conns[i];
        switch (c->state) {
        case PG_CONN_UP:
            if (c->inflight.count)
                out->busy++;
            else
                out->idle++;
            break;
        case PG_CONN_CONNECTING:
            out->connecting++;
            break;
        default:
            out->down++;
            break;
        }
    }
}
