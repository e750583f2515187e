/* The deployment worker: reads the queue, holds a per-app lease, fetches, builds, releases
 * and supervises app instances, and makes sure no deployment is left without an owner. */
#ifndef SLIPWAY_WORKER_H
#define SLIPWAY_WORKER_H

#include <uv.h>

#include "slipway/config.h"
#include "slipway/crypto.h"
#include "slipway/hub.h"
#include "slipway/pg.h"

typedef struct sw_worker sw_worker_t;

/* node identifies this process in leases, the stream's consumer group and node_id. hub (may
 * be NULL) gets every deployment's lines and status on "deployment:<id>" and the runtime
 * output of app instances on "app:<app id>". At start the worker kills the process groups a
 * previous worker on the same SLIPWAY_DATA_DIR left behind and starts its apps again. */
int sw_worker_start(sw_worker_t **out, uv_loop_t *loop, const sw_config_t *cfg, sw_pg_pool_t *pg,
                    const sw_secretbox_t *box, sw_hub_t *hub, const char *node);
/* Hands running deployments back to the queue, stops app instances, closes everything,
 * then calls on_stopped and frees the worker. */
void sw_worker_stop(sw_worker_t *w, void (*on_stopped)(void *payload), void *payload);

#endif
