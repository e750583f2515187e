/* Nodes (DESIGN.md §5): every slipwayd process keeps a row in nodes - registered once the
 * migrations ran, refreshed every SLIPWAY_NODE_HEARTBEAT_MS with its load and the instances
 * it supervises, marked stopped when it drains - and GET nodes reads them. GET system/metrics
 * answers this node's metrics now. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slipway/api.h"
#include "slipway/log.h"

#include "internal.h"
#include "sw_version.h"

#define NODE_KEEP "1 day" /* a node not heard from for this long is removed */

struct sw_api_nodes {
    sw_api_t *api;
    uv_timer_t timer;
    bool in_flight; /* one heartbeat at a time: a slow database skips beats, never queues */
    bool stopping;
    bool failing; /* the last heartbeat failed: logged once until one succeeds */
    void (*on_stopped)(void *payload);
    void *payload;
};

static void on_timer_closed(uv_handle_t *h)
{
    sw_api_nodes_t *n = h->data;
    void (*cb)(void *) = n->on_stopped;
    void *payload = n->payload;
    free(n);
    if (cb)
        cb(payload);
}

static void on_stop_written(int status, sw_pg_result_t *res, void *payload)
{
    sw_api_nodes_t *n = payload;
    if (status != 0)
        sw_log_kv(SW_LOG_WARN, NULL, "this node was not marked stopped", "error",
                  res ? sw_pg_result_error(res) : sw_strerror(status), NULL);
    uv_close((uv_handle_t *)&n->timer, on_timer_closed);
}

/* The last word: stopped, with nothing running. */
static void send_stop(sw_api_nodes_t *n)
{
    const char *params[] = {n->api->node};
    if (sw_pg_query(n->api->pg,
                    "UPDATE nodes SET stopped_at = now(), heartbeat_at = now(), instances = '[]' "
                    "WHERE name = $1",
                    1, params, on_stop_written, n) != 0)
        uv_close((uv_handle_t *)&n->timer, on_timer_closed);
}

static void on_beat(int status, sw_pg_result_t *res, void *payload)
{
    sw_api_nodes_t *n = payload;
    n->in_flight = false;
    if (status != 0 && !n->failing)
        sw_log_kv(SW_LOG_WARN, NULL, "node heartbeat failed", "error",
                  res ? sw_pg_result_error(res) : sw_strerror(status), NULL);
    else if (status == 0 && n->failing)
        sw_log(SW_LOG_INFO, NULL, "node heartbeat written again");
    n->failing = status != 0;
    if (n->stopping)
        send_stop(n);
}

static void beat(sw_api_nodes_t *n)
{
    sw_api_t *api = n->api;
    if (n->in_flight || n->stopping)
        return;
    sw_buf_t load = SW_BUF_INIT, instances = SW_BUF_INIT;
    sw_api_system_metrics_json(api, &load);
    sw_worker_instances_json(api->worker ? api->worker : api->worker_draining, &instances);
    char started[32], every[16];
    snprintf(started, sizeof(started), "%.3f", (double)api->started_at_ms / 1000.0);
    snprintf(every, sizeof(every), "%u", api->cfg->node_heartbeat_ms);
    const char *listen = api->cfg->role == SW_NODE_WORKER ? "" : api->cfg->listen;
    const char *params[] = {api->node,  sw_node_role_name(api->cfg->role),
                            SW_VERSION, started,
                            every,      listen,
                            load.base,  instances.base};
    n->in_flight =
        sw_pg_query(api->pg,
                    "WITH gone AS (DELETE FROM nodes WHERE heartbeat_at < now() - "
                    "interval '" NODE_KEEP "' AND name <> $1) "
                    "INSERT INTO nodes (name, role, version, started_at, heartbeat_at, "
                    "heartbeat_ms, listen, load, instances, stopped_at) VALUES ($1, $2, $3, "
                    "to_timestamp($4::double precision), now(), $5::int, $6, $7::jsonb, "
                    "$8::jsonb, NULL) ON CONFLICT (name) DO UPDATE SET role = EXCLUDED.role, "
                    "version = EXCLUDED.version, started_at = EXCLUDED.started_at, "
                    "heartbeat_at = now(), heartbeat_ms = EXCLUDED.heartbeat_ms, "
                    "listen = EXCLUDED.listen, load = EXCLUDED.load, "
                    "instances = EXCLUDED.instances, stopped_at = NULL "
                    /* a late beat of this process never undoes its stop */
                    "WHERE nodes.stopped_at IS NULL "
                    "OR nodes.started_at IS DISTINCT FROM EXCLUDED.started_at",
                    8, params, on_beat, n) == 0;
    sw_buf_free(&load);
    sw_buf_free(&instances);
}

static void on_timer(uv_timer_t *t)
{
    beat(t->data);
}

sw_api_nodes_t *sw_api_nodes_start(sw_api_t *api)
{
    sw_api_nodes_t *n = sw_calloc(1, sizeof(*n));
    n->api = api;
    uv_timer_init(api->loop, &n->timer);
    n->timer.data = n;
    uv_timer_start(&n->timer, on_timer, 0, api->cfg->node_heartbeat_ms);
    return n;
}

void sw_api_nodes_stop(sw_api_nodes_t *n, void (*on_stopped)(void *payload), void *payload)
{
    n->stopping = true;
    n->on_stopped = on_stopped;
    n->payload = payload;
    uv_timer_stop(&n->timer);
    if (!n->in_flight)
        send_stop(n); /* otherwise the beat's answer sends it, so the stop is written last */
}

/* ---- GET nodes, GET nodes/:id ---- */

static const sw_api_sort_t node_sorts[] = {
    {"name", "x.name"},
    {"started_at", "x.started_at"},
    {"heartbeat_at", "x.heartbeat_at"},
    {NULL, NULL},
};

static const char *const node_roles[] = {"api", "worker", "all", NULL};
static const char *const node_statuses[] = {"up", "lost", "stopped", NULL};

static const sw_api_filter_t node_filters[] = {
    {"role", "x.role = $%d", node_roles, 0},
    {"status", "sw_node_status(x) = $%d", node_statuses, 0},
    {NULL, NULL, NULL, 0},
};

void sw_api_nodes_list(sw_http_req_t *req, void *ctx)
{
    const char *filters[SW_API_FILTERS_MAX];
    if (!sw_api_filters_read(req, node_filters, filters))
        return;
    sw_api_list_t l = {.from = "nodes",
                       .json_expr = "sw_node_json(x)",
                       .sorts = node_sorts,
                       .default_sort = "name:asc"};
    sw_api_filters_apply(&l, node_filters, filters);
    sw_api_list_run(ctx, req, &l);
}

void sw_api_nodes_get(sw_http_req_t *req, void *ctx)
{
    sw_api_t *api = ctx;
    sw_iov_t id = sw_http_req_param(req, "id");
    if (!sw_iov_is_uuid(id)) {
        sw_http_respond_error(req, 404, "RESOURCE_NOT_FOUND", "no such node", NULL);
        return;
    }
    const char *params[] = {sw_arena_iovdup(&req->arena, id).base};
    sw_api_exec(api, req, "SELECT sw_node_json(n) FROM nodes n WHERE n.id = $1", 1, params, 200,
                "no such node", NULL);
}

/* ---- GET system/metrics ---- */

void sw_api_system_metrics(sw_http_req_t *req, void *ctx)
{
    sw_buf_t out = SW_BUF_INIT;
    sw_api_system_metrics_json(ctx, &out);
    sw_api_respond_text(req, 200, out.base);
    sw_buf_free(&out);
}
