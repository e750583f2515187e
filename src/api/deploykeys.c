/* /api/v1/apps/:id/deploy-key and /known-hosts: an app's ssh deploy key and the host keys it
 * trusts. The private half is made here, sealed at once with the app id as associated data,
 * and never leaves the database again except to the worker; answers carry the public half. */
#include <ctype.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slipway/api.h"
#include "slipway/git.h"

#include "internal.h"

#define KNOWN_HOSTS_MAX 100 /* entries in one PUT, and hosts after lines are split */
#define HOST_BLOB_MAX   16384
#define KEY_TYPE_MAX    64

#define DEPLOY_KEY_JSON                                                                            \
    "json_build_object('public_key', k.public_key, 'fingerprint', k.fingerprint, "                 \
    "'created_at', k.created_at, 'known_hosts', sw_known_hosts_json(k.app_id))"

static const char *app_id(sw_http_req_t *req)
{
    return sw_arena_iovdup(&req->arena, sw_http_req_param(req, "id")).base;
}

void sw_api_deploy_key_get(sw_http_req_t *req, void *ctx)
{
    const char *params[] = {app_id(req)};
    sw_api_exec(ctx, req, "SELECT " DEPLOY_KEY_JSON " FROM app_deploy_keys k WHERE k.app_id = $1",
                1, params, 200, "the app has no deploy key: POST to create one", NULL);
}

/* "slipway-<app name>", from the app as the access check read it. */
static void key_comment(sw_http_req_t *req, char *out, size_t size)
{
    const char *text = sw_api_req(req)->resource_json;
    json_t *app = text ? json_loads(text, 0, NULL) : NULL;
    const char *name = json_string_value(json_object_get(app, "name"));

    snprintf(out, size, "slipway-%s", name && sw_api_dns_label(name) ? name : "app");
    json_decref(app);
}

void sw_api_deploy_key_create(sw_http_req_t *req, void *ctx)
{
    sw_api_t *api = ctx;
    sw_api_req_t *r = sw_api_req(req);
    const char *id = app_id(req);
    sw_git_deploy_key_t key = {0};
    sw_buf_t sealed = SW_BUF_INIT;
    char comment[80], ad[SW_UUID_LEN + 32];

    key_comment(req, comment, sizeof(comment));
    if (sw_git_deploy_key_new(&key, comment) < 0) {
        sw_http_respond_error(req, 500, "INTERNAL_ERROR", "could not make a key", NULL);
        return;
    }
    snprintf(ad, sizeof(ad), "app_deploy_key:%s", id);
    sw_secretbox_seal(api->box, key.private_key, strlen(key.private_key), ad, &sealed);
    const char *params[] = {id,
                            key.public_key,
                            key.fingerprint,
                            sealed.base,
                            r->principal.user_id,
                            r->principal.email,
                            r->project_id,
                            req->client_addr};
    sw_api_exec(api, req,
                "WITH k AS (INSERT INTO app_deploy_keys (app_id, public_key, fingerprint, "
                "private_sealed) SELECT id, $2, $3, $4 FROM apps WHERE id = $1 "
                "ON CONFLICT (app_id) DO UPDATE SET public_key = excluded.public_key, "
                "fingerprint = excluded.fingerprint, private_sealed = excluded.private_sealed, "
                "created_at = now() RETURNING *), "
                "au AS (" SW_AUDIT_INSERT "SELECT $5, $6, 'app.deploy_key', 'app', $1::text, $7, "
                "$8, json_build_object('fingerprint', k.fingerprint)::jsonb FROM k) "
                "SELECT " DEPLOY_KEY_JSON " FROM k",
                8, params, 201, "no such app", NULL);
    sodium_memzero(sealed.base, sealed.cap);
    sw_buf_free(&sealed);
    sw_git_deploy_key_clear(&key);
}

void sw_api_known_hosts_get(sw_http_req_t *req, void *ctx)
{
    const char *params[] = {app_id(req)};
    sw_api_exec(ctx, req,
                "SELECT json_build_object('known_hosts', sw_known_hosts_json(a.id)) FROM apps a "
                "WHERE a.id = $1",
                1, params, 200, "no such app", NULL);
}

/* A host as the worker names it: "name" or "name:port" (port 22 left out), lower case.
 * known_hosts writes "[name]:port"; IPv6 addresses keep their brackets. */
static bool normalise_host(const char *in, size_t len, char out[SW_GIT_HOST_MAX])
{
    char buf[SW_GIT_HOST_MAX], *name, *port = NULL;
    long p = 22;
    int n;

    if (len == 0 || len >= sizeof(buf))
        return false;
    memcpy(buf, in, len);
    buf[len] = '\0';
    for (size_t i = 0; i < len; i++) {
        if (!isalnum((unsigned char)buf[i]) && !strchr(".-_:[]", buf[i]))
            return false;
    }
    if (buf[0] == '[') {
        char *close = strchr(buf, ']');
        if (!close)
            return false;
        *close = '\0';
        name = buf + 1;
        if (close[1] != '\0') {
            if (close[1] != ':')
                return false;
            port = close + 2;
        }
    } else {
        char *colon = strchr(buf, ':');
        name = buf;
        if (colon) {
            if (strchr(colon + 1, ':'))
                return false; /* a bare IPv6 address: give it in brackets */
            *colon = '\0';
            port = colon + 1;
        }
    }
    if (!*name || strpbrk(name, "[]"))
        return false;
    if (port) {
        if (!*port || strlen(port) > 5 || strspn(port, "0123456789") != strlen(port))
            return false;
        p = atol(port);
        if (p < 1 || p > 65535)
            return false;
    }
    for (char *c = name; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    bool v6 = strchr(name, ':') != NULL;
    if (p == 22)
        n = snprintf(out, SW_GIT_HOST_MAX, v6 ? "[%s]" : "%s", name);
    else
        n = snprintf(out, SW_GIT_HOST_MAX, v6 ? "[%s]:%ld" : "%s:%ld", name, p);
    return n > 0 && n < SW_GIT_HOST_MAX;
}

static bool sha256_ok(const char *s)
{
    if (strncmp(s, "SHA256:", 7) != 0 || strlen(s) != 7 + 43)
        return false;
    for (s += 7; *s; s++) {
        if (!isalnum((unsigned char)*s) && *s != '+' && *s != '/')
            return false;
    }
    return true;
}

static void add_host(json_t *out, const char *host, const char *key_type, const char *sha256)
{
    json_array_append_new(
        out, json_pack("{s:s, s:s?, s:s}", "host", host, "key_type", key_type, "sha256", sha256));
}

/* One OpenSSH known_hosts line: "host[,host...] key-type base64 [comment]". */
static void read_line(const char *line, const char *field, json_t *out, sw_json_errors_t *e)
{
    char type[KEY_TYPE_MAX], fp[SW_GIT_FINGERPRINT_MAX], host[SW_GIT_HOST_MAX];
    unsigned char blob[HOST_BLOB_MAX];
    size_t hosts_len, type_len, b64_len, blob_len = 0;
    const char *p = line;

    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '@') {
        sw_json_errors_add(e, field, "markers (@cert-authority, @revoked) are not supported");
        return;
    }
    if (*p == '|') {
        sw_json_errors_add(e, field, "hashed host names cannot be used: give the host in clear");
        return;
    }
    hosts_len = strcspn(p, " \t");
    const char *hosts = p;
    p += hosts_len;
    p += strspn(p, " \t");
    type_len = strcspn(p, " \t");
    if (type_len == 0 || type_len >= sizeof(type)) {
        sw_json_errors_add(e, field, "must be a known_hosts line: host key-type base64-key");
        return;
    }
    memcpy(type, p, type_len);
    type[type_len] = '\0';
    p += type_len;
    p += strspn(p, " \t");
    b64_len = strcspn(p, " \t\r\n");
    if (b64_len == 0 || b64_len > HOST_BLOB_MAX * 4 / 3 + 4 ||
        sodium_base642bin(blob, sizeof(blob), p, b64_len, NULL, &blob_len, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        blob_len < 4 + type_len) {
        sw_json_errors_add(e, field, "has no valid base64 key");
        return;
    }
    /* The blob names its own type first; it must be the one the line says. */
    uint32_t n =
        (uint32_t)blob[0] << 24 | (uint32_t)blob[1] << 16 | (uint32_t)blob[2] << 8 | blob[3];
    if (n != type_len || memcmp(blob + 4, type, type_len) != 0) {
        sw_json_errors_add(e, field, "the key is not of type %s", type);
        return;
    }
    sw_git_fingerprint(blob, blob_len, fp);
    while (hosts_len > 0) {
        size_t one = strcspn(hosts, ",");
        one = one < hosts_len ? one : hosts_len;
        if (!normalise_host(hosts, one, host)) {
            sw_json_errors_add(e, field,
                               "has an invalid host (patterns and negations are not "
                               "supported)");
            return;
        }
        add_host(out, host, type, fp);
        hosts += one;
        hosts_len -= one;
        if (hosts_len > 0) {
            hosts++;
            hosts_len--;
        }
    }
}

static void read_object(json_t *item, const char *field, json_t *out, sw_json_errors_t *e)
{
    const char *h = NULL, *sha = NULL, *type = NULL;
    char host[SW_GIT_HOST_MAX];
    sw_json_errors_t inner;

    sw_json_errors_init(&inner);
    sw_json_get_string(item, "host", true, 1, SW_GIT_HOST_MAX - 1, &h, &inner);
    sw_json_get_string(item, "sha256", true, 1, 64, &sha, &inner);
    sw_json_get_string(item, "key_type", false, 1, KEY_TYPE_MAX - 1, &type, &inner);
    sw_api_reject_unknown(item, "KnownHostsPut.known_hosts", &inner);
    if (sw_json_errors_any(&inner)) {
        sw_json_errors_add(e, field, "must be {host, sha256, key_type?} with strings");
    } else if (!normalise_host(h, strlen(h), host)) {
        sw_json_errors_add(e, field, "host must be name, name:port or [name]:port");
    } else if (!sha256_ok(sha)) {
        sw_json_errors_add(e, field,
                           "sha256 must be SHA256:<43 base64 characters>, as "
                           "ssh-keygen -lf prints it");
    } else {
        for (const char *p = type; p && *p; p++) {
            if (!isalnum((unsigned char)*p) && !strchr("-@.", *p)) {
                sw_json_errors_add(e, field, "key_type is not a key type name");
                break;
            }
        }
        add_host(out, host, type, sha);
    }
    sw_json_errors_free(&inner);
}

void sw_api_known_hosts_put(sw_http_req_t *req, void *ctx)
{
    sw_api_t *api = ctx;
    sw_api_req_t *r = sw_api_req(req);
    json_t *body = sw_api_json(req);
    if (!body)
        return;
    sw_json_errors_t e;
    sw_json_errors_init(&e);
    json_t *list = json_object_get(body, "known_hosts");
    sw_api_reject_unknown_body(req, body, &e);
    if (!json_is_array(list) || json_array_size(list) > KNOWN_HOSTS_MAX)
        sw_json_errors_add(&e, "known_hosts",
                           "must be an array of at most %d known_hosts lines or {host, sha256} "
                           "objects",
                           KNOWN_HOSTS_MAX);
    json_t *hosts = json_array();
    size_t i;
    json_t *item;
    if (!sw_json_errors_any(&e)) {
        json_array_foreach(list, i, item)
        {
            char field[48];
            snprintf(field, sizeof(field), "known_hosts[%zu]", i);
            if (json_is_string(item))
                read_line(json_string_value(item), field, hosts, &e);
            else if (json_is_object(item))
                read_object(item, field, hosts, &e);
            else
                sw_json_errors_add(&e, field, "must be a string or an object");
        }
        if (json_array_size(hosts) > KNOWN_HOSTS_MAX)
            sw_json_errors_add(&e, "known_hosts", "names more than %d hosts", KNOWN_HOSTS_MAX);
    }
    if (sw_json_errors_any(&e)) {
        json_decref(hosts);
        sw_api_validation_error(req, &e);
        return;
    }
    char *j = json_dumps(hosts, JSON_COMPACT);
    json_decref(hosts);
    const char *params[] = {
        app_id(req), j, r->principal.user_id, r->principal.email, r->project_id, req->client_addr};
    /* Rows not in the new list go; the others are upserted: the two sets never meet, so one
     * statement does both. */
    sw_api_exec(api, req,
                "WITH a AS (SELECT id FROM apps WHERE id = $1), "
                "v AS (SELECT DISTINCT ON (host, sha256) host, key_type, sha256 FROM "
                "jsonb_to_recordset($2::jsonb) AS v(host text, key_type text, sha256 text) "
                "ORDER BY host, sha256, key_type NULLS LAST), "
                "d AS (DELETE FROM app_known_hosts h USING a WHERE h.app_id = a.id AND NOT EXISTS "
                "(SELECT 1 FROM v WHERE v.host = h.host AND v.sha256 = h.sha256)), "
                "i AS (INSERT INTO app_known_hosts (app_id, host, key_type, sha256, source) "
                "SELECT a.id, v.host, v.key_type, v.sha256, 'user' FROM a, v "
                "ON CONFLICT (app_id, host, sha256) DO UPDATE SET source = 'user', "
                "key_type = coalesce(excluded.key_type, app_known_hosts.key_type) RETURNING *), "
                "au AS (" SW_AUDIT_INSERT "SELECT $3, $4, 'app.known_hosts', 'app', $1::text, $5, "
                "$6, json_build_object('hosts', (SELECT json_agg(DISTINCT host) FROM v))::jsonb "
                "FROM a) "
                "SELECT json_build_object('known_hosts', (SELECT coalesce(json_agg("
                "json_build_object('host', i.host, 'key_type', i.key_type, 'sha256', i.sha256, "
                "'source', i.source, 'created_at', i.created_at) ORDER BY i.host, i.created_at, "
                "i.sha256), '[]'::json) FROM i)) FROM a",
                6, params, 200, "no such app", NULL);
    free(j);
}
