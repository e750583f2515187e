/* The composition root (src/node/): one slipwayd process. It opens the backends, runs the
 * migrations, starts the roles SLIPWAY_ROLE asks for (the HTTP role; the deployment worker,
 * webhook dispatcher and janitor), keeps this process's row in nodes, and drains them in
 * order. */
#ifndef SLIPWAY_NODE_H
#define SLIPWAY_NODE_H

#include <uv.h>

#include "slipway/config.h"

typedef struct sw_node sw_node_t;

/* Starts the node on loop: backends, migrations, health checks and, for roles api and all,
 * the HTTP listeners. 0 or a negative code with a message logged. */
int sw_node_start(sw_node_t **out, uv_loop_t *loop, const sw_config_t *cfg, unsigned worker_index);
/* SIGHUP: rereads what may change on disk without a restart (the TLS certificate). */
void sw_node_reload(sw_node_t *node);
/* Drains the roles (HTTP, janitor, webhooks, worker, heartbeat), then closes the backends and
 * every handle and frees the node; on_stopped runs last. */
void sw_node_stop(sw_node_t *node, void (*on_stopped)(void *payload), void *payload);

#endif
