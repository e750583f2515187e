/* /api/v1/apps/:id/env: an app's environment variables. Values go in sealed with the
 * secret box, bound to their app and key, and never come out of the API: answers carry keys
 * and flags only, and audit rows name keys, never values. */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "slipway/api.h"

#include "internal.h"

#define ENV_VALUE_MAX (64 * 1024)
#define ENV_KEY_MAX   255
#define ENV_BULK_MAX  100

static const sw_api_sort_t env_sorts[] = {
    {"key", "key"},
    {"updated_at", "updated_at"},
    {NULL, NULL},
};

static bool key_ok(const char *k, size_t n)
{
    if (n == 0 || n > ENV_KEY_MAX || (k[0] >= '0' && k[0] <= '9'))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((k[i] >= 'A' && k[i] <= 'Z') || (k[i] >= 'a' && k[i] <= 'z') ||
              (k[i] >= '0' && k[i] <= '9') || k[i] == '_'))
            return false;
    return true;
}

static void seal(sw_api_t *api, const char *app_id, const char *key, const char *value, size_t len,
                 sw_buf_t *out)
{
    char ad[SW_UUID_LEN + ENV_KEY_MAX + 16];
    snprintf(ad, sizeof(ad), "app_env:%s:%s", app_id, key);
    sw_secretbox_seal(api->box, value, len, ad, out);
}

static void wipe_body(sw_http_req_t *req)
{
    if (req->body.base)
        sodium_memzero(req->body.base, req->body.len);
}

static const char *app_id(sw_http_req_t *req)
{
    return sw_arena_iovdup(&req->arena, sw_http_req_param(req, "id")).base;
}

void sw_api_env_list(sw_http_req_t *req, void *ctx)
{
    sw_api_list_t l = {
        .from = "app_env",
        .json_expr = "json_build_object('key', x.key, 'build_time', x.build_time, 'runtime', "
                     "x.runtime, 'has_value', x.value_sealed <> '', 'updated_at', x.updated_at)",
        .sorts = env_sorts,
        .default_sort = "key",
        .tiebreak = "key",
    };
    sw_api_list_where(&l, "x.app_id = $%d::uuid", app_id(req));
    sw_api_list_run(ctx, req, &l);
}

static void on_bulk_set(int status, sw_pg_result_t *res, void *payload)
{
    sw_http_req_t *req = payload;
    if (sw_api_db_failed(req, status, res))
        return;
    sw_api_env_list(req, sw_api_req(req)->state);
}

void sw_api_env_bulk(sw_http_req_t *req, void *ctx)
{
    sw_api_t *api = ctx;
    sw_api_req_t *r = sw_api_req(req);
    json_t *body = sw_api_json(req);
    if (!body)
        return;
    sw_json_errors_t e;
    sw_json_errors_init(&e);
    json_t *vars = json_object_get(body, "vars");
    sw_api_reject_unknown_body(req, body, &e);
    if (!json_is_object(vars) || json_object_size(vars) == 0 ||
        json_object_size(vars) > ENV_BULK_MAX)
        sw_json_errors_add(&e, "vars", "must be an object of 1 to %d KEY: \"value\" pairs",
                           ENV_BULK_MAX);
    const char *key;
    json_t *value;
    if (!sw_json_errors_any(&e)) {
        json_object_foreach(vars, key, value)
        {
            char field[ENV_KEY_MAX + 8];
            snprintf(field, sizeof(field), "vars.%.*s", ENV_KEY_MAX, key);
            if (!key_ok(key, strlen(key)))
                sw_json_errors_add(&e, field, "keys match [A-Za-z_][A-Za-z0-9_]* (at most %d)",
                                   ENV_KEY_MAX);
            else if (!json_is_string(value))
                sw_json_errors_add(&e, field, "must be a string");
            else if (json_string_length(value) > ENV_VALUE_MAX)
                sw_json_errors_add(&e, field, "must be at most %d bytes", ENV_VALUE_MAX);
        }
    }
    if (sw_json_errors_any(&e)) {
        wipe_body(req);
        sw_api_validation_error(req, &e);
        return;
    }
    const char *id = app_id(req);
    /* Keys are [A-Za-z0-9_] and sealed values base64url, so quoting each element is enough
     * (unquoted, a key named NULL would read as SQL NULL). */
    sw_buf_t keys = SW_BUF_INIT, sealed = SW_BUF_INIT;
    sw_buf_append_char(&keys, '{');
    sw_buf_append_char(&sealed, '{');
    json_object_foreach(vars, key, value)
    {
        if (keys.len > 1) {
            sw_buf_append_char(&keys, ',');
            sw_buf_append_char(&sealed, ',');
        }
        sw_buf_append_char(&keys, '"');
        sw_buf_append_cstr(&keys, key);
        sw_buf_append_char(&keys, '"');
        sw_buf_append_char(&sealed, '"');
        seal(api, id, key, json_string_value(value), json_string_length(value), &sealed);
        sw_buf_append_char(&sealed, '"');
    }
    sw_buf_append_char(&keys, '}');
    sw_buf_append_char(&sealed, '}');
    wipe_body(req);
    const char *params[] = {id,
                            keys.base,
                            sealed.base,
                            r->principal.user_id,
                            r->principal.email,
                            r->project_id,
                            req->client_addr};
    r->state = api;
    sw_pg_query(api->pg,
                "WITH v AS (SELECT * FROM unnest($2::text[], $3::text[]) AS v(key, sealed)), "
                "up AS (INSERT INTO app_env (app_id, key, value_sealed) "
                "SELECT $1, key, sealed FROM v ON CONFLICT (app_id, key) DO UPDATE "
                "SET value_sealed = excluded.value_sealed, updated_at = now() RETURNING key), "
                "a AS (" SW_AUDIT_INSERT "SELECT $4, $5, 'env.set', 'app', $1::text, $6, $7, "
                "json_build_object('keys', (SELECT json_agg(key ORDER BY key) FROM up))::jsonb) "
                "SELECT count(*) FROM up",
                7, params, on_bulk_set, req);
    sw_buf_free(&keys);
    sw_buf_free(&sealed);
}

void sw_api_env_put(sw_http_req_t *req, void *ctx)
{
    sw_api_t *api = ctx;
    sw_api_req_t *r = sw_api_req(req);
    sw_iov_t k = sw_http_req_param(req, "key");
    sw_json_errors_t e;
    sw_json_errors_init(&e);
    if (!key_ok(k.base, k.len)) {
        sw_json_errors_add(&e, "key", "must match [A-Za-z_][A-Za-z0-9_]* (at most %d)",
                           ENV_KEY_MAX);
        sw_api_validation_error(req, &e);
        return;
    }
    json_t *body = sw_api_json(req);
    if (!body)
        return;
    const char *value = NULL;
    bool build_time = false, runtime = true;
    int has_build = sw_json_get_bool(body, "build_time", false, &build_time, &e);
    int has_runtime = sw_json_get_bool(body, "runtime", false, &runtime, &e);
    sw_json_get_string(body, "value", true, 0, ENV_VALUE_MAX, &value, &e);
    sw_api_reject_unknown_body(req, body, &e);
    if (sw_json_errors_any(&e)) {
        wipe_body(req);
        sw_api_validation_error(req, &e);
        return;
    }
    const char *id = app_id(req);
    char *key = sw_arena_iovdup(&req->arena, k).base;
    sw_buf_t sealed = SW_BUF_INIT;
    seal(api, id, key, value, json_string_length(json_object_get(body, "value")), &sealed);
    wipe_body(req);
    const char *params[] = {id,
                            key,
                            sealed.base,
                            has_build == 0 ? (build_time ? "true" : "false") : NULL,
                            has_runtime == 0 ? (runtime ? "true" : "false") : NULL,
                            r->principal.user_id,
                            r->principal.email,
                            r->project_id,
                            req->client_addr};
    sw_api_exec(api, req,
                "WITH up AS (INSERT INTO app_env (app_id, key, value_sealed, build_time, runtime) "
                "VALUES ($1, $2, $3, coalesce($4::bool, false), coalesce($5::bool, true)) "
                "ON CONFLICT (app_id, key) DO UPDATE SET value_sealed = excluded.value_sealed, "
                "build_time = coalesce($4::bool, app_env.build_time), "
                "runtime = coalesce($5::bool, app_env.runtime), updated_at = now() "
                "RETURNING *), "
                "a AS (" SW_AUDIT_INSERT "SELECT $6, $7, 'env.set', 'app', $1::text, $8, $9, "
                "json_build_object('keys', json_build_array($2::text))::jsonb) "
                "SELECT json_build_object('key', key, 'build_time', build_time, 'runtime', "
                "runtime, 'has_value', value_sealed <> '', 'updated_at', updated_at) FROM up",
                9, params, 200, "no such app", NULL);
    sodium_memzero(sealed.base, sealed.len);
    sw_buf_free(&sealed);
}

void sw_api_env_delete(sw_http_req_t *req, void *ctx)
{
    sw_api_req_t *r = sw_api_req(req);
    sw_iov_t k = sw_http_req_param(req, "key");
    if (!key_ok(k.base, k.len)) {
        sw_http_respond_error(req, 404, "RESOURCE_NOT_FOUND", "no such env var", NULL);
        return;
    }
    const char *params[] = {app_id(req),          sw_arena_iovdup(&req->arena, k).base,
                            r->principal.user_id, r->principal.email,
                            r->project_id,        req->client_addr};
    sw_api_exec(ctx, req,
                "WITH d AS (DELETE FROM app_env WHERE app_id = $1 AND key = $2 RETURNING key), "
                "a AS (" SW_AUDIT_INSERT "SELECT $3, $4, 'env.deleted', 'app', $1::text, $5, $6, "
                "json_build_object('keys', json_build_array(d.key))::jsonb FROM d) "
                "SELECT key FROM d",
                6, params, 204, "no such env var", NULL);
}
