/* The node's backend checks (src/node/health.c): PostgreSQL and Redis, run in the background
 * about once a second and on every connection state change, so answering a probe or a scrape
 * costs no query. */
#ifndef SLIPWAY_HEALTH_H
#define SLIPWAY_HEALTH_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "slipway/pg.h"
#include "slipway/redis.h"

typedef struct {
    bool ok;
    bool ran; /* at least one check has finished */
    bool in_flight;
    double latency_ms;
    char error[160];
    uint64_t started_ns;
} sw_health_check_t;

typedef struct {
    sw_health_check_t db;
    sw_health_check_t redis;
    sw_pg_pool_t *pg;
    sw_redis_t *redis_client;
    unsigned interval_ms;
    bool stopping;
    uv_timer_t timer;
} sw_health_t;

/* Starts the checks: the first now, then every interval_ms. */
void sw_health_start(sw_health_t *h, uv_loop_t *loop, sw_pg_pool_t *pg, sw_redis_t *redis,
                     unsigned interval_ms);
/* Runs the checks now (called on every backend state change). */
void sw_health_kick(sw_health_t *h);
/* No more checks; answers still in flight are recorded. */
void sw_health_stop(sw_health_t *h);
/* Closes the timer; on_closed gets its handle, whose data is data. */
void sw_health_close(sw_health_t *h, uv_close_cb on_closed, void *data);

#endif
