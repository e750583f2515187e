/* The API role: the HTTP server, its route table and the backends its handlers use. */
#ifndef SLIPWAY_API_H
#define SLIPWAY_API_H

#include <stdbool.h>
#include <uv.h>

#include "slipway/auth.h"
#include "slipway/config.h"
#include "slipway/health.h"
#include "slipway/json.h"
#include "slipway/metrics.h"
#include "slipway/pg.h"
#include "slipway/router.h"

typedef struct sw_cache sw_cache_t;
typedef struct sw_ratelimit sw_ratelimit_t;
struct sw_hub;

/* Each live watcher's bounds: messages queued (beyond them the oldest go and the watcher is
 * told it lagged), and bytes its connection may hold unsent before the hub waits. */
#define SW_LIVE_QUEUE_MSGS   16384
#define SW_LIVE_QUEUE_BYTES  (4u * 1024u * 1024u)
#define SW_LIVE_WRITE_WINDOW (64u * 1024u)

/* What the node hands the API role when it makes it: the backends and state it shares. All of
 * it outlives the role. */
typedef struct {
    uv_loop_t *loop;
    const sw_config_t *cfg;
    sw_pg_pool_t *pg;
    sw_redis_t *redis;
    sw_metrics_t *metrics;     /* requests are observed into it */
    sw_secretbox_t *box;       /* the master key */
    const char *node;          /* this process in leases and node_id */
    const sw_health_t *health; /* the backend checks, for /health */
    /* This node's load as one JSON object (GET system/metrics, the metrics stream). */
    void (*load_json)(sw_buf_t *out, void *payload);
    void *payload;
} sw_api_opts_t;

typedef struct sw_api sw_api_t;
typedef struct sw_api_limits sw_api_limits_t;
struct sw_api {
    uv_loop_t *loop;
    const sw_config_t *cfg;
    sw_pg_pool_t *pg;
    sw_redis_t *redis;
    sw_router_t *router;
    sw_metrics_t *metrics;
    sw_http_server_t *http;
    bool tls_loaded; /* the listeners have a certificate (SLIPWAY_TLS_CERT_FILE) */
    sw_auth_t *auth;
    sw_secretbox_t *box;
    sw_ratelimit_t *login_by_address; /* failed logins per client address */
    sw_ratelimit_t *login_by_account; /* failed logins and TOTP codes per account */
    char public_origin[256];          /* scheme://host[:port] of SLIPWAY_PUBLIC_URL */
    sw_api_limits_t *limits;          /* API budget per address and per principal */
    struct sw_hub *hub;               /* live topics, once the node knows the instance id */
    uv_timer_t metrics_timer;         /* samples the node while someone watches it */
    const char *node;                 /* this process in leases and node_id */
    const sw_health_t *health;        /* the node's backend checks */
    void (*load_json)(sw_buf_t *out, void *payload); /* the node's load, with load_payload */
    void *load_payload;
    sw_buf_t openapi; /* the rendered /api/v1/openapi.json */

    /* GET apps/:id/branches: listings under way and their cache; made with the first. */
    struct sw_api_branches *branches;

    /* Open live streams' access, rechecked on revocations; made with the first stream. */
    struct sw_live_access *live_access;

    /* The read cache (SLIPWAY_READ_CACHE): project lookups of GET requests, emptied by
     * notifications from PostgreSQL triggers and by this process's own writes. NULL when off. */
    sw_cache_t *read_cache;
    sw_pg_pool_t *listen_pg;    /* one connection LISTENing for those notifications */
    uv_timer_t read_cache_ping; /* proves the listener's connection still answers */
    bool ping_in_flight;
    unsigned ping_misses;         /* ticks a ping stayed unanswered; reset by an answer */
    uint64_t read_cache_session;  /* the listening session the cache was emptied for */
    bool read_cache_usable;       /* as of the last check */
    uint64_t read_cache_notified; /* notifications received */

    bool migrated;
    bool stopping;
    unsigned closes_pending;
    void (*on_drained)(void *payload);
    void (*on_closed)(void *payload);
    void *stop_payload;
};

/* What the API layer keeps per request (req->user). */
typedef struct {
    sw_principal_t principal;
    void *state; /* a handler's own state across asynchronous steps */
    /* project-scoped routes: the resource's project and the caller's role in it */
    char project_id[SW_UUID_LEN + 1];
    sw_project_role_t project_role;
    json_t *body;              /* the parsed body when the access check needed it (owned) */
    int resolve_status;        /* of the credential lookup: 0, -ENOENT, or a backend error */
    const char *resource_json; /* the project-scoped resource as the access check read it */
    sw_iov_t token;            /* the credential offered, if any */
    const char *cache_key;     /* a cacheable project lookup under way: its read cache key */
    uint64_t cache_generation; /* the read cache's generation when that lookup started */
    bool limit_checked;
    uint64_t limit_remaining, limit_reset_ms; /* the tighter rate-limit bucket so far */
} sw_api_req_t;

/* ---- API rate limits (src/api/limits.c) ---- */

typedef void (*sw_api_limit_cb)(sw_api_t *api, sw_http_req_t *req);
sw_api_limits_t *sw_api_limits_new(const sw_config_t *cfg);
void sw_api_limits_free(sw_api_limits_t *l);
/* Takes a token from the caller's address bucket (before credentials are even looked up),
 * then calls cont or answers 429 with Retry-After. */
void sw_api_limits_address(sw_api_t *api, sw_http_req_t *req, sw_api_limit_cb cont);
/* Takes a token from the principal's bucket when authenticated, adds the X-RateLimit-* headers
 * for the tighter of the two buckets, then calls cont or answers 429. Routes outside /api/v1
 * pass both checks straight through. */
void sw_api_limits_principal(sw_api_t *api, sw_http_req_t *req, sw_api_limit_cb cont);

/* Push hooks' own budgets (60 a minute, bursts of 30 each), never switched off: per app and
 * sender address before any signature work, then per app once the signature holds. Each is
 * false after answering 429 with Retry-After. */
bool sw_api_limits_hook_sender(sw_api_t *api, sw_http_req_t *req, const char *app_id);
bool sw_api_limits_hook(sw_api_t *api, sw_http_req_t *req, const char *app_id);

/* Session lifetimes: sliding, and absolute from login. */
#define SW_SESSION_IDLE_S     (7u * 24 * 3600)
#define SW_SESSION_ABSOLUTE_S (30u * 24 * 3600)
#define SW_ACCESS_TOKEN_S     3600u

/* The route table: the single source of the router, the access checks and openapi.json. */
extern const sw_route_t sw_api_routes[];
extern const size_t sw_api_routes_count;

/* Makes the HTTP role: route table, credentials, limits, read cache and the HTTP server, not yet
 * listening. 0 or a negative code with a message logged. */
int sw_api_new(sw_api_t **out, const sw_api_opts_t *opts);
/* Listens on SLIPWAY_LISTEN; 0 or a negative code with a message logged. */
int sw_api_listen(sw_api_t *api);
/* Rereads SLIPWAY_TLS_CERT_FILE and _KEY_FILE for connections accepted from now on; a bad pair
 * is logged and the current one kept. 0 or the loading error. */
int sw_api_reload_tls(sw_api_t *api);
/* The node tells the role what it learns: the schema is migrated (requests beyond the probes
 * are served from now on), and the live hub has started. */
void sw_api_set_migrated(sw_api_t *api);
void sw_api_set_hub(sw_api_t *api, struct sw_hub *hub);
/* Open HTTP connections and those refused, for the node's metrics. */
void sw_api_http_stats(const sw_api_t *api, sw_http_server_stats_t *out);
/* Stops taking requests and drains HTTP; on_drained runs when every connection is gone. */
void sw_api_drain(sw_api_t *api, void (*on_drained)(void *payload), void *payload);
/* After the drain, once nothing else needs them: closes the role's handles and connections and
 * frees it; on_closed runs last. */
void sw_api_close(sw_api_t *api, void (*on_closed)(void *payload), void *payload);

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
/* ?name= as a whole number from min (at least 0) to max: true with *out set when it is given
 * and valid; when it is not, e names it. Absent: false, and *out is left alone. */
bool sw_api_query_int(sw_http_req_t *req, const char *name, long long min, long long max,
                      long long *out, sw_json_errors_t *e);
/* ?page=&limit=&offset= into page (1-based), limit (1..100) and offset; false after
 * answering 400. */
bool sw_api_page(sw_http_req_t *req, long long *page, long long *limit, long long *offset);
/* The JSON object body, parsed once: the access check may already have read it. Borrowed;
 * NULL after answering 400. */
json_t *sw_api_json(sw_http_req_t *req);
const char *sw_project_role_name(sw_project_role_t role);
sw_project_role_t sw_project_role_parse(const char *s);
bool sw_api_is_instance_admin(const sw_principal_t *p);

/* Sortable fields of a list: the query name and the column it orders by. */
typedef struct {
    const char *name;
    const char *column;
} sw_api_sort_t;

/* A paginated list: WHERE conditions (with $n placeholders, numbered by sw_api_list_param)
 * over a table expression aliased as x, rendered by json_expr (which may use x). */
typedef struct {
    const char *from;      /* "apps", or "(SELECT ...)" */
    const char *json_expr; /* e.g. "sw_app_json(x)" */
    const sw_api_sort_t *sorts;
    const char *default_sort; /* "created_at:asc" */
    const char *tiebreak;     /* a unique column ordering ties; "id" when NULL */
    sw_buf_t where;
    const char *params[24];
    int nparams;
} sw_api_list_t;

/* Adds a parameter and returns its placeholder number. */
int sw_api_list_param(sw_api_list_t *l, const char *value);
/* Adds " AND <cond>" where cond is a printf format taking the placeholder number. */
void sw_api_list_where(sw_api_list_t *l, const char *cond_fmt, const char *value);
/* Restricts a list to what p may see: instance admins everything, others the rows whose
 * project (x.<column>) they belong to (as project admin, with admins_only). The placeholder
 * numbers of the user id and admin flag are returned for json_expr to reuse (may be NULL). */
void sw_api_list_visible(sw_api_list_t *l, const sw_principal_t *p, const char *column,
                         bool admins_only, int *user_param, int *admin_param);
/* Reads ?page, ?limit, ?offset and ?sort, runs the query and answers the envelope (or 400). */
void sw_api_list_run(sw_api_t *api, sw_http_req_t *req, sw_api_list_t *l);
/* Runs a mutation whose statement answers one row and one column, the resource's JSON: answers
 * it with status (204: no body), or 404 with not_found when no row (or a NULL) comes back, or
 * 409 with conflict on a unique violation. */
void sw_api_exec(sw_api_t *api, sw_http_req_t *req, const char *sql, int nparams,
                 const char *const *params, int status, const char *not_found,
                 const char *conflict);
/* sw_api_exec for a statement that deletes apps (one, or a project's): its row's second
 * column is their ids as a PostgreSQL array ("{id,id}"), and once it has committed every
 * worker is told to stop their instances. */
void sw_api_exec_deleting_apps(sw_api_t *api, sw_http_req_t *req, const char *sql, int nparams,
                               const char *const *params, const char *not_found);
/* The common audit insert, as a CTE body: columns (actor_id, actor_email, action, resource,
 * resource_id, project_id, address, details). */
#define SW_AUDIT_INSERT                                                                            \
    "INSERT INTO audit_log (actor_id, actor_email, action, resource, resource_id, project_id, "    \
    "address, details) "

/* Reads a UUID filter ?name=; false after recording a detail for a malformed one. */
bool sw_api_uuid_filter(sw_http_req_t *req, const char *name, const char **out,
                        sw_json_errors_t *e);

/* Reads a filter ?name= that must be one of allowed (NULL-terminated); false after recording
 * "must be one of ..." for another value. */
bool sw_api_enum_filter(sw_http_req_t *req, const char *name, const char *const *allowed,
                        const char **out, sw_json_errors_t *e);

/* A DNS label: 1-63 of a-z, 0-9 and '-', not starting or ending with '-'. */
bool sw_api_dns_label(const char *s);

/* Normalises an email (trim, lower-case) into out; false with a detail when malformed. */
bool sw_api_email(const char *in, char *out, size_t size, sw_json_errors_t *e);

/* ---- deployment triggers (src/api/deployments.c) ---- */

/* What starts a deployment: an API call or a push hook. NULL fields take the defaults. */
typedef struct {
    const char *app_id;
    const char *ref;            /* NULL: the app's branch */
    const char *commit_sha;     /* NULL: the ref's head when the worker fetches */
    const char *commit_message; /* NULL: learned at checkout */
    const char *commit_author;  /* "Name <email>", or NULL */
    const char *actor_id;       /* the user, or NULL for a hook */
    const char *actor_email;    /* the user's email, or "hook:<provider>" */
    const char *delivery_id;    /* a hook delivery, recorded once per app, or NULL */
    const char *provider;       /* the hook's provider, with delivery_id */
    const char *image;          /* the image to run (container apps), or NULL: the app's */
} sw_api_trigger_t;

/* Inserts the deployment as pending with its audit row (and the hook delivery) in one
 * statement, then adds it to the queue. cb gets req as payload and the statement's outcome:
 * one row (deployment JSON, id, app id), no row when the app does not exist, or SW_EUNIQUE
 * when the delivery was taken before. */
void sw_api_deployment_trigger(sw_api_t *api, sw_http_req_t *req, const sw_api_trigger_t *t,
                               sw_pg_cb cb);

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
void sw_api_projects_list(sw_http_req_t *req, void *ctx);
void sw_api_projects_create(sw_http_req_t *req, void *ctx);
void sw_api_projects_get(sw_http_req_t *req, void *ctx);
void sw_api_projects_update(sw_http_req_t *req, void *ctx);
void sw_api_projects_delete(sw_http_req_t *req, void *ctx);
void sw_api_members_list(sw_http_req_t *req, void *ctx);
void sw_api_members_put(sw_http_req_t *req, void *ctx);
void sw_api_members_delete(sw_http_req_t *req, void *ctx);
void sw_api_environments_list(sw_http_req_t *req, void *ctx);
void sw_api_environments_list_all(sw_http_req_t *req, void *ctx);
void sw_api_environments_create(sw_http_req_t *req, void *ctx);
void sw_api_environments_get(sw_http_req_t *req, void *ctx);
void sw_api_environments_update(sw_http_req_t *req, void *ctx);
void sw_api_environments_delete(sw_http_req_t *req, void *ctx);
void sw_api_apps_list(sw_http_req_t *req, void *ctx);
void sw_api_apps_create(sw_http_req_t *req, void *ctx);
void sw_api_apps_get(sw_http_req_t *req, void *ctx);
void sw_api_apps_update(sw_http_req_t *req, void *ctx);
void sw_api_apps_delete(sw_http_req_t *req, void *ctx);
void sw_api_env_list(sw_http_req_t *req, void *ctx);
void sw_api_env_bulk(sw_http_req_t *req, void *ctx);
void sw_api_env_put(sw_http_req_t *req, void *ctx);
void sw_api_env_delete(sw_http_req_t *req, void *ctx);
void sw_api_domains_list_app(sw_http_req_t *req, void *ctx);
void sw_api_domains_create(sw_http_req_t *req, void *ctx);
void sw_api_domains_list(sw_http_req_t *req, void *ctx);
void sw_api_domains_get(sw_http_req_t *req, void *ctx);
void sw_api_domains_delete(sw_http_req_t *req, void *ctx);
void sw_api_audit_list(sw_http_req_t *req, void *ctx);
void sw_api_deployments_create(sw_http_req_t *req, void *ctx);
void sw_api_deployments_list_app(sw_http_req_t *req, void *ctx);
void sw_api_deployments_list(sw_http_req_t *req, void *ctx);
void sw_api_deployments_get(sw_http_req_t *req, void *ctx);
void sw_api_deployments_cancel(sw_http_req_t *req, void *ctx);
void sw_api_deployments_logs(sw_http_req_t *req, void *ctx);
void sw_api_apps_logs(sw_http_req_t *req, void *ctx);
void sw_api_deployments_rollback(sw_http_req_t *req, void *ctx);
void sw_api_apps_start(sw_http_req_t *req, void *ctx);
void sw_api_apps_restart(sw_http_req_t *req, void *ctx);
void sw_api_apps_stop(sw_http_req_t *req, void *ctx);
/* Outgoing webhooks (src/api/webhooks.c). */
void sw_api_webhooks_list(sw_http_req_t *req, void *ctx);
void sw_api_webhooks_create(sw_http_req_t *req, void *ctx);
void sw_api_webhooks_delete(sw_http_req_t *req, void *ctx);
void sw_api_webhooks_deliveries(sw_http_req_t *req, void *ctx);
/* Deploy keys and known hosts (src/api/deploykeys.c). */
void sw_api_deploy_key_get(sw_http_req_t *req, void *ctx);
void sw_api_deploy_key_create(sw_http_req_t *req, void *ctx);
void sw_api_known_hosts_get(sw_http_req_t *req, void *ctx);
void sw_api_known_hosts_put(sw_http_req_t *req, void *ctx);
/* A repository's branches (src/api/branches.c). */
void sw_api_apps_branches(sw_http_req_t *req, void *ctx);
/* Push hooks (src/api/hooks.c). */
void sw_api_hooks_receive(sw_http_req_t *req, void *ctx);
void sw_api_hook_get(sw_http_req_t *req, void *ctx);
void sw_api_hook_rotate(sw_http_req_t *req, void *ctx);
/* Live streams (src/api/live.c). */
void sw_api_deployments_stream(sw_http_req_t *req, void *ctx);
/* NDJSON follow of a deployment's log; tail: replay only the last `tail` lines (0: all). */
void sw_api_deployments_follow(sw_http_req_t *req, void *ctx, unsigned tail);
void sw_api_apps_logs_stream(sw_http_req_t *req, void *ctx);
void sw_api_system_metrics_stream(sw_http_req_t *req, void *ctx);
/* This node's metrics as one JSON object (the data of the stream's metrics messages). */
void sw_api_system_metrics_json(sw_api_t *api, sw_buf_t *out);
/* Nodes and the system snapshot (src/api/nodes.c; the heartbeat is src/node/heartbeat.c). */
void sw_api_nodes_list(sw_http_req_t *req, void *ctx);
void sw_api_nodes_get(sw_http_req_t *req, void *ctx);
void sw_api_system_metrics(sw_http_req_t *req, void *ctx);
/* One metric of every node over time (src/api/history.c). */
void sw_api_system_metrics_history(sw_http_req_t *req, void *ctx);
/* The live-stream metrics (Prometheus text); a collector with the API as payload. */
void sw_api_live_metrics(sw_buf_t *out, void *payload);

/* Builds the OpenAPI 3.1 document from the route table (new reference). */
json_t *sw_api_openapi(const sw_route_t *routes, size_t count, const char *public_url,
                       const char *listen);

#endif
