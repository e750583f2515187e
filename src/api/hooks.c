/* Push hooks: POST /api/v1/hooks/:app_id takes GitHub, Gitea and GitLab deliveries and deploys
 * a push to the app's branch; apps/:id/hook shows the hook's URL and rotates its secret.
 *
 * A delivery is refused (401, the same answer whatever the reason) unless its signature holds
 * over the exact bytes received, checked in constant time before the body is parsed; an app
 * without a secret takes no delivery at all. The per-app budget is spent before the database
 * or any HMAC work. Secrets are sealed with the secret box, bound to their app, and appear
 * only in the answer of the rotation that made them. */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "slipway/api.h"
#include "slipway/crypto.h"
#include "slipway/hooks.h"
#include "slipway/log.h"

#include "internal.h"

#define HOOK_BODY_MAX     (1024u * 1024u)
#define HOOK_SECRET_BYTES 32
#define HOOK_DELIVERY_MAX 200
#define HOOK_MESSAGE_MAX  4096
#define HOOK_AUTHOR_MAX   256
#define SHA_HEX           40
#define HMAC_HEX          (SW_HMAC_SHA256_BYTES * 2)

static const char *const provider_names[SW_HOOK_PROVIDER_MAX] = {
    [SW_HOOK_GITHUB] = "github",
    [SW_HOOK_GITEA] = "gitea",
    [SW_HOOK_GITLAB] = "gitlab",
};

const char *sw_hook_provider_name(sw_hook_provider_t provider)
{
    return provider < SW_HOOK_PROVIDER_MAX ? provider_names[provider] : "unknown";
}

/* ---- signatures ---- */

static bool hmac_matches(sw_iov_t hex, sw_iov_t body, sw_iov_t secret)
{
    unsigned char got[SW_HMAC_SHA256_BYTES], want[SW_HMAC_SHA256_BYTES];
    size_t n = 0;
    if (hex.len != HMAC_HEX ||
        sodium_hex2bin(got, sizeof(got), hex.base, hex.len, NULL, &n, NULL) != 0 ||
        n != sizeof(got))
        return false;
    sw_hmac_sha256(secret.base, secret.len, body.base, body.len, want);
    bool ok = sodium_memcmp(got, want, sizeof(want)) == 0;
    sodium_memzero(want, sizeof(want));
    return ok;
}

bool sw_hook_verify(sw_hook_provider_t provider, sw_iov_t signature, sw_iov_t body, sw_iov_t secret)
{
    static const char prefix[] = "sha256=";
    if (!secret.len || !signature.len)
        return false;
    switch (provider) {
    case SW_HOOK_GITHUB:
        if (signature.len <= sizeof(prefix) - 1 ||
            memcmp(signature.base, prefix, sizeof(prefix) - 1) != 0)
            return false;
        signature.base += sizeof(prefix) - 1;
        signature.len -= sizeof(prefix) - 1;
        return hmac_matches(signature, body, secret);
    case SW_HOOK_GITEA:
        return hmac_matches(signature, body, secret);
    case SW_HOOK_GITLAB:
        /* GitLab sends the secret itself; only its length may show in the timing. */
        return signature.len == secret.len &&
               sodium_memcmp(signature.base, secret.base, secret.len) == 0;
    case SW_HOOK_PROVIDER_MAX:
        break;
    }
    return false;
}

/* ---- push payloads ---- */

static const char *string_field(const json_t *obj, const char *name)
{
    json_t *v = json_object_get(obj, name);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static bool sha_ok(const char *s)
{
    if (strlen(s) != SHA_HEX)
        return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

static bool all_zero(const char *s)
{
    if (!*s)
        return false;
    for (const char *p = s; *p; p++)
        if (*p != '0')
            return false;
    return true;
}

/* The pushed commit's entry: the one in commits with its id, else head_commit, else the last
 * of commits. */
static const json_t *pushed_commit(const json_t *payload, const char *sha)
{
    json_t *commits = json_object_get(payload, "commits");
    json_t *head = json_object_get(payload, "head_commit");
    size_t n = json_is_array(commits) ? json_array_size(commits) : 0;
    for (size_t i = n; i-- > 0;) {
        const char *id = string_field(json_array_get(commits, i), "id");
        if (id && strcmp(id, sha) == 0)
            return json_array_get(commits, i);
    }
    if (json_is_object(head))
        return head;
    return n ? json_array_get(commits, n - 1) : NULL;
}

/* The pushed ref and, for refs/heads/<name>, its branch. */
static int ref_parse(const json_t *payload, sw_hook_push_t *p, const char **why)
{
    p->ref = string_field(payload, "ref");
    if (!p->ref || !*p->ref) {
        *why = "ref";
        return -EINVAL;
    }
    if (strncmp(p->ref, "refs/heads/", 11) == 0 && p->ref[11])
        p->branch = p->ref + 11;
    return 0;
}

int sw_hook_ref_parse(const json_t *payload, sw_hook_push_t *out, const char **why)
{
    sw_hook_push_t p = {0};
    if (ref_parse(payload, &p, why) != 0)
        return -EINVAL;
    json_t *after = json_object_get(payload, "after");
    if (after && !json_is_null(after)) {
        if (!json_is_string(after) || !sha_ok(json_string_value(after))) {
            *why = "after";
            return -EINVAL;
        }
        p.sha = json_string_value(after);
    }
    *out = p;
    return 0;
}

int sw_hook_push_parse(const json_t *payload, sw_hook_push_t *out, const char **why)
{
    sw_hook_push_t p = {0};
    if (ref_parse(payload, &p, why) != 0)
        return -EINVAL;
    /* GitLab names the pushed commit checkout_sha (null when the ref is deleted). */
    const char *after = string_field(payload, "checkout_sha");
    if (!after)
        after = string_field(payload, "after");
    p.deleted = json_is_true(json_object_get(payload, "deleted")) || (after && all_zero(after));
    if (!p.deleted) {
        if (!after || !sha_ok(after)) {
            *why = "after";
            return -EINVAL;
        }
        p.sha = after;
        const json_t *c = pushed_commit(payload, after);
        if (json_is_object(c)) {
            const json_t *author = json_object_get(c, "author");
            p.message = string_field(c, "message");
            if (json_is_object(author)) {
                p.author_name = string_field(author, "name");
                p.author_email = string_field(author, "email");
            }
        }
    }
    *out = p;
    return 0;
}

/* ---- POST /api/v1/hooks/:app_id ---- */

typedef struct {
    sw_api_t *api;
    sw_hook_provider_t provider;
    sw_iov_t signature;
    char app_id[SW_UUID_LEN + 1];
    char actor[16]; /* "hook:<provider>" */
} delivery_t;

/* One answer for every unproven delivery, so nobody learns which apps exist or have a hook. */
static void refuse(sw_http_req_t *req)
{
    sw_http_respond_error(req, 401, "AUTHENTICATION_ERROR",
                          "the delivery's signature is missing or does not match this app's "
                          "hook secret",
                          NULL);
}

static void answer(sw_http_req_t *req, const delivery_t *d, int status, const char *action,
                   const char *reason)
{
    sw_log_kv(SW_LOG_DEBUG, req->request_id, "hook delivery", "app_id", d->app_id, "provider",
              sw_hook_provider_name(d->provider), "action", action, NULL);
    json_t *body = json_pack("{s:s}", "action", action);
    if (reason)
        json_object_set_new(body, "reason", json_string(reason));
    sw_http_respond_json(req, status, body);
}

/* A git host's header, with a GitHub-compatible fallback (Gitea sends both). */
static sw_iov_t header_either(sw_http_req_t *req, const char *name, const char *fallback)
{
    sw_iov_t v = sw_http_req_header(req, name);
    return v.len || !fallback ? v : sw_http_req_header(req, fallback);
}

static void detect(sw_http_req_t *req, delivery_t *d)
{
    if (sw_http_req_header(req, "x-gitea-signature").len ||
        sw_http_req_header(req, "x-gitea-event").len) {
        d->provider = SW_HOOK_GITEA;
        d->signature = sw_http_req_header(req, "x-gitea-signature");
    } else if (sw_http_req_header(req, "x-gitlab-token").len ||
               sw_http_req_header(req, "x-gitlab-event").len) {
        d->provider = SW_HOOK_GITLAB;
        d->signature = sw_http_req_header(req, "x-gitlab-token");
    } else {
        d->provider = SW_HOOK_GITHUB;
        d->signature = sw_http_req_header(req, "x-hub-signature-256");
    }
    snprintf(d->actor, sizeof(d->actor), "hook:%s", sw_hook_provider_name(d->provider));
}

/* "push", "ping", or anything else (ignored). */
static sw_iov_t event_of(sw_http_req_t *req, const delivery_t *d)
{
    switch (d->provider) {
    case SW_HOOK_GITEA:
        return header_either(req, "x-gitea-event", "x-github-event");
    case SW_HOOK_GITLAB:
        return sw_http_req_header(req, "x-gitlab-event");
    default:
        return sw_http_req_header(req, "x-github-event");
    }
}

/* The delivery id (NULL when the host sent none); false when it is malformed. */
static bool delivery_id(sw_http_req_t *req, const delivery_t *d, const char **out)
{
    sw_iov_t v;
    switch (d->provider) {
    case SW_HOOK_GITEA:
        v = header_either(req, "x-gitea-delivery", "x-github-delivery");
        break;
    case SW_HOOK_GITLAB:
        v = header_either(req, "idempotency-key", "x-gitlab-event-uuid");
        break;
    default:
        v = sw_http_req_header(req, "x-github-delivery");
    }
    *out = NULL;
    if (!v.len)
        return true;
    if (v.len > HOOK_DELIVERY_MAX)
        return false;
    for (size_t i = 0; i < v.len; i++)
        if ((unsigned char)v.base[i] < 0x21 || (unsigned char)v.base[i] > 0x7e)
            return false;
    *out = sw_arena_iovdup(&req->arena, v).base;
    return true;
}

/* At most max bytes of s, cut at a UTF-8 character boundary, in the arena. */
static const char *clip(sw_arena_t *arena, const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n <= max)
        return s;
    n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
        n--;
    return sw_arena_strndup(arena, s, n);
}

static void on_triggered(int status, sw_pg_result_t *res, void *payload)
{
    sw_http_req_t *req = payload;
    delivery_t *d = sw_api_req(req)->state;
    if (status == SW_EUNIQUE && strstr(sw_pg_result_error(res), "hook_deliveries")) {
        answer(req, d, 200, "duplicate", "this delivery was taken before");
        return;
    }
    if (sw_api_db_failed(req, status, res))
        return;
    if (sw_pg_result_rows(res) != 1) {
        refuse(req); /* the app went away after its secret was read */
        return;
    }
    sw_log_kv(SW_LOG_INFO, req->request_id, "push hook deployed", "app_id", d->app_id, "provider",
              sw_hook_provider_name(d->provider), "deployment_id", sw_pg_result_value(res, 0, 1),
              NULL);
    sw_buf_t body = SW_BUF_INIT;
    sw_buf_append_cstr(&body, "{\"action\":\"deployed\",\"deployment\":");
    sw_buf_append_cstr(&body, sw_pg_result_value(res, 0, 0));
    sw_buf_append_cstr(&body, "}\n");
    sw_http_respond(req, 202, "application/json", body.base, body.len);
    sw_buf_free(&body);
}

/* The signature held: act on what the delivery says. */
static void on_verified(sw_http_req_t *req, delivery_t *d, const char *app_branch, bool auto_deploy)
{
    sw_iov_t event = event_of(req, d);
    /* Mezzanine signs {"ref": ...} with GitHub's scheme and names no event: a push of that
     * ref's head (the signature already proved the sender holds the secret). */
    bool bare = d->provider == SW_HOOK_GITHUB && !event.len;
    bool push = bare || (d->provider == SW_HOOK_GITLAB ? sw_iov_eq_cstr(event, "Push Hook")
                                                       : sw_iov_eq_cstr(event, "push"));
    if (sw_iov_eq_cstr(event, "ping")) {
        answer(req, d, 200, "pong", "the signature holds: this hook is set up");
        return;
    }
    if (d->provider == SW_HOOK_GITLAB && sw_iov_eq_cstr(event, "Tag Push Hook")) {
        answer(req, d, 200, "ignored", "a tag push: only pushes to the app's branch deploy");
        return;
    }
    if (!push) {
        /* Named back only when it looks like an event name (the answer must stay UTF-8). */
        bool plain = event.len > 0 && event.len <= 64;
        for (size_t i = 0; plain && i < event.len; i++)
            plain = (event.base[i] >= 'a' && event.base[i] <= 'z') ||
                    (event.base[i] >= 'A' && event.base[i] <= 'Z') ||
                    (event.base[i] && strchr(" _.-", event.base[i]));
        answer(req, d, 200, "ignored",
               plain ? sw_arena_printf(&req->arena, "event %.*s is not handled; only pushes deploy",
                                       (int)event.len, event.base)
                     : "this event is not handled; only pushes deploy");
        return;
    }

    sw_json_errors_t e;
    sw_json_errors_init(&e);
    json_t *payload = sw_json_parse_object(req->body.base, req->body.len, &e);
    if (!payload) {
        sw_api_validation_error(req, &e);
        return;
    }
    sw_api_req(req)->body = payload; /* freed with the request */
    sw_hook_push_t p;
    const char *bad;
    if ((bare ? sw_hook_ref_parse(payload, &p, &bad) : sw_hook_push_parse(payload, &p, &bad)) !=
        0) {
        sw_json_errors_add(&e, bad,
                           strcmp(bad, "ref") == 0 ? "must be a git ref"
                                                   : "must be the pushed commit's 40-digit hash");
        sw_api_validation_error(req, &e);
        return;
    }
    if (p.deleted) {
        answer(req, d, 200, "ignored", "the ref was deleted");
        return;
    }
    if (!p.branch) {
        answer(req, d, 200, "ignored",
               strncmp(p.ref, "refs/tags/", 10) == 0
                   ? "a tag push: only pushes to the app's branch deploy"
                   : "not a branch: only pushes to the app's branch deploy");
        return;
    }
    if (strcmp(p.branch, app_branch) != 0) {
        answer(req, d, 200, "ignored",
               sw_arena_printf(&req->arena, "a push to %s; this app deploys %s",
                               clip(&req->arena, p.branch, 255), app_branch));
        return;
    }
    if (!auto_deploy) {
        answer(req, d, 200, "ignored", "auto_deploy is off for this app");
        return;
    }
    const char *delivery;
    if (!delivery_id(req, d, &delivery)) {
        sw_json_errors_add(&e, "delivery",
                           "the delivery id header must be 1 to %d visible ASCII "
                           "characters",
                           HOOK_DELIVERY_MAX);
        sw_api_validation_error(req, &e);
        return;
    }
    const char *author = NULL;
    if (p.author_name || p.author_email)
        author = clip(&req->arena,
                      p.author_email
                          ? sw_arena_printf(&req->arena, "%s <%s>",
                                            p.author_name ? p.author_name : "", p.author_email)
                          : p.author_name,
                      HOOK_AUTHOR_MAX);
    sw_api_trigger_t t = {
        .app_id = d->app_id,
        .ref = app_branch,
        .commit_sha = p.sha,
        .commit_message = p.message ? clip(&req->arena, p.message, HOOK_MESSAGE_MAX) : NULL,
        .commit_author = author,
        .actor_id = NULL,
        .actor_email = d->actor,
        .delivery_id = delivery,
        .provider = sw_hook_provider_name(d->provider),
    };
    sw_api_deployment_trigger(d->api, req, &t, on_triggered);
}

static void on_hook_app(int status, sw_pg_result_t *res, void *payload)
{
    sw_http_req_t *req = payload;
    delivery_t *d = sw_api_req(req)->state;
    if (sw_api_db_failed(req, status, res))
        return;
    if (sw_pg_result_rows(res) != 1) {
        refuse(req);
        return;
    }
    const char *sealed = sw_pg_result_value(res, 0, 0);
    char ad[SW_UUID_LEN + 16];
    snprintf(ad, sizeof(ad), "app_hook:%s", d->app_id);
    sw_buf_t secret = SW_BUF_INIT;
    int r = sw_secretbox_open(d->api->box, sealed, strlen(sealed), ad, &secret);
    bool ok = r == 0 &&
              sw_hook_verify(d->provider, d->signature, (sw_iov_t){req->body.base, req->body.len},
                             (sw_iov_t){secret.base, secret.len});
    if (secret.base)
        sodium_memzero(secret.base, secret.len);
    sw_buf_free(&secret);
    if (r != 0)
        sw_log_kv(SW_LOG_WARN, req->request_id, "an app's hook secret does not open", "app_id",
                  d->app_id, "error", sw_strerror(r), NULL);
    if (!ok) {
        refuse(req);
        return;
    }
    if (!sw_api_limits_hook(d->api, req, d->app_id))
        return;
    const char *branch = sw_arena_strdup(&req->arena, sw_pg_result_value(res, 0, 1));
    bool auto_deploy = strcmp(sw_pg_result_value(res, 0, 2), "t") == 0;
    on_verified(req, d, branch, auto_deploy);
}

void sw_api_hooks_receive(sw_http_req_t *req, void *ctx)
{
    sw_api_t *api = ctx;
    sw_iov_t id = sw_http_req_param(req, "app_id");
    if (!sw_iov_is_uuid(id)) {
        refuse(req);
        return;
    }
    if (req->body.len > HOOK_BODY_MAX) {
        sw_http_respond_error(req, 413, "PAYLOAD_TOO_LARGE", "a hook delivery is at most 1 MiB",
                              NULL);
        return;
    }
    delivery_t *d = sw_arena_calloc(&req->arena, sizeof(*d));
    d->api = api;
    memcpy(d->app_id, id.base, SW_UUID_LEN);
    if (!sw_api_limits_hook_sender(api, req, d->app_id))
        return;
    detect(req, d);
    if (!d->signature.len) {
        refuse(req);
        return;
    }
    sw_api_req(req)->state = d;
    const char *params[] = {d->app_id};
    sw_pg_query(api->pg,
                "SELECT h.secret_sealed, a.branch, a.auto_deploy FROM app_hooks h "
                "JOIN apps a ON a.id = h.app_id WHERE h.app_id = $1",
                1, params, on_hook_app, req);
}

/* ---- GET apps/:id/hook, POST apps/:id/hook/rotate ---- */

/* Where git hosts send deliveries: under SLIPWAY_PUBLIC_URL, else the Host this request came
 * to (when it looks like a host name), into the arena. */
static const char *hook_url(sw_api_t *api, sw_http_req_t *req, const char *app_id)
{
    const char *base = api->cfg->public_url;
    size_t n = strlen(base);
    while (n && base[n - 1] == '/')
        n--;
    if (n)
        return sw_arena_printf(&req->arena, "%.*s/api/v1/hooks/%s", (int)n, base, app_id);
    sw_iov_t host = sw_http_req_header(req, "host");
    bool ok = host.len > 0 && host.len <= 255;
    for (size_t i = 0; ok && i < host.len; i++) {
        char c = host.base[i];
        ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             strchr(".-:[]", c) != NULL;
    }
    return sw_arena_printf(&req->arena, "http://%.*s/api/v1/hooks/%s", ok ? (int)host.len : 9,
                           ok ? host.base : "localhost", app_id);
}

static const char *path_id(sw_http_req_t *req)
{
    return sw_arena_iovdup(&req->arena, sw_http_req_param(req, "id")).base;
}

void sw_api_hook_get(sw_http_req_t *req, void *ctx)
{
    sw_api_t *api = ctx;
    const char *id = path_id(req);
    const char *params[] = {id, hook_url(api, req, id)};
    sw_api_exec(api, req,
                "SELECT json_build_object('url', $2::text, 'configured', h.app_id IS NOT NULL, "
                "'created_at', h.created_at, 'rotated_at', h.rotated_at) FROM apps a "
                "LEFT JOIN app_hooks h ON h.app_id = a.id WHERE a.id = $1",
                2, params, 200, "no such app", NULL);
}

static void on_rotated(int status, sw_pg_result_t *res, void *payload)
{
    sw_http_req_t *req = payload;
    char *secret = sw_api_req(req)->state;
    if (status == 0 && sw_pg_result_rows(res) != 1) {
        sw_http_respond_error(req, 404, "RESOURCE_NOT_FOUND", "no such app", NULL);
    } else if (!sw_api_db_failed(req, status, res)) {
        /* {"secret": ..., and the rest as PostgreSQL rendered it; hex needs no escaping. */
        const char *rest = sw_pg_result_value(res, 0, 0);
        sw_buf_t body = SW_BUF_INIT;
        sw_buf_printf(&body, "{\"secret\":\"%s\",%s\n", secret, rest + 1);
        sw_http_respond(req, 200, "application/json", body.base, body.len);
        sodium_memzero(body.base, body.len);
        sw_buf_free(&body);
    }
    sodium_memzero(secret, strlen(secret));
}

void sw_api_hook_rotate(sw_http_req_t *req, void *ctx)
{
    sw_api_t *api = ctx;
    sw_api_req_t *r = sw_api_req(req);
    const char *id = path_id(req);
    unsigned char raw[HOOK_SECRET_BYTES];
    char *secret = sw_arena_alloc(&req->arena, HOOK_SECRET_BYTES * 2 + 1);
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2hex(secret, HOOK_SECRET_BYTES * 2 + 1, raw, sizeof(raw));
    sodium_memzero(raw, sizeof(raw));
    char ad[SW_UUID_LEN + 16];
    snprintf(ad, sizeof(ad), "app_hook:%s", id);
    sw_buf_t sealed = SW_BUF_INIT;
    sw_secretbox_seal(api->box, secret, HOOK_SECRET_BYTES * 2, ad, &sealed);
    const char *params[] = {id,
                            sealed.base,
                            r->principal.user_id,
                            r->principal.email,
                            req->client_addr,
                            hook_url(api, req, id)};
    r->state = secret;
    sw_pg_query(api->pg,
                "WITH h AS (INSERT INTO app_hooks (app_id, secret_sealed) SELECT id, $2 FROM apps "
                "WHERE id = $1 ON CONFLICT (app_id) DO UPDATE SET secret_sealed = "
                "excluded.secret_sealed, rotated_at = now() RETURNING *), "
                "a AS (" SW_AUDIT_INSERT "SELECT $3, $4, 'app.hook_rotated', 'app', "
                "h.app_id::text, ap.project_id, $5, '{}'::jsonb FROM h JOIN apps ap "
                "ON ap.id = h.app_id) "
                "SELECT json_build_object('url', $6::text, 'configured', true, 'created_at', "
                "h.created_at, 'rotated_at', h.rotated_at) FROM h",
                6, params, on_rotated, req);
    sw_buf_free(&sealed);
}
