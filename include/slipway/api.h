/* The API role: the HTTP server, its route table and the backends its handlers use. */
#ifndef SLIPWAY_API_H
#define SLIPWAY_API_H

#include <stdbool.h>
#include <uv.h>

#include "slipway/auth.h"
#include "slipway/config.h"
#include "slipway/crypto.h"
#include "slipway/json.h"
#include "slipway/http.h"
#include "slipway/metrics.h"
#include "slipway/pg.h"
#include "slipway/ratelimit.h"
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
    sw_auth_t *auth;
    sw_secretbox_t box;
    sw_ratelimit_t *login_by_address; /* failed logins per client address */
    sw_ratelimit_t *login_by_account; /* failed logins and TOTP codes per account */
    char public_origin[256];          /* scheme://host[:port] of SLIPWAY_PUBLIC_URL */

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

/* What the API layer keeps per request (req->user). */
typedef struct {
    sw_principal_t principal;
    void *state; /* a handler's own state across asynchronous steps */
} sw_api_req_t;

/* Session lifetimes: sliding, and absolute from login. */
#define SW_SESSION_IDLE_S     (7u * 24 * 3600)
#define SW_SESSION_ABSOLUTE_S (30u * 24 * 3600)
#define SW_ACCESS_TOKEN_S     3600u

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

/* ---- helpers shared by handlers (src/api/common.c) ---- */

sw_api_req_t *sw_api_req(sw_http_req_t *req);
const sw_principal_t *sw_api_principal(sw_http_req_t *req);
/* Answers a failed query: 503 when the database is unreachable or slow, 409 for a unique
 * violation, 500 otherwise (the server's message goes to the log, never to the client). */
void sw_api_db_error(sw_http_req_t *req, int status, sw_pg_result_t *res);
/* The JSON object body, or NULL after answering 400 with the decoding detail. */
json_t *sw_api_body(sw_http_req_t *req);
/* Answers 400 VALIDATION_ERROR with the collected details (taken from e). */
void sw_api_validation_error(sw_http_req_t *req, sw_json_errors_t *e);
/* Answers with JSON text produced by PostgreSQL. */
void sw_api_respond_text(sw_http_req_t *req, int status, const char *json);
/* True for a canonical lower-case UUID (what PostgreSQL prints). */
bool sw_api_uuid_valid(sw_iov_t s);
/* ?page=&limit=&offset= into page (1-based), limit (1..100) and offset; false after
 * answering 400. */
bool sw_api_page(sw_http_req_t *req, long long *page, long long *limit, long long *offset);
/* Normalises an email (trim, lower-case) into out; false with a detail when malformed. */
bool sw_api_email(const char *in, char *out, size_t size, sw_json_errors_t *e);

/* Handlers. */
void sw_api_get_health(sw_http_req_t *req, void *ctx);
void sw_api_get_ready(sw_http_req_t *req, void *ctx);
void sw_api_get_metrics(sw_http_req_t *req, void *ctx);
void sw_api_get_openapi(sw_http_req_t *req, void *ctx);
void sw_api_auth_state(sw_http_req_t *req, void *ctx);
void sw_api_auth_setup(sw_http_req_t *req, void *ctx);
void sw_api_auth_register(sw_http_req_t *req, void *ctx);
void sw_api_auth_login(sw_http_req_t *req, void *ctx);
void sw_api_auth_logout(sw_http_req_t *req, void *ctx);
void sw_api_auth_me(sw_http_req_t *req, void *ctx);
void sw_api_auth_password(sw_http_req_t *req, void *ctx);
void sw_api_auth_token(sw_http_req_t *req, void *ctx);
void sw_api_totp_enroll(sw_http_req_t *req, void *ctx);
void sw_api_totp_confirm(sw_http_req_t *req, void *ctx);
void sw_api_totp_delete(sw_http_req_t *req, void *ctx);
void sw_api_tokens_list(sw_http_req_t *req, void *ctx);
void sw_api_tokens_create(sw_http_req_t *req, void *ctx);
void sw_api_tokens_delete(sw_http_req_t *req, void *ctx);
void sw_api_users_list(sw_http_req_t *req, void *ctx);
void sw_api_users_create(sw_http_req_t *req, void *ctx);
void sw_api_users_get(sw_http_req_t *req, void *ctx);
void sw_api_users_update(sw_http_req_t *req, void *ctx);
void sw_api_users_delete(sw_http_req_t *req, void *ctx);

/* Builds the OpenAPI 3.1 document from the route table (new reference). */
json_t *sw_api_openapi(const sw_route_t *routes, size_t count);

#endif
