/* The API role's lifetime: backends, migrations, the HTTP server, request dispatch, drain. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "slipway/api.h"
#include "slipway/hub.h"
#include "slipway/janitor.h"
#include "slipway/live_access.h"
#include "slipway/log.h"
#include "slipway/queue.h"
#include "slipway/webhooks.h"
#include "slipway/ws.h"

#define MIGRATE_RETRY_MAX_MS 10000

/* The read cache: its bounds, the channel sql/005_read_cache.sql notifies, and how often the
 * listener's connection must prove it is alive (two unanswered pings: the cache stops). */
#define READ_CACHE_ENTRIES     10000
#define READ_CACHE_BYTES       (16u << 20)
#define READ_CACHE_CHANNEL     "slipway_read_cache"
#define READ_CACHE_PING_MS     1000
#define READ_CACHE_PING_MISSES 2

static const char unmatched_route[] = "unmatched";

/* ---- the request path: route, identify, authorise, check origin, handle ---- */

static bool is_safe_method(const char *m)
{
    return strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0 || strcmp(m, "OPTIONS") == 0;
}

/* scheme://host[:port] of a URL, lower-cased, into out. */
static void url_origin(const char *url, char *out, size_t size)
{
    const char *p = strstr(url, "://");
    size_t n = 0;
    out[0] = '\0';
    if (!p)
        return;
    const char *end = strpbrk(p + 3, "/?#");
    size_t len = end ? (size_t)(end - url) : strlen(url);
    for (; n + 1 < size && n < len; n++)
        out[n] = (char)tolower((unsigned char)url[n]);
    out[n] = '\0';
}

static bool origin_in_list(const char *list, sw_iov_t origin)
{
    const char *p = list;
    while (p && *p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        while (len && *p == ' ') {
            p++;
            len--;
        }
        while (len && p[len - 1] == ' ')
            len--;
        while (len && p[len - 1] == '/')
            len--;
        if (len == origin.len && strncasecmp(p, origin.base, len) == 0)
            return true;
        p = comma ? comma + 1 : NULL;
    }
    return false;
}

/* CSRF: a cookie carries itself to any site's forms, so a state-changing request that relies
 * on one must show it comes from our own origin. */
static bool origin_allowed(sw_api_t *api, sw_http_req_t *req)
{
    char buf[300];
    sw_iov_t origin = sw_http_req_header(req, "origin");
    if (!origin.len) {
        sw_iov_t referer = sw_http_req_header(req, "referer");
        if (!referer.len || referer.len >= sizeof(buf))
            return false;
        memcpy(buf, referer.base, referer.len);
        buf[referer.len] = '\0';
        char o[300];
        url_origin(buf, o, sizeof(o));
        size_t n = strlen(o);
        memcpy(buf, o, n + 1);
        origin = (sw_iov_t){buf, n};
    }
    if (!origin.len || sw_iov_eq_cstr(origin, "null"))
        return false;
    if (api->public_origin[0] && origin.len == strlen(api->public_origin) &&
        strncasecmp(origin.base, api->public_origin, origin.len) == 0)
        return true;
    if (origin_in_list(api->cfg->allowed_origins, origin))
        return true;
    if (!api->public_origin[0]) {
        sw_iov_t host = sw_http_req_header(req, "host");
        char self[300];
        int n = snprintf(self, sizeof(self), "http://%.*s", (int)SW_MIN(host.len, 256),
                         host.base ? host.base : "");
        return host.len && (size_t)n == origin.len &&
               strncasecmp(self, origin.base, origin.len) == 0;
    }
    return false;
}

/* A same-origin EventSource sends no Origin (browsers send one on every cross-origin
 * EventSource, fetch and WebSocket), and a GET stream without one is nothing another site's
 * page can read. Fetch metadata, when sent, must not say another site asked; a Referer, when
 * sent, is checked like an Origin by origin_allowed. */
static bool same_origin_stream(sw_http_req_t *req)
{
    if (strcmp(req->method, "GET") != 0 || sw_ws_requested(req) ||
        sw_http_req_header(req, "origin").len || sw_http_req_header(req, "referer").len)
        return false;
    sw_iov_t site = sw_http_req_header(req, "sec-fetch-site");
    return !site.len || sw_iov_eq_cstr(site, "same-origin") || sw_iov_eq_cstr(site, "none");
}

/* ---- the read cache ---- */

/* Whether the cache may answer and store now: the listener is in the session the cache was
 * last emptied for, and its connection answers pings. Any change of either empties the cache
 * and moves its generation on, since notifications may have been missed meanwhile. */
static bool read_cache_check(sw_api_t *api)
{
    if (!api->read_cache)
        return false;
    uint64_t session = sw_pg_pool_listen_session(api->listen_pg);
    bool usable = session != 0 && api->ping_misses < READ_CACHE_PING_MISSES;
    if (session != api->read_cache_session || usable != api->read_cache_usable) {
        sw_cache_invalidate(api->read_cache);
        api->read_cache_session = session;
        if (usable != api->read_cache_usable)
            sw_log_kv(usable ? SW_LOG_INFO : SW_LOG_WARN, NULL,
                      usable ? "read cache on" : "read cache off: its PostgreSQL listener is down",
                      NULL);
        api->read_cache_usable = usable;
    }
    return usable;
}

static void on_listen_state(sw_pg_pool_t *pool, void *payload)
{
    (void)pool;
    read_cache_check(payload);
}

static void on_read_cache_notify(sw_pg_pool_t *pool, unsigned count, void *payload)
{
    sw_api_t *api = payload;
    (void)pool;
    api->read_cache_notified += count;
    sw_cache_invalidate(api->read_cache);
    sw_live_access_changed(api->live_access); /* a member removed: streams close too */
}

/* The ping asks the session what it listens to: an answer without the channel counts as none. */
static void on_ping(int status, sw_pg_result_t *res, void *payload)
{
    sw_api_t *api = payload;
    bool listening = false;
    for (int i = 0; status == 0 && i < sw_pg_result_rows(res); i++) {
        const char *channel = sw_pg_result_value(res, i, 0);
        listening |= channel && strcmp(channel, READ_CACHE_CHANNEL) == 0;
    }
    api->ping_in_flight = false;
    api->ping_misses = listening ? 0 : READ_CACHE_PING_MISSES;
    if (!api->stopping)
        read_cache_check(api);
}

static void on_ping_timer(uv_timer_t *t)
{
    sw_api_t *api = sw_container_of(t, sw_api_t, read_cache_ping);
    if (api->ping_in_flight) {
        api->ping_misses++;
        read_cache_check(api);
        return;
    }
    api->ping_in_flight = true;
    sw_pg_query(api->listen_pg, "SELECT pg_listening_channels()", 0, NULL, on_ping, api);
}

/* A cached lookup: [role digit][project id][J and the resource's JSON, or -]. */
static sw_iov_t lookup_encode(sw_arena_t *arena, const char *project_id,
                              sw_project_role_t member_role, const char *json)
{
    size_t jlen = json ? strlen(json) : 0;
    size_t len = 1 + SW_UUID_LEN + 1 + jlen;
    char *v = sw_arena_alloc(arena, len);
    v[0] = (char)('0' + member_role);
    memcpy(v + 1, project_id, SW_UUID_LEN);
    v[1 + SW_UUID_LEN] = json ? 'J' : '-';
    if (jlen)
        memcpy(v + 2 + SW_UUID_LEN, json, jlen);
    return (sw_iov_t){v, len};
}

static void project_found(sw_api_t *api, sw_http_req_t *req, const char *project_id,
                          sw_project_role_t member_role, const char *json);

/* Answers from the cache when it holds the lookup; false when the query must run. */
static bool lookup_cached(sw_api_t *api, sw_http_req_t *req, sw_iov_t key)
{
    sw_iov_t v;
    if (!sw_cache_get(api->read_cache, key, &v))
        return false;
    if (v.len < 2 + SW_UUID_LEN || v.base[0] < '0' || v.base[0] >= '0' + SW_PROJECT_ROLE_MAX) {
        sw_cache_invalidate(api->read_cache); /* never written by lookup_encode */
        return false;
    }
    /* Copied out first: the handler may change the cache. */
    char project_id[SW_UUID_LEN + 1];
    memcpy(project_id, v.base + 1, SW_UUID_LEN);
    project_id[SW_UUID_LEN] = '\0';
    const char *json = NULL;
    if (v.base[1 + SW_UUID_LEN] == 'J')
        json = sw_arena_iovdup(&req->arena,
                               (sw_iov_t){v.base + 2 + SW_UUID_LEN, v.len - 2 - SW_UUID_LEN})
                   .base;
    project_found(api, req, project_id, (sw_project_role_t)(v.base[0] - '0'), json);
    return true;
}

/* ---- project-scoped routes: find the resource's project and the caller's role in it ---- */

/* The read cache keeps these answers: every table they read (through the sw_*_json functions
 * too) must notify slipway_read_cache on change, as sql/005_read_cache.sql sets up. */
static const char *const project_lookup_sql[SW_FROM_MAX] = {
    [SW_FROM_PROJECT] = "SELECT p.id, m.role, sw_project_json(p) FROM projects p LEFT JOIN "
                        "project_members m ON m.project_id = p.id AND m.user_id = $2 "
                        "WHERE p.id = $1",
    [SW_FROM_ENVIRONMENT] = "SELECT e.project_id, m.role, sw_environment_json(e) FROM "
                            "environments e LEFT JOIN "
                            "project_members m ON m.project_id = e.project_id AND m.user_id = $2 "
                            "WHERE e.id = $1",
    [SW_FROM_APP] = "SELECT a.project_id, m.role, sw_app_json(a) FROM apps a LEFT JOIN "
                    "project_members m ON m.project_id = a.project_id AND m.user_id = $2 "
                    "WHERE a.id = $1",
    [SW_FROM_DOMAIN] = "SELECT a.project_id, m.role FROM domains d JOIN apps a ON a.id = d.app_id "
                       "LEFT JOIN project_members m ON m.project_id = a.project_id "
                       "AND m.user_id = $2 WHERE d.id = $1",
    [SW_FROM_DEPLOYMENT] = "SELECT d.project_id, m.role, sw_deployment_json(d) FROM "
                           "deployments d LEFT JOIN project_members m ON m.project_id = "
                           "d.project_id AND m.user_id = $2 WHERE d.id = $1",
    [SW_FROM_BODY_ENV] = "SELECT e.project_id, m.role FROM environments e LEFT JOIN "
                         "project_members m ON m.project_id = e.project_id AND m.user_id = $2 "
                         "WHERE e.id = $1",
};

static const char *const from_noun[SW_FROM_MAX] = {
    [SW_FROM_PROJECT] = "project",
    [SW_FROM_ENVIRONMENT] = "environment",
    [SW_FROM_APP] = "app",
    [SW_FROM_DOMAIN] = "domain",
    [SW_FROM_BODY_ENV] = "environment",
    [SW_FROM_DEPLOYMENT] = "deployment",
};

static void not_found(sw_http_req_t *req)
{
    const sw_route_t *route = req->route;
    char msg[64];
    snprintf(msg, sizeof(msg), "no such %s", from_noun[route->access.project_from]);
    sw_http_respond_error(req, 404, "RESOURCE_NOT_FOUND", msg, NULL);
}

static void project_found(sw_api_t *api, sw_http_req_t *req, const char *project_id,
                          sw_project_role_t member_role, const char *json)
{
    sw_api_req_t *ctx = sw_api_req(req);
    const sw_route_t *route = req->route;
    snprintf(ctx->project_id, sizeof(ctx->project_id), "%s", project_id);
    /* The resource itself rides along, so a plain GET needs no second query. */
    if (json)
        ctx->resource_json = json;
    ctx->project_role = sw_api_is_instance_admin(&ctx->principal) ? SW_PROJECT_ADMIN : member_role;
    if (ctx->project_role == SW_PROJECT_NONE) {
        not_found(req); /* a project the caller is not part of does not exist for them */
        return;
    }
    if (ctx->project_role < route->access.project_role) {
        char msg[160];
        snprintf(msg, sizeof(msg), "this action needs the project role %s; you are %s",
                 sw_project_role_name((sw_project_role_t)route->access.project_role),
                 sw_project_role_name(ctx->project_role));
        sw_http_respond_error(req, 403, "INSUFFICIENT_ROLE", msg, NULL);
        return;
    }
    route->handler(req, api);
}

static void on_project(int status, sw_pg_result_t *res, void *payload)
{
    sw_http_req_t *req = payload;
    sw_api_req_t *ctx = sw_api_req(req);
    sw_api_t *api = ctx->state;
    ctx->state = NULL;
    if (status != 0) {
        sw_api_db_error(req, status, res);
        return;
    }
    if (sw_pg_result_rows(res) != 1) {
        not_found(req);
        return;
    }
    const char *project_id = sw_pg_result_value(res, 0, 0);
    sw_project_role_t member_role = sw_project_role_parse(sw_pg_result_value(res, 0, 1));
    const char *json = NULL;
    if (sw_pg_result_cols(res) > 2 && sw_pg_result_value(res, 0, 2))
        json = sw_arena_strdup(&req->arena, sw_pg_result_value(res, 0, 2));
    /* Stored only when no invalidation came while the query ran: its rows may predate it. */
    if (ctx->cache_key && project_id && strlen(project_id) == SW_UUID_LEN && read_cache_check(api))
        sw_cache_put(api->read_cache, ctx->cache_generation, sw_iov_from_cstr(ctx->cache_key),
                     lookup_encode(&req->arena, project_id, member_role, json));
    project_found(api, req, project_id ? project_id : "", member_role, json);
}

static void project_lookup(sw_api_t *api, sw_http_req_t *req)
{
    const sw_route_t *route = req->route;
    sw_api_req_t *ctx = sw_api_req(req);
    char id[SW_UUID_LEN + 1];
    if (route->access.project_from == SW_FROM_BODY_ENV) {
        json_t *body = sw_api_json(req);
        if (!body)
            return;
        json_t *env = json_object_get(body, "environment_id");
        if (!json_is_string(env)) {
            sw_json_errors_t e;
            sw_json_errors_init(&e);
            sw_json_errors_add(&e, "environment_id", env ? "must be a string" : "is required");
            sw_api_validation_error(req, &e);
            return;
        }
        if (!sw_iov_is_uuid(sw_iov_from_cstr(json_string_value(env)))) {
            sw_json_errors_t e;
            sw_json_errors_init(&e);
            sw_json_errors_add(&e, "environment_id", "must be a UUID");
            sw_api_validation_error(req, &e);
            return;
        }
        snprintf(id, sizeof(id), "%s", json_string_value(env));
    } else {
        sw_iov_t param = sw_http_req_param(req, "id");
        if (!sw_iov_is_uuid(param)) {
            not_found(req);
            return;
        }
        memcpy(id, param.base, SW_UUID_LEN);
        id[SW_UUID_LEN] = '\0';
    }
    /* GET and HEAD may be answered from the read cache, keyed by who asks about what. */
    if (api->read_cache && (strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0) &&
        route->access.project_from != SW_FROM_BODY_ENV && ctx->principal.user_id[0] &&
        read_cache_check(api)) {
        char *key = sw_arena_printf(&req->arena, "%s %u %s", ctx->principal.user_id,
                                    (unsigned)route->access.project_from, id);
        if (lookup_cached(api, req, sw_iov_from_cstr(key)))
            return;
        ctx->cache_key = key;
        ctx->cache_generation = sw_cache_generation(api->read_cache);
    }
    const char *params[] = {id, ctx->principal.user_id};
    ctx->state = api;
    sw_pg_query(api->pg, project_lookup_sql[route->access.project_from], 2, params, on_project,
                req);
}

static void authorised(sw_api_t *api, sw_http_req_t *req)
{
    const sw_route_t *route = req->route;
    sw_api_req_t *ctx = sw_api_req(req);
    char why[200];
    int code = sw_access_check(&route->access, &ctx->principal, why, sizeof(why));
    if (code == 401) {
        sw_http_add_header(req, "WWW-Authenticate", "Bearer");
        sw_http_respond_error(req, 401, "AUTHENTICATION_ERROR", why, NULL);
        return;
    }
    if (code != 0) {
        sw_http_respond_error(req, 403, "INSUFFICIENT_ROLE", why, NULL);
        return;
    }
    /* A cookie reaches a WebSocket from any page (no CORS there): streams check the Origin
     * like changes do, or any site could watch a signed-in user's logs. */
    if (ctx->principal.via_cookie && (!is_safe_method(req->method) || route->live) &&
        !origin_allowed(api, req) && !(route->live && same_origin_stream(req))) {
        sw_http_respond_error(req, 403, "INSUFFICIENT_ROLE",
                              "cross-origin request refused: a cookie-authenticated change "
                              "needs an Origin of this instance (or use a bearer token)",
                              NULL);
        return;
    }
    if (route->access.project_from != SW_FROM_NONE) {
        project_lookup(api, req);
        return;
    }
    route->handler(req, api);
}

/* After the rate limit: refuse bad credentials, then authorise. */
static void after_limits(sw_api_t *api, sw_http_req_t *req)
{
    sw_api_req_t *ctx = sw_api_req(req);
    const sw_route_t *route = req->route;
    if (ctx->resolve_status == -ENOENT) {
        /* A stale cookie must not lock anyone out of the public routes (the login page);
         * a bad bearer token is a client error worth saying so. */
        if (!ctx->principal.via_cookie || route->access.auth != SW_AUTH_PUBLIC) {
            sw_http_add_header(req, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
            sw_http_respond_error(req, 401, "AUTHENTICATION_ERROR",
                                  "the session or token is invalid, expired or revoked", NULL);
            return;
        }
        ctx->principal.via_cookie = false;
    } else if (ctx->resolve_status != 0) {
        sw_api_db_error(req, ctx->resolve_status, NULL);
        return;
    }
    authorised(api, req);
}

static void on_principal(int status, const sw_principal_t *p, void *payload)
{
    sw_http_req_t *req = payload;
    sw_api_req_t *ctx = sw_api_req(req);
    sw_api_t *api = ctx->state; /* carried across the lookup by on_request */
    bool via_cookie = ctx->principal.via_cookie;

    ctx->state = NULL;
    ctx->resolve_status = status;
    if (status == 0) {
        ctx->principal = *p;
        ctx->principal.via_cookie = via_cookie;
    } else {
        memset(&ctx->principal, 0, sizeof(ctx->principal));
        ctx->principal.via_cookie = via_cookie;
    }
    sw_api_limits_principal(api, req, after_limits);
}

static void run_handler(sw_api_t *api, sw_http_req_t *req)
{
    const sw_route_t *route = req->route;
    route->handler(req, api);
}

static void stateless_after_address(sw_api_t *api, sw_http_req_t *req)
{
    sw_api_limits_principal(api, req, run_handler); /* anonymous: adds the headers */
}

/* After the address bucket: look up the credentials, if any. */
static void identify(sw_api_t *api, sw_http_req_t *req)
{
    sw_api_req_t *ctx = sw_api_req(req);
    sw_iov_t token = ctx->token;
    if (!token.len) {
        sw_api_limits_principal(api, req, after_limits);
        return;
    }
    ctx->state = api;
    sw_auth_resolve(api->auth, token.base, token.len, on_principal, req);
}

static void on_request(sw_http_req_t *req, void *payload)
{
    sw_api_t *api = payload;
    char allow[128];
    int r = sw_router_match(api->router, req, allow, sizeof(allow));
    if (r == -ENOENT) {
        sw_http_respond_error(req, 404, "RESOURCE_NOT_FOUND", "no such resource", NULL);
        return;
    }
    if (r == -ENOTSUP) {
        sw_http_add_header(req, "Allow", allow);
        char msg[192];
        snprintf(msg, sizeof(msg), "method %s is not allowed here; allowed: %s", req->method,
                 allow);
        sw_http_respond_error(req, 405, "METHOD_NOT_ALLOWED", msg, NULL);
        return;
    }

    const sw_route_t *route = req->route;
    if (!api->migrated && !route->stateless) {
        sw_http_add_header(req, "Retry-After", "1");
        sw_http_respond_error(req, 503, "SERVICE_UNAVAILABLE",
                              "starting up: the schema is not migrated yet", NULL);
        return;
    }
    if (route->stateless) {
        /* Probes and the API description need no identity: never look one up for them. The
         * description still spends the address's API budget. */
        if (strncmp(route->pattern, "/api/v1/", 8) == 0)
            sw_api_limits_address(api, req, stateless_after_address);
        else
            route->handler(req, api);
        return;
    }
    sw_api_req_t *ctx = sw_api_req(req);
    sw_iov_t token = SW_IOV_NULL;
    sw_iov_t authz = sw_http_req_header(req, "authorization");
    if (authz.len) {
        if (authz.len > 7 && strncasecmp(authz.base, "Bearer ", 7) == 0) {
            token = (sw_iov_t){authz.base + 7, authz.len - 7};
            while (token.len && token.base[0] == ' ') {
                token.base++;
                token.len--;
            }
        } else if (!(authz.len > 6 && strncasecmp(authz.base, "Basic ", 6) == 0 &&
                     strcmp(req->route_pattern, "/api/v1/auth/token") == 0)) {
            sw_http_add_header(req, "WWW-Authenticate", "Bearer");
            sw_http_respond_error(req, 401, "AUTHENTICATION_ERROR",
                                  "unsupported Authorization scheme: use Bearer", NULL);
            return;
        }
    } else {
        /* Browsers cannot set headers on a WebSocket or EventSource: streams take ?token=. */
        const char *query_token = route->live ? sw_http_req_query(req, "token") : NULL;
        if (query_token) {
            token = sw_iov_from_cstr(query_token);
        } else {
            token = sw_http_req_cookie(req, "slipway_session");
            ctx->principal.via_cookie = token.len > 0;
        }
    }
    ctx->token = token;
    sw_api_limits_address(api, req, identify);
}

static void on_response(sw_http_req_t *req, void *payload)
{
    sw_api_t *api = payload;
    sw_api_req_t *ctx = req->user;
    if (ctx && ctx->body) {
        json_decref(ctx->body);
        ctx->body = NULL;
    }
    /* Read-your-writes: whatever this process changed is never answered from the cache
     * afterwards, without waiting for the notification. Only requests refused before any
     * handler ran (401, 429) are sure to have changed nothing. */
    if (api->read_cache && req->route && req->method && !is_safe_method(req->method) &&
        req->status != 401 && req->status != 429)
        sw_cache_invalidate(api->read_cache);
    double secs = (double)(sw_now_ns() - req->start_ns) / 1e9;
    const char *route = req->route_pattern ? req->route_pattern : unmatched_route;
    sw_metrics_http_observe(api->metrics, route, req->method ? req->method : "UNKNOWN", req->status,
                            secs);
    if (req->status >= 500 || sw_log_enabled(SW_LOG_DEBUG)) {
        char status[8], dur[32];
        snprintf(status, sizeof(status), "%d", req->status);
        snprintf(dur, sizeof(dur), "%.3f", secs * 1000.0);
        sw_log_kv(req->status >= 500 ? SW_LOG_WARN : SW_LOG_DEBUG, req->request_id, "request",
                  "method", req->method ? req->method : "", "route", route, "status", status,
                  "duration_ms", dur, NULL);
    }
}

/* ---- migrations: on the threadpool, retried with backoff until they succeed ---- */

static void migrate_schedule(sw_api_t *api);
static void on_instance_retry(uv_timer_t *t);
static void on_drained(sw_http_server_t *server, void *payload);

static void migrate_work(uv_work_t *w)
{
    sw_api_t *api = sw_container_of(w, sw_api_t, migrate_work);
    api->migrate_applied = 0;
    api->migrate_status = sw_migrate_run(api->cfg->database_url, &api->migrate_applied,
                                         api->migrate_err, sizeof(api->migrate_err));
}

static void instance_load(sw_api_t *api);

/* The instance id names the queue's Redis keys; the worker starts once it is known. */
static void on_instance(int status, sw_pg_result_t *res, void *payload)
{
    sw_api_t *api = payload;
    if (api->stopping)
        return;
    if (status != 0 || sw_pg_result_rows(res) != 1) {
        uv_timer_start(&api->migrate_timer, on_instance_retry, 1000, 0);
        return;
    }
    sw_queue_set_instance(sw_pg_result_value(res, 0, 0));
    if (!api->hub) {
        sw_hub_opts_t ho = {
            .queue_max_msgs = SW_LIVE_QUEUE_MSGS,
            .queue_max_bytes = SW_LIVE_QUEUE_BYTES,
            .write_window = SW_LIVE_WRITE_WINDOW,
            .node = api->node,
            .instance = sw_pg_result_value(res, 0, 0),
        };
        if (sw_hub_new(&api->hub, api->loop, api->redis, &ho) != 0)
            sw_log(SW_LOG_ERROR, NULL, "the live hub did not start");
    }
    if (api->cfg->role != SW_NODE_API && !api->worker) {
        int r = sw_worker_start(&api->worker, api->loop, api->cfg, api->pg, &api->box, api->hub,
                                api->node);
        if (r != 0)
            sw_log_kv(SW_LOG_ERROR, NULL, "the deployment worker did not start", "error",
                      sw_strerror(r), NULL);
        else
            sw_log_kv(SW_LOG_INFO, NULL, "deployment worker started", "node", api->node, NULL);
    }
    if (api->cfg->role != SW_NODE_API && !api->webhooks &&
        sw_webhooks_start(&api->webhooks, api->loop, api->cfg, api->pg, &api->box) != 0)
        sw_log(SW_LOG_ERROR, NULL, "the webhook dispatcher did not start");
    if (api->cfg->role != SW_NODE_API && !api->janitor &&
        sw_janitor_start(&api->janitor, api->loop, api->cfg, api->pg, api->redis) != 0)
        sw_log(SW_LOG_ERROR, NULL, "the janitor did not start");
    if (!api->nodes)
        api->nodes = sw_api_nodes_start(api);
}

static void instance_load(sw_api_t *api)
{
    sw_pg_query(api->pg, "SELECT id FROM instance", 0, NULL, on_instance, api);
}

static void on_instance_retry(uv_timer_t *t)
{
    sw_api_t *api = sw_container_of(t, sw_api_t, migrate_timer);
    if (!api->stopping)
        instance_load(api);
}

static void migrate_after(uv_work_t *w, int status)
{
    sw_api_t *api = sw_container_of(w, sw_api_t, migrate_work);
    api->migrating = false;
    if (api->stopping)
        return;
    if (status == 0 && api->migrate_status == 0) {
        char n[16];
        snprintf(n, sizeof(n), "%d", api->migrate_applied);
        api->migrated = true;
        sw_log_kv(SW_LOG_INFO, NULL, "migrations applied", "applied", n, NULL);
        instance_load(api);
        return;
    }
    sw_log_kv(SW_LOG_WARN, NULL, "migrations failed; retrying", "error", api->migrate_err, NULL);
    migrate_schedule(api);
}

static void on_migrate_timer(uv_timer_t *t)
{
    sw_api_t *api = sw_container_of(t, sw_api_t, migrate_timer);
    if (api->stopping || api->migrating)
        return;
    api->migrating = true;
    api->migrate_attempts++;
    if (uv_queue_work(api->loop, &api->migrate_work, migrate_work, migrate_after) != 0) {
        api->migrating = false;
        migrate_schedule(api);
    }
}

static void migrate_schedule(sw_api_t *api)
{
    uint64_t delay = api->migrate_attempts == 0 ? 0 : 250u << SW_MIN(api->migrate_attempts, 6u);
    uv_timer_start(&api->migrate_timer, on_migrate_timer, SW_MIN(delay, MIGRATE_RETRY_MAX_MS), 0);
}

/* ---- backends ---- */

static void on_pg_state(sw_pg_pool_t *pool, void *payload)
{
    sw_api_t *api = payload;
    (void)pool;
    sw_api_health_kick(api);
}

static void on_redis_state(sw_redis_t *r, void *payload)
{
    sw_api_t *api = payload;
    (void)r;
    sw_api_health_kick(api);
}

static void collect_worker(sw_buf_t *out, void *payload)
{
    sw_api_t *api = payload;
    if (api->worker)
        sw_worker_metrics(out, api->worker);
}

static void collect_backends(sw_buf_t *out, void *payload)
{
    sw_api_t *api = payload;
    sw_pg_pool_stats_t st;
    sw_http_server_stats_t hs;
    sw_pg_pool_stats(api->pg, &st);
    sw_http_server_stats(api->http, &hs);
    sw_buf_printf(out,
                  "# HELP slipway_pg_pool_connections PostgreSQL pool connections by state.\n"
                  "# TYPE slipway_pg_pool_connections gauge\n"
                  "slipway_pg_pool_connections{state=\"idle\"} %u\n"
                  "slipway_pg_pool_connections{state=\"busy\"} %u\n"
                  "slipway_pg_pool_connections{state=\"connecting\"} %u\n"
                  "slipway_pg_pool_connections{state=\"down\"} %u\n"
                  "# HELP slipway_pg_pool_queued Queries waiting for a connection.\n"
                  "# TYPE slipway_pg_pool_queued gauge\n"
                  "slipway_pg_pool_queued %llu\n"
                  "# HELP slipway_redis_up Whether the Redis command connection is up.\n"
                  "# TYPE slipway_redis_up gauge\n"
                  "slipway_redis_up %d\n"
                  "# HELP slipway_redis_subscriber_up Whether the Redis subscription connection "
                  "is up.\n"
                  "# TYPE slipway_redis_subscriber_up gauge\n"
                  "slipway_redis_subscriber_up %d\n"
                  "# HELP slipway_http_connections Open HTTP connections.\n"
                  "# TYPE slipway_http_connections gauge\n"
                  "slipway_http_connections %llu\n"
                  "# HELP slipway_http_connections_rejected_total Connections refused over the "
                  "cap.\n"
                  "# TYPE slipway_http_connections_rejected_total counter\n"
                  "slipway_http_connections_rejected_total %llu\n",
                  st.idle, st.busy, st.connecting, st.down, (unsigned long long)st.queued,
                  sw_redis_up(api->redis) ? 1 : 0, sw_redis_subscriber_up(api->redis) ? 1 : 0,
                  (unsigned long long)hs.connections, (unsigned long long)hs.rejected);
    sw_buf_append_cstr(out, "# HELP slipway_pg_query_duration_seconds Time from sending a "
                            "query to its outcome.\n"
                            "# TYPE slipway_pg_query_duration_seconds histogram\n");
    sw_histogram_render(sw_pg_pool_durations(api->pg), out, "slipway_pg_query_duration_seconds",
                        "");
}

static void collect_read_cache(sw_buf_t *out, void *payload)
{
    sw_api_t *api = payload;
    sw_cache_stats_t st = {0};
    bool up = read_cache_check(api);
    if (api->read_cache)
        sw_cache_stats(api->read_cache, &st);
    sw_buf_printf(out,
                  "# HELP slipway_read_cache_hits_total Project lookups answered from the read "
                  "cache.\n"
                  "# TYPE slipway_read_cache_hits_total counter\n"
                  "slipway_read_cache_hits_total %llu\n"
                  "# HELP slipway_read_cache_misses_total Project lookups the read cache did not "
                  "hold while it was on.\n"
                  "# TYPE slipway_read_cache_misses_total counter\n"
                  "slipway_read_cache_misses_total %llu\n"
                  "# HELP slipway_read_cache_invalidations_total Times the read cache was "
                  "emptied: a notification, a write here, the listener's state.\n"
                  "# TYPE slipway_read_cache_invalidations_total counter\n"
                  "slipway_read_cache_invalidations_total %llu\n"
                  "# HELP slipway_read_cache_notifications_total Change notifications received "
                  "from PostgreSQL.\n"
                  "# TYPE slipway_read_cache_notifications_total counter\n"
                  "slipway_read_cache_notifications_total %llu\n"
                  "# HELP slipway_read_cache_evictions_total Entries dropped to stay within the "
                  "bounds.\n"
                  "# TYPE slipway_read_cache_evictions_total counter\n"
                  "slipway_read_cache_evictions_total %llu\n"
                  "# HELP slipway_read_cache_entries Entries in the read cache.\n"
                  "# TYPE slipway_read_cache_entries gauge\n"
                  "slipway_read_cache_entries %zu\n"
                  "# HELP slipway_read_cache_bytes Bytes the read cache holds.\n"
                  "# TYPE slipway_read_cache_bytes gauge\n"
                  "slipway_read_cache_bytes %zu\n"
                  "# HELP slipway_read_cache_up Whether the read cache answers (on, and its "
                  "listener up).\n"
                  "# TYPE slipway_read_cache_up gauge\n"
                  "slipway_read_cache_up %d\n",
                  (unsigned long long)st.hits, (unsigned long long)st.misses,
                  (unsigned long long)st.invalidations,
                  (unsigned long long)api->read_cache_notified, (unsigned long long)st.evictions,
                  st.entries, st.bytes, up ? 1 : 0);
}

/* The cache and the connection that LISTENs for what empties it. */
static int read_cache_start(sw_api_t *api)
{
    const sw_config_t *cfg = api->cfg;
    sw_pg_pool_opts_t lo = {
        .conninfo = cfg->database_url,
        .size = 1,
        .query_timeout_ms = cfg->pg_query_timeout_ms,
        .connect_timeout_ms = cfg->pg_connect_timeout_ms,
        .on_state = on_listen_state,
        .payload = api,
        .listen_channel = READ_CACHE_CHANNEL,
        .on_notify = on_read_cache_notify,
    };
    int r = sw_pg_pool_new(&api->listen_pg, api->loop, &lo);
    if (r != 0)
        return r;
    api->read_cache = sw_cache_new(READ_CACHE_ENTRIES, READ_CACHE_BYTES);
    uv_timer_init(api->loop, &api->read_cache_ping);
    uv_timer_start(&api->read_cache_ping, on_ping_timer, READ_CACHE_PING_MS, READ_CACHE_PING_MS);
    return 0;
}

int sw_api_start(sw_api_t *api, uv_loop_t *loop, const sw_config_t *cfg, unsigned worker_index)
{
    char err[256];
    int r;

    memset(api, 0, sizeof(*api));
    api->loop = loop;
    api->cfg = cfg;
    uv_timeval64_t now;
    if (uv_gettimeofday(&now) == 0)
        api->started_at_ms = (uint64_t)now.tv_sec * 1000u + (uint64_t)now.tv_usec / 1000u;
    api->worker_index = worker_index;
    api->metrics = sw_metrics_new();

    r = sw_router_new(&api->router, sw_api_routes, sw_api_routes_count, err, sizeof(err));
    if (r != 0) {
        sw_log_kv(SW_LOG_ERROR, NULL, "route table is invalid", "error", err, NULL);
        return r;
    }

    sw_pg_pool_opts_t pgo = {
        .conninfo = cfg->database_url,
        .size = cfg->pg_pool_size,
        .query_timeout_ms = cfg->pg_query_timeout_ms,
        .connect_timeout_ms = cfg->pg_connect_timeout_ms,
        .on_state = on_pg_state,
        .payload = api,
    };
    r = sw_pg_pool_new(&api->pg, loop, &pgo);
    if (r != 0) {
        sw_log_kv(SW_LOG_ERROR, NULL, "cannot create the PostgreSQL pool", "error", sw_strerror(r),
                  NULL);
        return r;
    }
    sw_redis_opts_t ro = {
        .url = cfg->redis_url,
        .timeout_ms = cfg->redis_timeout_ms,
        .on_state = on_redis_state,
        .payload = api,
    };
    r = sw_redis_new(&api->redis, loop, &ro);
    if (r != 0) {
        sw_log_kv(SW_LOG_ERROR, NULL, "cannot create the Redis client", "error", sw_strerror(r),
                  NULL);
        return r;
    }

    char kerr[256];
    r = sw_secretbox_load(&api->box, cfg->master_key, cfg->data_dir, kerr, sizeof(kerr));
    if (r != 0) {
        sw_log_kv(SW_LOG_ERROR, NULL, "cannot load the master key", "error", kerr, NULL);
        return r;
    }
    sw_auth_opts_t ao = {
        .session_idle_s = SW_SESSION_IDLE_S,
        .session_absolute_s = SW_SESSION_ABSOLUTE_S,
        .cache_max = 10000,
    };
    r = sw_auth_new(&api->auth, loop, api->pg, api->redis, &ao);
    if (r != 0) {
        sw_log_kv(SW_LOG_ERROR, NULL, "cannot start the session cache", "error", sw_strerror(r),
                  NULL);
        return r;
    }
    /* Five failed logins a minute per address and per account; they never switch off. */
    api->login_by_address = sw_ratelimit_new(5, 60000, 5, 100000);
    api->login_by_account = sw_ratelimit_new(5, 60000, 5, 100000);
    url_origin(cfg->public_url, api->public_origin, sizeof(api->public_origin));
    api->limits = sw_api_limits_new(cfg);

    sw_http_server_opts_t ho = {
        .max_header_bytes = cfg->max_header_bytes,
        .max_headers = cfg->max_headers,
        .max_body_bytes = cfg->max_body_bytes,
        .max_connections = cfg->max_connections,
        .max_pipelined = cfg->max_pipelined,
        .header_timeout_ms = cfg->header_timeout_ms,
        .body_timeout_ms = cfg->body_timeout_ms,
        .idle_timeout_ms = cfg->idle_timeout_ms,
        .drain_timeout_ms = cfg->drain_timeout_ms,
        .reuse_port = cfg->http_workers > 1,
        .on_request = on_request,
        .on_response = on_response,
        .on_drained = on_drained,
        .payload = api,
    };
    sw_http_server_new(&api->http, loop, &ho);

    if (cfg->read_cache && cfg->role != SW_NODE_WORKER) {
        r = read_cache_start(api);
        if (r != 0) {
            sw_log_kv(SW_LOG_ERROR, NULL, "cannot start the read cache's listener", "error",
                      sw_strerror(r), NULL);
            return r;
        }
    }
    sw_metrics_add_collector(api->metrics, collect_backends, api);
    sw_metrics_add_collector(api->metrics, collect_read_cache, api);
    sw_metrics_add_collector(api->metrics, sw_api_live_metrics, api);
    sw_metrics_add_collector(api->metrics, collect_worker, api);
    sw_metrics_add_collector(api->metrics, sw_metrics_process, NULL);

    uv_timer_init(loop, &api->migrate_timer);
    uv_timer_init(loop, &api->health_timer);
    uv_timer_init(loop, &api->metrics_timer);
    api->metrics_timer.data = api;
    migrate_schedule(api);
    sw_api_health_start(api);

    const char *host = getenv("HOSTNAME");
    char hostname[128] = "";
    if (gethostname(hostname, sizeof(hostname) - 1) != 0)
        snprintf(hostname, sizeof(hostname), "%s", host ? host : "node");
    /* A configured node name is stable across restarts, so a restarted worker recognises the
     * deployments it owned; without one, the process id keeps several local workers apart. */
    if (cfg->node_name[0])
        snprintf(api->node, sizeof(api->node), "%s-%u", cfg->node_name, worker_index);
    else
        snprintf(api->node, sizeof(api->node), "%s-%d", hostname, (int)getpid());

    if (cfg->role == SW_NODE_WORKER)
        return 0; /* a worker-only process serves no HTTP */
    char *list = sw_strdup(cfg->listen), *save = NULL;
    for (char *item = strtok_r(list, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        r = sw_http_server_listen(api->http, item);
        if (r != 0) {
            sw_log_kv(SW_LOG_ERROR, NULL, "cannot listen", "address", item, "error", sw_strerror(r),
                      NULL);
            free(list);
            return r;
        }
    }
    free(list);
    for (unsigned i = 0;; i++) {
        char addr[80];
        if (sw_http_server_address(api->http, i, addr, sizeof(addr)) != 0)
            break;
        sw_log_kv(SW_LOG_INFO, NULL, "listening", "address", addr, NULL);
    }
    return 0;
}

/* ---- stopping ---- */

static void closed_one(sw_api_t *api)
{
    if (--api->closes_pending > 0)
        return;
    sw_http_server_free(api->http);
    api->http = NULL;
    sw_router_free(api->router);
    api->router = NULL;
    sw_metrics_free(api->metrics);
    api->metrics = NULL;
    sw_buf_free(&api->openapi);
    sw_cache_free(api->read_cache);
    api->read_cache = NULL;
    if (api->on_stopped)
        api->on_stopped(api);
}

static void on_handle_closed(uv_handle_t *h)
{
    closed_one(h->data);
}

static void on_backend_closed(void *payload)
{
    closed_one(payload);
}

static void close_backends(sw_api_t *api);

/* The janitor, the webhook dispatcher, the worker or the heartbeat stopped: on to the next. */
static void on_part_stopped(void *payload)
{
    sw_api_t *api = payload;
    on_drained(api->http, api);
}

static void on_drained(sw_http_server_t *server, void *payload)
{
    sw_api_t *api = payload;
    (void)server;
    api->worker_draining = NULL; /* back here, the worker (if it was draining) has stopped */
    /* A janitor round ends at its next step; it needs PostgreSQL and Redis until then. */
    if (api->janitor) {
        sw_janitor_t *j = api->janitor;
        api->janitor = NULL;
        sw_janitor_stop(j, on_part_stopped, api);
        return;
    }
    /* Webhook attempts in flight are abandoned and due again at once, for the next process. */
    if (api->webhooks) {
        sw_webhooks_t *wh = api->webhooks;
        api->webhooks = NULL;
        sw_webhooks_stop(wh, on_part_stopped, api);
        return;
    }
    /* Requests are finished; running deployments go back to the queue next. */
    if (api->worker) {
        sw_worker_t *w = api->worker;
        api->worker = NULL;
        api->worker_draining = w;
        sw_worker_stop(w, on_part_stopped, api);
        return;
    }
    /* Last, with nothing left running here: this node's row says it stopped. */
    if (api->nodes) {
        sw_api_nodes_t *n = api->nodes;
        api->nodes = NULL;
        sw_api_nodes_stop(n, on_part_stopped, api);
        return;
    }
    close_backends(api);
}

static void close_backends(sw_api_t *api)
{
    /* Now nothing needs the backends. */
    api->closes_pending = 4;
    api->health_timer.data = api;
    api->migrate_timer.data = api;
    uv_close((uv_handle_t *)&api->health_timer, on_handle_closed);
    uv_close((uv_handle_t *)&api->migrate_timer, on_handle_closed);
    api->closes_pending++;
    uv_close((uv_handle_t *)&api->metrics_timer, on_handle_closed);
    /* The drain closed every stream, so no watcher is left; the worker has stopped. */
    sw_hub_free(api->hub);
    api->hub = NULL;
    sw_live_access_free(api->live_access);
    api->live_access = NULL;
    if (api->listen_pg) {
        api->closes_pending += 2;
        api->read_cache_ping.data = api;
        uv_close((uv_handle_t *)&api->read_cache_ping, on_handle_closed);
        sw_pg_pool_close(api->listen_pg, on_backend_closed, api);
        api->listen_pg = NULL;
    }
    sw_auth_free(api->auth);
    api->auth = NULL;
    sw_ratelimit_free(api->login_by_address);
    sw_ratelimit_free(api->login_by_account);
    api->login_by_address = api->login_by_account = NULL;
    sw_secretbox_clear(&api->box);
    sw_api_limits_free(api->limits);
    api->limits = NULL;
    sw_pg_pool_close(api->pg, on_backend_closed, api);
    sw_redis_close(api->redis, on_backend_closed, api);
    api->pg = NULL;
    api->redis = NULL;
}

void sw_api_stop(sw_api_t *api, void (*on_stopped)(sw_api_t *api))
{
    if (api->stopping)
        return;
    api->stopping = true;
    api->on_stopped = on_stopped;
    uv_timer_stop(&api->health_timer);
    uv_timer_stop(&api->metrics_timer);
    uv_timer_stop(&api->migrate_timer);
    if (api->listen_pg)
        uv_timer_stop(&api->read_cache_ping);
    sw_log(SW_LOG_INFO, NULL, "draining");
    /* A migration on the threadpool cannot be interrupted; the loop waits for it. */
    sw_http_server_drain(api->http);
}
