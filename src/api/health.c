/* /health, /ready and /metrics. The node runs the backend checks in the background
 * (src/node/health.c), so answering a probe or a scrape costs no query. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "slipway/api.h"
#include "slipway/log.h"

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
    const sw_health_t *h = api->health;
    bool ok = h->db.ok && h->db.ran && h->redis.ok && h->redis.ran;
    json_t *body = json_pack("{s:s, s:{s:o, s:o}}", "status", ok ? "ok" : "error", "checks",
                             "database", check_json(&h->db), "redis", check_json(&h->redis));
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
