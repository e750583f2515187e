/* /api/v1/projects, their members and environments.
 *
 * The access check has already found the project and the caller's role in it; handlers run
 * one statement each, which also writes the audit row. */
#include <stdio.h>
#include <string.h>

#include "slipway/api.h"

#include "internal.h"

/* Validates a DNS label (environment and app names). */
bool sw_api_dns_label(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return false;
    return true;
}

/* ---- projects ---- */

static const sw_api_sort_t project_sorts[] = {
    {"name", "lower(name)"},
    {"created_at", "created_at"},
    {"updated_at", "updated_at"},
    {NULL, NULL},
};

void sw_api_projects_list(sw_http_req_t *req, void *ctx)
{
    const sw_principal_t *p = sw_api_principal(req);
    sw_api_list_t l = {.from = "projects", .sorts = project_sorts, .default_sort = "created_at"};
    int user, admin;
    sw_api_list_visible(&l, p, "id", false, &user, &admin);
    l.json_expr = sw_arena_printf(
        &req->arena,
        "(sw_project_json(x)::jsonb || jsonb_build_object('role', CASE WHEN $%d::bool THEN "
        "'admin' ELSE (SELECT m.role FROM project_members m WHERE m.project_id = x.id AND "
        "m.user_id = $%d::uuid) END))::json",
        admin, user);
    sw_api_list_run(ctx, req, &l);
}

static bool read_project(sw_http_req_t *req, bool create, const char **name,
                         const char **description)
{
    json_t *body = sw_api_json(req);
    if (!body)
        return false;
    sw_json_errors_t e;
    sw_json_errors_init(&e);
    *name = *description = NULL;
    sw_json_get_string(body, "name", create, 1, 100, name, &e);
    sw_json_get_string(body, "description", false, 0, 1000, description, &e);
    sw_api_reject_unknown_body(req, body, &e);
    if (!create && !sw_json_errors_any(&e) && !*name && !*description)
        sw_json_errors_add(&e, "body", "give name or description");
    if (sw_json_errors_any(&e)) {
        sw_api_validation_error(req, &e);
        return false;
    }
    return true;
}

void sw_api_projects_create(sw_http_req_t *req, void *ctx)
{
    const sw_principal_t *p = sw_api_principal(req);
    const char *name, *description;
    if (!read_project(req, true, &name, &description))
        return;
    const char *params[] = {name, description ? description : "", p->user_id, p->email,
                            req->client_addr};
    sw_api_exec(ctx, req,
                "WITH p AS (INSERT INTO projects (name, description, created_by) "
                "VALUES ($1, $2, $3) RETURNING *), "
                "m AS (INSERT INTO project_members (project_id, user_id, role) "
                "SELECT id, $3, 'admin' FROM p), "
                "e AS (INSERT INTO environments (project_id, name) "
                "SELECT id, 'production' FROM p), "
                "a AS (" SW_AUDIT_INSERT "SELECT $3, $4, 'project.created', 'project', "
                "p.id::text, p.id, $5, json_build_object('name', p.name)::jsonb FROM p) "
                "SELECT (sw_project_json(p)::jsonb || '{\"role\":\"admin\"}')::json FROM p",
                5, params, 201, "project not created", "a project with this name exists");
}

void sw_api_projects_get(sw_http_req_t *req, void *ctx)
{
    sw_api_req_t *r = sw_api_req(req);
    const char *params[] = {r->project_id, sw_project_role_name(r->project_role)};
    sw_api_exec(ctx, req,
                "SELECT (sw_project_json(p)::jsonb || jsonb_build_object('role', $2::text))::json "
                "FROM projects p WHERE p.id = $1",
                2, params, 200, "no such project", NULL);
}

void sw_api_projects_update(sw_http_req_t *req, void *ctx)
{
    sw_api_req_t *r = sw_api_req(req);
    const char *name, *description;
    if (!read_project(req, false, &name, &description))
        return;
    const char *params[] = {r->project_id,
                            name,
                            description,
                            r->principal.user_id,
                            r->principal.email,
                            req->client_addr,
                            sw_project_role_name(r->project_role)};
    sw_api_exec(ctx, req,
                "WITH p AS (UPDATE projects SET name = coalesce($2, name), "
                "description = coalesce($3, description), updated_at = now() WHERE id = $1 "
                "RETURNING *), "
                "a AS (" SW_AUDIT_INSERT "SELECT $4, $5, 'project.updated', 'project', "
                "p.id::text, p.id, $6, json_build_object('name', p.name)::jsonb FROM p) "
                "SELECT (sw_project_json(p)::jsonb || jsonb_build_object('role', $7::text))::json "
                "FROM p",
                7, params, 200, "no such project", "a project with this name exists");
}

void sw_api_projects_delete(sw_http_req_t *req, void *ctx)
{
    sw_api_req_t *r = sw_api_req(req);
    const char *params[] = {r->project_id, r->principal.user_id, r->principal.email,
                            req->client_addr};
    /* One statement: the cascade removes environments, apps, env vars and domains with it. */
    sw_api_exec_deleting_apps(
        ctx, req,
        "WITH c AS (SELECT (SELECT count(*) FROM apps WHERE project_id = $1) AS apps, "
        "(SELECT count(*) FROM environments WHERE project_id = $1) AS environments, "
        "(SELECT count(*) FROM domains d JOIN apps a ON a.id = d.app_id "
        "WHERE a.project_id = $1) AS domains, "
        "(SELECT coalesce(array_agg(id), '{}') FROM apps WHERE project_id = $1) AS app_ids), "
        "d AS (DELETE FROM projects WHERE id = $1 RETURNING id, name), "
        "a AS (" SW_AUDIT_INSERT "SELECT $2, $3, 'project.deleted', 'project', "
        "d.id::text, d.id, $4, json_build_object('name', d.name, 'apps', c.apps, "
        "'environments', c.environments, 'domains', c.domains)::jsonb FROM d, c) "
        "SELECT d.id, c.app_ids::text FROM d, c",
        4, params, "no such project");
}

/* ---- members ---- */

static const sw_api_sort_t member_sorts[] = {
    {"email", "email"},
    {"role", "role"},
    {"created_at", "created_at"},
    {NULL, NULL},
};

#define MEMBER_JSON                                                                                \
    "json_build_object('user_id', %s.user_id, 'email', %s.email, 'name', %s.name, 'role', "        \
    "%s.role, 'created_at', %s.created_at, 'updated_at', %s.updated_at)"

void sw_api_members_list(sw_http_req_t *req, void *ctx)
{
    sw_api_req_t *r = sw_api_req(req);
    sw_api_list_t l = {
        .from = "(SELECT m.project_id, m.user_id AS id, m.user_id, m.role, m.created_at, "
                "m.updated_at, u.email, u.name FROM project_members m JOIN users u "
                "ON u.id = m.user_id)",
        .json_expr = "json_build_object('user_id', x.user_id, 'email', x.email, 'name', x.name, "
                     "'role', x.role, 'created_at', x.created_at, 'updated_at', x.updated_at)",
        .sorts = member_sorts,
        .default_sort = "email",
    };
    sw_api_list_where(&l, "x.project_id = $%d::uuid", r->project_id);
    sw_api_list_run(ctx, req, &l);
}

/* Member rows that decide "the last admin": every admin and the target, locked in order. */
#define LOCK_ADMINS                                                                                \
    "locked AS MATERIALIZED (SELECT user_id, role FROM project_members WHERE project_id = $1 "     \
    "AND (role = 'admin' OR user_id = $2) ORDER BY user_id FOR UPDATE), "                          \
    "n AS (SELECT count(*) AS admins FROM locked WHERE role = 'admin'), "                          \
    "t AS (SELECT role FROM locked WHERE user_id = $2) "

typedef struct {
    sw_http_req_t *req;
    bool removing;
} member_t;

static void on_member(int status, sw_pg_result_t *res, void *payload)
{
    member_t *m = payload;
    if (sw_api_db_failed(m->req, status, res))
        return;
    const char *exists = sw_pg_result_value(res, 0, 0);
    const char *outcome = sw_pg_result_value(res, 0, 1);
    if (!exists || strcmp(exists, "0") == 0) {
        sw_http_respond_error(m->req, 404, "RESOURCE_NOT_FOUND",
                              m->removing ? "no such member" : "no such user", NULL);
        return;
    }
    if (!outcome || strcmp(outcome, "0") == 0) {
        sw_http_respond_error(m->req, 409, "RESOURCE_CONFLICT",
                              "a project needs at least one admin", NULL);
        return;
    }
    if (m->removing)
        sw_http_respond(m->req, 204, NULL, NULL, 0);
    else
        sw_api_respond_text(m->req, 200, outcome);
}

static bool member_target(sw_http_req_t *req, member_t **out, bool removing)
{
    sw_iov_t uid = sw_http_req_param(req, "user_id");
    if (!sw_iov_is_uuid(uid)) {
        sw_http_respond_error(req, 404, "RESOURCE_NOT_FOUND",
                              removing ? "no such member" : "no such user", NULL);
        return false;
    }
    member_t *m = sw_arena_calloc(&req->arena, sizeof(*m));
    m->req = req;
    m->removing = removing;
    *out = m;
    return true;
}

void sw_api_members_put(sw_http_req_t *req, void *ctx)
{
    sw_api_t *api = ctx;
    sw_api_req_t *r = sw_api_req(req);
    member_t *m;
    if (!member_target(req, &m, false))
        return;
    json_t *body = sw_api_json(req);
    if (!body)
        return;
    sw_json_errors_t e;
    sw_json_errors_init(&e);
    const char *role = NULL;
    if (sw_json_get_string(body, "role", true, 1, 16, &role, &e) == 0 &&
        sw_project_role_parse(role) == SW_PROJECT_NONE)
        sw_json_errors_add(&e, "role", "must be admin, developer or viewer");
    sw_api_reject_unknown_body(req, body, &e);
    if (sw_json_errors_any(&e)) {
        sw_api_validation_error(req, &e);
        return;
    }
    char *uid = sw_arena_iovdup(&req->arena, sw_http_req_param(req, "user_id")).base;
    const char *params[] = {r->project_id,   uid, role, r->principal.user_id, r->principal.email,
                            req->client_addr};
    sw_pg_query(api->pg,
                "WITH u AS (SELECT id, email, name FROM users WHERE id = $2), " LOCK_ADMINS ", "
                "ok AS (SELECT NOT (coalesce((SELECT role FROM t), '') = 'admin' AND $3 <> 'admin' "
                "AND (SELECT admins FROM n) <= 1) AS fine), "
                "m AS (INSERT INTO project_members (project_id, user_id, role) "
                "SELECT $1, u.id, $3 FROM u, ok WHERE ok.fine "
                "ON CONFLICT (project_id, user_id) DO UPDATE SET role = excluded.role, "
                "updated_at = now() RETURNING *), "
                "a AS (" SW_AUDIT_INSERT "SELECT $4, $5, 'member.set', 'project_member', "
                "m.user_id::text, $1, $6, json_build_object('role', m.role)::jsonb FROM m) "
                "SELECT (SELECT count(*) FROM u), (SELECT json_build_object('user_id', m.user_id, "
                "'email', u.email, 'name', u.name, 'role', m.role, 'created_at', m.created_at, "
                "'updated_at', m.updated_at) FROM m, u)",
                6, params, on_member, m);
}

void sw_api_members_delete(sw_http_req_t *req, void *ctx)
{
    sw_api_t *api = ctx;
    sw_api_req_t *r = sw_api_req(req);
    member_t *m;
    if (!member_target(req, &m, true))
        return;
    char *uid = sw_arena_iovdup(&req->arena, sw_http_req_param(req, "user_id")).base;
    const char *params[] = {r->project_id, uid, r->principal.user_id, r->principal.email,
                            req->client_addr};
    sw_pg_query(
        api->pg,
        "WITH " LOCK_ADMINS ", "
        "d AS (DELETE FROM project_members WHERE project_id = $1 AND user_id = $2 "
        "AND NOT (coalesce((SELECT role FROM t), '') = 'admin' AND (SELECT admins FROM n) <= 1) "
        "RETURNING user_id, role), "
        "a AS (" SW_AUDIT_INSERT "SELECT $3, $4, 'member.removed', 'project_member', "
        "d.user_id::text, $1, $5, json_build_object('role', d.role)::jsonb FROM d) "
        "SELECT (SELECT count(*) FROM t), (SELECT count(*) FROM d)",
        5, params, on_member, m);
}

/* ---- environments ---- */

static const sw_api_sort_t environment_sorts[] = {
    {"name", "name"},
    {"created_at", "created_at"},
    {NULL, NULL},
};

void sw_api_environments_list(sw_http_req_t *req, void *ctx)
{
    sw_api_req_t *r = sw_api_req(req);
    sw_api_list_t l = {.from = "environments",
                       .json_expr = "sw_environment_json(x)",
                       .sorts = environment_sorts,
                       .default_sort = "created_at"};
    sw_api_list_where(&l, "x.project_id = $%d::uuid", r->project_id);
    sw_api_list_run(ctx, req, &l);
}

static const sw_api_filter_t environment_filters[] = {
    {"project_id", "x.project_id = $%d::uuid", NULL, 0},
    {"name", "x.name = $%d", NULL, 0},
    {NULL, NULL, NULL, 0},
};

/* Every environment of every project the caller can see (Miso lists them across projects). */
void sw_api_environments_list_all(sw_http_req_t *req, void *ctx)
{
    const char *filters[SW_API_FILTERS_MAX];
    if (!sw_api_filters_read(req, environment_filters, filters))
        return;
    sw_api_list_t l = {.from = "environments",
                       .json_expr = "sw_environment_json(x)",
                       .sorts = environment_sorts,
                       .default_sort = "created_at"};
    sw_api_list_visible(&l, sw_api_principal(req), "project_id", false, NULL, NULL);
    sw_api_filters_apply(&l, environment_filters, filters);
    sw_api_list_run(ctx, req, &l);
}

static const char *read_environment_name(sw_http_req_t *req)
{
    json_t *body = sw_api_json(req);
    if (!body)
        return NULL;
    sw_json_errors_t e;
    sw_json_errors_init(&e);
    const char *name = NULL;
    if (sw_json_get_string(body, "name", true, 1, 63, &name, &e) == 0 && !sw_api_dns_label(name))
        sw_json_errors_add(&e, "name", "must be a DNS label: a-z, 0-9 and '-', not at either end");
    sw_api_reject_unknown_body(req, body, &e);
    if (sw_json_errors_any(&e)) {
        sw_api_validation_error(req, &e);
        return NULL;
    }
    return name;
}

void sw_api_environments_create(sw_http_req_t *req, void *ctx)
{
    sw_api_req_t *r = sw_api_req(req);
    const char *name = read_environment_name(req);
    if (!name)
        return;
    const char *params[] = {r->project_id, name, r->principal.user_id, r->principal.email,
                            req->client_addr};
    sw_api_exec(ctx, req,
                "WITH e AS (INSERT INTO environments (project_id, name) VALUES ($1, $2) "
                "RETURNING *), "
                "a AS (" SW_AUDIT_INSERT "SELECT $3, $4, 'environment.created', 'environment', "
                "e.id::text, $1, $5, json_build_object('name', e.name)::jsonb FROM e) "
                "SELECT sw_environment_json(e) FROM e",
                5, params, 201, "environment not created",
                "an environment with this name exists in the project");
}

void sw_api_environments_get(sw_http_req_t *req, void *ctx)
{
    const char *cached = sw_api_req(req)->resource_json;
    if (cached) {
        sw_api_respond_text(req, 200, cached);
        return;
    }
    const char *id = sw_arena_iovdup(&req->arena, sw_http_req_param(req, "id")).base;
    const char *params[] = {id};
    sw_api_exec(ctx, req, "SELECT sw_environment_json(e) FROM environments e WHERE e.id = $1", 1,
                params, 200, "no such environment", NULL);
}

void sw_api_environments_update(sw_http_req_t *req, void *ctx)
{
    sw_api_req_t *r = sw_api_req(req);
    const char *name = read_environment_name(req);
    if (!name)
        return;
    const char *id = sw_arena_iovdup(&req->arena, sw_http_req_param(req, "id")).base;
    const char *params[] = {id, name, r->principal.user_id, r->principal.email, req->client_addr};
    sw_api_exec(ctx, req,
                "WITH e AS (UPDATE environments SET name = $2, updated_at = now() WHERE id = $1 "
                "RETURNING *), "
                "a AS (" SW_AUDIT_INSERT "SELECT $3, $4, 'environment.updated', 'environment', "
                "e.id::text, e.project_id, $5, json_build_object('name', e.name)::jsonb FROM e) "
                "SELECT sw_environment_json(e) FROM e",
                5, params, 200, "no such environment",
                "an environment with this name exists in the project");
}

static void on_environment_deleted(int status, sw_pg_result_t *res, void *payload)
{
    sw_http_req_t *req = payload;
    if (status != SW_EREFERENCED && sw_api_db_failed(req, status, res))
        return;
    if (status == SW_EREFERENCED || strcmp(sw_pg_result_value(res, 0, 0), "0") == 0) {
        sw_http_respond_error(req, 409, "RESOURCE_CONFLICT",
                              "the environment still holds apps: delete or move them first", NULL);
        return;
    }
    sw_http_respond(req, 204, NULL, NULL, 0);
}

void sw_api_environments_delete(sw_http_req_t *req, void *ctx)
{
    sw_api_t *api = ctx;
    sw_api_req_t *r = sw_api_req(req);
    const char *id = sw_arena_iovdup(&req->arena, sw_http_req_param(req, "id")).base;
    const char *params[] = {id, r->principal.user_id, r->principal.email, req->client_addr};
    sw_pg_query(api->pg,
                "WITH d AS (DELETE FROM environments WHERE id = $1 AND NOT EXISTS "
                "(SELECT 1 FROM apps WHERE environment_id = $1) RETURNING id, name, project_id), "
                "a AS (" SW_AUDIT_INSERT "SELECT $2, $3, 'environment.deleted', 'environment', "
                "d.id::text, d.project_id, $4, json_build_object('name', d.name)::jsonb FROM d) "
                "SELECT count(*) FROM d",
                4, params, on_environment_deleted, req);
}
