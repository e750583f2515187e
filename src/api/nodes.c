/* Nodes (DESIGN.md §5): every slipwayd process keeps a row in nodes (src/node/heartbeat.c)
 * and GET nodes reads them. GET system/metrics answers this node's metrics now. */
#include <stdio.h>
#include <string.h>

#include "slipway/api.h"
#include "slipway/log.h"

#include "internal.h"

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
