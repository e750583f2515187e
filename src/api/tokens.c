/* /api/v1/tokens: the caller's API tokens. The secret exists only in the answer to POST;
 * the database keeps its hash. */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "slipway/api.h"

#include "internal.h"

#define TOKEN_EXPIRES_MAX_S 315360000LL /* ten years */

typedef struct {
    sw_api_t *api;
    sw_http_req_t *req;
    sw_principal_t p;
    char token[SW_TOKEN_MAX];
    char id[SW_UUID_LEN + 1];
} tokens_t;

static tokens_t *tokens_new(sw_http_req_t *req, void *ctx)
{
    tokens_t *t = sw_arena_calloc(&req->arena, sizeof(*t));
    t->api = ctx;
    t->req = req;
    t->p = *sw_api_principal(req);
    return t;
}

static void on_text(int status, sw_pg_result_t *res, void *payload)
{
    tokens_t *t = payload;
    if (sw_api_db_failed(t->req, status, res))
        return;
    sw_api_respond_text(t->req, 200, sw_pg_result_value(res, 0, 0));
}

void sw_api_tokens_list(sw_http_req_t *req, void *ctx)
{
    long long page, limit, offset;
    if (!sw_api_page(req, &page, &limit, &offset))
        return;
    tokens_t *t = tokens_new(req, ctx);
    char slimit[24], soffset[24], spage[24];
    snprintf(slimit, sizeof(slimit), "%lld", limit);
    snprintf(soffset, sizeof(soffset), "%lld", offset);
    snprintf(spage, sizeof(spage), "%lld", page);
    const char *params[] = {t->p.user_id, slimit, soffset, spage};
    sw_pg_query(t->api->pg,
                "SELECT sw_page((SELECT json_agg(json_build_object('id', id, 'name', name, "
                "'scopes', scopes, 'expires_at', expires_at, 'last_used_at', last_used_at, "
                "'created_at', created_at) ORDER BY created_at DESC, id) FROM (SELECT * FROM "
                "api_tokens WHERE user_id = $1 ORDER BY created_at DESC, id LIMIT $2::int "
                "OFFSET $3::int) x), (SELECT count(*) FROM api_tokens WHERE user_id = $1), "
                "$4::int, $2::int)",
                4, params, on_text, t);
}

static void on_created(int status, sw_pg_result_t *res, void *payload)
{
    tokens_t *t = payload;
    json_error_t jerr;
    if (sw_api_db_failed(t->req, status, res)) {
        sodium_memzero(t->token, sizeof(t->token));
        return;
    }
    json_t *obj = json_loads(sw_pg_result_value(res, 0, 0), 0, &jerr);
    if (!obj) {
        sodium_memzero(t->token, sizeof(t->token));
        sw_http_respond_error(t->req, 500, "INTERNAL_ERROR", "token not created", NULL);
        return;
    }
    json_object_set_new(obj, "token", json_string(t->token));
    sodium_memzero(t->token, sizeof(t->token));
    sw_http_add_header(t->req, "Cache-Control", "no-store");
    sw_http_respond_json(t->req, 201, obj);
}

/* Reads {"scopes": [...]} into a PostgreSQL array literal of known names. */
static bool read_scopes(json_t *body, sw_buf_t *out, sw_json_errors_t *e)
{
    json_t *arr = json_object_get(body, "scopes");
    unsigned seen = 0;
    if (!arr) {
        sw_json_errors_add(e, "scopes", "is required");
        return false;
    }
    if (!json_is_array(arr) || json_array_size(arr) == 0 || json_array_size(arr) > 4) {
        sw_json_errors_add(e, "scopes", "must be a non-empty list of read, write, deploy, admin");
        return false;
    }
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        const char *name = json_string_value(v);
        unsigned bit = 0;
        for (unsigned b = SW_SCOPE_READ; b <= SW_SCOPE_ADMIN; b <<= 1)
            if (name && strcmp(name, sw_scope_name(b)) == 0)
                bit = b;
        if (!bit) {
            sw_json_errors_add(e, "scopes", "unknown scope; use read, write, deploy or admin");
            return false;
        }
        seen |= bit;
    }
    sw_buf_append_char(out, '{');
    for (unsigned b = SW_SCOPE_READ; b <= SW_SCOPE_ADMIN; b <<= 1)
        if (seen & b)
            sw_buf_printf(out, "%s%s", out->len > 1 ? "," : "", sw_scope_name(b));
    sw_buf_append_char(out, '}');
    return true;
}

void sw_api_tokens_create(sw_http_req_t *req, void *ctx)
{
    tokens_t *t = tokens_new(req, ctx);
    json_t *body = sw_api_body(req);
    if (!body)
        return;
    sw_json_errors_t e;
    sw_json_errors_init(&e);
    const char *name = NULL;
    long long expires_in = 0;
    sw_buf_t scopes = SW_BUF_INIT;
    sw_json_get_string(body, "name", true, 1, 100, &name, &e);
    read_scopes(body, &scopes, &e);
    int has_expiry =
        sw_json_get_int(body, "expires_in", false, 60, TOKEN_EXPIRES_MAX_S, &expires_in, &e);
    sw_api_reject_unknown_body(req, body, &e);
    if (sw_json_errors_any(&e)) {
        json_decref(body);
        sw_buf_free(&scopes);
        sw_api_validation_error(req, &e);
        return;
    }
    char hash[SW_TOKEN_HASH_HEX], expires[24];
    sw_token_new(SW_API_TOKEN_PREFIX, t->token);
    sw_token_hash(t->token, strlen(t->token), hash);
    snprintf(expires, sizeof(expires), "%lld", expires_in);
    const char *params[] = {
        t->p.user_id,    name, hash, scopes.base, has_expiry == 0 ? expires : NULL, t->p.email,
        req->client_addr};
    sw_pg_query(t->api->pg,
                "WITH t AS (INSERT INTO api_tokens (user_id, name, token_hash, scopes, "
                "expires_at) VALUES ($1, $2, $3, $4::text[], now() + make_interval(secs => "
                "$5::int)) RETURNING *), "
                "a AS (INSERT INTO audit_log (actor_id, actor_email, action, resource, "
                "resource_id, address, details) SELECT $1, $6, 'token.created', 'api_token', "
                "t.id::text, $7, json_build_object('name', t.name, 'scopes', t.scopes)::jsonb "
                "FROM t) "
                "SELECT json_build_object('id', id, 'name', name, 'scopes', scopes, "
                "'expires_at', expires_at, 'last_used_at', last_used_at, 'created_at', "
                "created_at) FROM t",
                7, params, on_created, t);
    json_decref(body);
    sw_buf_free(&scopes);
}

static void on_deleted(int status, sw_pg_result_t *res, void *payload)
{
    tokens_t *t = payload;
    if (sw_api_db_failed(t->req, status, res))
        return;
    if (sw_pg_result_rows(res) != 1) {
        sw_http_respond_error(t->req, 404, "RESOURCE_NOT_FOUND", "no such token", NULL);
        return;
    }
    /* The token and every access token issued for it, on every process. */
    sw_auth_invalidate_token(t->api->auth, t->id);
    sw_http_respond(t->req, 204, NULL, NULL, 0);
}

void sw_api_tokens_delete(sw_http_req_t *req, void *ctx)
{
    sw_iov_t id = sw_http_req_param(req, "id");
    if (!sw_iov_is_uuid(id)) {
        sw_http_respond_error(req, 404, "RESOURCE_NOT_FOUND", "no such token", NULL);
        return;
    }
    tokens_t *t = tokens_new(req, ctx);
    memcpy(t->id, id.base, SW_UUID_LEN);
    const char *params[] = {t->id, t->p.user_id, t->p.email, req->client_addr};
    sw_pg_query(t->api->pg,
                "WITH d AS (DELETE FROM api_tokens WHERE id = $1 AND user_id = $2 "
                "RETURNING id, name), "
                "a AS (INSERT INTO audit_log (actor_id, actor_email, action, resource, "
                "resource_id, address, details) SELECT $2, $3, 'token.revoked', 'api_token', "
                "d.id::text, $4, json_build_object('name', d.name)::jsonb FROM d) "
                "SELECT id FROM d",
                4, params, on_deleted, t);
}
