/* The reconciler, and the proxy module's front: level-triggered.
 *
 * A round reads the routing table from PostgreSQL, lays the releases being switched (pins)
 * over it, hands it to the DNS responder, and has the driver make the proxy serve exactly
 * it. Rounds run one at a time: on every change notification (PostgreSQL's slipway_routes,
 * sql/012_routes.sql), on every publish and settle, and every SLIPWAY_PROXY_RECONCILE_MS; a change
 * that arrives during a round starts another right after it. Nothing is remembered between rounds
 * but the table last applied, so a proxy that lost its config (or was edited by hand) is whole
 * again after the next round, and what had to be put back is counted as repairs. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "slipway/log.h"

#define MAX_VERIFY_HOSTS 8

typedef struct pin {
    struct pin *next;
    char app_id[40];
    char release[40];
    char *endpoints[SW_ROUTE_MAX_ENDPOINTS];
    size_t n;
    /* Settled: rounds up to this one may have read the table before the database said the
     * same, so they keep the pin; a later round drops it. 0: not settled. */
    uint64_t settled_after;
} pin_t;

typedef struct waiter {
    struct waiter *next;
    sw_proxy_cb cb;
    void *payload;
} waiter_t;

typedef struct verify {
    struct verify *next;
    sw_proxy_t *p;
    uv_timer_t timer; /* starts the probes from the loop, then nudges (see on_verify_timer) */
    bool started;
    sw_probe_t *probe;
    char *hosts[MAX_VERIFY_HOSTS];
    size_t nhosts, at;
    char *path;
    char release[40];
    uint32_t timeout_ms;
    sw_proxy_cb cb;
    void *payload;
} verify_t;

struct sw_proxy {
    uv_loop_t *loop;
    const sw_config_t *cfg;
    sw_pg_pool_t *pg;
    sw_pg_pool_t *listen; /* LISTEN slipway_routes */
    uint64_t listen_session;
    sw_proxy_driver_t *driver;
    bool active; /* a driver that routes (not none) */
    sw_dns_t *dns;
    sw_edge_t *edge;         /* with the DNS responder */
    sw_proxy_state_t *state; /* what rounds did and saw, for GET domains/:id */
    uv_timer_t timer;
    uv_timer_t answer_timer; /* answers publishes the DNS responder already serves */
    waiter_t *answered;      /* ...those */
    sw_routes_t *table;      /* the last one read: the DNS responder answers from it */
    bool applied;            /* the last round that ended succeeded */
    bool check_due;          /* the next round compares the proxy with the table whatever changed */
    pin_t *pins;
    waiter_t *waiting;  /* publishes the next round answers */
    waiter_t *in_round; /* publishes the round in flight answers */
    verify_t *verifies;
    uint64_t rounds; /* started; the one in flight is number rounds */
    bool running, again, freeing;
    unsigned refs; /* handles open and callbacks owed; the last one frees */
};

/* Process-wide counts for /metrics (one proxy per process). */
static atomic_ulong rounds_total, changes_total, repairs_total, failures_total;

static void round_start(sw_proxy_t *p);
static void on_tick(uv_timer_t *t);

static void unref(sw_proxy_t *p)
{
    if (--p->refs > 0)
        return;
    sw_routes_free(p->table);
    free(p);
}

static void on_handle_closed(uv_handle_t *h)
{
    unref(h->data);
}

/* A line of Caddy's log, sent to the DNS responder's address: an ACME order that failed. */
static void on_caddy_log(const char *line, size_t len, void *payload)
{
    sw_proxy_t *p = payload;
    char host[SW_ROUTE_HOST_MAX + 1], why[400];
    if (p->freeing || !sw_caddy_log_failure(line, len, host, sizeof(host), why, sizeof(why)))
        return;
    if (sw_proxy_state_tls_failed(p->state, host, why))
        sw_log_kv(SW_LOG_WARN, NULL, "the proxy could not get a certificate", "host", host, "error",
                  why, NULL);
    else
        sw_log_kv(SW_LOG_INFO, NULL,
                  "a certificate failure was ignored: no such hostname, or it has a certificate",
                  "host", host, NULL);
}

/* the DNS responder, or the edge */
static void on_dns_closed(void *payload)
{
    unref(payload);
}

/* ---- pins ---- */

static void pin_free(pin_t *pin)
{
    for (size_t i = 0; i < pin->n; i++)
        free(pin->endpoints[i]);
    free(pin);
}

static void unpin(sw_proxy_t *p, const char *app_id)
{
    for (pin_t **pp = &p->pins; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->app_id, app_id) == 0) {
            pin_t *gone = *pp;
            *pp = gone->next;
            pin_free(gone);
            return;
        }
    }
}

static void waiters_answer(waiter_t *w, int status, const char *error)
{
    while (w) {
        waiter_t *next = w->next;
        w->cb(status, error, w->payload);
        free(w);
        w = next;
    }
}

/* ---- rounds ---- */

/* repaired: what the driver put back after the proxy drifted, whichever round found it (the
 * timer's, or one a change, publish or settle started). compared: the round asked the proxy;
 * one that did not (only the DNS answer moved) leaves what the last one found standing. */
static void round_end(sw_proxy_t *p, int status, bool compared, unsigned changed, unsigned repaired,
                      const char *error)
{
    p->running = false;
    atomic_fetch_add(&rounds_total, 1);
    if (status == 0) {
        atomic_fetch_add(&changes_total, changed);
        if (repaired > 0) {
            atomic_fetch_add(&repairs_total, repaired);
            char n[16];
            snprintf(n, sizeof(n), "%u", repaired);
            sw_log_kv(SW_LOG_WARN, NULL, "the proxy had drifted from the routing table; repaired",
                      "driver", p->driver->ops->name, "routes", n, NULL);
        }
    } else if (status != -ECANCELED) {
        atomic_fetch_add(&failures_total, 1);
        sw_log_kv(SW_LOG_ERROR, NULL, "the proxy could not be brought up to date", "driver",
                  p->driver->ops->name, "error", error ? error : sw_strerror(status), NULL);
    }
    if (compared)
        p->applied = status == 0;
    if (status != -ECANCELED)
        sw_proxy_state_round(p->state, p->table, status, error);
    waiter_t *w = p->in_round;
    p->in_round = NULL;
    waiters_answer(w, status, error);
    if (!p->freeing && (p->again || p->waiting)) {
        p->again = false;
        round_start(p);
    }
}

static void on_applied(int status, unsigned changed, unsigned repaired, const char *error,
                       void *payload)
{
    sw_proxy_t *p = payload;
    round_end(p, p->freeing ? -ECANCELED : status, true, changed, repaired, error);
    unref(p);
}

static void on_table(int status, sw_routes_t *t, const char *error, void *payload)
{
    sw_proxy_t *p = payload;
    if (p->freeing || status != 0) {
        sw_routes_free(t);
        char why[300];
        snprintf(why, sizeof(why), "reading the routing table: %s",
                 error ? error : sw_strerror(status));
        round_end(p, p->freeing ? -ECANCELED : status, true, 0, 0, why);
        unref(p);
        return;
    }
    for (pin_t **pp = &p->pins; *pp;) {
        pin_t *pin = *pp;
        if (pin->settled_after && p->rounds > pin->settled_after) {
            *pp = pin->next; /* this round read the table after the settle */
            pin_free(pin);
            continue;
        }
        sw_routes_override(t, pin->app_id, pin->release, (const char *const *)pin->endpoints,
                           pin->n);
        pp = &pin->next;
    }
    sw_routes_free(p->table);
    p->table = t;
    if (p->dns) {
        sw_dns_set_routes(p->dns, t); /* a switch is live here first */
        sw_edge_set_routes(p->edge, t);
    }
    if (p->driver->ops->table_in_dns && p->applied && !p->check_due) {
        /* The DNS answer above was the whole change. Reading and comparing the proxy's
         * config for drift is left to the timer's rounds (and to what asks for it at once:
         * check_due). */
        round_end(p, 0, false, 0, 0, NULL);
        unref(p);
        return;
    }
    p->check_due = false;
    p->driver->ops->apply(p->driver, t, on_applied, p);
}

static void round_start(sw_proxy_t *p)
{
    if (p->running) {
        p->again = true;
        return;
    }
    p->running = true;
    p->rounds++;
    p->in_round = p->waiting;
    p->waiting = NULL;
    p->refs++;
    if (sw_routes_load(p->pg, p->cfg, on_table, p) != 0)
        on_table(-EAGAIN, NULL, "the database pool refused the query", p);
}

static void on_timer(uv_timer_t *t)
{
    sw_proxy_t *p = t->data;
    p->check_due = true;
    round_start(p);
}

static void on_changed(sw_pg_pool_t *pool, unsigned count, void *payload)
{
    (void)count;
    sw_proxy_t *p = payload;
    /* A bare NOTIFY slipway_routes (by hand: the triggers name their table) asks for a full
     * comparison now, as the timer's round would make. */
    if (sw_pg_pool_take_bare(pool))
        p->check_due = true;
    if (!p->freeing)
        round_start(p);
}

/* A new listening session may have missed notifications while it was down: read again. */
static void on_listen_state(sw_pg_pool_t *pool, void *payload)
{
    sw_proxy_t *p = payload;
    uint64_t session = sw_pg_pool_listen_session(pool);
    if (p->freeing || session == 0 || session == p->listen_session)
        return;
    p->listen_session = session;
    p->check_due = true;
    round_start(p);
}

static void on_listen_closed(void *payload)
{
    unref(payload);
}

/* ---- publish, verify, settle ---- */

static void on_answer_timer(uv_timer_t *t)
{
    sw_proxy_t *p = t->data;
    waiter_t *w = p->answered;
    p->answered = NULL;
    waiters_answer(w, 0, NULL);
}

void sw_proxy_publish(sw_proxy_t *p, const sw_proxy_release_t *rel, sw_proxy_cb cb, void *payload)
{
    waiter_t *w = sw_calloc(1, sizeof(*w));
    w->cb = cb;
    w->payload = payload;
    if (!p->active) {
        /* Nothing is driven: answered from the loop, at once. */
        w->next = p->waiting;
        p->waiting = w;
        uv_timer_start(&p->timer, on_tick, 0, 0);
        return;
    }
    unpin(p, rel->app_id);
    pin_t *pin = sw_calloc(1, sizeof(*pin));
    snprintf(pin->app_id, sizeof(pin->app_id), "%s", rel->app_id);
    snprintf(pin->release, sizeof(pin->release), "%s", rel->deployment_id);
    for (size_t i = 0; i < rel->nendpoints && pin->n < SW_ROUTE_MAX_ENDPOINTS; i++)
        pin->endpoints[pin->n++] = sw_strdup(rel->endpoints[i]);
    pin->next = p->pins;
    p->pins = pin;
    if (p->driver->ops->table_in_dns && p->applied && p->table) {
        /* The proxy serves whatever the DNS responder answers: it answers the new release
         * from now on, and the publish is done. The round below reads the table again
         * without holding it up (a proxy that drifted is compared again if the verify takes
         * long: on_verify_timer); one in flight meanwhile applies the pin to the table it
         * reads. Waiting for every round made every other switch at 1,000 routes wait one
         * or two whole rounds. */
        sw_routes_override(p->table, pin->app_id, pin->release, (const char *const *)pin->endpoints,
                           pin->n);
        w->next = p->answered;
        p->answered = w;
        uv_timer_start(&p->answer_timer, on_answer_timer, 0, 0);
        round_start(p);
        return;
    }
    w->next = p->waiting;
    p->waiting = w;
    round_start(p);
}

void sw_proxy_settle(sw_proxy_t *p, const char *app_id)
{
    if (!p->active)
        return;
    /* A round whose table was read before the database changed would otherwise serve the
     * previous release again: the pin stays for it. */
    for (pin_t *pin = p->pins; pin; pin = pin->next)
        if (strcmp(pin->app_id, app_id) == 0 && !pin->settled_after)
            pin->settled_after = p->rounds ? p->rounds : 1;
    round_start(p);
}

static void verify_free(verify_t *v)
{
    for (size_t i = 0; i < v->nhosts; i++)
        free(v->hosts[i]);
    free(v->path);
    free(v);
}

static void on_verify_timer_closed(uv_handle_t *h)
{
    verify_t *v = h->data;
    sw_proxy_t *p = v->p;
    verify_free(v);
    unref(p);
}

static void verify_end(verify_t *v, int status, const char *error)
{
    sw_proxy_t *p = v->p;
    for (verify_t **vp = &p->verifies; *vp; vp = &(*vp)->next)
        if (*vp == v) {
            *vp = v->next;
            break;
        }
    v->cb(status, error, v->payload);
    uv_close((uv_handle_t *)&v->timer, on_verify_timer_closed);
}

static void verify_next(verify_t *v);

static void on_probed(int status, const char *error, void *payload)
{
    verify_t *v = payload;
    v->probe = NULL;
    if (status != 0) {
        verify_end(v, status, error);
        return;
    }
    v->at++;
    verify_next(v);
}

static void verify_next(verify_t *v)
{
    if (v->at == v->nhosts) {
        verify_end(v, 0, NULL);
        return;
    }
    int r = sw_probe_start(v->p->loop, v->p->cfg, v->hosts[v->at], v->path, v->release,
                           v->timeout_ms, on_probed, v, &v->probe);
    if (r != 0)
        verify_end(v, r, "SLIPWAY_PROXY_HTTP is not an address the probe can reach");
}

/* The verify is slower than the proxy should need: whether the proxy drifted is asked now
 * rather than at the timer's round (a switch's own rounds leave Caddy's config alone, and a
 * Caddy restarted empty would otherwise fail the deployment until then). */
#define NUDGE_MIN_MS 250

static void on_verify_timer(uv_timer_t *t)
{
    verify_t *v = t->data;
    sw_proxy_t *p = v->p;
    if (v->started) {
        p->check_due = true;
        round_start(p);
        return;
    }
    v->started = true;
    if (p->active && p->driver->ops->table_in_dns)
        uv_timer_start(t, on_verify_timer, SW_MAX(2 * p->cfg->proxy_refresh_ms, NUDGE_MIN_MS), 0);
    verify_next(v);
}

void sw_proxy_verify(sw_proxy_t *p, const sw_proxy_release_t *rel, uint32_t timeout_ms,
                     sw_proxy_cb cb, void *payload)
{
    verify_t *v = sw_calloc(1, sizeof(*v));
    v->p = p;
    v->cb = cb;
    v->payload = payload;
    v->timeout_ms = timeout_ms;
    v->path = sw_strdup(rel->probe_path ? rel->probe_path : "/");
    snprintf(v->release, sizeof(v->release), "%s", rel->deployment_id);
    /* The hostnames the table routes to this app; the last round laid the pin over them. */
    for (size_t i = 0; p->active && p->table && i < p->table->n && v->nhosts < MAX_VERIFY_HOSTS;
         i++)
        if (strcmp(p->table->v[i].key, rel->app_id) == 0)
            v->hosts[v->nhosts++] = sw_strdup(p->table->v[i].host);
    uv_timer_init(p->loop, &v->timer);
    v->timer.data = v;
    p->refs++;
    v->next = p->verifies;
    p->verifies = v;
    uv_timer_start(&v->timer, on_verify_timer, 0, 0);
}

void sw_proxy_metrics(sw_buf_t *out, void *payload)
{
    (void)payload;
    sw_buf_printf(out,
                  "# HELP slipway_proxy_rounds_total Reconcile rounds of the edge proxy.\n"
                  "# TYPE slipway_proxy_rounds_total counter\n"
                  "slipway_proxy_rounds_total %lu\n"
                  "# HELP slipway_proxy_changes_total Proxy routes changed to match the table.\n"
                  "# TYPE slipway_proxy_changes_total counter\n"
                  "slipway_proxy_changes_total %lu\n"
                  "# HELP slipway_proxy_repairs_total Routes repaired after the proxy drifted.\n"
                  "# TYPE slipway_proxy_repairs_total counter\n"
                  "slipway_proxy_repairs_total %lu\n"
                  "# HELP slipway_proxy_failures_total Rounds that could not update the proxy.\n"
                  "# TYPE slipway_proxy_failures_total counter\n"
                  "slipway_proxy_failures_total %lu\n",
                  atomic_load(&rounds_total), atomic_load(&changes_total),
                  atomic_load(&repairs_total), atomic_load(&failures_total));
}

/* ---- life ---- */

int sw_proxy_new(sw_proxy_t **out, uv_loop_t *loop, const sw_config_t *cfg, sw_pg_pool_t *pg,
                 char *why, size_t why_len)
{
    sw_proxy_t *p = sw_calloc(1, sizeof(*p));
    p->loop = loop;
    p->cfg = cfg;
    p->pg = pg;
    sw_driver_env_t env = {.loop = loop, .cfg = cfg};
    int r;
    if (strcmp(cfg->proxy, "caddy") == 0) {
        r = sw_dns_new(&p->dns, loop, cfg->proxy_dns, why, why_len);
        /* the edge on the same address, over TCP (the DNS responder names it) */
        if (r == 0)
            r = sw_edge_new(&p->edge, loop, sw_dns_address(p->dns), why, why_len);
        if (r == 0) {
            env.dns_address = sw_dns_address(p->dns);
            env.edge_address = sw_edge_address(p->edge);
            r = sw_proxy_caddy_new(&p->driver, &env, why, why_len);
        }
    } else if (strcmp(cfg->proxy, "nginx") == 0) {
        r = sw_proxy_nginx_new(&p->driver, &env, why, why_len);
    } else if (strcmp(cfg->proxy, "none") == 0) {
        r = sw_proxy_none_new(&p->driver, &env, why, why_len);
    } else {
        snprintf(why, why_len, "SLIPWAY_PROXY %s is not a driver (none, caddy)", cfg->proxy);
        r = -EINVAL;
    }
    if (r != 0) {
        if (p->edge)
            sw_edge_close(p->edge, NULL, NULL);
        if (p->dns)
            sw_dns_close(p->dns, (void (*)(void *))free, p);
        else
            free(p);
        return r;
    }
    p->active = strcmp(cfg->proxy, "none") != 0;
    uv_timer_init(loop, &p->timer);
    uv_timer_init(loop, &p->answer_timer);
    p->answer_timer.data = p;
    p->timer.data = p;
    p->refs = 2 + (p->dns ? 2 : 0); /* the timers; the DNS responder and the edge */
    if (p->active) {
        sw_pg_pool_opts_t lo = {
            .conninfo = cfg->database_url,
            .size = 1,
            .query_timeout_ms = cfg->pg_query_timeout_ms,
            .connect_timeout_ms = cfg->pg_connect_timeout_ms,
            .on_state = on_listen_state,
            .payload = p,
            .listen_channel = SW_PROXY_CHANNEL,
            .on_notify = on_changed,
        };
        p->state = sw_proxy_state_new(loop, cfg, pg);
        if (p->dns)
            sw_dns_on_log(p->dns, on_caddy_log, p);
        if (sw_pg_pool_new(&p->listen, loop, &lo) == 0)
            p->refs++;
        else
            p->listen = NULL; /* the timer alone, then */
        uv_timer_start(&p->timer, on_tick, 0, cfg->proxy_reconcile_ms);
    }
    *out = p;
    return 0;
}

/* The periodic round; also answers publishes while no driver routes anything. */
static void on_tick(uv_timer_t *t)
{
    sw_proxy_t *p = t->data;
    if (!p->active) {
        waiter_t *w = p->waiting;
        p->waiting = NULL;
        waiters_answer(w, 0, NULL);
        return;
    }
    on_timer(t);
}

void sw_proxy_free(sw_proxy_t *p)
{
    if (!p)
        return;
    p->freeing = true;
    if (p->listen)
        sw_pg_pool_close(p->listen, on_listen_closed, p);
    while (p->verifies) {
        verify_t *v = p->verifies;
        if (v->probe)
            sw_probe_cancel(v->probe); /* on_probed ends it */
        else
            verify_end(v, -ECANCELED, "stopped");
    }
    waiter_t *w = p->waiting;
    p->waiting = NULL;
    waiters_answer(w, -ECANCELED, "stopped");
    while (p->pins) {
        pin_t *pin = p->pins;
        p->pins = pin->next;
        pin_free(pin);
    }
    p->driver->ops->free(p->driver); /* a round in flight calls back with -ECANCELED */
    sw_proxy_state_free(p->state);
    if (p->dns) {
        sw_dns_close(p->dns, on_dns_closed, p);
        sw_edge_close(p->edge, on_dns_closed, p);
    }
    w = p->answered;
    p->answered = NULL;
    waiters_answer(w, -ECANCELED, "stopped");
    uv_close((uv_handle_t *)&p->timer, on_handle_closed);
    uv_close((uv_handle_t *)&p->answer_timer, on_handle_closed);
}
