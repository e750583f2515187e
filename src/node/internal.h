/* What the node's files share (src/node/). */
#ifndef SLIPWAY_NODE_INTERNAL_H
#define SLIPWAY_NODE_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "slipway/api.h"
#include "slipway/crypto.h"
#include "slipway/health.h"
#include "slipway/host.h"
#include "slipway/node.h"
#include "slipway/worker.h"

typedef struct sw_node_heartbeat sw_node_heartbeat_t;
typedef struct sw_node_sampler sw_node_sampler_t;

struct sw_node {
    uv_loop_t *loop;
    const sw_config_t *cfg;
    unsigned worker_index;
    sw_pg_pool_t *pg;
    sw_redis_t *redis;
    sw_metrics_t *metrics;
    sw_secretbox_t box;
    char name[160];         /* this process in leases and node_id */
    uint64_t started_at_ms; /* wall clock, for nodes.started_at */
    sw_health_t health;
    sw_host_sampler_t host; /* the host's rates, shared by every reader */

    sw_api_t *api;                  /* the HTTP role: roles api and all */
    sw_worker_t *worker;            /* roles worker and all, once migrations ran */
    sw_worker_t *worker_draining;   /* the worker while it stops, for the heartbeat */
    struct sw_webhooks *webhooks;   /* the webhook dispatcher, started with the worker */
    struct sw_janitor *janitor;     /* retention, started with the worker */
    struct sw_hub *hub;             /* live topics, once the instance id is known */
    sw_node_heartbeat_t *heartbeat; /* this process's row in nodes, once migrations ran */
    sw_node_sampler_t *sampler;     /* its metric history, started with the heartbeat */

    bool migrated;
    bool migrating;
    unsigned migrate_attempts;
    uv_work_t migrate_work;
    uv_timer_t migrate_timer;
    int migrate_status;
    int migrate_applied;
    char migrate_err[256];

    bool stopping;
    unsigned closes_pending;
    bool closing; /* close_backends ran: a migration still running holds one close */
    void (*on_stopped)(void *payload);
    void *stop_payload;
};

/* ---- migrations, then the instance id, then the roles (src/node/boot.c) ---- */
void sw_node_migrate_schedule(sw_node_t *node);
/* One of the node's pending closes finished; the last frees the node and reports it stopped. */
void sw_node_closed_one(sw_node_t *node);

/* ---- driver choice (src/node/drivers.c) ---- */
/* The runtime and proxy drivers SLIPWAY_* asks for, for the worker; 0 or a negative errno,
 * logged. */
int sw_node_drivers(sw_node_t *node, sw_worker_drivers_t *out);

/* ---- the drain (src/node/drain.c) ---- */
/* The next part of the drain: called again as each part stops. */
void sw_node_drain_next(void *payload);

/* ---- this process's row in nodes (src/node/heartbeat.c): registered now, heartbeating every
 * SLIPWAY_NODE_HEARTBEAT_MS; stopping marks it stopped, then calls on_stopped. ---- */
sw_node_heartbeat_t *sw_node_heartbeat_start(sw_node_t *node);
void sw_node_heartbeat_stop(sw_node_heartbeat_t *n, void (*on_stopped)(void *payload),
                            void *payload);
/* ---- this process's metric history (src/node/sampler.c): a sample every
 * SLIPWAY_METRICS_SAMPLE_MS, stored in node_metrics; stopping waits for a store in flight, then
 * calls on_stopped. ---- */
sw_node_sampler_t *sw_node_sampler_start(sw_node_t *node);
void sw_node_sampler_stop(sw_node_sampler_t *s, void (*on_stopped)(void *payload), void *payload);
/* This node's metrics as one JSON object (src/node/load.c; a sw_api_opts_t load_json, with
 * the node). */
void sw_node_load_json(sw_buf_t *out, void *payload);

#endif
