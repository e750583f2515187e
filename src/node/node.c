/* One slipwayd process: its backends, its name, its metrics, and the roles SLIPWAY_ROLE asks
 * for. A worker-only process builds no HTTP server, router or session cache. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "slipway/log.h"

/* ---- backends ---- */

static void on_pg_state(sw_pg_pool_t *pool, void *payload)
{
    sw_node_t *node = payload;
    (void)pool;
    sw_health_kick(&node->health);
}

static void on_redis_state(sw_redis_t *r, void *payload)
{
    sw_node_t *node = payload;
    (void)r;
    sw_health_kick(&node->health);
}

static void collect_worker(sw_buf_t *out, void *payload)
{
    sw_node_t *node = payload;
    if (node->worker)
        sw_worker_metrics(out, node->worker);
}

static void collect_backends(sw_buf_t *out, void *payload)
{
    sw_node_t *node = payload;
    sw_pg_pool_stats_t st;
    sw_http_server_stats_t hs = {0};
    sw_pg_pool_stats(node->pg, &st);
    if (node->api)
        sw_api_http_stats(node->api, &hs);
    sw_buf_printf(out,
                  "# HELP slipway_pg_pool_connections PostgreSQL pool connections by state.\n"
                  "# TYPE slipway_pg_pool_connections gauge\n"
                  "slipway_pg_pool_connections{state=\"idle\"} %u\n"
                  "slipway_pg_pool_connections{state=\"busy\"} %u\n"
                  "slipway_pg_pool_connections{state=\"connecting\"} %u\n"
                  "slipway_pg_pool_connections{state=\"down\"} %u\n"
                  "# HELP slipway_pg_pool_queued Queries waiting for a connection.\n"
                  "# TYPE slipway_pg_pool_queued gauge\n"
                  "slipway_pg_pool_queued %llu\n"
                  "# HELP slipway_redis_up Whether the Redis command connection is up.\n"
                  "# TYPE slipway_redis_up gauge\n"
                  "slipway_redis_up %d\n"
                  "# HELP slipway_redis_subscriber_up Whether the Redis subscription connection "
                  "is up.\n"
                  "# TYPE slipway_redis_subscriber_up gauge\n"
                  "slipway_redis_subscriber_up %d\n"
                  "# HELP slipway_http_connections Open HTTP connections.\n"
                  "# TYPE slipway_http_connections gauge\n"
                  "slipway_http_connections %llu\n"
                  "# HELP slipway_http_connections_rejected_total Connections refused over the "
                  "cap.\n"
                  "# TYPE slipway_http_connections_rejected_total counter\n"
                  "slipway_http_connections_rejected_total %llu\n",
                  st.idle, st.busy, st.connecting, st.down, (unsigned long long)st.queued,
                  sw_redis_up(node->redis) ? 1 : 0, sw_redis_subscriber_up(node->redis) ? 1 : 0,
                  (unsigned long long)hs.connections, (unsigned long long)hs.rejected);
    sw_buf_append_cstr(out, "# HELP slipway_pg_query_duration_seconds Time from sending a "
                            "query to its outcome.\n"
                            "# TYPE slipway_pg_query_duration_seconds histogram\n");
    sw_histogram_render(sw_pg_pool_durations(node->pg), out, "slipway_pg_query_duration_seconds",
                        "");
}

/* Backends and the secret box: what every role uses. */
static int backends_start(sw_node_t *node)
{
    const sw_config_t *cfg = node->cfg;
    int r;
    sw_pg_pool_opts_t pgo = {
        .conninfo = cfg->database_url,
        .size = cfg->pg_pool_size,
        .query_timeout_ms = cfg->pg_query_timeout_ms,
        .connect_timeout_ms = cfg->pg_connect_timeout_ms,
        .on_state = on_pg_state,
        .payload = node,
    };
    r = sw_pg_pool_new(&node->pg, node->loop, &pgo);
    if (r != 0) {
        sw_log_kv(SW_LOG_ERROR, NULL, "cannot create the PostgreSQL pool", "error", sw_strerror(r),
                  NULL);
        return r;
    }
    sw_redis_opts_t ro = {
        .url = cfg->redis_url,
        .timeout_ms = cfg->redis_timeout_ms,
        .on_state = on_redis_state,
        .payload = node,
    };
    r = sw_redis_new(&node->redis, node->loop, &ro);
    if (r != 0) {
        sw_log_kv(SW_LOG_ERROR, NULL, "cannot create the Redis client", "error", sw_strerror(r),
                  NULL);
        return r;
    }

    char kerr[256];
    r = sw_secretbox_load(&node->box, cfg->master_key, cfg->data_dir, kerr, sizeof(kerr));
    if (r != 0) {
        sw_log_kv(SW_LOG_ERROR, NULL, "cannot load the master key", "error", kerr, NULL);
        return r;
    }
    return 0;
}

/* This process in leases and node_id. */
static void node_name(sw_node_t *node)
{
    const sw_config_t *cfg = node->cfg;
    const char *host = getenv("HOSTNAME");
    char hostname[128] = "";
    if (gethostname(hostname, sizeof(hostname) - 1) != 0)
        snprintf(hostname, sizeof(hostname), "%s", host ? host : "node");
    /* A configured node name is stable across restarts, so a restarted worker recognises the
     * deployments it owned; without one, the process id keeps several local workers apart. */
    if (cfg->node_name[0])
        snprintf(node->name, sizeof(node->name), "%s-%u", cfg->node_name, node->worker_index);
    else
        snprintf(node->name, sizeof(node->name), "%s-%d", hostname, (int)getpid());
}

int sw_node_start(sw_node_t **out, uv_loop_t *loop, const sw_config_t *cfg, unsigned worker_index)
{
    int r;
    sw_node_t *node = sw_calloc(1, sizeof(*node));

    *out = node;
    node->loop = loop;
    node->cfg = cfg;
    uv_timeval64_t now;
    if (uv_gettimeofday(&now) == 0)
        node->started_at_ms = (uint64_t)now.tv_sec * 1000u + (uint64_t)now.tv_usec / 1000u;
    node->worker_index = worker_index;
    node->metrics = sw_metrics_new();
    node_name(node);

    r = backends_start(node);
    if (r != 0)
        return r;
    sw_metrics_add_collector(node->metrics, collect_backends, node);
    if (cfg->role != SW_NODE_WORKER) {
        sw_api_opts_t ao = {
            .loop = loop,
            .cfg = cfg,
            .pg = node->pg,
            .redis = node->redis,
            .metrics = node->metrics,
            .box = &node->box,
            .node = node->name,
            .health = &node->health,
            .load_json = sw_node_load_json,
            .payload = node,
        };
        r = sw_api_new(&node->api, &ao);
        if (r != 0)
            return r;
    }
    sw_metrics_add_collector(node->metrics, collect_worker, node);
    sw_metrics_add_collector(node->metrics, sw_metrics_process, NULL);
    sw_metrics_add_collector(node->metrics, sw_proxy_metrics, NULL);

    uv_timer_init(loop, &node->migrate_timer);
    sw_node_migrate_schedule(node);
    sw_health_start(&node->health, loop, node->pg, node->redis, cfg->health_interval_ms);

    if (node->api)
        return sw_api_listen(node->api);
    return 0; /* a worker-only process serves no HTTP */
}

void sw_node_reload(sw_node_t *node)
{
    if (node->api)
        (void)sw_api_reload_tls(node->api); /* it logs why a bad pair is not taken */
}
