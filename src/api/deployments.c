/* /api/v1/.../deployments: trigger, read, cancel, logs. The row and its audit entry are
 * written in one statement before the queue hears of it, so a trigger is never lost: if
 * Redis does not take it, the workers' reconciler enqueues it later. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slipway/api.h"
#include "slipway/queue.h"

#include "internal.h"

#define LOG_LINES_DEFAULT 1000
#define LOG_LINES_MAX     10000

static const sw_api_sort_t deployment_sorts[] = {
    {"created_at", "created_at"},
    {"deployment_number", "deployment_number"},
    {"status", "status"},
    {NULL, NULL},
};

static const char *const statuses[] = {"pending", "building",  "deploying",   "success",
                                       "failed",  "cancelled", "rolled_back", NULL};

static bool hex_ok(const char *s, size_t min, size_t max)
{
    size_t n = strlen(s);
    if (n < min || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

/* The same rules as an app's branch (git check-ref-format). */
static bool ref_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 255 || s[0] == '-' || s[0] == '/' || s[0] == '.' || s[n - 1] == '/' ||
        s[n - 1] == '.' || strstr(s, "..") || strstr(s, "//") || strstr(s, "@{") ||
        strstr(s, "/.") || (n >= 5 && strcmp(s + n - 5, ".lock") == 0))
        return false;
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x21 || c == 0x7f || strchr("~^:?*[\\", c))
            return false;
    }
    return true;
}

/* ---- POST apps/:id/deployments ---- */

/* The answer to a trigger once the queue has it: 202 with the deployment. */
static void on_created(int status, sw_pg_result_t *res, void *payload)
{
    sw_http_req_t *req = payload;
    if (sw_api_db_failed(req, status, res))
        return;
    if (sw_pg_result_rows(res) != 1) {
        sw_http_respond_error(req, 404, "RESOURCE_NOT_FOUND", "no such app", NULL);
        return;
    }
    sw_api_respond_text(req, 202, sw_pg_result_value(res, 0, 0));
}

/* Rollback, start and restart: their own statement, then the queue, then the answer. */
static void on_triggered(int status, sw_pg_result_t *res, void *payload)
{
    sw_http_req_t *req = payload;
    sw_api_t *api = sw_api_req(req)->state;
    if (status == 0 && sw_pg_result_rows(res) == 1)
        sw_queue_push(api->pg, api->redis, sw_pg_result_value(res, 0, 1),
                      sw_pg_result_value(res, 0, 2));
    on_created(status, res, payload);
}

/* The trigger every caller shares: the counter, the row, the hook delivery (whose key makes a
 * repeated delivery fail the whole statement) and the audit entry, in one statement. */
typedef struct {
    sw_api_t *api;
    sw_http_req_t *req;
    sw_pg_cb cb;
} trigger_t;

static void on_trigger(int status, sw_pg_result_t *res, void *payload)
{
    trigger_t *t = payload;
    if (status == 0 && sw_pg_result_rows(res) == 1)
        sw_queue_push(t->api->pg, t->api->redis, sw_pg_result_value(res, 0, 1),
                      sw_pg_result_value(res, 0, 2));
    t->cb(status, res, t->req);
}

void sw_api_deployment_trigger(sw_api_t *api, sw_http_req_t *req, const sw_api_trigger_t *t,
                               sw_pg_cb cb)
{
    trigger_t *state = sw_arena_calloc(&req->arena, sizeof(*state));
    state->api = api;
    state->req = req;
    state->cb = cb;
    const char *params[] = {t->app_id,      t->ref,           t->commit_sha,     t->actor_id,
                            t->actor_email, req->client_addr, t->commit_message, t->commit_author,
                            t->delivery_id, t->provider,      t->image};
    sw_pg_query(api->pg,
                "WITH n AS (UPDATE apps SET deployment_counter = deployment_counter + 1 "
                "WHERE id = $1 RETURNING id, project_id, deployment_counter, branch, runtime, "
                "image), "
                "d AS (INSERT INTO deployments (app_id, project_id, deployment_number, ref, "
                "commit_sha, commit_message, commit_author, created_by, image) SELECT id, "
                "project_id, deployment_counter, coalesce($2, branch), coalesce($3, ''), "
                "coalesce($7::text, ''), coalesce($8::text, ''), $4, coalesce($11::text, "
                "CASE WHEN runtime = 'container' THEN image END, '') FROM n RETURNING *), "
                "h AS (INSERT INTO hook_deliveries (app_id, delivery_id, provider, "
                "deployment_id) SELECT d.app_id, $9::text, $10::text, d.id FROM d "
                "WHERE $9::text IS NOT NULL), "
                "p AS (DELETE FROM hook_deliveries WHERE $9::text IS NOT NULL AND app_id = $1 "
                "AND received_at < now() - interval '30 days'), "
                "a AS (" SW_AUDIT_INSERT "SELECT $4, $5, 'deployment.created', 'deployment', "
                "d.id::text, d.project_id, $6, json_build_object('app_id', d.app_id, "
                "'deployment_number', d.deployment_number, 'ref', d.ref)::jsonb || "
                "jsonb_strip_nulls(jsonb_build_object('provider', $10::text, 'delivery_id', "
                "$9::text, 'commit_sha', CASE WHEN $10::text IS NOT NULL THEN d.commit_sha "
                "END)) FROM d) "
                "SELECT sw_deployment_json(d), d.id, d.app_id FROM d",
                11, params, on_trigger, state);
}

void sw_api_deployments_create(sw_http_req_t *req, void *ctx)
{
    sw_api_t *api = ctx;
    sw_api_req_t *r = sw_api_req(req);
    const char *ref = NULL, *sha = NULL, *image = NULL;
    sw_json_errors_t e;
    sw_json_errors_init(&e);
    if (req->body.len) {
        json_t *body = sw_api_json(req);
        if (!body)
            return;
        if (sw_json_get_string(body, "ref", false, 1, 255, &ref, &e) == 0 && !ref_ok(ref))
            sw_json_errors_add(&e, "ref", "is not a valid git ref name");
        if (sw_json_get_string(body, "commit_sha", false, 1, 40, &sha, &e) == 0 &&
            !hex_ok(sha, 7, 40))
            sw_json_errors_add(&e, "commit_sha", "must be 7 to 40 lower-case hex digits");
        if (sw_json_get_string(body, "image", false, 1, 255, &image, &e) == 0 &&
            !sw_api_image_ok(image))
            sw_json_errors_add(&e, "image",
                               "must be an image reference like registry.example/name:tag or "
                               "name@sha256:<64 hex digits>");
        sw_api_reject_unknown_body(req, body, &e);
    }
    if (sw_json_errors_any(&e)) {
        sw_api_validation_error(req, &e);
        return;
    }
    sw_api_trigger_t t = {
        .app_id = sw_arena_iovdup(&req->arena, sw_http_req_param(req, "id")).base,
        .ref = ref,
        .commit_sha = sha,
        .image = image,
        .actor_id = r->principal.user_id,
        .actor_email = r->principal.email,
    };
    sw_api_deployment_trigger(api, req, &t, on_created);
}

static void on_rollback(int status, sw_pg_result_t *res, void *payload)
{
    sw_http_req_t *req = payload;
    if (status == 0 && sw_pg_result_rows(res) != 1) {
        sw_http_respond_error(req, 409, "RESOURCE_CONFLICT",
                              "only a deployment that succeeded can be rolled back to", NULL);
        return;
    }
    on_triggered(status, res, payload);
}

/* ---- lists and one ---- */

void sw_api_deployments_list_app(sw_http_req_t *req, void *ctx)
{
    sw_api_list_t l = {.from = "deployments",
                       .json_expr = "sw_deployment_json(x)",
                       .sorts = deployment_sorts,
                       .default_sort = "created_at:desc"};
    sw_api_list_where(&l, "x.app_id = $%d::uuid",
                      sw_arena_iovdup(&req->arena, sw_http_req_param(req, "id")).base);
    sw_api_list_run(ctx, req, &l);
}

static const sw_api_filter_t deployment_filters[] = {
    {"app_id", "x.app_id = $%d::uuid", NULL, 0},
    {"status", "x.status = $%d", statuses, 0},
    {NULL, NULL, NULL, 0},
};

void sw_api_deployments_list(sw_http_req_t *req, void *ctx)
{
    const char *filters[SW_API_FILTERS_MAX];
    if (!sw_api_filters_read(req, deployment_filters, filters))
        return;
    sw_api_list_t l = {.from = "deployments",
                       .json_expr = "sw_deployment_json(x)",
                       .sorts = deployment_sorts,
                       .default_sort = "created_at:desc"};
    sw_api_list_visible(&l, sw_api_principal(req), "project_id", false, NULL, NULL);
    sw_api_filters_apply(&l, deployment_filters, filters);
    sw_api_list_run(ctx, req, &l);
}

void sw_api_deployments_get(sw_http_req_t *req, void *ctx)
{
    const char *cached = sw_api_req(req)->resource_json;
    if (cached) {
        sw_api_respond_text(req, 200, cached);
        return;
    }
    const char *params[] = {sw_arena_iovdup(&req->arena, sw_http_req_param(req, "id")).base};
    sw_api_exec(ctx, req, "SELECT sw_deployment_json(d) FROM deployments d WHERE d.id = $1", 1,
                params, 200, "no such deployment", NULL);
}

/* ---- POST deployments/:id/cancel ---- */

static void on_cancelled(int status, sw_pg_result_t *res, void *payload)
{
    sw_http_req_t *req = payload;
    sw_api_t *api = sw_api_req(req)->state;
    if (sw_api_db_failed(req, status, res))
        return;
    if (sw_pg_result_rows(res) != 1) {
        sw_http_respond_error(req, 409, "RESOURCE_CONFLICT", "the deployment has already ended",
                              NULL);
        return;
    }
    const char *now = sw_pg_result_value(res, 0, 1);
    if (strcmp(now, "cancelled") != 0) {
        /* Running: its worker kills the step's process group and ends it. */
        sw_queue_cancel(api->redis, sw_pg_result_value(res, 0, 2));
        sw_api_respond_text(req, 202, sw_pg_result_value(res, 0, 0));
        return;
    }
    sw_api_respond_text(req, 200, sw_pg_result_value(res, 0, 0));
}

void sw_api_deployments_cancel(sw_http_req_t *req, void *ctx)
{
    sw_api_t *api = ctx;
    sw_api_req_t *r = sw_api_req(req);
    const char *params[] = {sw_arena_iovdup(&req->arena, sw_http_req_param(req, "id")).base,
                            r->principal.user_id, r->principal.email, req->client_addr};
    r->state = api;
    sw_pg_query(api->pg,
                "WITH c AS (UPDATE deployments SET cancel_requested = true, "
                "status = CASE WHEN status = 'pending' THEN 'cancelled' ELSE status END, "
                "finished_at = CASE WHEN status = 'pending' THEN now() ELSE finished_at END, "
                "error_message = CASE WHEN status = 'pending' THEN 'cancelled before it started' "
                "ELSE error_message END, updated_at = now() WHERE id = $1 "
                "AND status IN ('pending', 'building', 'deploying') RETURNING *), "
                "a AS (" SW_AUDIT_INSERT "SELECT $2, $3, 'deployment.cancelled', 'deployment', "
                "c.id::text, c.project_id, $4, json_build_object('app_id', c.app_id)::jsonb "
                "FROM c) "
                "SELECT sw_deployment_json(c), c.status, c.id FROM c",
                4, params, on_cancelled, req);
}

/* ---- GET deployments/:id/logs ---- */

static void on_logs(int status, sw_pg_result_t *res, void *payload)
{
    sw_http_req_t *req = payload;
    if (sw_api_db_failed(req, status, res))
        return;
    sw_api_respond_text(req, 200, sw_pg_result_value(res, 0, 0));
}

void sw_api_deployments_logs(sw_http_req_t *req, void *ctx)
{
    sw_api_t *api = ctx;
    sw_json_errors_t e;
    sw_json_errors_init(&e);
    long long lines = LOG_LINES_DEFAULT, since = 0;
    bool has_lines = sw_api_query_int(req, "lines", 1, LOG_LINES_MAX, &lines, &e);
    /* seq is a bigint: a larger since_seq is the client's error, not the database's. */
    bool has_since = sw_api_query_int(req, "since_seq", 0, LLONG_MAX, &since, &e);
    const char *follow = sw_http_req_query(req, "follow");
    if (follow && strcmp(follow, "false") != 0 && strcmp(follow, "true") != 0)
        sw_json_errors_add(&e, "follow", "must be true or false");
    if (sw_json_errors_any(&e)) {
        sw_api_validation_error(req, &e);
        return;
    }
    if (follow && strcmp(follow, "true") == 0) {
        /* NDJSON: the lines after since_seq (or the last `lines`), then each new one, until
         * the deployment ends. */
        sw_api_deployments_follow(req, api, has_lines ? (unsigned)lines : 0);
        return;
    }
    char *slines = sw_arena_printf(&req->arena, "%lld", lines);
    char *ssince = sw_arena_printf(&req->arena, "%lld", since);
    const char *params[] = {sw_arena_iovdup(&req->arena, sw_http_req_param(req, "id")).base, ssince,
                            slines, has_since ? "true" : "false"};
    /* With since_seq: the lines after it. Without: the last `lines` lines. */
    sw_pg_query(api->pg,
                "WITH l AS (SELECT e AS line, (e->>'seq')::bigint AS seq FROM "
                "deployment_log_chunks c, jsonb_array_elements(c.lines) e "
                "WHERE c.deployment_id = $1 AND c.last_seq > $2::bigint), "
                "pick AS (SELECT * FROM l WHERE seq > $2::bigint ORDER BY "
                "CASE WHEN $4::bool THEN seq ELSE -seq END LIMIT $3::int) "
                "SELECT json_build_object('data', coalesce((SELECT json_agg(line ORDER BY seq) "
                "FROM pick), '[]'::json), 'next_seq', coalesce((SELECT max(seq) FROM pick), "
                "$2::bigint))",
                4, params, on_logs, req);
}

/* ---- rollback, start, restart, stop ---- */

/* A new deployment that releases an existing build again: no fetch, no build. source_sql
 * picks the deployment whose build it is ($1 is the path id); a rollback also records
 * rolled_back_from, so the release it replaces is marked rolled_back. */
static void release_build(sw_http_req_t *req, sw_api_t *api, const char *source_sql, bool rollback,
                          const char *action, sw_pg_cb cb)
{
    sw_api_req_t *r = sw_api_req(req);
    const char *params[] = {sw_arena_iovdup(&req->arena, sw_http_req_param(req, "id")).base,
                            r->principal.user_id,
                            r->principal.email,
                            req->client_addr,
                            rollback ? "true" : "false",
                            action};
    sw_buf_t sql = SW_BUF_INIT;
    sw_buf_printf(&sql,
                  "WITH s AS (%s), "
                  "n AS (UPDATE apps a SET deployment_counter = deployment_counter + 1 FROM s "
                  "WHERE a.id = s.app_id RETURNING a.id, a.project_id, a.deployment_counter), "
                  "d AS (INSERT INTO deployments (app_id, project_id, deployment_number, ref, "
                  "commit_sha, commit_hash, commit_message, commit_author, rolled_back_from, "
                  "build_of, created_by) SELECT n.id, n.project_id, n.deployment_counter, s.ref, "
                  "s.commit_hash, s.commit_hash, s.commit_message, s.commit_author, "
                  "CASE WHEN $5::bool THEN s.id "
                  "END, coalesce(s.build_of, s.id), $2 FROM n, s RETURNING *), "
                  "a AS (" SW_AUDIT_INSERT "SELECT $2, $3, $6, 'deployment', d.id::text, "
                  "d.project_id, $4, json_build_object('app_id', d.app_id, 'build_of', "
                  "d.build_of, 'rolled_back_from', d.rolled_back_from)::jsonb FROM d) "
                  "SELECT sw_deployment_json(d), d.id, d.app_id FROM d",
                  source_sql);
    r->state = api;
    sw_pg_query(api->pg, sql.base, 6, params, cb, req);
    sw_buf_free(&sql);
}

void sw_api_deployments_rollback(sw_http_req_t *req, void *ctx)
{
    /* Only a release that once succeeded has an artifact worth releasing again. */
    release_build(req, ctx,
                  "SELECT * FROM deployments WHERE id = $1 AND status IN ('success', "
                  "'rolled_back')",
                  true, "deployment.rollback", on_rollback);
}

static void on_released_again(int status, sw_pg_result_t *res, void *payload)
{
    sw_http_req_t *req = payload;
    if (status == 0 && sw_pg_result_rows(res) != 1) {
        sw_http_respond_error(req, 409, "RESOURCE_CONFLICT",
                              "the app has no successful deployment to start", NULL);
        return;
    }
    on_triggered(status, res, payload);
}

/* start and restart release the active build again: new instances turn healthy before the
 * old ones (if any) stop. */
static void release_again(sw_http_req_t *req, sw_api_t *api, const char *action)
{
    release_build(req, api,
                  "SELECT d.* FROM apps a JOIN deployments d ON d.id = a.active_deployment_id "
                  "WHERE a.id = $1",
                  false, action, on_released_again);
}

void sw_api_apps_start(sw_http_req_t *req, void *ctx)
{
    release_again(req, ctx, "app.start");
}

void sw_api_apps_restart(sw_http_req_t *req, void *ctx)
{
    release_again(req, ctx, "app.restart");
}

static void on_stopped(int status, sw_pg_result_t *res, void *payload)
{
    sw_http_req_t *req = payload;
    sw_api_t *api = sw_api_req(req)->state;
    if (sw_api_db_failed(req, status, res))
        return;
    if (sw_pg_result_rows(res) != 1) {
        sw_http_respond_error(req, 404, "RESOURCE_NOT_FOUND", "no such app", NULL);
        return;
    }
    /* Every worker stops the instances of this app it runs. */
    sw_queue_stop_app(api->redis, sw_pg_result_value(res, 0, 1));
    sw_api_respond_text(req, 202, sw_pg_result_value(res, 0, 0));
}

void sw_api_apps_stop(sw_http_req_t *req, void *ctx)
{
    sw_api_t *api = ctx;
    sw_api_req_t *r = sw_api_req(req);
    const char *params[] = {sw_arena_iovdup(&req->arena, sw_http_req_param(req, "id")).base,
                            r->principal.user_id, r->principal.email, req->client_addr};
    r->state = api;
    sw_pg_query(api->pg,
                "WITH a AS (UPDATE apps SET status = 'stopped', endpoints = '{}', "
                "updated_at = now() WHERE id = $1 RETURNING *), "
                "au AS (" SW_AUDIT_INSERT "SELECT $2, $3, 'app.stop', 'app', a.id::text, "
                "a.project_id, $4, '{}'::jsonb FROM a) "
                "SELECT sw_app_json(a), a.id FROM a",
                4, params, on_stopped, req);
}
