/* The HTTP role's lifetime: route table, credentials, limits, the HTTP server, drain. The node
 * (src/node/) makes it, hands it the backends, and tells it what it learns. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "slipway/cache.h"
#include "slipway/live_access.h"
#include "slipway/log.h"
#include "slipway/ratelimit.h"
#include "slipway/tls.h"

static void on_drained(sw_http_server_t *server, void *payload)
{
    sw_api_t *api = payload;
    (void)server;
    if (api->on_drained)
        api->on_drained(api->stop_payload);
}

int sw_api_new(sw_api_t **out, const sw_api_opts_t *o)
{
    char err[256];
    int r;
    sw_api_t *api = sw_calloc(1, sizeof(*api));
    const sw_config_t *cfg = o->cfg;

    *out = api;
    api->loop = o->loop;
    api->cfg = cfg;
    api->pg = o->pg;
    api->redis = o->redis;
    api->metrics = o->metrics;
    api->box = o->box;
    api->node = o->node;
    api->health = o->health;
    api->load_json = o->load_json;
    api->load_payload = o->payload;

    r = sw_router_new(&api->router, sw_api_routes, sw_api_routes_count, err, sizeof(err));
    if (r != 0) {
        sw_log_kv(SW_LOG_ERROR, NULL, "route table is invalid", "error", err, NULL);
        return r;
    }
    sw_auth_opts_t ao = {
        .session_idle_s = SW_SESSION_IDLE_S,
        .session_absolute_s = SW_SESSION_ABSOLUTE_S,
        .cache_max = 10000,
    };
    r = sw_auth_new(&api->auth, api->loop, api->pg, api->redis, &ao);
    if (r != 0) {
        sw_log_kv(SW_LOG_ERROR, NULL, "cannot start the session cache", "error", sw_strerror(r),
                  NULL);
        return r;
    }
    /* Five failed logins a minute per address and per account; they never switch off. */
    api->login_by_address = sw_ratelimit_new(5, 60000, 5, 100000);
    api->login_by_account = sw_ratelimit_new(5, 60000, 5, 100000);
    sw_api_url_origin(cfg->public_url, api->public_origin, sizeof(api->public_origin));
    api->limits = sw_api_limits_new(cfg);

    sw_http_server_opts_t ho = {
        .max_header_bytes = cfg->max_header_bytes,
        .max_headers = cfg->max_headers,
        .max_body_bytes = cfg->max_body_bytes,
        .max_connections = cfg->max_connections,
        .max_pipelined = cfg->max_pipelined,
        .header_timeout_ms = cfg->header_timeout_ms,
        .body_timeout_ms = cfg->body_timeout_ms,
        .idle_timeout_ms = cfg->idle_timeout_ms,
        .drain_timeout_ms = cfg->drain_timeout_ms,
        .reuse_port = cfg->http_workers > 1,
        .on_request = sw_api_on_request,
        .on_response = sw_api_on_response,
        .on_drained = on_drained,
        .payload = api,
    };
    sw_http_server_new(&api->http, api->loop, &ho);
    if (cfg->tls_cert_file[0]) {
        r = sw_api_reload_tls(api);
        if (r != 0)
            return r;
    }

    if (cfg->read_cache) {
        r = sw_api_read_cache_start(api);
        if (r != 0) {
            sw_log_kv(SW_LOG_ERROR, NULL, "cannot start the read cache's listener", "error",
                      sw_strerror(r), NULL);
            return r;
        }
    }
    sw_metrics_add_collector(api->metrics, sw_api_read_cache_metrics, api);
    sw_metrics_add_collector(api->metrics, sw_api_live_metrics, api);
    uv_timer_init(api->loop, &api->metrics_timer);
    api->metrics_timer.data = api;
    return 0;
}

int sw_api_listen(sw_api_t *api)
{
    int r;
    char *list = sw_strdup(api->cfg->listen), *save = NULL;
    for (char *item = strtok_r(list, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        r = sw_http_server_listen(api->http, item);
        if (r != 0) {
            sw_log_kv(SW_LOG_ERROR, NULL, "cannot listen", "address", item, "error", sw_strerror(r),
                      NULL);
            free(list);
            return r;
        }
    }
    free(list);
    for (unsigned i = 0;; i++) {
        char addr[80];
        if (sw_http_server_address(api->http, i, addr, sizeof(addr)) != 0)
            break;
        sw_log_kv(SW_LOG_INFO, NULL, "listening", "address", addr, NULL);
    }
    return 0;
}

int sw_api_reload_tls(sw_api_t *api)
{
    const sw_config_t *cfg = api->cfg;
    struct ssl_ctx_st *ctx = NULL;
    char why[768];
    if (!cfg->tls_cert_file[0])
        return 0;
    bool first = !api->tls_loaded;
    int r = sw_tls_server_ctx_new(&ctx, cfg->tls_cert_file, cfg->tls_key_file, why, sizeof(why));
    if (r != 0) {
        sw_log_kv(SW_LOG_ERROR, NULL,
                  first ? "cannot load the TLS certificate"
                        : "TLS certificate reload failed; keeping the current one",
                  "error", why, NULL);
        return r;
    }
    sw_http_server_set_tls(api->http, ctx);
    sw_tls_ctx_free(ctx);
    api->tls_loaded = true;
    if (!first)
        sw_log_kv(SW_LOG_INFO, NULL, "TLS certificate reloaded", "file", cfg->tls_cert_file, NULL);
    return 0;
}

void sw_api_set_migrated(sw_api_t *api)
{
    api->migrated = true;
}

void sw_api_set_hub(sw_api_t *api, struct sw_hub *hub)
{
    api->hub = hub;
}

void sw_api_http_stats(const sw_api_t *api, sw_http_server_stats_t *out)
{
    sw_http_server_stats(api->http, out);
}

/* ---- stopping ---- */

void sw_api_drain(sw_api_t *api, void (*on_drained_cb)(void *payload), void *payload)
{
    if (api->stopping)
        return;
    api->stopping = true;
    api->on_drained = on_drained_cb;
    api->stop_payload = payload;
    uv_timer_stop(&api->metrics_timer);
    if (api->listen_pg)
        uv_timer_stop(&api->read_cache_ping);
    sw_http_server_drain(api->http);
}

static void closed_one(sw_api_t *api)
{
    if (--api->closes_pending > 0)
        return;
    sw_http_server_free(api->http);
    sw_router_free(api->router);
    sw_buf_free(&api->openapi);
    sw_cache_free(api->read_cache);
    void (*cb)(void *) = api->on_closed;
    void *payload = api->stop_payload;
    free(api);
    if (cb)
        cb(payload);
}

static void on_handle_closed(uv_handle_t *h)
{
    closed_one(h->data);
}

static void on_backend_closed(void *payload)
{
    closed_one(payload);
}

void sw_api_close(sw_api_t *api, void (*on_closed)(void *payload), void *payload)
{
    api->on_closed = on_closed;
    api->stop_payload = payload;
    api->closes_pending = 1;
    uv_close((uv_handle_t *)&api->metrics_timer, on_handle_closed);
    if (api->branches) {
        api->closes_pending++;
        sw_api_branches_close(api->branches, on_backend_closed, api);
    }
    sw_live_access_free(api->live_access);
    api->live_access = NULL;
    if (api->listen_pg) {
        api->closes_pending += 2;
        api->read_cache_ping.data = api;
        uv_close((uv_handle_t *)&api->read_cache_ping, on_handle_closed);
        sw_pg_pool_close(api->listen_pg, on_backend_closed, api);
        api->listen_pg = NULL;
    }
    sw_auth_free(api->auth);
    api->auth = NULL;
    sw_ratelimit_free(api->login_by_address);
    sw_ratelimit_free(api->login_by_account);
    api->login_by_address = api->login_by_account = NULL;
    sw_api_limits_free(api->limits);
    api->limits = NULL;
}
