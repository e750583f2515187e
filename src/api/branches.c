/* GET /api/v1/apps/:id/branches: the app's repository's branches and their head commits, read
 * from the remote's ref advertisement (git.h's sw_git_branches: the deploy fetch's credentials,
 * host keys, address rule and deadline, on a thread of its own).
 *
 * A client cannot make slipwayd hammer a git host: one listing per app and credentials runs at
 * a time (requests meanwhile wait for it), its outcome - branches or failure - is answered
 * again for SLIPWAY_BRANCHES_CACHE_MS, and a process runs at most LISTINGS_MAX at once. */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slipway/cache.h"
#include "slipway/crypto.h"
#include "slipway/git.h"
#include "slipway/log.h"

#include "internal.h"

#define LISTINGS_MAX  8
#define BRANCHES_MAX  5000                  /* kept per listing, in name order */
#define READ_MAX      (32u * 1024u * 1024u) /* an http(s) ref advertisement */
#define CACHE_ENTRIES 256
#define CACHE_BYTES   (16u * 1024u * 1024u)

typedef struct waiter {
    struct waiter *next;
    sw_http_req_t *req;
} waiter_t;

typedef struct flight {
    struct flight *next;
    sw_api_branches_t *svc;
    char key[SW_TOKEN_HASH_HEX];
    char app_id[SW_UUID_LEN + 1];
    uint64_t generation;
    sw_git_job_t *job;
    waiter_t *waiters;
} flight_t;

struct sw_api_branches {
    sw_api_t *api;
    sw_cache_t *cache;
    flight_t *flights;
    unsigned nflights;
    bool closing;
    void (*on_closed)(void *payload);
    void *payload;
};

/* One request's view: its page, its order, and the app's configured branch. */
typedef struct {
    sw_api_t *api;
    char app_id[SW_UUID_LEN + 1];
    long long page, limit, offset;
    bool desc;
    const char *app_branch;
    waiter_t waiter;
} ask_t;

/* ---- answering ---- */

static void respond_page(sw_http_req_t *req, json_t *result)
{
    ask_t *a = sw_api_req(req)->state;
    json_t *all = json_object_get(result, "branches");
    const char *def = json_string_value(json_object_get(result, "default_branch"));
    long long n = (long long)json_array_size(all);
    json_t *data = json_array();

    for (long long i = a->offset; i < n && i < a->offset + a->limit; i++) {
        json_t *b = json_array_get(all, (size_t)(a->desc ? n - 1 - i : i));
        const char *name = json_string_value(json_array_get(b, 0));
        json_t *item = json_object();
        json_object_set_new(item, "name", json_string(name ? name : ""));
        json_object_set(item, "commit", json_array_get(b, 1));
        json_object_set_new(item, "default", json_boolean(def && name && strcmp(def, name) == 0));
        json_array_append_new(data, item);
    }
    json_t *page = json_object();
    json_object_set_new(page, "page", json_integer(a->page));
    json_object_set_new(page, "limit", json_integer(a->limit));
    json_object_set_new(page, "total", json_integer(n));
    json_object_set_new(page, "pages", json_integer((n + a->limit - 1) / a->limit));
    json_object_set_new(page, "has_next", json_boolean(a->offset + a->limit < n));
    json_object_set_new(page, "has_prev", json_boolean(a->page > 1));
    json_t *body = json_object();
    json_object_set_new(body, "data", data);
    json_object_set_new(body, "pagination", page);
    json_object_set_new(body, "app_branch", json_string(a->app_branch ? a->app_branch : ""));
    static const char *const copied[] = {"default_branch", "truncated", "fetched_at"};
    for (size_t k = 0; k < SW_ARRAY_SIZE(copied); k++) {
        json_t *v = json_object_get(result, copied[k]);
        json_object_set_new(body, copied[k], v ? json_incref(v) : json_null());
    }
    sw_http_respond_json(req, 200, body);
}

/* A listing's outcome, as cached: the branches, or the error to answer. */
static void respond(sw_http_req_t *req, json_t *result)
{
    json_t *status = json_object_get(result, "status");

    if (status) {
        sw_http_respond_error(req, (int)json_integer_value(status),
                              json_string_value(json_object_get(result, "code")),
                              json_string_value(json_object_get(result, "message")), NULL);
        return;
    }
    respond_page(req, result);
}

static json_t *failure(int status, const char *code, const char *message)
{
    return json_pack("{s:i, s:s, s:s}", "status", status, "code", code, "message", message);
}

static json_t *outcome(const sw_api_t *api, int status, const sw_git_branches_t *out,
                       const char *error)
{
    static const struct {
        int err;
        const char *code;
    } kinds[] = {
        {-EACCES, "GIT_AUTH_FAILED"},          {-EKEYREJECTED, "GIT_HOST_KEY_MISMATCH"},
        {-EPERM, "GIT_ADDRESS_REFUSED"},       {-EHOSTUNREACH, "GIT_UNREACHABLE"},
        {-ENOENT, "GIT_REPOSITORY_NOT_FOUND"}, {-EFBIG, "GIT_RESPONSE_TOO_LARGE"},
    };
    char msg[1200], now[40];

    if (status == -ETIMEDOUT) {
        snprintf(msg, sizeof(msg),
                 "the repository's host did not answer within %.1f s "
                 "(SLIPWAY_BRANCHES_TIMEOUT_MS)",
                 api->cfg->branches_timeout_ms / 1000.0);
        return failure(504, "GIT_TIMEOUT", msg);
    }
    if (status == -ECANCELED)
        return failure(503, "SERVICE_UNAVAILABLE", "slipwayd is shutting down");
    if (status) {
        const char *code = "GIT_ERROR";
        for (size_t i = 0; i < SW_ARRAY_SIZE(kinds); i++)
            code = kinds[i].err == status ? kinds[i].code : code;
        snprintf(msg, sizeof(msg), "could not list the repository's branches: %s",
                 error && *error ? error : sw_strerror(status));
        return failure(502, code, msg);
    }
    json_t *all = json_array();
    for (size_t i = 0; i < out->n; i++)
        json_array_append_new(all,
                              json_pack("[s, s]", out->branches[i].name, out->branches[i].commit));
    sw_time_rfc3339(now, sizeof(now), sw_wall_ms());
    return json_pack("{s:o, s:s?, s:b, s:s}", "branches", all, "default_branch", out->default_name,
                     "truncated", out->total > out->n, "fetched_at", now);
}

/* ---- listings ---- */

static void maybe_closed(sw_api_branches_t *svc)
{
    if (!svc->closing || svc->nflights > 0)
        return;
    sw_cache_free(svc->cache);
    void (*cb)(void *) = svc->on_closed;
    void *payload = svc->payload;
    free(svc);
    cb(payload);
}

static void on_listed(int status, const sw_git_branches_t *out, const char *error, void *payload)
{
    flight_t *f = payload;
    sw_api_branches_t *svc = f->svc;
    json_t *result = outcome(svc->api, status, out, error);

    if (status != -ECANCELED && svc->api->cfg->branches_cache_ms > 0) {
        json_object_set_new(
            result, "expires_ms",
            json_integer((json_int_t)(sw_now_ms() + svc->api->cfg->branches_cache_ms)));
        char *text = json_dumps(result, JSON_COMPACT);
        (void)sw_cache_put(svc->cache, f->generation, (sw_iov_t){f->key, strlen(f->key)},
                           (sw_iov_t){text, strlen(text)});
        free(text);
    }
    for (flight_t **p = &svc->flights; *p; p = &(*p)->next) {
        if (*p == f) {
            *p = f->next;
            break;
        }
    }
    svc->nflights--;
    /* Each waiter's request is answered once, and its arena (holding the waiter) goes then. */
    for (waiter_t *w = f->waiters, *next; w; w = next) {
        next = w->next;
        respond(w->req, result);
    }
    json_decref(result);
    free(f);
    maybe_closed(svc);
}

static void ignore_pg(int status, sw_pg_result_t *res, void *payload)
{
    (void)res;
    (void)payload;
    if (status != 0)
        sw_warn("branches: recording a host key trusted on first use failed: %s",
                sw_strerror(status));
}

/* A host key trusted on first use is recorded as the worker's fetch records it, so a changed
 * one fails the next listing and the next deployment. */
static void on_host_key(const char *host, const char *key_type, const char *sha256, void *payload)
{
    flight_t *f = payload;
    const char *params[] = {f->app_id, host, key_type[0] ? key_type : NULL, sha256};

    sw_pg_query(f->svc->api->pg,
                "INSERT INTO app_known_hosts (app_id, host, key_type, sha256, source) "
                "VALUES ($1, $2, $3, $4, 'first_use') ON CONFLICT DO NOTHING",
                4, params, ignore_pg, NULL);
}

static bool cached(sw_api_branches_t *svc, const char *key, sw_http_req_t *req)
{
    sw_iov_t v;

    if (svc->api->cfg->branches_cache_ms == 0 ||
        !sw_cache_get(svc->cache, (sw_iov_t){(char *)key, strlen(key)}, &v))
        return false;
    json_t *result = json_loadb(v.base, v.len, 0, NULL);
    bool fresh =
        json_integer_value(json_object_get(result, "expires_ms")) > (json_int_t)sw_now_ms();
    if (fresh)
        respond(req, result);
    json_decref(result);
    return fresh;
}

static bool joined(sw_api_branches_t *svc, const char *key, sw_http_req_t *req)
{
    ask_t *a = sw_api_req(req)->state;

    for (flight_t *f = svc->flights; f; f = f->next) {
        if (strcmp(f->key, key) == 0) {
            a->waiter = (waiter_t){.next = f->waiters, .req = req};
            f->waiters = &a->waiter;
            return true;
        }
    }
    return false;
}

/* Opens a credential sealed with "<what>:<app id>" into out. */
static bool open_credential(sw_api_t *api, const char *sealed, const char *what, const char *app_id,
                            sw_buf_t *out)
{
    char ad[96];

    if (!sealed || !*sealed)
        return true;
    snprintf(ad, sizeof(ad), "%s:%s", what, app_id);
    return sw_secretbox_open(api->box, sealed, strlen(sealed), ad, out) == 0;
}

static void wipe(sw_buf_t *b)
{
    if (b->base)
        sodium_memzero(b->base, b->cap);
    sw_buf_free(b);
}

/* Starts the listing of url with the app's credentials (columns 3-5 of res); false after
 * answering req. */
static bool start(sw_api_branches_t *svc, sw_http_req_t *req, const char *app_id, const char *key,
                  const char *url, sw_pg_result_t *res)
{
    sw_api_t *api = svc->api;
    char host[SW_GIT_HOST_MAX];
    sw_buf_t token = SW_BUF_INIT, ssh_key = SW_BUF_INIT;
    bool https = strncmp(url, "https://", 8) == 0, ssh = sw_git_ssh_host(url, host) == 0;
    bool ok = false;

    if (!(https
              ? open_credential(api, sw_pg_result_value(res, 0, 3), "app_git_token", app_id, &token)
              : !ssh || open_credential(api, sw_pg_result_value(res, 0, 4), "app_deploy_key",
                                        app_id, &ssh_key))) {
        sw_http_respond_error(req, 500, "INTERNAL_ERROR",
                              "the app's git credentials cannot be decrypted (was the master key "
                              "changed?)",
                              NULL);
        goto out;
    }
    const char *known_text = sw_pg_result_value(res, 0, 5);
    char *known_copy = sw_strdup(known_text ? known_text : "");
    sw_git_known_host_t *known = NULL;
    size_t nknown = sw_git_known_hosts_split(known_copy, &known);
    sw_git_opts_t o = {
        .url = url,
        .https_token = token.len ? token.base : NULL,
        .ssh_private_key = ssh_key.len ? ssh_key.base : NULL,
        .ssh_key_dir = api->cfg->data_dir,
        .known_hosts = known,
        .n_known_hosts = nknown,
        .host_key = on_host_key,
        .allow_file = api->cfg->allow_file_repos,
        .allow_private = api->cfg->git_allow_private,
        .timeout_ms = api->cfg->branches_timeout_ms,
        .max_read = READ_MAX,
    };
    flight_t *f = sw_calloc(1, sizeof(*f));
    f->svc = svc;
    snprintf(f->key, sizeof(f->key), "%s", key);
    snprintf(f->app_id, sizeof(f->app_id), "%s", app_id);
    f->generation = sw_cache_generation(svc->cache);
    int r = sw_git_branches(api->loop, &o, BRANCHES_MAX, on_listed, f, &f->job);
    free(known);
    free(known_copy);
    if (r < 0) {
        free(f);
        if (r == -EINVAL)
            sw_http_respond_error(req, 409, "RESOURCE_CONFLICT",
                                  "the app's repo_url is not one slipwayd may read", NULL);
        else
            sw_http_respond_error(req, 503, "SERVICE_UNAVAILABLE",
                                  "could not start listing the branches", NULL);
        goto out;
    }
    f->next = svc->flights;
    svc->flights = f;
    svc->nflights++;
    ok = joined(svc, key, req);
out:
    wipe(&token);
    wipe(&ssh_key);
    return ok;
}

static sw_api_branches_t *service(sw_api_t *api)
{
    if (!api->branches) {
        api->branches = sw_calloc(1, sizeof(*api->branches));
        api->branches->api = api;
        api->branches->cache = sw_cache_new(CACHE_ENTRIES, CACHE_BYTES);
    }
    return api->branches;
}

/* Columns: repo_url, branch, image, sealed token, sealed deploy key, known hosts. */
static void on_app(int status, sw_pg_result_t *res, void *payload)
{
    sw_http_req_t *req = payload;
    ask_t *a = sw_api_req(req)->state;
    sw_api_branches_t *svc = service(a->api);
    const char *app_id = a->app_id;
    char key[SW_TOKEN_HASH_HEX];
    sw_buf_t id = SW_BUF_INIT;

    if (sw_api_db_failed(req, status, res))
        return;
    if (sw_pg_result_rows(res) != 1) {
        sw_http_respond_error(req, 404, "RESOURCE_NOT_FOUND", "no such app", NULL);
        return;
    }
    if (svc->closing) {
        sw_http_respond_error(req, 503, "SERVICE_UNAVAILABLE", "slipwayd is shutting down", NULL);
        return;
    }
    const char *url = sw_pg_result_value(res, 0, 0);
    if (!url || !*url) {
        const char *image = sw_pg_result_value(res, 0, 2);
        sw_http_respond_error(req, 409, "RESOURCE_CONFLICT",
                              image && *image ? "the app runs an image and has no repo_url: it "
                                                "has no branches"
                                              : "the app has no repo_url: set one first",
                              NULL);
        return;
    }
    a->app_branch = sw_arena_strdup(&req->arena, sw_pg_result_value(res, 0, 1));
    /* The answer depends on the app, its URL and every credential: a changed one is a miss. */
    for (int c = 3; c <= 5; c++) {
        const char *v = sw_pg_result_value(res, 0, c);
        sw_buf_printf(&id, "%s\n", v ? v : "");
    }
    sw_buf_printf(&id, "%s\n%s", app_id, url);
    sw_token_hash(id.base, id.len, key);
    sw_buf_free(&id);
    if (cached(svc, key, req) || joined(svc, key, req))
        return;
    if (svc->nflights >= LISTINGS_MAX) {
        sw_http_add_header(req, "Retry-After", "1");
        sw_http_respond_error(req, 503, "SERVICE_UNAVAILABLE",
                              "too many branch listings are under way; try again", NULL);
        return;
    }
    (void)start(svc, req, app_id, key, url, res);
}

void sw_api_apps_branches(sw_http_req_t *req, void *ctx)
{
    sw_api_t *api = ctx;
    ask_t *a = sw_arena_calloc(&req->arena, sizeof(*a));
    const char *sort = sw_http_req_query(req, "sort");
    sw_iov_t id = sw_http_req_param(req, "id");

    if (!sw_api_page(req, &a->page, &a->limit, &a->offset))
        return;
    if (sort && strcmp(sort, "name") != 0 && strcmp(sort, "name:asc") != 0 &&
        strcmp(sort, "name:desc") != 0) {
        sw_json_errors_t e;
        sw_json_errors_init(&e);
        sw_json_errors_add(&e, "sort", "must be name, name:asc or name:desc");
        sw_api_validation_error(req, &e);
        return;
    }
    a->desc = sort && strcmp(sort, "name:desc") == 0;
    a->api = api;
    snprintf(a->app_id, sizeof(a->app_id), "%.*s", (int)SW_MIN(id.len, SW_UUID_LEN), id.base);
    sw_api_req(req)->state = a;
    const char *params[] = {a->app_id};
    sw_pg_query(api->pg,
                "SELECT a.repo_url, a.branch, a.image, a.git_token_sealed, k.private_sealed, "
                "(SELECT string_agg(h.host || ' ' || h.sha256, E'\\n') FROM app_known_hosts h "
                "WHERE h.app_id = a.id) FROM apps a "
                "LEFT JOIN app_deploy_keys k ON k.app_id = a.id WHERE a.id = $1",
                1, params, on_app, req);
}

void sw_api_branches_close(sw_api_branches_t *svc, void (*on_closed)(void *payload), void *payload)
{
    svc->closing = true;
    svc->on_closed = on_closed;
    svc->payload = payload;
    /* Each listing ends within a fraction of a second, answering its requests. */
    for (flight_t *f = svc->flights; f; f = f->next)
        sw_git_cancel(f->job);
    maybe_closed(svc);
}
