/* Nodes (DESIGN.md §5): every slipwayd process keeps a row in nodes - registered once the
 * migrations ran, refreshed every SLIPWAY_NODE_HEARTBEAT_MS with its load and the instances
 * it supervises, marked stopped when it drains. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "slipway/log.h"
#include "sw_version.h"

#define NODE_KEEP "1 day" /* a node not heard from for this long is removed */

struct sw_node_heartbeat {
    sw_node_t *node;
    uv_timer_t timer;
    bool in_flight; /* one heartbeat at a time: a slow database skips beats, never queues */
    bool stopping;
    bool failing; /* the last heartbeat failed: logged once until one succeeds */
    void (*on_stopped)(void *payload);
    void *payload;
};

static void on_timer_closed(uv_handle_t *h)
{
    sw_node_heartbeat_t *n = h->data;
    void (*cb)(void *) = n->on_stopped;
    void *payload = n->payload;
    free(n);
    if (cb)
        cb(payload);
}

static void on_stop_written(int status, sw_pg_result_t *res, void *payload)
{
    sw_node_heartbeat_t *n = payload;
    if (status != 0)
        sw_log_kv(SW_LOG_WARN, NULL, "this node was not marked stopped", "error",
                  res ? sw_pg_result_error(res) : sw_strerror(status), NULL);
    uv_close((uv_handle_t *)&n->timer, on_timer_closed);
}

/* The last word: stopped, with nothing running. */
static void send_stop(sw_node_heartbeat_t *n)
{
    const char *params[] = {n->node->name};
    if (sw_pg_query(n->node->pg,
                    "UPDATE nodes SET stopped_at = now(), heartbeat_at = now(), instances = '[]' "
                    "WHERE name = $1",
                    1, params, on_stop_written, n) != 0)
        uv_close((uv_handle_t *)&n->timer, on_timer_closed);
}

static void on_beat(int status, sw_pg_result_t *res, void *payload)
{
    sw_node_heartbeat_t *n = payload;
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

static void beat(sw_node_heartbeat_t *n)
{
    sw_node_t *node = n->node;
    if (n->in_flight || n->stopping)
        return;
    sw_buf_t load = SW_BUF_INIT, instances = SW_BUF_INIT;
    sw_node_load_json(&load, node);
    sw_worker_instances_json(node->worker ? node->worker : node->worker_draining, &instances);
    char started[32], every[16];
    snprintf(started, sizeof(started), "%.3f", (double)node->started_at_ms / 1000.0);
    snprintf(every, sizeof(every), "%u", node->cfg->node_heartbeat_ms);
    const char *listen = node->cfg->role == SW_NODE_WORKER ? "" : node->cfg->listen;
    /* where the proxy reaches this node's API: the advertised address, the first port */
    char advertise[96] = "", host[64];
    uint16_t port = 0;
    if (listen[0]) {
        char first[128];
        snprintf(first, sizeof(first), "%.*s", (int)strcspn(listen, ","), listen);
        if (sw_config_split_hostport(first, host, sizeof(host), &port) == 0 && port) {
            bool v6 = strchr(node->cfg->advertise_address, ':') != NULL;
            snprintf(advertise, sizeof(advertise), "%s%s%s:%u", v6 ? "[" : "",
                     node->cfg->advertise_address, v6 ? "]" : "", port);
        }
    }
    const char *params[] = {node->name, sw_node_role_name(node->cfg->role),
                            SW_VERSION, started,
                            every,      listen,
                            load.base,  instances.base,
                            advertise};
    n->in_flight =
        sw_pg_query(node->pg,
                    "WITH gone AS (DELETE FROM nodes WHERE heartbeat_at < now() - "
                    "interval '" NODE_KEEP "' AND name <> $1) "
                    "INSERT INTO nodes (name, role, version, started_at, heartbeat_at, "
                    "heartbeat_ms, listen, load, instances, stopped_at, advertise) VALUES ($1, "
                    "$2, $3, to_timestamp($4::double precision), now(), $5::int, $6, $7::jsonb, "
                    "$8::jsonb, NULL, $9) ON CONFLICT (name) DO UPDATE SET role = EXCLUDED.role, "
                    "version = EXCLUDED.version, started_at = EXCLUDED.started_at, "
                    "heartbeat_at = now(), heartbeat_ms = EXCLUDED.heartbeat_ms, "
                    "listen = EXCLUDED.listen, load = EXCLUDED.load, "
                    "instances = EXCLUDED.instances, stopped_at = NULL, "
                    "advertise = EXCLUDED.advertise "
                    /* a late beat of this process never undoes its stop */
                    "WHERE nodes.stopped_at IS NULL "
                    "OR nodes.started_at IS DISTINCT FROM EXCLUDED.started_at",
                    9, params, on_beat, n) == 0;
    sw_buf_free(&load);
    sw_buf_free(&instances);
}

static void on_timer(uv_timer_t *t)
{
    beat(t->data);
}

sw_node_heartbeat_t *sw_node_heartbeat_start(sw_node_t *node)
{
    sw_node_heartbeat_t *n = sw_calloc(1, sizeof(*n));
    n->node = node;
    uv_timer_init(node->loop, &n->timer);
    n->timer.data = n;
    uv_timer_start(&n->timer, on_timer, 0, node->cfg->node_heartbeat_ms);
    return n;
}

void sw_node_heartbeat_stop(sw_node_heartbeat_t *n, void (*on_stopped)(void *payload),
                            void *payload)
{
    n->stopping = true;
    n->on_stopped = on_stopped;
    n->payload = payload;
    uv_timer_stop(&n->timer);
    if (!n->in_flight)
        send_stop(n); /* otherwise the beat's answer sends it, so the stop is written last */
}
