/* The deployment worker: reads the queue, holds a per-app lease, fetches, builds, releases
 * and supervises app instances, and makes sure no deployment is left without an owner. */
#ifndef SLIPWAY_WORKER_H
#define SLIPWAY_WORKER_H

#include <uv.h>

#include "slipway/config.h"
#include "slipway/crypto.h"
#include "slipway/pg.h"

typedef struct sw_worker sw_worker_t;

/* node identifies this process in leases, the stream's consumer group and node_id. */
int sw_worker_start(sw_worker_t **out, uv_loop_t *loop, const sw_config_t *cfg, sw_pg_pool_t *pg,
                    const sw_secretbox_t *box, const char *node);
/* Hands running deployments back to the queue, stops app instances, closes everything,
 * then calls on_stopped and frees the worker. */
void sw_worker_stop(sw_worker_t *w, void (*on_stopped)(void *payload), void *payload);

#endif
