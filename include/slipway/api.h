/* The API role: the HTTP server, its route table and the backends its handlers use. */
#ifndef SLIPWAY_API_H
#define SLIPWAY_API_H

#include <stdbool.h>
#include <uv.h>

#include "slipway/config.h"
#include "slipway/http.h"
#include "slipway/metrics.h"
#include "slipway/pg.h"
#include "slipway/redis.h"
#include "slipway/router.h"

typedef struct {
    bool ok;
    bool ran; /* at least one check has finished */
    bool in_flight;
    double latency_ms;
    char error[160];
    uint64_t started_ns;
} sw_health_check_t;

typedef struct sw_api sw_api_t;
struct sw_api {
    uv_loop_t *loop;
    const sw_config_t *cfg;
    unsigned worker_index;
    sw_pg_pool_t *pg;
    sw_redis_t *redis;
    sw_router_t *router;
    sw_metrics_t *metrics;
    sw_http_server_t *http;

    sw_health_check_t db_check;
    sw_health_check_t redis_check;
    uv_timer_t health_timer;

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
    void (*on_stopped)(sw_api_t *api);
};

/* The route table: the single source of the router, the access checks and openapi.json. */
extern const sw_route_t sw_api_routes[];
extern const size_t sw_api_routes_count;

/* Starts backends, migrations, health checks and the HTTP listeners. Returns 0 or a negative
 * code with a message logged. */
int sw_api_start(sw_api_t *api, uv_loop_t *loop, const sw_config_t *cfg, unsigned worker_index);
/* Drains HTTP, then closes the backends and every handle; on_stopped runs when all are closed. */
void sw_api_stop(sw_api_t *api, void (*on_stopped)(sw_api_t *api));

/* Runs the health checks now (also called on every backend state change). */
void sw_api_health_kick(sw_api_t *api);
void sw_api_health_start(sw_api_t *api);

/* Handlers. */
void sw_api_get_health(sw_http_req_t *req, void *ctx);
void sw_api_get_ready(sw_http_req_t *req, void *ctx);
void sw_api_get_metrics(sw_http_req_t *req, void *ctx);
void sw_api_get_openapi(sw_http_req_t *req, void *ctx);

/* Builds the OpenAPI 3.1 document from the route table (new reference). */
json_t *sw_api_openapi(const sw_route_t *routes, size_t count);

#endif
