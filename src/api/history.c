/* GET system/metrics/history: one metric of every node (or one) over the last time_range, in
 * buckets of step seconds, aggregated per node and over all of them, from the samples each node
 * stores in node_metrics (src/node/sampler.c). */
#include <stdio.h>
#include <string.h>

#include "slipway/history.h"

#include "internal.h"

typedef struct {
    const char *name;
    const char *unit;
    const char *expr; /* over node_metrics m; a constant, never request data */
} metric_t;

static const metric_t metrics[] = {
    {"cpu_percent", "percent", "m.cpu_percent"},
    {"load_1m", "load", "m.load_1m"},
    {"memory_used_bytes", "bytes", "m.memory_total_bytes - m.memory_available_bytes"},
    {"memory_used_percent", "percent",
     "100 * (m.memory_total_bytes - m.memory_available_bytes) / nullif(m.memory_total_bytes, 0)"},
    {"disk_free_bytes", "bytes", "m.disk_free_bytes"},
    {"disk_used_percent", "percent",
     "100 * (m.disk_total_bytes - m.disk_free_bytes) / nullif(m.disk_total_bytes, 0)"},
    {"network_rx_bytes_per_s", "bytes_per_second", "m.network_rx_bytes_per_s"},
    {"network_tx_bytes_per_s", "bytes_per_second", "m.network_tx_bytes_per_s"},
    {"process_rss_bytes", "bytes", "m.process_rss_bytes"},
    {"http_connections", "connections", "m.http_connections"},
    {"deployments_running", "deployments", "m.deployments_running"},
};

static const char *const aggregations[] = {"avg", "min", "max", NULL};

#define NODE_MAX 160 /* a node's name (nodes.name) or id */

/* $1 time_range and $2 step in seconds, $3 the node (name or id, NULL: every node), $4 the
 * metric, $5 the aggregation, $6 the unit. No row when the node asked for does not exist. */
static const char history_sql[] =
    "WITH sel AS (SELECT id, name FROM nodes WHERE $3::text IS NULL OR name = $3::text "
    "OR id::text = $3::text), "
    "s AS (SELECT m.node_id, date_bin(make_interval(secs => $2::int), m.at, "
    "timestamptz 'epoch') AS b, (%s)::float8 AS v FROM node_metrics m "
    "JOIN sel ON sel.id = m.node_id WHERE m.at >= now() - make_interval(secs => $1::int)), "
    "b AS (SELECT node_id, b, CASE $5::text WHEN 'min' THEN min(v) WHEN 'max' THEN max(v) "
    "ELSE avg(v) END AS v FROM s GROUP BY node_id, b "
    "UNION ALL SELECT NULL, b, CASE $5::text WHEN 'min' THEN min(v) WHEN 'max' THEN max(v) "
    "ELSE avg(v) END FROM s WHERE $3::text IS NULL GROUP BY b), "
    "pts AS (SELECT node_id, json_agg(json_build_array(extract(epoch FROM b)::bigint, "
    "round(v::numeric, 3)) ORDER BY b) AS points FROM b WHERE v IS NOT NULL GROUP BY node_id), "
    /* the node asked for, even without samples; otherwise each node with some, then all */
    "series AS (SELECT id, name FROM sel WHERE $3::text IS NOT NULL "
    "OR id IN (SELECT node_id FROM pts) UNION ALL SELECT NULL, NULL WHERE $3::text IS NULL) "
    "SELECT json_build_object('metric', $4::text, 'unit', $6::text, 'aggregation', $5::text, "
    "'time_range', $1::int, 'step', $2::int, 'from', now() - make_interval(secs => $1::int), "
    "'to', now(), 'series', coalesce((SELECT json_agg(json_build_object('node', "
    "coalesce(x.name, 'all'), 'node_id', x.id, 'points', coalesce(p.points, '[]'::json)) "
    "ORDER BY x.id IS NULL, x.name) FROM series x LEFT JOIN pts p "
    "ON p.node_id IS NOT DISTINCT FROM x.id), '[]'::json)) "
    "WHERE $3::text IS NULL OR EXISTS (SELECT 1 FROM sel)";

static const metric_t *metric_read(sw_http_req_t *req, sw_json_errors_t *e)
{
    const char *names[SW_ARRAY_SIZE(metrics) + 1], *name;
    for (size_t i = 0; i < SW_ARRAY_SIZE(metrics); i++)
        names[i] = metrics[i].name;
    names[SW_ARRAY_SIZE(metrics)] = NULL;
    if (!sw_http_req_query(req, "metric")) {
        sw_buf_t list = SW_BUF_INIT;
        for (size_t i = 0; i < SW_ARRAY_SIZE(metrics); i++)
            sw_buf_printf(&list, "%s%s", i ? ", " : "", metrics[i].name);
        sw_json_errors_add(e, "metric", "is required: one of %s", list.base);
        sw_buf_free(&list);
        return NULL;
    }
    if (!sw_api_enum_filter(req, "metric", names, &name, e))
        return NULL;
    for (size_t i = 0; i < SW_ARRAY_SIZE(metrics); i++)
        if (strcmp(name, metrics[i].name) == 0)
            return &metrics[i];
    return NULL;
}

void sw_api_system_metrics_history(sw_http_req_t *req, void *ctx)
{
    sw_json_errors_t e;
    sw_json_errors_init(&e);
    const metric_t *m = metric_read(req, &e);
    const char *agg = NULL, *field = NULL;
    sw_api_enum_filter(req, "aggregation", aggregations, &agg, &e);
    sw_history_span_t span;
    char why[200];
    if (sw_history_span(sw_http_req_query(req, "time_range"), sw_http_req_query(req, "step"), &span,
                        &field, why, sizeof(why)) != 0)
        sw_json_errors_add(&e, field, "%s", why);
    const char *node = sw_http_req_query(req, "node");
    if (node && (node[0] == '\0' || strlen(node) > NODE_MAX))
        sw_json_errors_add(&e, "node", "must be a node's name or id (1 to %d characters)",
                           NODE_MAX);
    if (sw_json_errors_any(&e)) {
        sw_api_validation_error(req, &e);
        return;
    }
    char range[16], step[16], sql[sizeof(history_sql) + 128];
    snprintf(range, sizeof(range), "%u", span.range_s);
    snprintf(step, sizeof(step), "%u", span.step_s);
    snprintf(sql, sizeof(sql), history_sql, m->expr);
    const char *params[] = {range, step, node, m->name, agg ? agg : "avg", m->unit};
    sw_api_exec(ctx, req, sql, 6, params, 200, "no such node", NULL);
}
