/* The backend checks behind /health: run in the background about once a second and on every
 * connection state change, so answering a probe or a scrape costs no query. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "slipway/health.h"
#include "slipway/log.h"

static void check_begin(sw_health_check_t *c)
{
    c->in_flight = true;
    c->started_ns = sw_now_ns();
}

/* Records a result; logs when a check that has run before changes state. */
static void check_end(sw_health_check_t *c, const char *name, bool ok, const char *error)
{
    bool changed = c->ran && c->ok != ok;
    c->in_flight = false;
    c->ran = true;
    c->ok = ok;
    c->latency_ms = (double)(sw_now_ns() - c->started_ns) / 1e6;
    snprintf(c->error, sizeof(c->error), "%s", ok ? "" : error);
    if (changed)
        sw_log_kv(ok ? SW_LOG_INFO : SW_LOG_WARN, NULL, "health check changed", "check", name,
                  "status", ok ? "ok" : "error", NULL);
}

static void on_db_checked(int status, sw_pg_result_t *res, void *payload)
{
    sw_health_t *h = payload;
    (void)res;
    if (status == SW_ECANCELED)
        return;
    switch (status) {
    case 0:
        check_end(&h->db, "database", true, NULL);
        break;
    case -ETIMEDOUT:
        check_end(&h->db, "database", false, "database check timed out");
        break;
    case SW_EUNAVAIL:
        check_end(&h->db, "database", false, "database unavailable");
        break;
    default:
        check_end(&h->db, "database", false, "database check failed");
        break;
    }
}

static void on_redis_checked(int status, const sw_redis_reply_t *reply, void *payload)
{
    sw_health_t *h = payload;
    if (status == SW_ECANCELED)
        return;
    if (status == 0 && reply && reply->type != SW_REDIS_ERROR)
        check_end(&h->redis, "redis", true, NULL);
    else if (status == -ETIMEDOUT)
        check_end(&h->redis, "redis", false, "redis check timed out");
    else if (status == 0)
        check_end(&h->redis, "redis", false, "redis answered with an error");
    else
        check_end(&h->redis, "redis", false, "redis unavailable");
}

static void run_checks(uv_timer_t *t)
{
    sw_health_t *h = sw_container_of(t, sw_health_t, timer);
    if (h->stopping)
        return;
    if (!h->db.in_flight) {
        check_begin(&h->db);
        if (sw_pg_query(h->pg, "SELECT 1", 0, NULL, on_db_checked, h) != 0)
            check_end(&h->db, "database", false, "database check could not be sent");
    }
    if (!h->redis.in_flight) {
        static const char *argv[] = {"PING"};
        static const size_t argvlen[] = {4};
        check_begin(&h->redis);
        if (sw_redis_command(h->redis_client, on_redis_checked, h, 1, argv, argvlen) != 0)
            check_end(&h->redis, "redis", false, "redis check could not be sent");
    }
}

void sw_health_start(sw_health_t *h, uv_loop_t *loop, sw_pg_pool_t *pg, sw_redis_t *redis,
                     unsigned interval_ms)
{
    h->pg = pg;
    h->redis_client = redis;
    h->interval_ms = interval_ms;
    uv_timer_init(loop, &h->timer);
    uv_timer_start(&h->timer, run_checks, 0, h->interval_ms);
}

void sw_health_kick(sw_health_t *h)
{
    if (h->stopping)
        return;
    /* Not from inside the backend's own callback: a zero timeout runs it on the next turn. */
    uv_timer_start(&h->timer, run_checks, 0, h->interval_ms);
}

void sw_health_stop(sw_health_t *h)
{
    h->stopping = true;
    uv_timer_stop(&h->timer);
}

void sw_health_close(sw_health_t *h, uv_close_cb on_closed, void *data)
{
    h->timer.data = data;
    uv_close((uv_handle_t *)&h->timer, on_closed);
}
