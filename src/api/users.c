/* /api/v1/users: instance user administration.
 *
 * Owners are protected in the statement itself: the rows of every owner and of the target
 * are locked in id order before deciding, so two concurrent demotions cannot leave the
 * instance without an owner, and the lock order cannot deadlock. */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "slipway/api.h"

#include "internal.h"

typedef struct {
    sw_api_t *api;
    sw_http_req_t *req;
    sw_principal_t p;
    char id[SW_UUID_LEN + 1];
    char email[256];
    const char *name;
    const char *role;
    const char *password;
    size_t password_len;
    json_t *fields; /* names of the changed fields, for the audit row */
} users_t;

static users_t *users_new(sw_http_req_t *req, void *ctx)
{
    users_t *u = sw_arena_calloc(&req->arena, sizeof(*u));
    u->api = ctx;
    u->req = req;
    u->p = *sw_api_principal(req);
    return u;
}

static void wipe_body(sw_http_req_t *req)
{
    if (req->body.base)
        sodium_memzero(req->body.base, req->body.len);
}

static bool take_id(users_t *u)
{
    sw_iov_t id = sw_http_req_param(u->req, "id");
    if (!sw_iov_is_uuid(id)) {
        sw_http_respond_error(u->req, 404, "RESOURCE_NOT_FOUND", "no such user", NULL);
        return false;
    }
    memcpy(u->id, id.base, SW_UUID_LEN);
    return true;
}

static void not_owner(sw_http_req_t *req)
{
    sw_http_respond_error(req, 403, "INSUFFICIENT_ROLE",
                          "only an owner may change an owner or grant the owner role", NULL);
}

static bool read_role(json_t *body, const char **out, sw_json_errors_t *e)
{
    const char *role = NULL;
    int r = sw_json_get_string(body, "role", false, 1, 16, &role, e);
    if (r == 0 && sw_user_role_parse(role) == SW_ROLE_NONE) {
        sw_json_errors_add(e, "role", "must be owner, admin or member");
        return false;
    }
    *out = r == 0 ? role : NULL;
    return r == 0 || r == -ENOENT;
}

/* ---- GET users, GET users/:id ---- */

static void on_text(int status, sw_pg_result_t *res, void *payload)
{
    users_t *u = payload;
    if (sw_api_db_failed(u->req, status, res))
        return;
    const char *v = sw_pg_result_rows(res) == 1 ? sw_pg_result_value(res, 0, 0) : NULL;
    if (!v) {
        sw_http_respond_error(u->req, 404, "RESOURCE_NOT_FOUND", "no such user", NULL);
        return;
    }
    sw_api_respond_text(u->req, 200, v);
}

static const sw_api_sort_t user_sorts[] = {
    {"email", "email"},           {"name", "lower(name)"},      {"role", "role"},
    {"created_at", "created_at"}, {"updated_at", "updated_at"}, {NULL, NULL},
};

void sw_api_users_list(sw_http_req_t *req, void *ctx)
{
    sw_api_list_t l = {.from = "users",
                       .json_expr = "sw_user_json(x)",
                       .sorts = user_sorts,
                       .default_sort = "created_at"};
    sw_api_list_run(ctx, req, &l);
}

void sw_api_users_get(sw_http_req_t *req, void *ctx)
{
    users_t *u = users_new(req, ctx);
    if (!take_id(u))
        return;
    const char *params[] = {u->id};
    sw_pg_query(u->api->pg, "SELECT sw_user_json(u) FROM users u WHERE u.id = $1", 1, params,
                on_text, u);
}

/* ---- POST users ---- */

static void on_created(int status, sw_pg_result_t *res, void *payload)
{
    users_t *u = payload;
    if (status == SW_EUNIQUE) {
        sw_http_respond_error(u->req, 409, "RESOURCE_CONFLICT", "a user with this email exists",
                              NULL);
        return;
    }
    if (sw_api_db_failed(u->req, status, res))
        return;
    sw_api_respond_text(u->req, 201, sw_pg_result_value(res, 0, 0));
}

static void on_create_hashed(int status, const char *hash, void *payload)
{
    users_t *u = payload;
    wipe_body(u->req);
    if (status != 0) {
        sw_http_respond_error(u->req, 500, "INTERNAL_ERROR", "password hashing failed", NULL);
        return;
    }
    const char *params[] = {u->email,           u->name, hash, u->role, u->p.user_id, u->p.email,
                            u->req->client_addr};
    sw_pg_query(u->api->pg,
                "WITH u AS (INSERT INTO users (email, name, password_hash, role) "
                "VALUES ($1, $2, $3, $4) RETURNING *), "
                "a AS (INSERT INTO audit_log (actor_id, actor_email, action, resource, "
                "resource_id, address, details) SELECT $5, $6, 'user.created', 'user', "
                "u.id::text, $7, json_build_object('email', u.email, 'role', u.role)::jsonb "
                "FROM u) SELECT sw_user_json(u) FROM u",
                7, params, on_created, u);
}

void sw_api_users_create(sw_http_req_t *req, void *ctx)
{
    users_t *u = users_new(req, ctx);
    json_t *body = sw_api_body(req);
    if (!body)
        return;
    sw_json_errors_t e;
    sw_json_errors_init(&e);
    const char *email = NULL, *password = NULL, *name = "", *role = NULL;
    if (sw_json_get_string(body, "email", true, 1, 254, &email, &e) == 0)
        sw_api_email(email, u->email, sizeof(u->email), &e);
    if (sw_json_get_string(body, "password", true, SW_PASSWORD_MIN, SW_PASSWORD_MAX, &password,
                           &e) == 0)
        u->password_len = strlen(password);
    sw_json_get_string(body, "name", false, 0, 200, &name, &e);
    read_role(body, &role, &e);
    sw_api_reject_unknown_body(req, body, &e);
    if (sw_json_errors_any(&e)) {
        json_decref(body);
        wipe_body(req);
        sw_api_validation_error(req, &e);
        return;
    }
    u->role = sw_arena_strdup(&req->arena, role ? role : "member");
    u->name = sw_arena_strdup(&req->arena, name);
    u->password = sw_arena_strndup(&req->arena, password, u->password_len);
    json_decref(body);
    if (strcmp(u->role, "owner") == 0 && u->p.role != SW_ROLE_OWNER) {
        wipe_body(req);
        not_owner(req);
        return;
    }
    if (sw_password_hash(u->api->loop, u->password, u->password_len, on_create_hashed, u) != 0)
        sw_http_respond_error(req, 500, "INTERNAL_ERROR", "password hashing failed", NULL);
}

/* ---- PATCH users/:id ---- */

/* Locks every owner row and the target, in id order, for the statement's decisions. */
#define LOCK_OWNERS_AND_TARGET                                                                     \
    "locked AS MATERIALIZED (SELECT id, role FROM users WHERE role = 'owner' OR id = $1 "          \
    "ORDER BY id FOR UPDATE), t AS (SELECT role FROM locked WHERE id = $1), "                      \
    "n AS (SELECT count(*) AS owners FROM locked WHERE role = 'owner') "

/* Row 0: the target's role before (NULL: no such user), and the outcome. */
static bool refused(users_t *u, sw_pg_result_t *res, bool changed, const char *new_role)
{
    const char *before = sw_pg_result_value(res, 0, 0);
    if (!before) {
        sw_http_respond_error(u->req, 404, "RESOURCE_NOT_FOUND", "no such user", NULL);
        return true;
    }
    if (changed)
        return false;
    bool touches_owner = strcmp(before, "owner") == 0 || (new_role && !strcmp(new_role, "owner"));
    if (touches_owner && u->p.role != SW_ROLE_OWNER)
        not_owner(u->req);
    else
        sw_http_respond_error(u->req, 409, "RESOURCE_CONFLICT",
                              "the last owner cannot be demoted or deleted", NULL);
    return true;
}

static void on_updated(int status, sw_pg_result_t *res, void *payload)
{
    users_t *u = payload;
    if (status == SW_EUNIQUE) {
        sw_http_respond_error(u->req, 409, "RESOURCE_CONFLICT", "a user with this email exists",
                              NULL);
        return;
    }
    if (sw_api_db_failed(u->req, status, res))
        return;
    const char *user = sw_pg_result_value(res, 0, 1);
    if (refused(u, res, user != NULL, u->role))
        return;
    /* Role and password changes must reach every cached principal of this user now. */
    sw_auth_invalidate_user(u->api->auth, u->id);
    sw_api_respond_text(u->req, 200, user);
}

static void update_run(users_t *u, const char *hash)
{
    char *fields = json_dumps(u->fields, JSON_COMPACT);
    const char *params[] = {u->id,
                            u->name,
                            u->role,
                            hash,
                            u->p.user_id,
                            u->p.email,
                            u->req->client_addr,
                            fields,
                            sw_user_role_name(u->p.role)};
    sw_pg_query(u->api->pg,
                "WITH " LOCK_OWNERS_AND_TARGET ", "
                "u AS (UPDATE users SET name = coalesce($2, name), role = coalesce($3, role), "
                "password_hash = coalesce($4, password_hash), updated_at = now() "
                "WHERE id = $1 AND EXISTS (SELECT 1 FROM t) "
                "AND ($9 = 'owner' OR ((SELECT role FROM t) <> 'owner' "
                "AND coalesce($3, '') <> 'owner')) "
                "AND NOT ((SELECT role FROM t) = 'owner' AND coalesce($3, 'owner') <> 'owner' "
                "AND (SELECT owners FROM n) <= 1) RETURNING *), "
                "s AS (DELETE FROM sessions WHERE user_id = $1 AND $4::text IS NOT NULL "
                "AND EXISTS (SELECT 1 FROM u)), "
                "a AS (INSERT INTO audit_log (actor_id, actor_email, action, resource, "
                "resource_id, address, details) SELECT $5, $6, 'user.updated', 'user', "
                "u.id::text, $7, json_build_object('fields', $8::json, 'role', u.role)::jsonb "
                "FROM u) "
                "SELECT (SELECT role FROM t), (SELECT sw_user_json(u) FROM u)",
                9, params, on_updated, u);
    free(fields);
    json_decref(u->fields);
    u->fields = NULL;
}

static void on_update_hashed(int status, const char *hash, void *payload)
{
    users_t *u = payload;
    wipe_body(u->req);
    if (status != 0) {
        json_decref(u->fields);
        u->fields = NULL;
        sw_http_respond_error(u->req, 500, "INTERNAL_ERROR", "password hashing failed", NULL);
        return;
    }
    update_run(u, hash);
}

void sw_api_users_update(sw_http_req_t *req, void *ctx)
{
    users_t *u = users_new(req, ctx);
    if (!take_id(u))
        return;
    json_t *body = sw_api_body(req);
    if (!body)
        return;
    sw_json_errors_t e;
    sw_json_errors_init(&e);
    const char *name = NULL, *role = NULL, *password = NULL;
    int has_name = sw_json_get_string(body, "name", false, 0, 200, &name, &e);
    read_role(body, &role, &e);
    int has_password = sw_json_get_string(body, "password", false, SW_PASSWORD_MIN, SW_PASSWORD_MAX,
                                          &password, &e);
    sw_api_reject_unknown_body(req, body, &e);
    if (!sw_json_errors_any(&e) && has_name != 0 && !role && has_password != 0)
        sw_json_errors_add(&e, "body", "give at least one of name, role, password");
    if (sw_json_errors_any(&e)) {
        json_decref(body);
        wipe_body(req);
        sw_api_validation_error(req, &e);
        return;
    }
    u->fields = json_array();
    if (has_name == 0) {
        u->name = sw_arena_strdup(&req->arena, name);
        json_array_append_new(u->fields, json_string("name"));
    }
    if (role) {
        u->role = sw_arena_strdup(&req->arena, role);
        json_array_append_new(u->fields, json_string("role"));
    }
    if (has_password == 0) {
        u->password_len = strlen(password);
        u->password = sw_arena_strndup(&req->arena, password, u->password_len);
        json_array_append_new(u->fields, json_string("password"));
    }
    json_decref(body);
    if (u->password) {
        if (sw_password_hash(u->api->loop, u->password, u->password_len, on_update_hashed, u) !=
            0) {
            json_decref(u->fields);
            u->fields = NULL;
            sw_http_respond_error(req, 500, "INTERNAL_ERROR", "password hashing failed", NULL);
        }
    } else {
        update_run(u, NULL);
    }
}

/* ---- DELETE users/:id ---- */

static void on_deleted(int status, sw_pg_result_t *res, void *payload)
{
    users_t *u = payload;
    if (sw_api_db_failed(u->req, status, res))
        return;
    if (refused(u, res, strcmp(sw_pg_result_value(res, 0, 1), "0") != 0, NULL))
        return;
    sw_auth_invalidate_user(u->api->auth, u->id);
    sw_http_respond(u->req, 204, NULL, NULL, 0);
}

void sw_api_users_delete(sw_http_req_t *req, void *ctx)
{
    users_t *u = users_new(req, ctx);
    if (!take_id(u))
        return;
    const char *params[] = {u->id, sw_user_role_name(u->p.role), u->p.user_id, u->p.email,
                            req->client_addr};
    sw_pg_query(u->api->pg,
                "WITH " LOCK_OWNERS_AND_TARGET ", "
                "d AS (DELETE FROM users WHERE id = $1 AND EXISTS (SELECT 1 FROM t) "
                "AND ($2 = 'owner' OR (SELECT role FROM t) <> 'owner') "
                "AND NOT ((SELECT role FROM t) = 'owner' AND (SELECT owners FROM n) <= 1) "
                "RETURNING id, email, role), "
                "a AS (INSERT INTO audit_log (actor_id, actor_email, action, resource, "
                "resource_id, address, details) SELECT $3, $4, 'user.deleted', 'user', "
                "d.id::text, $5, json_build_object('email', d.email, 'role', d.role)::jsonb "
                "FROM d) "
                "SELECT (SELECT role FROM t), (SELECT count(*) FROM d)",
                5, params, on_deleted, u);
}
