/* /api/v1/auth: first-run setup, registration, login with TOTP, logout, the caller, password
 * changes and OAuth2 client_credentials.
 *
 * Every flow is a chain of asynchronous steps (a query, a hash on the threadpool, another
 * query) whose state lives in the request's arena; the request stays alive until it is
 * answered, even when its connection goes away. */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "slipway/api.h"
#include "slipway/log.h"
#include "slipway/ratelimit.h"

#include "internal.h"

#define GENERIC_LOGIN_ERROR "invalid email or password"

typedef enum { FLOW_SETUP, FLOW_REGISTER, FLOW_LOGIN, FLOW_MAX } flow_kind_t;

typedef struct {
    sw_api_t *api;
    sw_http_req_t *req;
    flow_kind_t kind;
    char email[256];
    const char *name;
    const char *password;
    size_t password_len;
    const char *totp;
    char user_id[SW_UUID_LEN + 1];
    bool user_found;
    bool totp_enabled;
    char *totp_sealed;
    long long totp_last;
    unsigned long long totp_counter;
} flow_t;

/* ---- shared pieces ---- */

static void wipe_body(sw_http_req_t *req)
{
    if (req->body.base)
        sodium_memzero(req->body.base, req->body.len);
}

static void set_session_cookie(sw_api_t *api, sw_http_req_t *req, const char *token,
                               unsigned max_age)
{
    char cookie[256];
    bool secure = api->cfg->cookie_secure || strncmp(api->cfg->public_url, "https://", 8) == 0;
    snprintf(cookie, sizeof(cookie),
             "slipway_session=%s; Path=/; Max-Age=%u; HttpOnly; "
             "SameSite=Lax%s",
             token, max_age, secure ? "; Secure" : "");
    sw_http_add_header(req, "Set-Cookie", cookie);
    sw_http_add_header(req, "Cache-Control", "no-store");
}

static void retry_after(sw_http_req_t *req, uint64_t ms)
{
    char secs[24];
    snprintf(secs, sizeof(secs), "%llu", (unsigned long long)((ms + 999) / 1000));
    sw_http_add_header(req, "Retry-After", secs);
}

static void too_many(sw_http_req_t *req, uint64_t ms)
{
    retry_after(req, ms);
    sw_http_respond_error(req, 429, "RATE_LIMIT_EXCEEDED",
                          "too many failed attempts from this address; try again later", NULL);
}

/* Fire-and-forget audit rows for events that change nothing else (failed logins). */
static void on_audited(int status, sw_pg_result_t *res, void *payload)
{
    (void)payload;
    if (status != 0)
        sw_log_kv(SW_LOG_WARN, NULL, "audit row not written", "error",
                  res ? sw_pg_result_error(res) : sw_strerror(status), NULL);
}

static void audit_event(sw_api_t *api, sw_http_req_t *req, const char *actor_id,
                        const char *actor_email, const char *action, const char *details)
{
    bool has_actor = actor_id && *actor_id;
    const char *params[] = {has_actor ? actor_id : NULL,
                            actor_email,
                            action,
                            req->client_addr,
                            details ? details : "{}",
                            has_actor ? actor_id : ""};
    sw_pg_query(api->pg,
                "INSERT INTO audit_log (actor_id, actor_email, action, resource, resource_id, "
                "address, details) VALUES ($1::uuid, $2, $3, 'session', $6, $4, $5::jsonb)",
                6, params, on_audited, NULL);
}

/* A refused hash job: a full queue is load, not a fault. */
static void hash_refused(sw_http_req_t *req, int r)
{
    wipe_body(req);
    if (r == SW_ELIMIT) {
        sw_http_add_header(req, "Retry-After", "1");
        sw_http_respond_error(req, 503, "SERVICE_UNAVAILABLE",
                              "too many password checks in progress; retry shortly", NULL);
        return;
    }
    sw_http_respond_error(req, 500, "INTERNAL_ERROR", "password check failed", NULL);
}

static bool read_password(json_t *body, const char *field, bool enforce_min, const char **out,
                          size_t *len, sw_json_errors_t *e)
{
    if (sw_json_get_string(body, field, true, enforce_min ? SW_PASSWORD_MIN : 1, SW_PASSWORD_MAX,
                           out, e) != 0)
        return false;
    *len = strlen(*out);
    return true;
}

/* ---- sessions ---- */

typedef struct {
    sw_api_t *api;
    sw_http_req_t *req;
    char token[SW_TOKEN_MAX];
    int status;
} issue_t;

static const char session_insert_sql[] =
    "WITH s AS (INSERT INTO sessions (user_id, token_hash, address, expires_at, "
    "absolute_expires_at) VALUES ($1, $2, $3, now() + make_interval(secs => $4::int), "
    "now() + make_interval(secs => $5::int)) RETURNING user_id, expires_at), "
    "a AS (INSERT INTO audit_log (actor_id, actor_email, action, resource, resource_id, "
    "address) SELECT u.id, u.email, 'auth.login', 'session', u.id::text, $3 FROM users u "
    "WHERE u.id = $1) "
    "SELECT json_build_object('expires_at', s.expires_at, 'user', sw_user_json(u)) "
    "FROM s JOIN users u ON u.id = s.user_id";

static void on_session_issued(int status, sw_pg_result_t *res, void *payload)
{
    issue_t *is = payload;
    sw_http_req_t *req = is->req;
    if (sw_api_db_failed(req, status, res))
        goto out;
    json_error_t jerr;
    json_t *obj =
        sw_pg_result_rows(res) == 1 ? json_loads(sw_pg_result_value(res, 0, 0), 0, &jerr) : NULL;
    if (!obj) {
        sw_http_respond_error(req, 500, "INTERNAL_ERROR", "the session could not be created", NULL);
        goto out;
    }
    json_object_set_new(obj, "token", json_string(is->token));
    set_session_cookie(is->api, req, is->token, SW_SESSION_ABSOLUTE_S);
    sodium_memzero(is->token, sizeof(is->token));
    sw_http_respond_json(req, is->status, obj);
    return;
out:
    sodium_memzero(is->token, sizeof(is->token));
}

static void session_issue(sw_api_t *api, sw_http_req_t *req, const char *user_id, int status)
{
    issue_t *is = sw_arena_calloc(&req->arena, sizeof(*is));
    char hash[SW_TOKEN_HASH_HEX], idle[16], absolute[16];
    is->api = api;
    is->req = req;
    is->status = status;
    sw_token_new(SW_SESSION_PREFIX, is->token);
    sw_token_hash(is->token, strlen(is->token), hash);
    snprintf(idle, sizeof(idle), "%u", SW_SESSION_IDLE_S);
    snprintf(absolute, sizeof(absolute), "%u", SW_SESSION_ABSOLUTE_S);
    const char *params[] = {user_id, hash, req->client_addr, idle, absolute};
    sw_pg_query(api->pg, session_insert_sql, 5, params, on_session_issued, is);
}

/* ---- GET auth/state ---- */

static void on_state(int status, sw_pg_result_t *res, void *payload)
{
    sw_http_req_t *req = payload;
    sw_api_t *api = sw_api_req(req)->state;
    if (sw_api_db_failed(req, status, res))
        return;
    json_error_t jerr;
    const char *user = sw_pg_result_value(res, 0, 1);
    json_t *body = json_pack("{s:b, s:b, s:o, s:s}", "needs_setup",
                             strcmp(sw_pg_result_value(res, 0, 0), "t") == 0, "authenticated",
                             user != NULL, "user", user ? json_loads(user, 0, &jerr) : json_null(),
                             "registration", api->cfg->registration);
    sw_http_respond_json(req, 200, body);
}

void sw_api_auth_state(sw_http_req_t *req, void *ctx)
{
    const sw_principal_t *p = sw_api_principal(req);
    sw_api_req(req)->state = ctx;
    const char *params[] = {p->kind != SW_PRINCIPAL_NONE ? p->user_id : NULL};
    sw_pg_query(((sw_api_t *)ctx)->pg,
                "SELECT NOT EXISTS (SELECT 1 FROM instance_setup), "
                "(SELECT sw_user_json(u) FROM users u WHERE u.id = $1::uuid)",
                1, params, on_state, req);
}

/* ---- POST auth/setup and auth/register ---- */

static void on_account_created(int status, sw_pg_result_t *res, void *payload)
{
    flow_t *f = payload;
    if (status == SW_EUNIQUE) {
        sw_http_respond_error(f->req, 409, "RESOURCE_CONFLICT",
                              f->kind == FLOW_SETUP ? "setup has already been done"
                                                    : "an account with this email exists",
                              NULL);
        return;
    }
    if (sw_api_db_failed(f->req, status, res))
        return;
    if (sw_pg_result_rows(res) != 1) {
        sw_http_respond_error(f->req, 409, "RESOURCE_CONFLICT",
                              f->kind == FLOW_SETUP ? "setup has already been done"
                                                    : "this instance has not been set up yet",
                              NULL);
        return;
    }
    session_issue(f->api, f->req, sw_pg_result_value(res, 0, 0), 201);
}

static void on_account_hashed(int status, const char *hash, void *payload)
{
    flow_t *f = payload;
    wipe_body(f->req);
    if (status != 0) {
        sw_http_respond_error(f->req, 500, "INTERNAL_ERROR", "password hashing failed", NULL);
        return;
    }
    const char *params[] = {f->email, f->name, hash, f->req->client_addr};
    if (f->kind == FLOW_SETUP) {
        sw_pg_query(f->api->pg,
                    "WITH g AS (INSERT INTO instance_setup (id) VALUES (1) RETURNING id), "
                    "u AS (INSERT INTO users (email, name, password_hash, role) "
                    "SELECT $1, $2, $3, 'owner' FROM g RETURNING id, email), "
                    "a AS (INSERT INTO audit_log (actor_id, actor_email, action, resource, "
                    "resource_id, address) SELECT id, email, 'auth.setup', 'user', id::text, $4 "
                    "FROM u) SELECT id FROM u",
                    4, params, on_account_created, f);
    } else {
        sw_pg_query(f->api->pg,
                    "WITH u AS (INSERT INTO users (email, name, password_hash, role) "
                    "SELECT $1, $2, $3, 'member' WHERE EXISTS (SELECT 1 FROM instance_setup) "
                    "RETURNING id, email), "
                    "a AS (INSERT INTO audit_log (actor_id, actor_email, action, resource, "
                    "resource_id, address) SELECT id, email, 'auth.register', 'user', id::text, "
                    "$4 FROM u) SELECT id FROM u",
                    4, params, on_account_created, f);
    }
}

static void hash_for_account(flow_t *f)
{
    int r = sw_password_hash(f->api->loop, f->password, f->password_len, on_account_hashed, f);
    if (r != 0)
        hash_refused(f->req, r);
}

static void on_setup_checked(int status, sw_pg_result_t *res, void *payload)
{
    flow_t *f = payload;
    if (sw_api_db_failed(f->req, status, res))
        return;
    /* Answer a repeated setup before spending a hash on it. */
    if (strcmp(sw_pg_result_value(res, 0, 0), "t") == 0) {
        wipe_body(f->req);
        sw_http_respond_error(f->req, 409, "RESOURCE_CONFLICT", "setup has already been done",
                              NULL);
        return;
    }
    hash_for_account(f);
}

/* Reads {email, password, name?} into a new flow; NULL after answering 400. */
static flow_t *account_flow(sw_http_req_t *req, sw_api_t *api, flow_kind_t kind)
{
    json_t *body = sw_api_body(req);
    if (!body)
        return NULL;
    flow_t *f = sw_arena_calloc(&req->arena, sizeof(*f));
    f->api = api;
    f->req = req;
    f->kind = kind;
    sw_json_errors_t e;
    sw_json_errors_init(&e);
    const char *email = NULL, *password = NULL, *name = "";
    if (sw_json_get_string(body, "email", true, 1, 254, &email, &e) == 0)
        sw_api_email(email, f->email, sizeof(f->email), &e);
    read_password(body, "password", true, &password, &f->password_len, &e);
    sw_json_get_string(body, "name", false, 0, 200, &name, &e);
    sw_api_reject_unknown_body(req, body, &e);
    if (sw_json_errors_any(&e)) {
        json_decref(body);
        wipe_body(req);
        sw_api_validation_error(req, &e);
        return NULL;
    }
    f->password = sw_arena_strndup(&req->arena, password, f->password_len);
    f->name = sw_arena_strdup(&req->arena, name);
    json_decref(body);
    return f;
}

void sw_api_auth_setup(sw_http_req_t *req, void *ctx)
{
    sw_api_t *api = ctx;
    flow_t *f = account_flow(req, api, FLOW_SETUP);
    if (!f)
        return;
    sw_pg_query(api->pg, "SELECT EXISTS (SELECT 1 FROM instance_setup)", 0, NULL, on_setup_checked,
                f);
}

void sw_api_auth_register(sw_http_req_t *req, void *ctx)
{
    sw_api_t *api = ctx;
    if (strcmp(api->cfg->registration, "open") != 0) {
        sw_http_respond_error(req, 403, "REGISTRATION_CLOSED",
                              "registration is closed on this instance; ask an admin for an "
                              "account",
                              NULL);
        return;
    }
    flow_t *f = account_flow(req, api, FLOW_REGISTER);
    if (f)
        hash_for_account(f);
}

/* ---- POST auth/login ---- */

static void login_failed(flow_t *f, const char *field, const char *message)
{
    sw_api_t *api = f->api;
    sw_http_req_t *req = f->req;
    sw_ratelimit_result_t rl;
    /* The address paid for this attempt when it began. */
    sw_ratelimit_take(api->login_by_account, f->email, 1, uv_now(api->loop), &rl);
    audit_event(api, req, f->user_found ? f->user_id : NULL, f->email, "auth.login_failed",
                field ? "{\"reason\":\"totp\"}" : "{\"reason\":\"password\"}");
    wipe_body(req);
    sw_http_add_header(req, "WWW-Authenticate", "Bearer");
    json_t *details = NULL;
    if (field)
        details = json_pack("[{s:s, s:s}]", "field", field, "message", message);
    sw_http_respond_error(req, 401, "AUTHENTICATION_ERROR", field ? message : GENERIC_LOGIN_ERROR,
                          details);
}

static void login_succeeded(flow_t *f)
{
    sw_ratelimit_reset(f->api->login_by_account, f->email);
    sw_ratelimit_refund(f->api->login_by_address, f->req->client_addr, 1);
    wipe_body(f->req);
    session_issue(f->api, f->req, f->user_id, 200);
}

static void on_totp_consumed(int status, sw_pg_result_t *res, void *payload)
{
    flow_t *f = payload;
    if (sw_api_db_failed(f->req, status, res))
        return;
    if (sw_pg_result_rows(res) != 1) {
        login_failed(f, "totp", "the code is invalid or was already used");
        return;
    }
    login_succeeded(f);
}

static bool is_six_digits(const char *s)
{
    if (strlen(s) != 6)
        return false;
    for (int i = 0; i < 6; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

static void login_second_factor(flow_t *f)
{
    sw_api_t *api = f->api;
    if (!f->totp || !*f->totp) {
        /* The password was right: say what is missing, without counting a failure. */
        sw_ratelimit_refund(api->login_by_address, f->req->client_addr, 1);
        wipe_body(f->req);
        sw_http_add_header(f->req, "WWW-Authenticate", "Bearer");
        sw_http_respond_error(f->req, 401, "AUTHENTICATION_ERROR",
                              "a TOTP code or a recovery code is required",
                              json_pack("[{s:s, s:s}]", "field", "totp", "message", "is required"));
        return;
    }
    if (is_six_digits(f->totp)) {
        f->totp_counter = sw_totp_check_sealed(api->box, f->user_id, f->totp_sealed, f->totp_last,
                                               f->totp, sw_wall_ms() / 1000);
        if (!f->totp_counter) {
            login_failed(f, "totp", "the code is invalid or was already used");
            return;
        }
        /* The conditional update makes a code single-use across every process. */
        char counter[24];
        snprintf(counter, sizeof(counter), "%llu", f->totp_counter);
        const char *params[] = {f->user_id, counter};
        sw_pg_query(api->pg,
                    "UPDATE users SET totp_last_counter = $2::bigint WHERE id = $1 "
                    "AND totp_enabled AND totp_last_counter < $2::bigint RETURNING id",
                    2, params, on_totp_consumed, f);
        return;
    }
    char hash[SW_TOKEN_HASH_HEX];
    sw_totp_recovery_hash(f->totp, hash);
    const char *params[] = {f->user_id, hash};
    sw_pg_query(api->pg,
                "UPDATE totp_recovery_codes SET used_at = now() WHERE id = (SELECT id FROM "
                "totp_recovery_codes WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL "
                "LIMIT 1 FOR UPDATE) AND used_at IS NULL RETURNING id",
                2, params, on_totp_consumed, f);
}

static void on_login_verified(int status, bool match, void *payload)
{
    flow_t *f = payload;
    if (status != 0) {
        wipe_body(f->req);
        sw_http_respond_error(f->req, 500, "INTERNAL_ERROR", "password check failed", NULL);
        return;
    }
    sw_ratelimit_result_t rl;
    sw_ratelimit_peek(f->api->login_by_account, f->email, uv_now(f->api->loop), &rl);
    /* A locked account answers exactly like a wrong password, after the same work. */
    if (!match || !f->user_found || !rl.allowed) {
        login_failed(f, NULL, NULL);
        return;
    }
    if (f->totp_enabled) {
        login_second_factor(f);
        return;
    }
    login_succeeded(f);
}

static void on_login_user(int status, sw_pg_result_t *res, void *payload)
{
    flow_t *f = payload;
    const char *hash = NULL;
    if (sw_api_db_failed(f->req, status, res)) {
        wipe_body(f->req);
        return;
    }
    if (sw_pg_result_rows(res) == 1) {
        sw_http_req_t *req = f->req;
        f->user_found = true;
        snprintf(f->user_id, sizeof(f->user_id), "%s", sw_pg_result_value(res, 0, 0));
        hash = sw_arena_strdup(&req->arena, sw_pg_result_value(res, 0, 1));
        f->totp_enabled = strcmp(sw_pg_result_value(res, 0, 2), "t") == 0;
        const char *sealed = sw_pg_result_value(res, 0, 3);
        f->totp_sealed = sealed ? sw_arena_strdup(&req->arena, sealed) : NULL;
        f->totp_last = atoll(sw_pg_result_value(res, 0, 4));
    }
    int r =
        sw_password_verify(f->api->loop, hash, f->password, f->password_len, on_login_verified, f);
    if (r != 0)
        hash_refused(f->req, r);
}

void sw_api_auth_login(sw_http_req_t *req, void *ctx)
{
    sw_api_t *api = ctx;
    json_t *body = sw_api_body(req);
    if (!body)
        return;
    flow_t *f = sw_arena_calloc(&req->arena, sizeof(*f));
    f->api = api;
    f->req = req;
    f->kind = FLOW_LOGIN;
    sw_json_errors_t e;
    sw_json_errors_init(&e);
    const char *email = NULL, *password = NULL, *totp = NULL;
    if (sw_json_get_string(body, "email", true, 1, 254, &email, &e) == 0)
        sw_api_email(email, f->email, sizeof(f->email), &e);
    read_password(body, "password", false, &password, &f->password_len, &e);
    sw_json_get_string(body, "totp", false, 0, 32, &totp, &e);
    sw_api_reject_unknown_body(req, body, &e);
    if (sw_json_errors_any(&e)) {
        json_decref(body);
        wipe_body(req);
        sw_api_validation_error(req, &e);
        return;
    }
    f->password = sw_arena_strndup(&req->arena, password, f->password_len);
    f->totp = totp ? sw_arena_strdup(&req->arena, totp) : NULL;
    json_decref(body);
    /* Every attempt pays up front, so concurrent guesses cannot outrun the limit; a success
     * gets its token back. */
    sw_ratelimit_result_t rl;
    sw_ratelimit_take(api->login_by_address, req->client_addr, 1, uv_now(api->loop), &rl);
    if (!rl.allowed) {
        wipe_body(req);
        too_many(req, rl.retry_after_ms);
        return;
    }
    const char *params[] = {f->email};
    sw_pg_query(api->pg,
                "SELECT id, password_hash, totp_enabled, totp_secret, totp_last_counter "
                "FROM users WHERE email = $1",
                1, params, on_login_user, f);
}

/* ---- POST auth/logout ---- */

typedef struct {
    sw_api_t *api;
    sw_http_req_t *req;
    sw_principal_t p;
} simple_t;

static void on_logged_out(int status, sw_pg_result_t *res, void *payload)
{
    simple_t *s = payload;
    if (sw_api_db_failed(s->req, status, res))
        return;
    sw_auth_invalidate_session(s->api->auth, s->p.token_hash);
    sw_http_add_header(s->req, "Set-Cookie",
                       "slipway_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax");
    sw_http_respond(s->req, 204, NULL, NULL, 0);
}

void sw_api_auth_logout(sw_http_req_t *req, void *ctx)
{
    sw_api_t *api = ctx;
    const sw_principal_t *p = sw_api_principal(req);
    if (p->kind != SW_PRINCIPAL_SESSION) {
        sw_http_respond_error(req, 400, "VALIDATION_ERROR",
                              "API tokens are revoked with DELETE /api/v1/tokens/:id", NULL);
        return;
    }
    simple_t *s = sw_arena_calloc(&req->arena, sizeof(*s));
    s->api = api;
    s->req = req;
    s->p = *p;
    const char *params[] = {p->session_id, req->client_addr};
    sw_pg_query(api->pg,
                "WITH d AS (DELETE FROM sessions WHERE id = $1 RETURNING user_id), "
                "a AS (INSERT INTO audit_log (actor_id, actor_email, action, resource, "
                "resource_id, address) SELECT u.id, u.email, 'auth.logout', 'session', "
                "u.id::text, $2 FROM d JOIN users u ON u.id = d.user_id) "
                "SELECT count(*) FROM d",
                2, params, on_logged_out, s);
}

/* ---- GET auth/me ---- */

/* The user's JSON object with a "principal" member spliced in before its closing brace: this
 * is the most frequent authenticated call, so it skips a parse and a re-encode. */
static void respond_me(sw_http_req_t *req, const sw_principal_t *p, const char *user_text)
{
    size_t len = user_text ? strlen(user_text) : 0;
    if (len < 2 || user_text[len - 1] != '}') {
        sw_http_respond_error(req, 404, "RESOURCE_NOT_FOUND", "no such user", NULL);
        return;
    }
    sw_buf_t b = SW_BUF_INIT;
    sw_buf_reserve(&b, len + 160);
    sw_buf_append(&b, user_text, len - 1);
    sw_buf_printf(&b, ",\"principal\":{\"kind\":\"%s\",\"scopes\":[",
                  p->kind == SW_PRINCIPAL_TOKEN ? "token" : "session");
    const char *sep = "";
    for (unsigned bit = SW_SCOPE_READ; bit <= SW_SCOPE_ADMIN; bit <<= 1) {
        if (p->scopes & bit) {
            sw_buf_printf(&b, "%s\"%s\"", sep, sw_scope_name(bit));
            sep = ",";
        }
    }
    if (p->token_id[0])
        sw_buf_printf(&b, "],\"token_id\":\"%s\"}}\n", p->token_id);
    else
        sw_buf_append_cstr(&b, "],\"token_id\":null}}\n");
    sw_http_respond(req, 200, "application/json", b.base, b.len);
    sw_buf_free(&b);
}

static void on_me(int status, sw_pg_result_t *res, void *payload)
{
    sw_http_req_t *req = payload;
    if (sw_api_db_failed(req, status, res))
        return;
    respond_me(req, sw_api_principal(req),
               sw_pg_result_rows(res) == 1 ? sw_pg_result_value(res, 0, 0) : NULL);
}

void sw_api_auth_me(sw_http_req_t *req, void *ctx)
{
    sw_api_t *api = ctx;
    const sw_principal_t *p = sw_api_principal(req);
    /* The credential cache holds the user as of its last check, and every change to a user
     * invalidates it: answering from it keeps this call off the database. */
    if (p->user_json[0]) {
        respond_me(req, p, p->user_json);
        return;
    }
    const char *params[] = {p->user_id};
    sw_pg_query(api->pg, "SELECT sw_user_json(u) FROM users u WHERE u.id = $1", 1, params, on_me,
                req);
}

/* ---- POST auth/password ---- */

typedef struct {
    sw_api_t *api;
    sw_http_req_t *req;
    sw_principal_t p;
    const char *current;
    size_t current_len;
    const char *next;
    size_t next_len;
} password_t;

static void on_password_stored(int status, sw_pg_result_t *res, void *payload)
{
    password_t *pw = payload;
    if (sw_api_db_failed(pw->req, status, res))
        return;
    /* Every process drops its cached sessions of this user; the others are gone from the
     * database, so only this one is found again. */
    sw_auth_invalidate_user(pw->api->auth, pw->p.user_id);
    sw_http_respond(pw->req, 204, NULL, NULL, 0);
}

static void on_password_hashed(int status, const char *hash, void *payload)
{
    password_t *pw = payload;
    wipe_body(pw->req);
    if (status != 0) {
        sw_http_respond_error(pw->req, 500, "INTERNAL_ERROR", "password hashing failed", NULL);
        return;
    }
    const char *params[] = {pw->p.user_id, hash, pw->p.session_id, pw->req->client_addr};
    sw_pg_query(pw->api->pg,
                "WITH u AS (UPDATE users SET password_hash = $2, updated_at = now() "
                "WHERE id = $1 RETURNING id, email), "
                "d AS (DELETE FROM sessions WHERE user_id = $1 AND id <> $3 RETURNING id), "
                "a AS (INSERT INTO audit_log (actor_id, actor_email, action, resource, "
                "resource_id, address, details) SELECT id, email, 'auth.password_changed', "
                "'user', id::text, $4, json_build_object('sessions_revoked', "
                "(SELECT count(*) FROM d))::jsonb FROM u) "
                "SELECT count(*) FROM d",
                4, params, on_password_stored, pw);
}

static void on_password_verified(int status, bool match, void *payload)
{
    password_t *pw = payload;
    if (status != 0 || !match) {
        sw_ratelimit_result_t rl;
        sw_ratelimit_take(pw->api->login_by_account, pw->p.email, 1, uv_now(pw->api->loop), &rl);
        wipe_body(pw->req);
        sw_json_errors_t e;
        sw_json_errors_init(&e);
        sw_json_errors_add(&e, "current", "is incorrect");
        sw_api_validation_error(pw->req, &e);
        return;
    }
    if (sw_password_hash(pw->api->loop, pw->next, pw->next_len, on_password_hashed, pw) != 0)
        sw_http_respond_error(pw->req, 500, "INTERNAL_ERROR", "password hashing failed", NULL);
}

static void on_password_user(int status, sw_pg_result_t *res, void *payload)
{
    password_t *pw = payload;
    if (sw_api_db_failed(pw->req, status, res))
        return;
    const char *hash = sw_pg_result_rows(res) == 1 ? sw_pg_result_value(res, 0, 0) : NULL;
    if (sw_password_verify(pw->api->loop, hash, pw->current, pw->current_len, on_password_verified,
                           pw) != 0)
        sw_http_respond_error(pw->req, 500, "INTERNAL_ERROR", "password check failed", NULL);
}

void sw_api_auth_password(sw_http_req_t *req, void *ctx)
{
    sw_api_t *api = ctx;
    json_t *body = sw_api_body(req);
    if (!body)
        return;
    password_t *pw = sw_arena_calloc(&req->arena, sizeof(*pw));
    pw->api = api;
    pw->req = req;
    pw->p = *sw_api_principal(req);
    sw_json_errors_t e;
    sw_json_errors_init(&e);
    const char *current = NULL, *next = NULL;
    read_password(body, "current", false, &current, &pw->current_len, &e);
    read_password(body, "new", true, &next, &pw->next_len, &e);
    sw_api_reject_unknown_body(req, body, &e);
    sw_ratelimit_result_t rl;
    sw_ratelimit_peek(api->login_by_account, pw->p.email, uv_now(api->loop), &rl);
    if (!sw_json_errors_any(&e) && !rl.allowed) {
        json_decref(body);
        wipe_body(req);
        retry_after(req, rl.retry_after_ms);
        sw_http_respond_error(req, 429, "RATE_LIMIT_EXCEEDED",
                              "too many wrong passwords; try again later", NULL);
        return;
    }
    if (sw_json_errors_any(&e)) {
        json_decref(body);
        wipe_body(req);
        sw_api_validation_error(req, &e);
        return;
    }
    pw->current = sw_arena_strndup(&req->arena, current, pw->current_len);
    pw->next = sw_arena_strndup(&req->arena, next, pw->next_len);
    json_decref(body);
    const char *params[] = {pw->p.user_id};
    sw_pg_query(api->pg, "SELECT password_hash FROM users WHERE id = $1", 1, params,
                on_password_user, pw);
}

/* ---- POST auth/token (OAuth2 client_credentials) ---- */

typedef struct {
    sw_api_t *api;
    sw_http_req_t *req;
    char secret[SW_TOKEN_MAX];
    char token[SW_TOKEN_MAX];
    char scope[64];
} oauth_t;

static void oauth_refuse(oauth_t *o)
{
    sodium_memzero(o->secret, sizeof(o->secret));
    wipe_body(o->req);
    sw_http_add_header(o->req, "WWW-Authenticate", "Basic realm=\"slipway\"");
    sw_http_respond_error(o->req, 401, "AUTHENTICATION_ERROR", "invalid client credentials", NULL);
}

static void on_oauth_issued(int status, sw_pg_result_t *res, void *payload)
{
    oauth_t *o = payload;
    json_t *body = NULL;
    if (status == 0 && sw_pg_result_rows(res) == 1)
        body = json_pack("{s:s, s:s, s:I, s:s}", "access_token", o->token, "token_type", "Bearer",
                         "expires_in", (json_int_t)atoll(sw_pg_result_value(res, 0, 0)), "scope",
                         o->scope);
    sodium_memzero(o->token, sizeof(o->token));
    if (sw_api_db_failed(o->req, status, res))
        return;
    if (!body) {
        oauth_refuse(o);
    } else {
        sw_ratelimit_refund(o->api->login_by_address, o->req->client_addr, 1);
        sw_http_add_header(o->req, "Cache-Control", "no-store");
        sw_http_respond_json(o->req, 200, body);
    }
}

static void on_oauth_client(int status, sw_pg_result_t *res, void *payload)
{
    oauth_t *o = payload;
    char hash[SW_TOKEN_HASH_HEX];
    if (sw_api_db_failed(o->req, status, res)) {
        sodium_memzero(o->secret, sizeof(o->secret));
        return;
    }
    sw_token_hash(o->secret, strlen(o->secret), hash);
    sodium_memzero(o->secret, sizeof(o->secret));
    wipe_body(o->req);
    if (sw_pg_result_rows(res) != 1 ||
        !sw_crypto_equal(hash, sw_pg_result_value(res, 0, 1), SW_TOKEN_HASH_HEX - 1)) {
        oauth_refuse(o);
        return;
    }
    /* "{read,write}" -> "read write" */
    const char *scopes = sw_pg_result_value(res, 0, 2);
    size_t n = 0;
    for (const char *p = scopes; *p && n + 1 < sizeof(o->scope); p++)
        if (*p != '{' && *p != '}')
            o->scope[n++] = *p == ',' ? ' ' : *p;
    o->scope[n] = '\0';

    char token_hash[SW_TOKEN_HASH_HEX], ttl[16];
    sw_token_new(SW_SESSION_PREFIX, o->token);
    sw_token_hash(o->token, strlen(o->token), token_hash);
    snprintf(ttl, sizeof(ttl), "%u", SW_ACCESS_TOKEN_S);
    const char *params[] = {sw_pg_result_value(res, 0, 0), token_hash, o->req->client_addr, ttl};
    sw_pg_query(o->api->pg,
                "WITH t AS (SELECT id, user_id, least(now() + make_interval(secs => $4::int), "
                "coalesce(expires_at, 'infinity')) AS until FROM api_tokens WHERE id = $1), "
                "s AS (INSERT INTO sessions (user_id, api_token_id, token_hash, address, "
                "expires_at, absolute_expires_at) SELECT user_id, id, $2, $3, until, until "
                "FROM t RETURNING user_id, absolute_expires_at), "
                "a AS (INSERT INTO audit_log (actor_id, actor_email, action, resource, "
                "resource_id, address) SELECT u.id, u.email, 'auth.token_issued', 'api_token', "
                "$1::text, $3 FROM s JOIN users u ON u.id = s.user_id) "
                "SELECT greatest(0, floor(extract(epoch FROM absolute_expires_at - now())))"
                "::bigint FROM s",
                4, params, on_oauth_issued, o);
}

/* client_id:client_secret from "Authorization: Basic ..."; false if absent or malformed. */
static bool basic_credentials(sw_http_req_t *req, char *id, size_t id_size, char *secret,
                              size_t secret_size)
{
    sw_iov_t authz = sw_http_req_header(req, "authorization");
    unsigned char raw[192];
    size_t raw_len = 0;
    if (authz.len <= 6 || strncasecmp(authz.base, "Basic ", 6) != 0 || authz.len > 256)
        return false;
    if (sodium_base642bin(raw, sizeof(raw) - 1, authz.base + 6, authz.len - 6, " ", &raw_len, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0)
        return false;
    raw[raw_len] = '\0';
    char *colon = memchr(raw, ':', raw_len);
    bool ok = false;
    if (colon && (size_t)(colon - (char *)raw) < id_size &&
        raw_len - (size_t)(colon - (char *)raw) - 1 < secret_size) {
        size_t id_len = (size_t)(colon - (char *)raw);
        size_t secret_len = raw_len - id_len - 1;
        memcpy(id, raw, id_len);
        id[id_len] = '\0';
        memcpy(secret, colon + 1, secret_len);
        secret[secret_len] = '\0';
        ok = true;
    }
    sodium_memzero(raw, sizeof(raw));
    return ok;
}

void sw_api_auth_token(sw_http_req_t *req, void *ctx)
{
    sw_api_t *api = ctx;
    sw_ratelimit_result_t rl;
    sw_ratelimit_take(api->login_by_address, req->client_addr, 1, uv_now(api->loop), &rl);
    if (!rl.allowed) {
        wipe_body(req);
        too_many(req, rl.retry_after_ms);
        return;
    }
    oauth_t *o = sw_arena_calloc(&req->arena, sizeof(*o));
    o->api = api;
    o->req = req;
    const char *grant = NULL, *id = NULL, *secret = NULL;
    char basic_id[64] = "";
    sw_json_errors_t e;
    sw_json_errors_init(&e);

    sw_iov_t ctype = sw_http_req_header(req, "content-type");
    bool form =
        ctype.len >= 33 && strncasecmp(ctype.base, "application/x-www-form-urlencoded", 33) == 0;
    json_t *body = NULL;
    if (form) {
        sw_iov_t b = {req->body.base, req->body.len};
        grant = sw_http_form_value(&req->arena, b, "grant_type");
        id = sw_http_form_value(&req->arena, b, "client_id");
        secret = sw_http_form_value(&req->arena, b, "client_secret");
    } else {
        body = sw_api_body(req);
        if (!body)
            return;
        sw_json_get_string(body, "grant_type", false, 1, 64, &grant, &e);
        sw_json_get_string(body, "client_id", false, 1, 64, &id, &e);
        sw_json_get_string(body, "client_secret", false, 1, SW_TOKEN_MAX - 1, &secret, &e);
    }
    if (basic_credentials(req, basic_id, sizeof(basic_id), o->secret, sizeof(o->secret))) {
        id = basic_id;
    } else if (secret) {
        snprintf(o->secret, sizeof(o->secret), "%s", secret);
    }
    if (!grant)
        sw_json_errors_add(&e, "grant_type", "is required");
    else if (strcmp(grant, "client_credentials") != 0)
        sw_json_errors_add(&e, "grant_type", "must be client_credentials");
    if (!id || !*id)
        sw_json_errors_add(&e, "client_id", "is required");
    if (!o->secret[0])
        sw_json_errors_add(&e, "client_secret", "is required");
    if (sw_json_errors_any(&e)) {
        json_decref(body);
        sodium_memzero(o->secret, sizeof(o->secret));
        wipe_body(req);
        sw_api_validation_error(req, &e);
        return;
    }
    char client_id[SW_UUID_LEN + 1];
    snprintf(client_id, sizeof(client_id), "%s", id);
    json_decref(body); /* id may point into it: only client_id from here on */
    if (!sw_iov_is_uuid(sw_iov_from_cstr(client_id)) ||
        !sw_token_valid(SW_API_TOKEN_PREFIX, o->secret, strlen(o->secret))) {
        oauth_refuse(o);
        return;
    }
    const char *params[] = {client_id};
    sw_pg_query(api->pg,
                "SELECT id, token_hash, scopes FROM api_tokens WHERE id = $1 "
                "AND (expires_at IS NULL OR expires_at > now())",
                1, params, on_oauth_client, o);
}
