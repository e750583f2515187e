/* The deployment queue: a Redis stream read by workers through a consumer group. PostgreSQL
 * holds the truth (a deployment row is written first); the stream only says "work exists". */
#ifndef SLIPWAY_QUEUE_H
#define SLIPWAY_QUEUE_H

#include "slipway/pg.h"
#include "slipway/redis.h"

#define SW_QUEUE_STREAM "slipway:deploy"
#define SW_QUEUE_GROUP  "workers"
/* Cancellation requests for running deployments, published to every worker. */
#define SW_QUEUE_CANCEL_CHANNEL "slipway:deploy:cancel"

/* Adds the deployment to the stream and, once Redis took it, marks the row enqueued. Best
 * effort: if Redis is away the row stays pending and not enqueued, and a worker's reconciler
 * enqueues it later, so no trigger is lost. */
void sw_queue_push(sw_pg_pool_t *pg, sw_redis_t *redis, const char *deployment_id,
                   const char *app_id);
/* App instance control for every worker: "stop:<app id>". */
#define SW_QUEUE_CONTROL_CHANNEL "slipway:app:control"

/* Tells every worker to stop the app's instances. */
void sw_queue_stop_app(sw_redis_t *redis, const char *app_id);
/* Tells every worker to cancel a running deployment. */
void sw_queue_cancel(sw_redis_t *redis, const char *deployment_id);

#endif
