/* The request path: route, identify, authorise, check origin, find the project, handle. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "internal.h"
#include "slipway/cache.h"
#include "slipway/log.h"
#include "slipway/ws.h"

static const char unmatched_route[] = "unmatched";

/* ---- the request path: route, identify, authorise, check origin, handle ---- */

bool sw_api_is_safe_method(const char *m)
{
    return strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0 || strcmp(m, "OPTIONS") == 0;
}

/* scheme://host[:port] of a URL, lower-cased, into out. */
void sw_api_url_origin(const char *url, char *out, size_t size)
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
        sw_api_url_origin(buf, o, sizeof(o));
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
    [SW_FROM_DOMAIN] = "SELECT a.project_id, m.role, sw_domain_json(d) FROM domains d JOIN apps a "
                       "ON a.id = d.app_id "
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
    if (ctx->cache_key && project_id && strlen(project_id) == SW_UUID_LEN &&
        sw_api_read_cache_check(api))
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
        sw_api_read_cache_check(api)) {
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
    if (ctx->principal.via_cookie && (!sw_api_is_safe_method(req->method) || route->live) &&
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

void sw_api_on_request(sw_http_req_t *req, void *payload)
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

void sw_api_on_response(sw_http_req_t *req, void *payload)
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
    if (api->read_cache && req->route && req->method && !sw_api_is_safe_method(req->method) &&
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
