/* The deployment queue: a Redis stream read by workers through a consumer group. PostgreSQL
 * holds the truth (a deployment row is written first); the stream only says "work exists". */
#ifndef SLIPWAY_QUEUE_H
#define SLIPWAY_QUEUE_H

#include <stdbool.h>
#include <stddef.h>

#include "slipway/pg.h"
#include "slipway/redis.h"

#define SW_QUEUE_GROUP "workers"

/* Names the queue's keys after the instance (its id in PostgreSQL), so several instances can
 * share one Redis: the stream slipway:<id>:deploy, and the cancel and control channels. Set
 * once, after migrations; until then nothing is pushed (the reconciler catches up). */
void sw_queue_set_instance(const char *instance_id);
bool sw_queue_ready(void);
const char *sw_queue_stream(void);
const char *sw_queue_cancel_channel(void);  /* cancel requests for running deployments */
const char *sw_queue_control_channel(void); /* "stop:<app id>" */
/* The Redis list holding an app's last runtime log lines (slipway:<id>:applog:<app id>);
 * "" until the instance is known. */
void sw_queue_applog_key(const char *app_id, char *out, size_t size);

/* Adds the deployment to the stream and, once Redis took it, marks the row enqueued. Best
 * effort: if Redis is away the row stays pending and not enqueued, and a worker's reconciler
 * enqueues it later, so no trigger is lost. */
void sw_queue_push(sw_pg_pool_t *pg, sw_redis_t *redis, const char *deployment_id,
                   const char *app_id);
/* Tells every worker to stop the app's instances. */
void sw_queue_stop_app(sw_redis_t *redis, const char *app_id);
/* Tells every worker to cancel a running deployment. */
void sw_queue_cancel(sw_redis_t *redis, const char *deployment_id);

#endif
