/* /api/v1/webhooks: outgoing webhooks and their delivery attempts.
 *
 * Access: a webhook that watches every project (no project_id) belongs to the instance, so
 * only instance admins create, see and delete it; a project's webhook belongs to that
 * project's admins (and instance admins). Anyone else sees neither: 404, as for any project
 * resource they cannot see, except a project member below admin creating one (403). The
 * audit log keeps only a webhook's scheme://host[:port]: paths and queries often carry the
 * receiver's own tokens. */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "slipway/api.h"
#include "slipway/webhooks.h"

#include "internal.h"

static const char *const event_names[] = {
    "deployment.started",   "deployment.succeeded", "deployment.failed",
    "deployment.cancelled", "app.created",          "app.deleted",
};

static const sw_api_sort_t webhook_sorts[] = {
    {"created_at", "created_at"},
    {"url", "url"},
    {NULL, NULL},
};

static const sw_api_sort_t attempt_sorts[] = {
    {"created_at", "created_at"},
    {"attempt", "attempt"},
    {NULL, NULL},
};

/* The caller may manage this webhook: instance admin, or admin of its project. $2: the admin
 * flag, $3: the user id. */
#define MANAGEABLE                                                                                 \
    "($2::bool OR project_id IN (SELECT project_id FROM project_members WHERE user_id = "          \
    "$3::uuid AND role = 'admin'))"

typedef struct {
    sw_http_req_t *req;
    sw_api_t *api;
    const char *url;
    const char *events; /* a PostgreSQL array literal of known names */
    const char *project_id;
    char host[sizeof(((sw_webhook_url_t *)0)->host)];
    uint16_t port;
    char secret[2 * SW_WEBHOOK_SECRET_BYTES + 1]; /* the only copy in plain text */
} create_t;

static void new_uuid(char out[SW_UUID_LEN + 1])
{
    unsigned char b[16];
    randombytes_buf(b, sizeof(b));
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    snprintf(out, SW_UUID_LEN + 1,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
             b[15]);
}

static void respond_422(sw_http_req_t *req, const char *field, const char *msg)
{
    sw_json_errors_t e;
    sw_json_errors_init(&e);
    sw_json_errors_add(&e, field, "%s", msg);
    char *text = sw_arena_printf(&req->arena, "invalid request: %s %s", field, msg);
    sw_http_respond_error(req, 422, "VALIDATION_ERROR", text, sw_json_errors_take(&e));
}

static void on_inserted(int status, sw_pg_result_t *res, void *payload)
{
    create_t *c = payload;
    sw_http_req_t *req = c->req;
    if (status == SW_EREFERENCED) {
        sw_http_respond_error(req, 404, "RESOURCE_NOT_FOUND", "no such project", NULL);
    } else if (!sw_api_db_failed(req, status, res)) {
        json_t *w = json_loads(sw_pg_result_value(res, 0, 0), 0, NULL);
        if (!w) {
            sw_http_respond_error(req, 500, "INTERNAL_ERROR", "internal error", NULL);
        } else {
            json_object_set_new(w, "secret", json_string(c->secret));
            sw_http_respond_json(req, 201, w);
        }
    }
    sodium_memzero(c->secret, sizeof(c->secret));
}

static void insert(create_t *c)
{
    sw_http_req_t *req = c->req;
    sw_api_req_t *r = sw_api_req(req);
    unsigned char raw[SW_WEBHOOK_SECRET_BYTES];
    char id[SW_UUID_LEN + 1], ad[64];
    sw_buf_t sealed = SW_BUF_INIT;

    randombytes_buf(raw, sizeof(raw));
    sodium_bin2hex(c->secret, sizeof(c->secret), raw, sizeof(raw));
    sodium_memzero(raw, sizeof(raw));
    new_uuid(id);
    snprintf(ad, sizeof(ad), "webhook:%s", id);
    sw_secretbox_seal(c->api->box, c->secret, 2 * SW_WEBHOOK_SECRET_BYTES, ad, &sealed);

    const char *params[] = {id,
                            c->url,
                            c->events,
                            c->project_id,
                            sealed.base,
                            r->principal.user_id,
                            r->principal.email,
                            req->client_addr};
    sw_pg_query(c->api->pg,
                "WITH w AS (INSERT INTO webhooks (id, url, events, project_id, secret_sealed, "
                "created_by) VALUES ($1::uuid, $2, $3::text[], $4::uuid, $5, $6::uuid) "
                "RETURNING *), "
                "a AS (" SW_AUDIT_INSERT "SELECT $6::uuid, $7, 'webhook.created', 'webhook', "
                "w.id::text, w.project_id, $8, json_build_object('target', "
                "substring(w.url from '^[A-Za-z]+://[^/?#]*'), 'events', w.events, "
                "'project_id', w.project_id)::jsonb FROM w) "
                "SELECT sw_webhook_json(w) FROM w",
                8, params, on_inserted, c);
    sw_buf_free(&sealed);
}

static void on_target(int status, const struct sockaddr *addr, sw_addr_kind_t kind, void *payload)
{
    create_t *c = payload;
    sw_http_req_t *req = c->req;
    char ip[64] = "?", msg[512];
    if (status == 0) {
        insert(c);
        return;
    }
    if (status == -EACCES) {
        if (addr->sa_family == AF_INET)
            uv_ip4_name((const struct sockaddr_in *)addr, ip, sizeof(ip));
        else if (addr->sa_family == AF_INET6)
            uv_ip6_name((const struct sockaddr_in6 *)addr, ip, sizeof(ip));
        snprintf(msg, sizeof(msg),
                 "is refused: %s resolves to %s, a %s address; webhooks may only reach public "
                 "addresses unless SLIPWAY_WEBHOOK_ALLOW_PRIVATE is on",
                 c->host, ip, sw_addr_kind_name(kind));
        respond_422(req, "url", msg);
    } else if (status == -EHOSTUNREACH) {
        snprintf(msg, sizeof(msg), "names a host that does not resolve (%s)", c->host);
        respond_422(req, "url", msg);
    } else {
        sw_http_add_header(req, "Retry-After", "1");
        sw_http_respond_error(req, 503, "SERVICE_UNAVAILABLE",
                              "the webhook's host could not be looked up now", NULL);
    }
}

/* Access is settled: check the target, then store. */
static void check_target(create_t *c)
{
    if (c->api->cfg->webhook_allow_private) {
        insert(c);
        return;
    }
    int rc = sw_webhook_resolve(c->api->loop, c->host, c->port, false, on_target, c, NULL);
    if (rc != 0)
        on_target(rc, NULL, SW_ADDR_PUBLIC, c); /* the lookup could not start: ours, not theirs */
}

static void on_project(int status, sw_pg_result_t *res, void *payload)
{
    create_t *c = payload;
    sw_http_req_t *req = c->req;
    if (sw_api_db_failed(req, status, res))
        return;
    const char *role = sw_pg_result_rows(res) == 1 ? sw_pg_result_value(res, 0, 0) : NULL;
    bool admin = sw_api_is_instance_admin(sw_api_principal(req));
    if (sw_pg_result_rows(res) != 1 || (!admin && !role)) {
        sw_http_respond_error(req, 404, "RESOURCE_NOT_FOUND", "no such project", NULL);
        return;
    }
    if (!admin && strcmp(role, "admin") != 0) {
        sw_http_respond_error(req, 403, "INSUFFICIENT_ROLE",
                              "only the project's admins may add webhooks to it", NULL);
        return;
    }
    check_target(c);
}

/* events: a non-empty array of known names; into a PostgreSQL array literal, each once. */
static const char *parse_events(sw_http_req_t *req, json_t *body, sw_json_errors_t *e)
{
    json_t *arr = json_object_get(body, "events");
    bool seen[SW_ARRAY_SIZE(event_names)] = {false};
    size_t i;
    json_t *v;
    if (!json_is_array(arr) || json_array_size(arr) == 0) {
        sw_json_errors_add(e, "events", "must be a non-empty array of event names");
        return NULL;
    }
    sw_buf_t lit = SW_BUF_INIT;
    sw_buf_append_char(&lit, '{');
    json_array_foreach(arr, i, v)
    {
        const char *name = json_string_value(v);
        size_t k = 0;
        while (name && k < SW_ARRAY_SIZE(event_names) && strcmp(event_names[k], name) != 0)
            k++;
        if (!name || k == SW_ARRAY_SIZE(event_names)) {
            sw_json_errors_add(e, "events",
                               "holds an unknown event; known: deployment.started, "
                               "deployment.succeeded, deployment.failed, deployment.cancelled, "
                               "app.created, app.deleted");
            sw_buf_free(&lit);
            return NULL;
        }
        if (seen[k])
            continue;
        seen[k] = true;
        sw_buf_printf(&lit, "%s%s", lit.len > 1 ? "," : "", event_names[k]);
    }
    sw_buf_append_char(&lit, '}');
    const char *out = sw_arena_strdup(&req->arena, lit.base);
    sw_buf_free(&lit);
    return out;
}

void sw_api_webhooks_create(sw_http_req_t *req, void *ctx)
{
    sw_api_t *api = ctx;
    const sw_principal_t *p = sw_api_principal(req);
    json_t *body = sw_api_json(req);
    if (!body)
        return;
    sw_json_errors_t e;
    sw_json_errors_init(&e);
    create_t *c = sw_arena_calloc(&req->arena, sizeof(*c));
    c->req = req;
    c->api = api;
    sw_webhook_url_t *target = sw_arena_calloc(&req->arena, sizeof(*target));
    const char *url = NULL, *project_id = NULL;
    if (sw_json_get_string(body, "url", true, 1, SW_WEBHOOK_URL_MAX, &url, &e) == 0) {
        const char *why = sw_webhook_url_parse(url, target);
        if (why)
            sw_json_errors_add(&e, "url", "%s", why);
    }
    c->events = parse_events(req, body, &e);
    json_t *pj = json_object_get(body, "project_id");
    if (pj && !json_is_null(pj)) {
        if (sw_json_get_string(body, "project_id", false, 36, 36, &project_id, &e) == 0 &&
            !sw_iov_is_uuid(sw_iov_from_cstr(project_id)))
            sw_json_errors_add(&e, "project_id", "must be a UUID");
    }
    sw_api_reject_unknown_body(req, body, &e);
    if (sw_json_errors_any(&e)) {
        sw_api_validation_error(req, &e);
        return;
    }
    c->url = url;
    c->project_id = project_id;
    snprintf(c->host, sizeof(c->host), "%s", target->host);
    c->port = target->port;
    if (!project_id) {
        if (!sw_api_is_instance_admin(p)) {
            sw_http_respond_error(req, 403, "INSUFFICIENT_ROLE",
                                  "only instance admins may add a webhook for every project; "
                                  "project admins give a project_id",
                                  NULL);
            return;
        }
        check_target(c);
        return;
    }
    const char *params[] = {project_id, p->user_id};
    sw_pg_query(api->pg,
                "SELECT (SELECT role FROM project_members WHERE project_id = p.id AND "
                "user_id = $2::uuid) FROM projects p WHERE p.id = $1::uuid",
                2, params, on_project, c);
}

static const sw_api_filter_t webhook_filters[] = {
    {"project_id", "x.project_id = $%d::uuid", NULL, 0},
    {NULL, NULL, NULL, 0},
};

void sw_api_webhooks_list(sw_http_req_t *req, void *ctx)
{
    const char *filters[SW_API_FILTERS_MAX];
    if (!sw_api_filters_read(req, webhook_filters, filters))
        return;
    sw_api_list_t l = {.from = "webhooks",
                       .json_expr = "sw_webhook_json(x)",
                       .sorts = webhook_sorts,
                       .default_sort = "created_at:asc"};
    sw_api_list_visible(&l, sw_api_principal(req), "project_id", true, NULL, NULL);
    sw_api_filters_apply(&l, webhook_filters, filters);
    sw_api_list_run(ctx, req, &l);
}

static const char *webhook_id(sw_http_req_t *req)
{
    sw_iov_t id = sw_http_req_param(req, "id");
    if (!sw_iov_is_uuid(id)) {
        sw_http_respond_error(req, 404, "RESOURCE_NOT_FOUND", "no such webhook", NULL);
        return NULL;
    }
    return sw_arena_iovdup(&req->arena, id).base;
}

void sw_api_webhooks_delete(sw_http_req_t *req, void *ctx)
{
    const sw_principal_t *p = sw_api_principal(req);
    const char *id = webhook_id(req);
    if (!id)
        return;
    const char *params[] = {id, sw_api_is_instance_admin(p) ? "true" : "false", p->user_id,
                            p->email, req->client_addr};
    sw_api_exec(ctx, req,
                "WITH w AS (DELETE FROM webhooks WHERE id = $1::uuid AND " MANAGEABLE
                " RETURNING id, url, project_id), "
                "a AS (" SW_AUDIT_INSERT "SELECT $3::uuid, $4, 'webhook.deleted', 'webhook', "
                "w.id::text, w.project_id, $5, json_build_object('target', "
                "substring(w.url from '^[A-Za-z]+://[^/?#]*'))::jsonb FROM w) SELECT id FROM w",
                5, params, 204, "no such webhook", NULL);
}

#define ATTEMPTS_FROM                                                                              \
    "(SELECT a.*, d.state AS delivery_state FROM webhook_attempts a "                              \
    "JOIN webhook_deliveries d ON d.id = a.delivery_id)"
#define ATTEMPT_JSON                                                                               \
    "json_build_object('id', x.id, 'delivery_id', x.delivery_id, 'event', x.event, 'attempt', "    \
    "x.attempt, 'status_code', x.status_code, 'latency_ms', x.latency_ms, 'response', "            \
    "x.response, 'error', x.error, 'created_at', x.created_at, 'next_attempt_at', "                \
    "x.next_attempt_at, 'delivery_state', x.delivery_state)"

typedef struct {
    sw_http_req_t *req;
    sw_api_t *api;
    const char *id;
    const char *filters[SW_API_FILTERS_MAX];
} deliveries_t;

static const sw_api_filter_t attempt_filters[] = {
    {"delivery_id", "x.delivery_id = $%d::uuid", NULL, 0},
    {"event", "x.event = $%d", NULL, 0},
    {NULL, NULL, NULL, 0},
};

static void on_visible(int status, sw_pg_result_t *res, void *payload)
{
    deliveries_t *d = payload;
    if (sw_api_db_failed(d->req, status, res))
        return;
    if (sw_pg_result_rows(res) != 1) {
        sw_http_respond_error(d->req, 404, "RESOURCE_NOT_FOUND", "no such webhook", NULL);
        return;
    }
    sw_api_list_t l = {.from = ATTEMPTS_FROM,
                       .json_expr = ATTEMPT_JSON,
                       .sorts = attempt_sorts,
                       .default_sort = "created_at:desc"};
    sw_api_list_where(&l, "x.webhook_id = $%d::uuid", d->id);
    sw_api_filters_apply(&l, attempt_filters, d->filters);
    sw_api_list_run(d->api, d->req, &l);
}

void sw_api_webhooks_deliveries(sw_http_req_t *req, void *ctx)
{
    const sw_principal_t *p = sw_api_principal(req);
    const char *id = webhook_id(req);
    if (!id)
        return;
    deliveries_t *d = sw_arena_calloc(&req->arena, sizeof(*d));
    d->req = req;
    d->api = ctx;
    d->id = id;
    if (!sw_api_filters_read(req, attempt_filters, d->filters))
        return;
    const char *params[] = {id, sw_api_is_instance_admin(p) ? "true" : "false", p->user_id};
    sw_pg_query(d->api->pg, "SELECT 1 FROM webhooks WHERE id = $1::uuid AND " MANAGEABLE, 3, params,
                on_visible, d);
}
