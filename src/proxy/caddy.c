/* The Caddy driver: Caddy's admin API (SLIPWAY_CADDY_ADMIN), through our HTTP client.
 *
 * Slipway owns one server in Caddy's config, apps.http.servers.slipway, listening on
 * SLIPWAY_PROXY_HTTP and SLIPWAY_PROXY_HTTPS, with one route per hostname whose @id is
 * "slipway-route-<host>". A route never names an instance: its reverse_proxy asks slipwayd's
 * DNS responder for the app's upstreams (dynamic SRV upstreams), so a release switch changes
 * no configuration at all (Caddy 2.6 closes every proxied WebSocket on each config load).
 * Only adding or removing a hostname changes the config, one route per admin request.
 *
 * apply() reads Caddy's whole config, compares it with what the table asks for, and sends
 * only the difference: the route that is missing, changed or no longer wanted; or, when the
 * server is missing or much has drifted (a Caddy restarted empty), one /load of the whole
 * config with every other part of it kept. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "slipway/client.h"
#include "slipway/log.h"

#define SERVER       "slipway"
#define ROUTE_PREFIX "slipway-route-"
#define FALLBACK_ID  "slipway-fallback" /* the last route: 404 for a host no app has */
#define SERVER_PATH  "/config/apps/http/servers/" SERVER
#define MAX_CONFIG   (64u << 20)
/* More route changes than this in one round: one /load instead of one reload per route. */
#define MAX_ROUTE_OPS 8
#define ADMIN_TIMEOUT 30000

typedef struct op {
    struct op *next;
    const char *method;
    char *path;
    char *body; /* NULL: none */
} op_t;

typedef struct {
    sw_proxy_driver_t base;
    uv_loop_t *loop;
    const sw_config_t *cfg;
    char admin_host[256];
    uint16_t admin_port;
    char admin_unix[108]; /* or a unix socket: then Caddy wants an empty Host */
    char dns[96];         /* "udp/<host:port>" */
    sw_httpc_t *req;
    /* the round in flight */
    const sw_routes_t *table;
    op_t *ops;
    unsigned changed, repaired;
    json_t *planned; /* the round's routes by @id */
    /* The routes by @id the last round that succeeded left Caddy serving; NULL before one
     * did. A route that differs from it though the table did not ask for a change drifted. */
    json_t *applied;
    sw_driver_cb cb;
    void *payload;
    bool freeing;
} caddy_t;

static void round_next(caddy_t *c);

/* ---- what the config should be ---- */

static void route_id(const char *host, char *out, size_t len)
{
    /* "*" would need escaping in an admin URL path */
    snprintf(out, len, ROUTE_PREFIX "%s%s", host[0] == '*' ? "wildcard" : "",
             host[0] == '*' ? host + 1 : host);
}

static json_t *resolver(const caddy_t *c)
{
    return json_pack("{s:[s]}", "addresses", c->dns);
}

static json_t *route_json(const caddy_t *c, const sw_route_t *r)
{
    char id[SW_ROUTE_HOST_MAX + 32], srv[80], refresh[24];
    route_id(r->host, id, sizeof(id));
    snprintf(srv, sizeof(srv), "%s.app." SW_DNS_SUFFIX ".", r->key);
    snprintf(refresh, sizeof(refresh), "%ums", (unsigned)c->cfg->proxy_refresh_ms);
    /* Slipway-Release: the upstream's name is <release>.<address>.ip.slipway.; its first label
     * is the release. */
    json_t *headers =
        json_pack("{s:{s:{s:[s]}, s:{s:[{s:s, s:s}]}}}", "response", "set", "Slipway-Release",
                  "{http.reverse_proxy.upstream.host}", "replace", "Slipway-Release",
                  "search_regexp", "^([^.]+)\\..*$", "replace", "$1");
    json_t *handler =
        json_pack("{s:s, s:{s:s, s:s, s:s, s:o, s:s}, s:{s:s, s:o}, s:o}", "handler",
                  "reverse_proxy", "dynamic_upstreams", "source", "srv", "name", srv, "refresh",
                  refresh, "resolver", resolver(c), "dial_timeout", "2s", "transport", "protocol",
                  "http", "resolver", resolver(c), "headers", headers);
    return json_pack("{s:s, s:[{s:[s]}], s:[o], s:b}", "@id", id, "match", "host", r->host,
                     "handle", handler, "terminal", 1);
}

/* Without it Caddy answers a host that no route matches with an empty 200, which a client
 * (or a health check) takes for an app that works. */
static json_t *fallback_json(void)
{
    return json_pack("{s:s, s:[{s:s, s:i, s:{s:[s]}, s:s}], s:b}", "@id", FALLBACK_ID, "handle",
                     "handler", "static_response", "status_code", 404, "headers", "Content-Type",
                     "text/plain; charset=utf-8", "body", "No app is served at this host.\n",
                     "terminal", 1);
}

/* The server without its routes. */
static json_t *server_frame(const caddy_t *c)
{
    json_t *listen = json_pack("[s]", c->cfg->proxy_http);
    json_t *auto_https;
    if (c->cfg->proxy_https[0]) {
        json_array_append_new(listen, json_string(c->cfg->proxy_https));
        /* Plain HTTP serves the apps too (and carries the release probe); no redirect. */
        auto_https = json_pack("{s:b}", "disable_redirects", 1);
    } else {
        auto_https = json_pack("{s:b}", "disable", 1);
    }
    return json_pack("{s:o, s:o}", "listen", listen, "automatic_https", auto_https);
}

static json_t *server_json(const caddy_t *c, const sw_routes_t *t)
{
    json_t *routes = json_array();
    for (size_t i = 0; i < t->n; i++)
        json_array_append_new(routes, route_json(c, &t->v[i]));
    json_array_append_new(routes, fallback_json());
    json_t *srv = server_frame(c);
    json_object_set_new(srv, "routes", routes);
    return srv;
}

/* apps.tls.automation: certificates from SLIPWAY_ACME_CA; NULL without it (Caddy's own). */
static json_t *tls_automation(const caddy_t *c)
{
    if (!c->cfg->acme_ca[0])
        return NULL;
    json_t *issuer = json_pack("{s:s, s:s}", "module", "acme", "ca", c->cfg->acme_ca);
    if (c->cfg->acme_email[0])
        json_object_set_new(issuer, "email", json_string(c->cfg->acme_email));
    if (c->cfg->acme_ca_root[0])
        json_object_set_new(issuer, "trusted_roots_pem_files",
                            json_pack("[s]", c->cfg->acme_ca_root));
    return json_pack("{s:[{s:[o]}]}", "policies", "issuers", issuer);
}

static uint16_t port_of(const char *hostport)
{
    char host[64];
    uint16_t port = 0;
    (void)sw_config_split_hostport(hostport, host, sizeof(host), &port);
    return port;
}

/* The whole config: actual with Slipway's parts set (every other part is kept). */
static json_t *full_config(const caddy_t *c, json_t *actual, const sw_routes_t *t)
{
    json_t *cfg = json_is_object(actual) ? json_deep_copy(actual) : json_object();
    json_t *apps = json_object_get(cfg, "apps");
    if (!json_is_object(apps))
        json_object_set_new(cfg, "apps", apps = json_object());
    json_t *http = json_object_get(apps, "http");
    if (!json_is_object(http))
        json_object_set_new(apps, "http", http = json_object());
    json_object_set_new(http, "http_port", json_integer(port_of(c->cfg->proxy_http)));
    if (c->cfg->proxy_https[0])
        json_object_set_new(http, "https_port", json_integer(port_of(c->cfg->proxy_https)));
    json_t *servers = json_object_get(http, "servers");
    if (!json_is_object(servers))
        json_object_set_new(http, "servers", servers = json_object());
    json_object_set_new(servers, SERVER, server_json(c, t));
    json_t *automation = tls_automation(c);
    if (automation) {
        json_t *tls = json_object_get(apps, "tls");
        if (!json_is_object(tls))
            json_object_set_new(apps, "tls", tls = json_object());
        json_object_set_new(tls, "automation", automation);
    }
    return cfg;
}

/* ---- comparing ---- */

static void op_add(caddy_t *c, const char *method, const char *path, json_t *body)
{
    op_t *o = sw_calloc(1, sizeof(*o));
    o->method = method;
    o->path = sw_strdup(path);
    o->body = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    op_t **tail = &c->ops;
    while (*tail)
        tail = &(*tail)->next;
    *tail = o;
}

static void ops_free(caddy_t *c)
{
    for (op_t *o = c->ops, *next; o; o = next) {
        next = o->next;
        free(o->path);
        free(o->body);
        free(o);
    }
    c->ops = NULL;
}

/* json_equal, with two absent values equal too. */
static bool same(json_t *a, json_t *b)
{
    return (!a && !b) || json_equal(a, b);
}

/* Whether the server's own settings (listeners, HTTPS) are as they should be, besides its
 * routes, and the ports and issuer around it: what full_config would set, compared without
 * building it (at 1,000 routes that copy and the routes built twice were most of a round). */
static bool frame_matches(const caddy_t *c, json_t *actual)
{
    json_t *apps = json_object_get(actual, "apps");
    json_t *http = json_object_get(apps, "http");
    json_t *srv = json_object_get(json_object_get(http, "servers"), SERVER);
    if (!json_is_object(srv) || !json_is_array(json_object_get(srv, "routes")))
        return false;
    json_t *frame = server_frame(c);
    json_t *automation = tls_automation(c);
    json_int_t https = port_of(c->cfg->proxy_https);
    bool ok =
        same(json_object_get(srv, "listen"), json_object_get(frame, "listen")) &&
        same(json_object_get(srv, "automatic_https"), json_object_get(frame, "automatic_https")) &&
        json_integer_value(json_object_get(http, "http_port")) == port_of(c->cfg->proxy_http) &&
        (!c->cfg->proxy_https[0] ||
         json_integer_value(json_object_get(http, "https_port")) == https) &&
        (!automation ||
         same(json_object_get(json_object_get(apps, "tls"), "automation"), automation));
    json_decref(frame);
    json_decref(automation);
    return ok;
}

/* Whether the table asks for id what the last round applied (want NULL: no route), so
 * that a change there puts back what the proxy drifted from. */
static bool as_applied(const caddy_t *c, const char *id, json_t *want)
{
    return c->applied && same(json_object_get(c->applied, id), want);
}

/* Plans the round: the route operations that turn actual into what t asks for, or one
 * /load; counts as repaired the routes put back to what the last round applied. */
static void plan(caddy_t *c, json_t *actual, const sw_routes_t *t)
{
    json_decref(c->planned);
    c->planned = json_object();
    unsigned kept = 0;
    for (size_t k = 0; k < t->n; k++) {
        char id[SW_ROUTE_HOST_MAX + 32];
        route_id(t->v[k].host, id, sizeof(id));
        json_t *want = route_json(c, &t->v[k]);
        kept += as_applied(c, id, want);
        json_object_set_new(c->planned, id, want);
    }
    json_t *fallback = fallback_json();
    kept += as_applied(c, FALLBACK_ID, fallback);
    json_object_set_new(c->planned, FALLBACK_ID, fallback);
    if (!frame_matches(c, actual)) {
        /* Caddy restarted empty, or its listeners edited: every route goes back */
        c->changed = (unsigned)t->n + 1; /* and the fallback */
        c->repaired = c->applied ? (kept ? kept : 1) : 0;
        op_add(c, "POST", "/load", full_config(c, actual, t));
        return;
    }
    json_t *have = json_object_get(
        json_object_get(
            json_object_get(json_object_get(json_object_get(actual, "apps"), "http"), "servers"),
            SERVER),
        "routes");
    json_t *by_id = json_object();
    size_t i;
    json_t *r;
    bool foreign = false;
    long fb_at = -1; /* where the fallback is */
    json_array_foreach(have, i, r)
    {
        const char *id = json_string_value(json_object_get(r, "@id"));
        if (id && strcmp(id, FALLBACK_ID) == 0 && fb_at < 0)
            fb_at = (long)i;
        else if (!id || strncmp(id, ROUTE_PREFIX, strlen(ROUTE_PREFIX)) != 0 ||
                 json_object_get(by_id, id))
            foreign = true; /* a route Slipway did not write, or a duplicate */
        else
            json_object_set(by_id, id, r);
    }
    unsigned n = 0;
    size_t routes_len = json_array_size(have);
    bool ordered = fb_at < 0 || (size_t)fb_at + 1 == routes_len; /* else it hides routes */
    if (fb_at >= 0 && !json_equal(json_array_get(have, (size_t)fb_at), fallback)) {
        op_add(c, "PATCH", "/id/" FALLBACK_ID, json_incref(fallback));
        c->repaired += as_applied(c, FALLBACK_ID, fallback);
        n++;
    }
    for (size_t k = 0; k < t->n; k++) {
        char id[SW_ROUTE_HOST_MAX + 32], path[SW_ROUTE_HOST_MAX + 64];
        route_id(t->v[k].host, id, sizeof(id));
        json_t *want = json_incref(json_object_get(c->planned, id));
        json_t *got = json_object_get(by_id, id);
        if (!(got && json_equal(got, want)))
            c->repaired += as_applied(c, id, want);
        if (got && json_equal(got, want)) {
            json_decref(want);
        } else if (got) {
            snprintf(path, sizeof(path), "/id/%s", id);
            op_add(c, "PATCH", path, want);
            n++;
        } else if (t->v[k].host[0] == '*' && fb_at >= 0) {
            /* wildcards match last, before the fallback */
            snprintf(path, sizeof(path), SERVER_PATH "/routes/%ld", fb_at++);
            op_add(c, "PUT", path, want);
            routes_len++;
            n++;
        } else if (t->v[k].host[0] == '*' || routes_len == 0) {
            op_add(c, "POST", SERVER_PATH "/routes", want);
            routes_len++;
            n++;
        } else {
            /* Exact hosts match first. Caddy inserts at an index only within the array. */
            op_add(c, "PUT", SERVER_PATH "/routes/0", want);
            fb_at += fb_at >= 0;
            routes_len++;
            n++;
        }
        json_object_del(by_id, id);
    }
    const char *id;
    json_t *unused;
    json_object_foreach(by_id, id, unused)
    {
        char path[SW_ROUTE_HOST_MAX + 64];
        snprintf(path, sizeof(path), "/id/%s", id);
        op_add(c, "DELETE", path, NULL);
        c->repaired += as_applied(c, id, NULL); /* one of ours the last round did not write */
        n++;
    }
    json_decref(by_id);
    if (fb_at < 0) {
        op_add(c, "POST", SERVER_PATH "/routes", json_incref(fallback));
        c->repaired += as_applied(c, FALLBACK_ID, fallback);
        n++;
    }
    /* Out of order (a wildcard ahead of an exact host), foreign routes, or too many changes
     * for one reload each: the whole config in one load instead. */
    const char *prev = NULL;
    json_array_foreach(have, i, r)
    {
        json_t *hosts = json_object_get(json_array_get(json_object_get(r, "match"), 0), "host");
        const char *h = json_string_value(json_array_get(hosts, 0));
        if (h && prev && prev[0] == '*' && h[0] != '*')
            ordered = false;
        prev = h ? h : prev;
    }
    if (foreign || !ordered || n > MAX_ROUTE_OPS) {
        ops_free(c);
        op_add(c, "POST", "/load", full_config(c, actual, t));
    }
    c->changed = n ? n : (foreign || !ordered ? 1 : 0);
    if ((foreign || !ordered) && c->applied && !c->repaired)
        c->repaired = 1;
}

/* ---- the round ---- */

static void destroy(caddy_t *c)
{
    json_decref(c->planned);
    json_decref(c->applied);
    free(c);
}

static void round_end(caddy_t *c, int status, const char *error)
{
    ops_free(c);
    if (status == 0) {
        json_decref(c->applied);
        c->applied = c->planned;
    } else {
        json_decref(c->planned);
    }
    c->planned = NULL;
    sw_driver_cb cb = c->cb;
    c->cb = NULL;
    c->table = NULL;
    if (cb)
        cb(status, status == 0 ? c->changed : 0, status == 0 ? c->repaired : 0, error, c->payload);
    if (c->freeing && !c->req)
        destroy(c);
}

static int admin(caddy_t *c, const char *method, const char *path, const char *body, sw_httpc_cb cb)
{
    const char *headers[3] = {NULL}, **h = headers;
    if (body)
        *h++ = "Content-Type: application/json";
    if (c->admin_unix[0])
        *h++ = "Host: "; /* what Caddy's admin API allows on a unix socket */
    sw_httpc_req_t req = {
        .method = method,
        .host = c->admin_unix[0] ? "localhost" : c->admin_host,
        .port = c->admin_unix[0] ? 80 : c->admin_port,
        .unix_path = c->admin_unix[0] ? c->admin_unix : NULL,
        .path = path,
        .headers = headers[0] ? headers : NULL,
        .body = body,
        .body_len = body ? strlen(body) : 0,
        .timeout_ms = ADMIN_TIMEOUT,
        .max_body = MAX_CONFIG,
    };
    return sw_httpc_request(c->loop, &req, cb, c, &c->req);
}

/* A one-line reason from an admin API answer: its {"error": ...}, or the status. */
static void admin_error(char *out, size_t len, const char *what, int status, int http_status,
                        const char *body, size_t blen)
{
    if (status != 0) {
        snprintf(out, len, "%s: the Caddy admin API did not answer: %s", what,
                 body && *body ? body : sw_strerror(status));
        return;
    }
    json_t *j = json_loadb(body ? body : "", blen, 0, NULL);
    const char *e = json_string_value(json_object_get(j, "error"));
    snprintf(out, len, "%s: Caddy answered %d: %.300s", what, http_status, e ? e : "");
    json_decref(j);
}

static void on_op(int status, int http_status, const char *body, size_t len, void *payload)
{
    caddy_t *c = payload;
    c->req = NULL;
    op_t *o = c->ops;
    if (c->freeing || status != 0 || http_status / 100 != 2) {
        char why[512];
        if (c->freeing)
            snprintf(why, sizeof(why), "stopped");
        else
            admin_error(why, sizeof(why), o->path, status, http_status, body, len);
        round_end(c, c->freeing ? -ECANCELED : -EPROTO, why);
        return;
    }
    c->ops = o->next;
    free(o->path);
    free(o->body);
    free(o);
    round_next(c);
}

static void round_next(caddy_t *c)
{
    if (!c->ops) {
        round_end(c, 0, NULL);
        return;
    }
    op_t *o = c->ops;
    int r = admin(c, o->method, o->path, o->body, on_op);
    if (r != 0) {
        char why[160];
        snprintf(why, sizeof(why), "the Caddy admin API: %s", sw_strerror(r));
        round_end(c, r, why);
    }
}

static void on_config(int status, int http_status, const char *body, size_t len, void *payload)
{
    caddy_t *c = payload;
    c->req = NULL;
    if (c->freeing || status != 0 || http_status != 200) {
        char why[512];
        if (c->freeing)
            snprintf(why, sizeof(why), "stopped");
        else
            admin_error(why, sizeof(why), "reading the config", status, http_status, body, len);
        round_end(c, c->freeing ? -ECANCELED : -EPROTO, why);
        return;
    }
    json_error_t jerr;
    json_t *actual = json_loadb(body, len, JSON_DECODE_ANY, &jerr);
    if (!actual) {
        char why[256];
        snprintf(why, sizeof(why), "Caddy's config is not JSON: %s", jerr.text);
        round_end(c, -EPROTO, why);
        return;
    }
    plan(c, actual, c->table);
    json_decref(actual);
    round_next(c);
}

int sw_caddy_plan(const sw_config_t *cfg, const char *dns_address, const char *body, size_t len,
                  const sw_routes_t *t, sw_buf_t *out)
{
    caddy_t c = {.cfg = cfg};
    snprintf(c.dns, sizeof(c.dns), "udp/%s", dns_address);
    json_t *actual = json_loadb(body, len, JSON_DECODE_ANY, NULL);
    if (!actual)
        return -EPROTO;
    plan(&c, actual, t);
    json_decref(actual);
    for (op_t *o = c.ops; o; o = o->next)
        sw_buf_printf(out, "%s %s %s\n", o->method, o->path, o->body ? o->body : "");
    ops_free(&c);
    json_decref(c.planned); /* what a driver would keep as applied: nothing here */
    return 0;
}

static void caddy_apply(sw_proxy_driver_t *d, const sw_routes_t *t, sw_driver_cb cb, void *payload)
{
    caddy_t *c = (caddy_t *)d;
    c->table = t;
    c->cb = cb;
    c->payload = payload;
    c->changed = c->repaired = 0;
    int r = admin(c, "GET", "/config/", NULL, on_config);
    if (r != 0) {
        c->cb = NULL;
        cb(r, 0, 0, "the Caddy admin API request could not start", payload);
    }
}

static void caddy_free(sw_proxy_driver_t *d)
{
    caddy_t *c = (caddy_t *)d;
    c->freeing = true;
    if (c->req)
        sw_httpc_cancel(c->req); /* the callback frees */
    else
        destroy(c);
}

static const sw_proxy_driver_ops_t caddy_ops = {
    .name = "caddy",
    .switch_in_dns = true,
    .apply = caddy_apply,
    .free = caddy_free,
};

/* Where the admin API is: unix:///run/caddy/admin.sock (or Caddy's own spelling,
 * unix//run/caddy/admin.sock), or http://host:port. */
static int admin_target(caddy_t *c, const char *url, char *why, size_t why_len)
{
    const char *sock = strncmp(url, "unix://", 7) == 0 ? url + 7
                       : strncmp(url, "unix/", 5) == 0 ? url + 5
                                                       : NULL;
    if (sock) {
        if (sock[0] != '/' || strlen(sock) >= sizeof(c->admin_unix)) {
            snprintf(why, why_len,
                     "SLIPWAY_CADDY_ADMIN %s: the socket needs an absolute path of at most %zu "
                     "bytes",
                     url, sizeof(c->admin_unix) - 1);
            return -EINVAL;
        }
        snprintf(c->admin_unix, sizeof(c->admin_unix), "%s", sock);
        return 0;
    }
    if (strncmp(url, "http://", 7) != 0) {
        snprintf(why, why_len, "SLIPWAY_CADDY_ADMIN must be an http:// or unix:// URL, not %s",
                 url);
        return -EINVAL;
    }
    char hostport[300];
    snprintf(hostport, sizeof(hostport), "%s", url + 7);
    hostport[strcspn(hostport, "/")] = '\0';
    if (sw_config_split_hostport(hostport, c->admin_host, sizeof(c->admin_host), &c->admin_port) !=
            0 ||
        !c->admin_host[0] || c->admin_port == 0) {
        snprintf(why, why_len, "SLIPWAY_CADDY_ADMIN %s has no host:port", url);
        return -EINVAL;
    }
    return 0;
}

int sw_proxy_caddy_new(sw_proxy_driver_t **out, const sw_driver_env_t *env, char *why,
                       size_t why_len)
{
    caddy_t *c = sw_calloc(1, sizeof(*c));
    int r = admin_target(c, env->cfg->caddy_admin, why, why_len);
    if (r != 0) {
        free(c);
        return r;
    }
    c->base.ops = &caddy_ops;
    c->loop = env->loop;
    c->cfg = env->cfg;
    snprintf(c->dns, sizeof(c->dns), "udp/%s", env->dns_address);
    *out = &c->base;
    return 0;
}
