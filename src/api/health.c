/* /health, /ready and /metrics. Backend checks run in the background about once a second
 * and on every connection state change, so answering a probe or a scrape costs no query. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "slipway/api.h"
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
    sw_api_t *api = payload;
    (void)res;
    if (status == SW_ECANCELED)
        return;
    switch (status) {
    case 0:
        check_end(&api->db_check, "database", true, NULL);
        break;
    case -ETIMEDOUT:
        check_end(&api->db_check, "database", false, "database check timed out");
        break;
    case SW_EUNAVAIL:
        check_end(&api->db_check, "database", false, "database unavailable");
        break;
    default:
        check_end(&api->db_check, "database", false, "database check failed");
        break;
    }
}

static void on_redis_checked(int status, const sw_redis_reply_t *reply, void *payload)
{
    sw_api_t *api = payload;
    if (status == SW_ECANCELED)
        return;
    if (status == 0 && reply && reply->type != SW_REDIS_ERROR)
        check_end(&api->redis_check, "redis", true, NULL);
    else if (status == -ETIMEDOUT)
        check_end(&api->redis_check, "redis", false, "redis check timed out");
    else if (status == 0)
        check_end(&api->redis_check, "redis", false, "redis answered with an error");
    else
        check_end(&api->redis_check, "redis", false, "redis unavailable");
}

static void run_checks(uv_timer_t *t)
{
    sw_api_t *api = sw_container_of(t, sw_api_t, health_timer);
    if (api->stopping)
        return;
    if (!api->db_check.in_flight) {
        check_begin(&api->db_check);
        if (sw_pg_query(api->pg, "SELECT 1", 0, NULL, on_db_checked, api) != 0)
            check_end(&api->db_check, "database", false, "database check could not be sent");
    }
    if (!api->redis_check.in_flight) {
        static const char *argv[] = {"PING"};
        static const size_t argvlen[] = {4};
        check_begin(&api->redis_check);
        if (sw_redis_command(api->redis, on_redis_checked, api, 1, argv, argvlen) != 0)
            check_end(&api->redis_check, "redis", false, "redis check could not be sent");
    }
}

void sw_api_health_start(sw_api_t *api)
{
    uv_timer_start(&api->health_timer, run_checks, 0, api->cfg->health_interval_ms);
}

void sw_api_health_kick(sw_api_t *api)
{
    if (api->stopping)
        return;
    /* Not from inside the backend's own callback: a zero timeout runs it on the next turn. */
    uv_timer_start(&api->health_timer, run_checks, 0, api->cfg->health_interval_ms);
}

static json_t *check_json(const sw_health_check_t *c)
{
    if (!c->ran)
        return json_pack("{s:s, s:s}", "status", "error", "error", "not checked yet");
    if (c->ok)
        return json_pack("{s:s, s:f}", "status", "ok", "latency_ms",
                         (double)(long long)(c->latency_ms * 1000.0) / 1000.0);
    return json_pack("{s:s, s:s}", "status", "error", "error", c->error);
}

void sw_api_get_health(sw_http_req_t *req, void *ctx)
{
    sw_api_t *api = ctx;
    bool ok = api->db_check.ok && api->db_check.ran && api->redis_check.ok && api->redis_check.ran;
    json_t *body =
        json_pack("{s:s, s:{s:o, s:o}}", "status", ok ? "ok" : "error", "checks", "database",
                  check_json(&api->db_check), "redis", check_json(&api->redis_check));
    sw_http_add_header(req, "Cache-Control", "no-store");
    sw_http_respond_json(req, ok ? 200 : 503, body);
}

void sw_api_get_ready(sw_http_req_t *req, void *ctx)
{
    sw_api_t *api = ctx;
    sw_http_add_header(req, "Cache-Control", "no-store");
    if (api->migrated && !api->stopping) {
        sw_http_respond_json(req, 200, json_pack("{s:s}", "status", "ready"));
        return;
    }
    sw_http_respond_error(req, 503, "SERVICE_UNAVAILABLE",
                          api->stopping ? "shutting down" : "migrations have not been applied yet",
                          NULL);
}

void sw_api_get_metrics(sw_http_req_t *req, void *ctx)
{
    sw_api_t *api = ctx;
    sw_buf_t out = SW_BUF_INIT;
    sw_metrics_render(api->metrics, &out);
    sw_http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", out.base, out.len);
    sw_buf_free(&out);
}
