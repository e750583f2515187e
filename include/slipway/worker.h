/* The deployment worker: reads the queue, holds a per-app lease, fetches, builds, releases
 * and supervises app instances, and makes sure no deployment is left without an owner. */
#ifndef SLIPWAY_WORKER_H
#define SLIPWAY_WORKER_H

#include <uv.h>

#include "slipway/buf.h"
#include "slipway/config.h"
#include "slipway/crypto.h"
#include "slipway/hub.h"
#include "slipway/pg.h"
#include "slipway/proxy.h"
#include "slipway/runtime.h"

typedef struct sw_worker sw_worker_t;

/* The drivers the node chose: how an instance runs and how traffic reaches it. The worker
 * makes its runtime with runtime_new (it owns the callbacks) and takes over proxy. */
typedef struct {
    int (*runtime_new)(sw_runtime_t **out, uv_loop_t *loop, const sw_config_t *cfg,
                       const sw_runtime_cbs_t *cbs);
    /* For runtime: "container" apps; NULL, or failing (why says so), leaves them refused. */
    int (*container_new)(sw_runtime_t **out, uv_loop_t *loop, const sw_config_t *cfg,
                         const char *node, const sw_runtime_cbs_t *cbs, char *why, size_t why_size);
    sw_proxy_t *proxy;
} sw_worker_drivers_t;

/* node identifies this process in leases, the stream's consumer group and node_id. hub (may
 * be NULL) gets every deployment's lines and status on "deployment:<id>" and the runtime
 * output of app instances on "app:<app id>". At start the worker kills the process groups a
 * previous worker on the same SLIPWAY_DATA_DIR left behind and starts its apps again. */
int sw_worker_start(sw_worker_t **out, uv_loop_t *loop, const sw_config_t *cfg, sw_pg_pool_t *pg,
                    const sw_secretbox_t *box, sw_hub_t *hub, const char *node,
                    const sw_worker_drivers_t *drivers);
/* Hands running deployments back to the queue, stops app instances, closes everything,
 * then calls on_stopped and frees the worker. */
void sw_worker_stop(sw_worker_t *w, void (*on_stopped)(void *payload), void *payload);

/* The app instances this worker supervises, as a JSON array appended to out: {app_id,
 * deployment_id, name, endpoint, pid (null between restarts), state (starting: a release
 * still being checked; running; restarting: exited, waiting to start again; stopping),
 * restarts}. Also how many deployments it is running now. */
void sw_worker_instances_json(const sw_worker_t *w, sw_buf_t *out);
unsigned sw_worker_runs(const sw_worker_t *w);

/* slipway_deployments_total{status}, slipway_deployments_running, slipway_deploy_queue_depth
 * and slipway_build_duration_seconds, in Prometheus text. */
void sw_worker_metrics(sw_buf_t *out, const sw_worker_t *w);

#endif
