/* The janitor: removes what nothing else would. Finished webhook deliveries (and their
 * attempts) older than SLIPWAY_WEBHOOK_KEEP_DAYS, the output of deployments finished more
 * than SLIPWAY_DEPLOYMENT_LOG_KEEP_DAYS ago (not an app's active one), and the runtime logs Redis
 * keeps for apps that no longer exist - however they went: deleted alone, with their project, or at
 * a psql prompt. Runs in every process with the worker role, one round per
 * SLIPWAY_JANITOR_INTERVAL_MS (the first within a minute of the start); every step is
 * idempotent, so processes doing it at once only repeat each other's work. */
#ifndef SLIPWAY_JANITOR_H
#define SLIPWAY_JANITOR_H

#include <uv.h>

#include "slipway/config.h"
#include "slipway/pg.h"
#include "slipway/redis.h"

typedef struct sw_janitor sw_janitor_t;

/* Needs the instance id set (sw_queue_set_instance): the runtime-log keys carry it. */
int sw_janitor_start(sw_janitor_t **out, uv_loop_t *loop, const sw_config_t *cfg, sw_pg_pool_t *pg,
                     sw_redis_t *redis);
/* Ends the round in progress at its next step; on_stopped runs once everything is closed. */
void sw_janitor_stop(sw_janitor_t *j, void (*on_stopped)(void *payload), void *payload);

#endif
