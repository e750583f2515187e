/* /api/v1/apps: the settings of an app. Every field a client sends is checked here; the
 * statement then takes the checked fields as one jsonb parameter. Repository URLs and
 * branch names are checked as hostile: they later reach git (as argv, never a shell). */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "slipway/api.h"
#include "slipway/git.h"

#include "internal.h"

#define GIT_TOKEN_MAX 4096

static const sw_api_sort_t app_sorts[] = {
    {"name", "name"},
    {"created_at", "created_at"},
    {"updated_at", "updated_at"},
    {"status", "status"},
    {NULL, NULL},
};

static bool has_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    return false;
}

static bool url_host_ok(const char *host, size_t len)
{
    if (len == 0 || len > 253)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = host[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == ':' || c == '[' || c == ']'))
            return false;
    }
    return host[0] != '-';
}

/* ssh reads a user starting with '-' as an option (-oProxyCommand=...). */
static bool ssh_user_ok(const char *user, size_t len)
{
    if (len == 0 || user[0] == '-')
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = user[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* https://host/path, ssh://[user@]host[:port]/path, user@host:path (git's scp-like form),
 * file:///path. */
static const char *repo_url_problem(const char *u, bool allow_file)
{
    size_t n = strlen(u);
    if (n > 2048)
        return "must be at most 2048 characters";
    if (n == 0)
        return NULL; /* set later */
    if (has_control(u) || strchr(u, ' ') || u[0] == '-')
        return "must not contain spaces or control characters, nor start with '-'";
    if (strncmp(u, "https://", 8) == 0 || strncmp(u, "ssh://", 6) == 0) {
        const char *host = u + (u[0] == 'h' ? 8 : 6);
        const char *end = host + strcspn(host, "/?#");
        const char *at = memchr(host, '@', (size_t)(end - host));
        if (at && u[0] == 'h')
            return "must not carry credentials: use a deploy key or a token in an env var";
        if (at) {
            if (!ssh_user_ok(host, (size_t)(at - host)))
                return "has an invalid user";
            host = at + 1;
        }
        if (!url_host_ok(host, (size_t)(end - host)))
            return "has no valid host";
        if (sw_git_url_port(u) < 0)
            return "has an invalid port: it must be a number from 1 to 65535";
        return NULL;
    }
    const char *at = strchr(u, '@'), *slash = strchr(u, '/');
    if (at && !strstr(u, "://") && (!slash || at < slash)) {
        /* The host is a name or an IPv4 address: git's scp-like form has no port, and
         * brackets there are read differently by different clients. */
        const char *colon = strchr(at + 1, ':');
        size_t host_len = colon ? (size_t)(colon - at - 1) : 0;
        if (!ssh_user_ok(u, (size_t)(at - u)) || !colon || !colon[1] ||
            !url_host_ok(at + 1, host_len) || strcspn(at + 1, "[]") < host_len)
            return "must look like user@host:path";
        return NULL;
    }
    if (strncmp(u, "file://", 7) == 0) {
        if (!allow_file)
            return "file:// repositories are disabled (SLIPWAY_ALLOW_FILE_REPOS)";
        if (u[7] != '/' || strstr(u, "/../") || strstr(u, "/.."))
            return "must be an absolute file:///path without '..'";
        return NULL;
    }
    return "must start with https://, ssh://, user@host: or file://";
}

/* git check-ref-format rules, for a branch name. */
static bool ref_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 255 || s[0] == '-' || s[0] == '/' || s[n - 1] == '/' || s[n - 1] == '.')
        return false;
    if (strstr(s, "..") || strstr(s, "//") || strstr(s, "@{") || strstr(s, "/.") || s[0] == '.' ||
        (n >= 5 && strcmp(s + n - 5, ".lock") == 0) || strcmp(s, "@") == 0)
        return false;
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x21 || c == 0x7f || strchr("~^:?*[\\", c))
            return false;
    }
    return true;
}

/* Kubernetes quantities: cpu "500m", "2", "0.5"; memory "512Mi", "1Gi", "100M", "1048576". */
static bool cpu_ok(const char *s)
{
    size_t n = strlen(s), digits = 0, frac = 0;
    bool dot = false, nonzero = false;
    if (n == 0 || n > 16)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] >= '0' && s[i] <= '9') {
            nonzero |= s[i] != '0';
            if (dot)
                frac++;
            else
                digits++;
        } else if (s[i] == '.' && !dot && i > 0) {
            dot = true;
        } else if (s[i] == 'm' && i == n - 1 && !dot && digits) {
            return nonzero;
        } else {
            return false;
        }
    }
    return digits && frac <= 3 && (!dot || frac > 0) && nonzero;
}

static bool memory_ok(const char *s)
{
    static const char *const units[] = {"", "k", "K", "M", "G", "T", "Ki", "Mi", "Gi", "Ti"};
    size_t n = strlen(s), digits = 0;
    bool nonzero = false;
    while (digits < n && s[digits] >= '0' && s[digits] <= '9')
        nonzero |= s[digits++] != '0';
    if (!digits || digits > 15 || !nonzero)
        return false;
    for (size_t i = 0; i < SW_ARRAY_SIZE(units); i++)
        if (strcmp(s + digits, units[i]) == 0)
            return true;
    return false;
}

static void string_field(json_t *body, json_t *out, const char *field, size_t max,
                         sw_json_errors_t *e)
{
    const char *v;
    if (sw_json_get_string(body, field, false, 0, max, &v, e) == 0)
        json_object_set_new(out, field, json_string(v));
}

/* git_token is write-only: a string sets it (*token), null clears it. out only learns which
 * ("git_token": true or false), never the value. */
static void read_git_token(json_t *body, json_t *out, const char **token, sw_json_errors_t *e)
{
    json_t *v = json_object_get(body, "git_token");
    const char *s;

    *token = NULL;
    if (!v)
        return;
    if (json_is_null(v)) {
        json_object_set_new(out, "git_token", json_false());
        return;
    }
    if (sw_json_get_string(body, "git_token", false, 1, GIT_TOKEN_MAX, &s, e) != 0)
        return;
    if (has_control(s)) {
        sw_json_errors_add(e, "git_token", "must not contain control characters");
        return;
    }
    *token = s;
    json_object_set_new(out, "git_token", json_true());
}

/* Seals a credential for the app: what it is and the app id are the associated data. */
static char *seal_for_app(sw_api_t *api, const char *what, const char *app_id, const char *value)
{
    char ad[SW_UUID_LEN + 32];
    sw_buf_t sealed = SW_BUF_INIT;

    snprintf(ad, sizeof(ad), "%s:%s", what, app_id);
    sw_secretbox_seal(api->box, value, strlen(value), ad, &sealed);
    return sw_buf_steal(&sealed);
}

/* registry_auth is write-only like git_token: {username, password} sets it (*auth gets
 * "username:password", arena memory), null clears it; out only learns which. */
static void read_registry_auth(sw_http_req_t *req, json_t *body, json_t *out, const char **auth,
                               sw_json_errors_t *e)
{
    json_t *v = json_object_get(body, "registry_auth");
    const char *user, *pass;

    *auth = NULL;
    if (!v)
        return;
    if (json_is_null(v)) {
        json_object_set_new(out, "registry_auth", json_false());
        return;
    }
    if (!json_is_object(v)) {
        sw_json_errors_add(e, "registry_auth", "must be {username, password} or null");
        return;
    }
    if (sw_json_get_string(v, "username", true, 1, 255, &user, e) != 0 ||
        sw_json_get_string(v, "password", true, 1, 4096, &pass, e) != 0)
        return;
    if (strchr(user, ':') || has_control(user) || has_control(pass)) {
        sw_json_errors_add(e, "registry_auth",
                           "username must not hold ':', and neither control characters");
        return;
    }
    size_t n = strlen(user) + strlen(pass) + 2;
    char *s = sw_arena_alloc(&req->arena, n);
    snprintf(s, n, "%s:%s", user, pass);
    *auth = s;
    json_object_set_new(out, "registry_auth", json_true());
}

static void wipe_body(sw_http_req_t *req)
{
    if (req->body.base)
        sodium_memzero(req->body.base, req->body.len);
}

/* A random (version 4) UUID, so a token can be sealed to an app before its row exists. */
static void new_uuid(char out[SW_UUID_LEN + 1])
{
    unsigned char b[16];

    randombytes_buf(b, sizeof(b));
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, SW_UUID_LEN + 1,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
             b[15]);
}

/* Checks every field the client sent into out; create requires name. */
static bool runtime_is_container(json_t *fields)
{
    const char *rt = json_string_value(json_object_get(fields, "runtime"));
    return rt && strcmp(rt, "container") == 0;
}

static void read_app(sw_api_t *api, json_t *body, bool create, json_t *out, sw_json_errors_t *e)
{
    const char *s;
    long long n;
    bool b;

    if (sw_json_get_string(body, "name", create, 1, 63, &s, e) == 0) {
        if (sw_api_dns_label(s))
            json_object_set_new(out, "name", json_string(s));
        else
            sw_json_errors_add(e, "name",
                               "must be a DNS label: a-z, 0-9 and '-', not at either "
                               "end");
    }
    if (sw_json_get_string(body, "repo_url", false, 0, 4096, &s, e) == 0) {
        const char *why = repo_url_problem(s, api->cfg->allow_file_repos);
        if (why)
            sw_json_errors_add(e, "repo_url", "%s", why);
        else
            json_object_set_new(out, "repo_url", json_string(s));
    }
    if (sw_json_get_string(body, "branch", false, 1, 255, &s, e) == 0) {
        if (ref_name_ok(s))
            json_object_set_new(out, "branch", json_string(s));
        else
            sw_json_errors_add(e, "branch", "is not a valid git branch name");
    }
    string_field(body, out, "build_command", 4096, e);
    string_field(body, out, "start_command", 4096, e);
    if (sw_json_get_string(body, "dockerfile_path", false, 0, 255, &s, e) == 0) {
        if (s[0] == '/' || strstr(s, "..") || has_control(s))
            sw_json_errors_add(e, "dockerfile_path",
                               "must be a path inside the repository, without '..'");
        else
            json_object_set_new(out, "dockerfile_path", json_string(s));
    }
    if (sw_json_get_string(body, "runtime", false, 1, 16, &s, e) == 0) {
        if (strcmp(s, "process") == 0 || strcmp(s, "container") == 0)
            json_object_set_new(out, "runtime", json_string(s));
        else
            sw_json_errors_add(e, "runtime", "must be process or container");
    }
    if (sw_json_get_string(body, "image", false, 0, 255, &s, e) == 0) {
        if (*s && !sw_api_image_ok(s))
            sw_json_errors_add(e, "image",
                               "must be an image reference like registry.example/name:tag or "
                               "name@sha256:<64 hex digits>");
        else if (*s && create && !runtime_is_container(out))
            sw_json_errors_add(e, "image", "needs runtime: container");
        else
            json_object_set_new(out, "image", json_string(s));
    }
    if (sw_json_get_int(body, "port", false, 1, 65535, &n, e) == 0)
        json_object_set_new(out, "port", json_integer(n));
    if (sw_json_get_string(body, "health_check_path", false, 1, 1024, &s, e) == 0) {
        if (s[0] != '/' || has_control(s) || strchr(s, ' '))
            sw_json_errors_add(e, "health_check_path", "must be a path starting with /");
        else
            json_object_set_new(out, "health_check_path", json_string(s));
    }
    if (sw_json_get_int(body, "replicas", false, 1, api->cfg->max_replicas, &n, e) == 0)
        json_object_set_new(out, "replicas", json_integer(n));
    json_t *res = json_object_get(body, "resources");
    if (res && !json_is_null(res)) {
        json_t *r = json_object();
        if (!json_is_object(res)) {
            sw_json_errors_add(e, "resources", "must be an object {cpu, memory}");
        } else {
            const char *cpu = NULL, *mem = NULL;
            sw_json_errors_t inner;
            sw_json_errors_init(&inner);
            if (sw_json_get_string(res, "cpu", false, 0, 16, &cpu, &inner) == 0 && *cpu &&
                !cpu_ok(cpu))
                sw_json_errors_add(e, "resources.cpu", "must be like 500m, 1 or 0.5");
            else if (cpu)
                json_object_set_new(r, "cpu", json_string(cpu));
            if (sw_json_get_string(res, "memory", false, 0, 16, &mem, &inner) == 0 && *mem &&
                !memory_ok(mem))
                sw_json_errors_add(e, "resources.memory", "must be like 512Mi, 1Gi or 100M");
            else if (mem)
                json_object_set_new(r, "memory", json_string(mem));
            if (sw_json_errors_any(&inner))
                sw_json_errors_add(e, "resources", "cpu and memory must be strings");
            sw_json_errors_free(&inner);
            const char *k;
            json_t *v;
            json_object_foreach(res, k, v)
            {
                if (!sw_api_schema_has("AppCreate.resources", k))
                    sw_json_errors_add(e, "resources", "unknown field %.32s: give cpu or memory",
                                       k);
            }
        }
        json_object_set_new(out, "resources", r);
    }
    if (sw_json_get_bool(body, "auto_deploy", false, &b, e) == 0)
        json_object_set_new(out, "auto_deploy", json_boolean(b));
    /* Create and update both check against AppCreate's fields: update answers "cannot be
     * changed" for project_id and environment_id rather than calling them unknown. */
    sw_api_reject_unknown(body, "AppCreate", e);
}

static const char *const app_statuses[] = {"idle",    "deploying", "running",
                                           "stopped", "crashed",   NULL};

static const sw_api_filter_t app_filters[] = {
    {"project_id", "x.project_id = $%d::uuid", NULL, 0},
    {"environment_id", "x.environment_id = $%d::uuid", NULL, 0},
    {"status", "x.status = $%d", app_statuses, 0},
    {NULL, NULL, NULL, 0},
};

void sw_api_apps_list(sw_http_req_t *req, void *ctx)
{
    const char *filters[SW_API_FILTERS_MAX];
    if (!sw_api_filters_read(req, app_filters, filters))
        return;
    sw_api_list_t l = {.from = "apps",
                       .json_expr = "sw_app_json(x)",
                       .sorts = app_sorts,
                       .default_sort = "created_at"};
    sw_api_list_visible(&l, sw_api_principal(req), "project_id", false, NULL, NULL);
    sw_api_filters_apply(&l, app_filters, filters);
    sw_api_list_run(ctx, req, &l);
}

/* The audit CTE for a created or updated app a; actor, email and address are $n numbers. */
#define APP_AUDIT(action, actor, email, addr)                                                      \
    "au AS (" SW_AUDIT_INSERT "SELECT $" actor ", $" email ", '" action "', 'app', a.id::text, "   \
    "a.project_id, $" addr ", json_build_object('name', a.name)::jsonb FROM a) "

void sw_api_apps_create(sw_http_req_t *req, void *ctx)
{
    sw_api_t *api = ctx;
    sw_api_req_t *r = sw_api_req(req);
    json_t *body = sw_api_json(req); /* parsed by the access check already */
    if (!body)
        return;
    sw_json_errors_t e;
    sw_json_errors_init(&e);
    json_t *fields = json_object();
    const char *token, *auth;
    read_app(api, body, true, fields, &e);
    read_git_token(body, fields, &token, &e);
    read_registry_auth(req, body, fields, &auth, &e);
    const char *project = NULL;
    if (sw_json_get_string(body, "project_id", false, 1, 64, &project, &e) == 0 &&
        strcmp(project, r->project_id) != 0)
        sw_json_errors_add(&e, "project_id", "does not match the environment's project");
    if (sw_json_errors_any(&e)) {
        json_decref(fields);
        wipe_body(req);
        sw_api_validation_error(req, &e);
        return;
    }
    char *j = json_dumps(fields, JSON_COMPACT);
    json_decref(fields);
    const char *env = json_string_value(json_object_get(body, "environment_id"));
    char id[SW_UUID_LEN + 1];
    char *sealed = NULL, *auth_sealed = NULL;
    if (token || auth)
        new_uuid(id);
    if (token)
        sealed = seal_for_app(api, "app_git_token", id, token);
    if (auth) {
        auth_sealed = seal_for_app(api, "app_registry_auth", id, auth);
        sodium_memzero((char *)auth, strlen(auth));
    }
    wipe_body(req);
    const char *params[] = {j,
                            r->project_id,
                            env,
                            r->principal.user_id,
                            r->principal.email,
                            req->client_addr,
                            token || auth ? id : NULL,
                            sealed,
                            auth_sealed};
    sw_api_exec(api, req,
                "WITH f AS (SELECT $1::jsonb AS j), "
                "a AS (INSERT INTO apps (id, project_id, environment_id, name, repo_url, branch, "
                "build_command, start_command, dockerfile_path, runtime, port, "
                "health_check_path, replicas, cpu, memory, auto_deploy, git_token_sealed, image, "
                "registry_auth_sealed) "
                "SELECT coalesce($7::uuid, gen_random_uuid()), $2, $3, j->>'name', "
                "coalesce(j->>'repo_url', ''), "
                "coalesce(j->>'branch', 'main'), coalesce(j->>'build_command', ''), "
                "coalesce(j->>'start_command', ''), coalesce(j->>'dockerfile_path', ''), "
                "coalesce(j->>'runtime', 'process'), coalesce((j->>'port')::int, 3000), "
                "coalesce(j->>'health_check_path', '/'), coalesce((j->>'replicas')::int, 1), "
                "coalesce(j->'resources'->>'cpu', ''), coalesce(j->'resources'->>'memory', ''), "
                "coalesce((j->>'auto_deploy')::bool, false), coalesce($8, ''), "
                "coalesce(j->>'image', ''), coalesce($9, '') "
                "FROM f RETURNING *), " APP_AUDIT("app.created", "4", "5",
                                                  "6") "SELECT sw_app_json(a) FROM a",
                9, params, 201, "app not created",
                "an app with this name exists in the environment");
    free(j);
    free(sealed);
    free(auth_sealed);
}

void sw_api_apps_get(sw_http_req_t *req, void *ctx)
{
    const char *cached = sw_api_req(req)->resource_json;
    if (cached) {
        sw_api_respond_text(req, 200, cached);
        return;
    }
    const char *id = sw_arena_iovdup(&req->arena, sw_http_req_param(req, "id")).base;
    const char *params[] = {id};
    sw_api_exec(ctx, req, "SELECT sw_app_json(a) FROM apps a WHERE a.id = $1", 1, params, 200,
                "no such app", NULL);
}

void sw_api_apps_update(sw_http_req_t *req, void *ctx)
{
    sw_api_t *api = ctx;
    sw_api_req_t *r = sw_api_req(req);
    json_t *body = sw_api_json(req);
    if (!body)
        return;
    sw_json_errors_t e;
    sw_json_errors_init(&e);
    if (json_object_get(body, "project_id"))
        sw_json_errors_add(&e, "project_id", "cannot be changed");
    if (json_object_get(body, "environment_id"))
        sw_json_errors_add(&e, "environment_id", "cannot be changed");
    json_t *fields = json_object();
    const char *token, *auth;
    read_app(api, body, false, fields, &e);
    read_git_token(body, fields, &token, &e);
    read_registry_auth(req, body, fields, &auth, &e);
    if (!sw_json_errors_any(&e) && json_object_size(fields) == 0)
        sw_json_errors_add(&e, "body", "give at least one field to change");
    if (sw_json_errors_any(&e)) {
        json_decref(fields);
        wipe_body(req);
        sw_api_validation_error(req, &e);
        return;
    }
    char *j = json_dumps(fields, JSON_COMPACT);
    json_decref(fields);
    const char *id = sw_arena_iovdup(&req->arena, sw_http_req_param(req, "id")).base;
    char *sealed = token ? seal_for_app(api, "app_git_token", id, token) : NULL;
    char *auth_sealed = auth ? seal_for_app(api, "app_registry_auth", id, auth) : NULL;
    if (auth)
        sodium_memzero((char *)auth, strlen(auth));
    wipe_body(req);
    const char *params[] = {
        j, id, r->principal.user_id, r->principal.email, req->client_addr, sealed, auth_sealed};
    sw_api_exec(api, req,
                "WITH f AS (SELECT $1::jsonb AS j), "
                "a AS (UPDATE apps SET name = coalesce(j->>'name', name), "
                "repo_url = coalesce(j->>'repo_url', repo_url), "
                "branch = coalesce(j->>'branch', branch), "
                "build_command = coalesce(j->>'build_command', build_command), "
                "start_command = coalesce(j->>'start_command', start_command), "
                "dockerfile_path = coalesce(j->>'dockerfile_path', dockerfile_path), "
                "runtime = coalesce(j->>'runtime', runtime), "
                "port = coalesce((j->>'port')::int, port), "
                "health_check_path = coalesce(j->>'health_check_path', health_check_path), "
                "replicas = coalesce((j->>'replicas')::int, replicas), "
                "cpu = coalesce(j->'resources'->>'cpu', cpu), "
                "memory = coalesce(j->'resources'->>'memory', memory), "
                "auto_deploy = coalesce((j->>'auto_deploy')::bool, auto_deploy), "
                "git_token_sealed = CASE j->'git_token' WHEN 'true' THEN $6 "
                "WHEN 'false' THEN '' ELSE git_token_sealed END, "
                "image = coalesce(j->>'image', image), "
                "registry_auth_sealed = CASE j->'registry_auth' WHEN 'true' THEN $7 "
                "WHEN 'false' THEN '' ELSE registry_auth_sealed END, "
                "updated_at = now() FROM f WHERE id = $2 RETURNING apps.*), " APP_AUDIT(
                    "app.updated", "3", "4", "5") "SELECT sw_app_json(a) FROM a",
                7, params, 200, "no such app", "an app with this name exists in the environment");
    free(j);
    free(sealed);
    free(auth_sealed);
}

void sw_api_apps_delete(sw_http_req_t *req, void *ctx)
{
    sw_api_req_t *r = sw_api_req(req);
    const char *id = sw_arena_iovdup(&req->arena, sw_http_req_param(req, "id")).base;
    const char *params[] = {id, r->principal.user_id, r->principal.email, req->client_addr};
    sw_api_exec_deleting_apps(
        ctx, req,
        "WITH c AS (SELECT (SELECT count(*) FROM app_env WHERE app_id = $1) AS env, "
        "(SELECT count(*) FROM domains WHERE app_id = $1) AS domains), "
        "d AS (DELETE FROM apps WHERE id = $1 RETURNING id, name, project_id), "
        "au AS (" SW_AUDIT_INSERT "SELECT $2, $3, 'app.deleted', 'app', d.id::text, "
        "d.project_id, $4, json_build_object('name', d.name, 'env_vars', c.env, "
        "'domains', c.domains)::jsonb FROM d, c) "
        "SELECT id, ARRAY[id]::text FROM d",
        4, params, "no such app");
}
