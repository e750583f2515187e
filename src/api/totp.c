/* /api/v1/auth/totp: enrol, confirm (with recovery codes), and turn off. The secret is kept
 * only sealed, bound to its user; a step once accepted is never accepted again. */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "slipway/api.h"
#include "slipway/ratelimit.h"

#include "internal.h"

#define RECOVERY_CODES 10
#define ISSUER         "Slipway"

typedef struct {
    sw_api_t *api;
    sw_http_req_t *req;
    sw_principal_t p;
    char secret_b32[64];
    char *code;
    char *password;
    size_t password_len;
    char *sealed;
    unsigned long long counter;
    char recovery[RECOVERY_CODES][16];
} totp_t;

static totp_t *totp_new(sw_http_req_t *req, void *ctx)
{
    totp_t *t = sw_arena_calloc(&req->arena, sizeof(*t));
    t->api = ctx;
    t->req = req;
    t->p = *sw_api_principal(req);
    return t;
}

static void wipe(totp_t *t)
{
    sodium_memzero(t->secret_b32, sizeof(t->secret_b32));
    sodium_memzero(t->recovery, sizeof(t->recovery));
    if (t->password)
        sodium_memzero(t->password, t->password_len);
    if (t->req->body.base)
        sodium_memzero(t->req->body.base, t->req->body.len);
}

static void conflict(totp_t *t, const char *msg)
{
    wipe(t);
    sw_http_respond_error(t->req, 409, "RESOURCE_CONFLICT", msg, NULL);
}

static void invalid(totp_t *t, const char *field, const char *msg)
{
    sw_ratelimit_result_t rl;
    sw_ratelimit_take(t->api->login_by_account, t->p.email, 1, uv_now(t->api->loop), &rl);
    wipe(t);
    sw_json_errors_t e;
    sw_json_errors_init(&e);
    sw_json_errors_add(&e, field, "%s", msg);
    sw_api_validation_error(t->req, &e);
}

static bool limited(totp_t *t)
{
    sw_ratelimit_result_t rl;
    sw_ratelimit_peek(t->api->login_by_account, t->p.email, uv_now(t->api->loop), &rl);
    if (rl.allowed)
        return false;
    char secs[24];
    snprintf(secs, sizeof(secs), "%llu", (unsigned long long)((rl.retry_after_ms + 999) / 1000));
    wipe(t);
    sw_http_add_header(t->req, "Retry-After", secs);
    sw_http_respond_error(t->req, 429, "RATE_LIMIT_EXCEEDED",
                          "too many wrong codes; try again later", NULL);
    return true;
}

static unsigned long long check_code(totp_t *t, const char *sealed, long long last)
{
    return sw_totp_check_sealed(t->api->box, t->p.user_id, sealed, last, t->code,
                                sw_wall_ms() / 1000);
}

/* ---- POST auth/totp/enroll ---- */

static void on_enrolled(int status, sw_pg_result_t *res, void *payload)
{
    totp_t *t = payload;
    if (sw_api_db_failed(t->req, status, res)) {
        wipe(t);
        return;
    }
    if (sw_pg_result_rows(res) != 1) {
        conflict(t, "TOTP is already on; turn it off first");
        return;
    }
    sw_buf_t url = SW_BUF_INIT;
    sw_totp_url(ISSUER, t->p.email, t->secret_b32, &url);
    json_t *body = json_pack("{s:s, s:s}", "secret", t->secret_b32, "otpauth_url", url.base);
    sodium_memzero(url.base, url.len);
    sw_buf_free(&url);
    wipe(t);
    sw_http_add_header(t->req, "Cache-Control", "no-store");
    sw_http_respond_json(t->req, 200, body);
}

void sw_api_totp_enroll(sw_http_req_t *req, void *ctx)
{
    totp_t *t = totp_new(req, ctx);
    unsigned char secret[SW_TOTP_SECRET_BYTES];
    sw_buf_t b32 = SW_BUF_INIT, sealed = SW_BUF_INIT;

    randombytes_buf(secret, sizeof(secret));
    sw_base32_encode(secret, sizeof(secret), &b32);
    snprintf(t->secret_b32, sizeof(t->secret_b32), "%s", b32.base);
    sw_totp_seal(t->api->box, t->p.user_id, secret, sizeof(secret), &sealed);
    sodium_memzero(secret, sizeof(secret));
    sodium_memzero(b32.base, b32.len);
    sw_buf_free(&b32);

    /* A pending (unconfirmed) secret is replaced; a confirmed one is not touched. */
    const char *params[] = {t->p.user_id, sealed.base};
    sw_pg_query(t->api->pg,
                "UPDATE users SET totp_secret = $2, totp_last_counter = 0, updated_at = now() "
                "WHERE id = $1 AND NOT totp_enabled RETURNING id",
                2, params, on_enrolled, t);
    sw_buf_free(&sealed);
}

/* ---- POST auth/totp/confirm ---- */

static void on_confirmed(int status, sw_pg_result_t *res, void *payload)
{
    totp_t *t = payload;
    if (sw_api_db_failed(t->req, status, res)) {
        wipe(t);
        return;
    }
    if (sw_pg_result_rows(res) != 1) {
        conflict(t, "TOTP changed meanwhile; enrol again");
        return;
    }
    sw_auth_invalidate_user(t->api->auth, t->p.user_id); /* totp_enabled changed */
    json_t *codes = json_array();
    for (int i = 0; i < RECOVERY_CODES; i++)
        json_array_append_new(codes, json_string(t->recovery[i]));
    wipe(t);
    sw_http_add_header(t->req, "Cache-Control", "no-store");
    sw_http_respond_json(t->req, 200, json_pack("{s:o}", "recovery_codes", codes));
}

/* Ten codes like "k3m9q-x7p2a" (50 random bits each); only their hashes are stored. */
static void make_recovery_codes(totp_t *t, sw_buf_t *pg_array)
{
    static const char alphabet[] = "abcdefghjkmnpqrstuvwxyz23456789";
    sw_buf_append_char(pg_array, '{');
    for (int i = 0; i < RECOVERY_CODES; i++) {
        char *c = t->recovery[i];
        for (int k = 0; k < 11; k++)
            c[k] = k == 5 ? '-' : alphabet[randombytes_uniform(sizeof(alphabet) - 1)];
        c[11] = '\0';
        char hash[SW_TOKEN_HASH_HEX];
        sw_totp_recovery_hash(c, hash);
        sw_buf_printf(pg_array, "%s%s", i ? "," : "", hash);
    }
    sw_buf_append_char(pg_array, '}');
}

static void on_confirm_user(int status, sw_pg_result_t *res, void *payload)
{
    totp_t *t = payload;
    if (sw_api_db_failed(t->req, status, res)) {
        wipe(t);
        return;
    }
    if (sw_pg_result_rows(res) != 1 || strcmp(sw_pg_result_value(res, 0, 0), "t") == 0 ||
        !sw_pg_result_value(res, 0, 1)) {
        conflict(t, "nothing to confirm: enrol first (or TOTP is already on)");
        return;
    }
    t->sealed = sw_arena_strdup(&t->req->arena, sw_pg_result_value(res, 0, 1));
    t->counter = check_code(t, t->sealed, atoll(sw_pg_result_value(res, 0, 2)));
    if (!t->counter) {
        invalid(t, "code", "is incorrect or expired");
        return;
    }
    sw_buf_t hashes = SW_BUF_INIT;
    make_recovery_codes(t, &hashes);
    char counter[24];
    snprintf(counter, sizeof(counter), "%llu", t->counter);
    const char *params[] = {t->p.user_id, counter, hashes.base, t->sealed, t->req->client_addr};
    sw_pg_query(t->api->pg,
                "WITH u AS (UPDATE users SET totp_enabled = true, totp_last_counter = $2::bigint, "
                "updated_at = now() WHERE id = $1 AND NOT totp_enabled AND totp_secret = $4 "
                "RETURNING id, email), "
                "d AS (DELETE FROM totp_recovery_codes WHERE user_id IN (SELECT id FROM u)), "
                "i AS (INSERT INTO totp_recovery_codes (user_id, code_hash) "
                "SELECT u.id, h FROM u, unnest($3::text[]) AS h), "
                "a AS (INSERT INTO audit_log (actor_id, actor_email, action, resource, "
                "resource_id, address) SELECT id, email, 'auth.totp_enabled', 'user', id::text, "
                "$5 FROM u) SELECT id FROM u",
                5, params, on_confirmed, t);
    sw_buf_free(&hashes);
}

void sw_api_totp_confirm(sw_http_req_t *req, void *ctx)
{
    totp_t *t = totp_new(req, ctx);
    json_t *body = sw_api_body(req);
    if (!body)
        return;
    sw_json_errors_t e;
    sw_json_errors_init(&e);
    const char *code = NULL;
    sw_json_get_string(body, "code", true, 1, 16, &code, &e);
    sw_api_reject_unknown_body(req, body, &e);
    if (sw_json_errors_any(&e)) {
        json_decref(body);
        sw_api_validation_error(req, &e);
        return;
    }
    t->code = sw_arena_strdup(&req->arena, code);
    json_decref(body);
    if (limited(t))
        return;
    const char *params[] = {t->p.user_id};
    sw_pg_query(t->api->pg,
                "SELECT totp_enabled, totp_secret, totp_last_counter FROM users WHERE id = $1", 1,
                params, on_confirm_user, t);
}

/* ---- DELETE auth/totp ---- */

static void on_disabled(int status, sw_pg_result_t *res, void *payload)
{
    totp_t *t = payload;
    wipe(t);
    if (sw_api_db_failed(t->req, status, res))
        return;
    if (sw_pg_result_rows(res) != 1) {
        sw_http_respond_error(t->req, 409, "RESOURCE_CONFLICT", "TOTP is not on", NULL);
        return;
    }
    sw_auth_invalidate_user(t->api->auth, t->p.user_id); /* totp_enabled changed */
    sw_http_respond(t->req, 204, NULL, NULL, 0);
}

static void disable(totp_t *t, unsigned long long counter)
{
    char c[24];
    snprintf(c, sizeof(c), "%llu", counter);
    const char *params[] = {t->p.user_id, t->req->client_addr, c};
    /* With a code, the step must still be unused when the change lands. */
    sw_pg_query(t->api->pg,
                "WITH u AS (UPDATE users SET totp_enabled = false, totp_secret = NULL, "
                "totp_last_counter = 0, updated_at = now() WHERE id = $1 AND totp_enabled "
                "AND ($3::bigint = 0 OR totp_last_counter < $3::bigint) RETURNING id, email), "
                "d AS (DELETE FROM totp_recovery_codes WHERE user_id IN (SELECT id FROM u)), "
                "a AS (INSERT INTO audit_log (actor_id, actor_email, action, resource, "
                "resource_id, address) SELECT id, email, 'auth.totp_disabled', 'user', "
                "id::text, $2 FROM u) SELECT id FROM u",
                3, params, on_disabled, t);
}

static void on_disable_password(int status, bool match, void *payload)
{
    totp_t *t = payload;
    if (status != 0 || !match) {
        invalid(t, "password", "is incorrect");
        return;
    }
    disable(t, 0);
}

static void on_disable_user(int status, sw_pg_result_t *res, void *payload)
{
    totp_t *t = payload;
    if (sw_api_db_failed(t->req, status, res)) {
        wipe(t);
        return;
    }
    if (sw_pg_result_rows(res) != 1 || strcmp(sw_pg_result_value(res, 0, 0), "t") != 0) {
        conflict(t, "TOTP is not on");
        return;
    }
    if (t->code) {
        unsigned long long counter =
            check_code(t, sw_pg_result_value(res, 0, 1), atoll(sw_pg_result_value(res, 0, 2)));
        if (!counter) {
            invalid(t, "code", "is incorrect or expired");
            return;
        }
        disable(t, counter);
        return;
    }
    const char *hash = sw_arena_strdup(&t->req->arena, sw_pg_result_value(res, 0, 3));
    if (sw_password_verify(t->api->loop, hash, t->password, t->password_len, on_disable_password,
                           t) != 0) {
        wipe(t);
        sw_http_respond_error(t->req, 500, "INTERNAL_ERROR", "password check failed", NULL);
    }
}

void sw_api_totp_delete(sw_http_req_t *req, void *ctx)
{
    totp_t *t = totp_new(req, ctx);
    json_t *body = sw_api_body(req);
    if (!body)
        return;
    sw_json_errors_t e;
    sw_json_errors_init(&e);
    const char *code = NULL, *password = NULL;
    sw_json_get_string(body, "code", false, 1, 16, &code, &e);
    sw_json_get_string(body, "password", false, 1, SW_PASSWORD_MAX, &password, &e);
    sw_api_reject_unknown_body(req, body, &e);
    if (!sw_json_errors_any(&e) && !code && !password)
        sw_json_errors_add(&e, "code", "give a current code or the password");
    if (sw_json_errors_any(&e)) {
        json_decref(body);
        wipe(t);
        sw_api_validation_error(req, &e);
        return;
    }
    if (code)
        t->code = sw_arena_strdup(&req->arena, code);
    else {
        t->password_len = strlen(password);
        t->password = sw_arena_strndup(&req->arena, password, t->password_len);
    }
    json_decref(body);
    if (limited(t))
        return;
    const char *params[] = {t->p.user_id};
    sw_pg_query(t->api->pg,
                "SELECT totp_enabled, totp_secret, totp_last_counter, password_hash FROM users "
                "WHERE id = $1",
                1, params, on_disable_user, t);
}
