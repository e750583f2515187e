/* The Caddy driver: Caddy's admin API (SLIPWAY_CADDY_ADMIN), through our HTTP client.
 *
 * Slipway owns one server in Caddy's config, apps.http.servers.slipway, listening on
 * SLIPWAY_PROXY_HTTP and SLIPWAY_PROXY_HTTPS, with one route, "slipway-apps", for every host.
 * Its reverse_proxy asks slipwayd's DNS responder for the upstreams of the request's own host
 * (dynamic SRV upstreams, <host>.host.slipway.), so neither a release switch nor a domain
 * added or removed changes the configuration at all: Caddy 2.6 closes every proxied
 * WebSocket on each config load, and at 1,000 routes one load took 140-330 ms. A host no
 * route takes is answered by the edge (edge.c), which is also the static upstream when the
 * lookup itself fails. With an HTTPS listener, certificates are on demand: Caddy orders one
 * at a name's first handshake once the edge's /ask said the name is ours (the domain's TLS
 * observer makes that first handshake as soon as the domain is routed). Why an order failed
 * is only in Caddy's log, so a log of Slipway's own in Caddy's config sends those lines, as
 * UDP datagrams, to the DNS responder's address (sw_caddy_log_failure reads them).
 *
 * So the config Slipway wants does not depend on the table. apply() reads Caddy's config,
 * compares it with that, and repairs what drifted: the routes alone when only they differ,
 * else one /load of the whole config with every other part of it kept (a Caddy restarted
 * empty). */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "slipway/client.h"
#include "slipway/log.h"

#define SERVER        "slipway"
#define ROUTE_ID      "slipway-apps"
#define TLS_LOG       "slipway-tls"
#define SERVER_PATH   "/config/apps/http/servers/" SERVER
#define MAX_CONFIG    (64u << 20)
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
    char edge[80];        /* the edge's "host:port" */
    sw_httpc_t *req;
    /* the round in flight */
    op_t *ops;
    unsigned changed, repaired;
    /* A round succeeded before: what differs now drifted (Caddy restarted, edited by hand). */
    bool applied;
    sw_driver_cb cb;
    void *payload;
    bool freeing;
} caddy_t;

static void round_next(caddy_t *c);

/* ---- what the config should be ---- */

static json_t *resolver(const caddy_t *c)
{
    return json_pack("{s:[s]}", "addresses", c->dns);
}

static json_t *route_json(const caddy_t *c)
{
    char refresh[24];
    snprintf(refresh, sizeof(refresh), "%ums", (unsigned)c->cfg->proxy_refresh_ms);
    /* Slipway-Release: the upstream's name is <release>.<address>.ip.slipway.; its first label
     * is the release ("edge" for the edge's answers). Always set: an app cannot send its own. */
    json_t *headers =
        json_pack("{s:{s:{s:[s]}, s:{s:[{s:s, s:s}]}}}", "response", "set", "Slipway-Release",
                  "{http.reverse_proxy.upstream.host}", "replace", "Slipway-Release",
                  "search_regexp", "^([^.]+)\\..*$", "replace", "$1");
    json_t *handler =
        json_pack("{s:s, s:{s:s, s:s, s:s, s:o, s:s}, s:[{s:s}], s:{s:s, s:o}, s:o}", "handler",
                  "reverse_proxy", "dynamic_upstreams", "source", "srv", "name",
                  "{http.request.host}.host." SW_DNS_SUFFIX ".", "refresh", refresh, "resolver",
                  resolver(c), "dial_timeout", "2s", "upstreams", "dial", c->edge, "transport",
                  "protocol", "http", "resolver", resolver(c), "headers", headers);
    return json_pack("{s:s, s:[o], s:b}", "@id", ROUTE_ID, "handle", handler, "terminal", 1);
}

static json_t *routes_json(const caddy_t *c)
{
    return json_pack("[o]", route_json(c));
}

/* The server without its routes. */
static json_t *server_frame(const caddy_t *c)
{
    json_t *listen = json_pack("[s]", c->cfg->proxy_http);
    json_t *srv;
    if (c->cfg->proxy_https[0]) {
        json_array_append_new(listen, json_string(c->cfg->proxy_https));
        /* Plain HTTP serves the apps too (and carries the release probe): no redirect. The
         * routes name no host, so TLS is switched on by a policy of our own. */
        srv = json_pack("{s:o, s:{s:b}, s:[{}]}", "listen", listen, "automatic_https",
                        "disable_redirects", 1, "tls_connection_policies");
    } else {
        srv = json_pack("{s:o, s:{s:b}}", "listen", listen, "automatic_https", "disable", 1);
    }
    return srv;
}

static json_t *server_json(const caddy_t *c)
{
    json_t *srv = server_frame(c);
    json_object_set_new(srv, "routes", routes_json(c));
    return srv;
}

/* apps.tls.automation with an HTTPS listener: on-demand certificates for the names the edge
 * says are ours, from SLIPWAY_ACME_CA (else Caddy's own issuers). NULL without HTTPS. */
static json_t *tls_automation(const caddy_t *c)
{
    if (!c->cfg->proxy_https[0])
        return NULL;
    json_t *policy = json_pack("{s:b}", "on_demand", 1);
    if (c->cfg->acme_ca[0]) {
        json_t *issuer = json_pack("{s:s, s:s}", "module", "acme", "ca", c->cfg->acme_ca);
        if (c->cfg->acme_email[0])
            json_object_set_new(issuer, "email", json_string(c->cfg->acme_email));
        if (c->cfg->acme_ca_root[0])
            json_object_set_new(issuer, "trusted_roots_pem_files",
                                json_pack("[s]", c->cfg->acme_ca_root));
        json_object_set_new(policy, "issuers", json_pack("[o]", issuer));
    }
    char ask[128];
    snprintf(ask, sizeof(ask), "http://%s/ask", c->edge);
    return json_pack("{s:[o], s:{s:s}}", "policies", policy, "on_demand", "ask", ask);
}

/* logging.logs.slipway-tls with an HTTPS listener: Caddy's "could not get certificate"
 * lines, to slipwayd. NULL without HTTPS. */
static json_t *tls_log(const caddy_t *c)
{
    if (!c->cfg->proxy_https[0])
        return NULL;
    return json_pack("{s:{s:s, s:s}, s:{s:s}, s:s, s:[s]}", "writer", "output", "net", "address",
                     c->dns /* the DNS responder's socket reads them */, "encoder", "format",
                     "json", "level", "ERROR", "include", "tls.obtain");
}

static uint16_t port_of(const char *hostport)
{
    char host[64];
    uint16_t port = 0;
    (void)sw_config_split_hostport(hostport, host, sizeof(host), &port);
    return port;
}

/* The whole config: actual with Slipway's parts set (every other part is kept). */
static json_t *full_config(const caddy_t *c, json_t *actual)
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
    json_object_set_new(servers, SERVER, server_json(c));
    json_t *automation = tls_automation(c);
    if (automation) {
        json_t *tls = json_object_get(apps, "tls");
        if (!json_is_object(tls))
            json_object_set_new(apps, "tls", tls = json_object());
        json_object_set_new(tls, "automation", automation);
    }
    json_t *log = tls_log(c);
    json_t *logging = json_object_get(cfg, "logging");
    if (log) {
        if (!json_is_object(logging))
            json_object_set_new(cfg, "logging", logging = json_object());
        json_t *logs = json_object_get(logging, "logs");
        if (!json_is_object(logs))
            json_object_set_new(logging, "logs", logs = json_object());
        json_object_set_new(logs, TLS_LOG, log);
    } else {
        json_object_del(json_object_get(logging, "logs"), TLS_LOG); /* HTTPS switched off */
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
 * routes, and the ports and issuer around it: what full_config would set. */
static bool frame_matches(const caddy_t *c, json_t *actual)
{
    json_t *apps = json_object_get(actual, "apps");
    json_t *http = json_object_get(apps, "http");
    json_t *srv = json_object_get(json_object_get(http, "servers"), SERVER);
    if (!json_is_object(srv) || !json_is_array(json_object_get(srv, "routes")))
        return false;
    json_t *frame = server_frame(c);
    json_t *automation = tls_automation(c);
    json_t *log = tls_log(c);
    bool ok = json_object_size(srv) == json_object_size(frame) + 1; /* and the routes */
    const char *key;
    json_t *want;
    json_object_foreach(frame, key, want) ok = ok && same(json_object_get(srv, key), want);
    ok = ok &&
         json_integer_value(json_object_get(http, "http_port")) == port_of(c->cfg->proxy_http) &&
         (!c->cfg->proxy_https[0] || json_integer_value(json_object_get(http, "https_port")) ==
                                         port_of(c->cfg->proxy_https)) &&
         (!automation ||
          same(json_object_get(json_object_get(apps, "tls"), "automation"), automation)) &&
         same(json_object_get(json_object_get(json_object_get(actual, "logging"), "logs"), TLS_LOG),
              log); /* and none without HTTPS */
    json_decref(frame);
    json_decref(automation);
    json_decref(log);
    return ok;
}

/* Plans the round: nothing when Caddy serves what Slipway wants, the routes when only they
 * differ, else one /load. */
static void plan(caddy_t *c, json_t *actual)
{
    if (!frame_matches(c, actual)) {
        op_add(c, "POST", "/load", full_config(c, actual));
    } else {
        json_t *routes = routes_json(c);
        json_t *have = json_object_get(
            json_object_get(
                json_object_get(json_object_get(json_object_get(actual, "apps"), "http"),
                                "servers"),
                SERVER),
            "routes");
        if (json_equal(have, routes))
            json_decref(routes);
        else
            op_add(c, "PATCH", SERVER_PATH "/routes", routes);
    }
    c->changed = c->ops ? 1 : 0;
    c->repaired = c->ops && c->applied ? 1 : 0;
}

/* ---- the round ---- */

static void destroy(caddy_t *c)
{
    free(c);
}

static void round_end(caddy_t *c, int status, const char *error)
{
    ops_free(c);
    c->applied = c->applied || status == 0;
    sw_driver_cb cb = c->cb;
    c->cb = NULL;
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
    plan(c, actual);
    json_decref(actual);
    round_next(c);
}

int sw_caddy_plan(const sw_config_t *cfg, const char *dns_address, const char *body, size_t len,
                  sw_buf_t *out)
{
    caddy_t c = {.cfg = cfg};
    snprintf(c.dns, sizeof(c.dns), "udp/%s", dns_address);
    snprintf(c.edge, sizeof(c.edge), "%s", dns_address);
    json_t *actual = json_loadb(body, len, JSON_DECODE_ANY, NULL);
    if (!actual)
        return -EPROTO;
    plan(&c, actual);
    json_decref(actual);
    for (op_t *o = c.ops; o; o = o->next)
        sw_buf_printf(out, "%s %s %s\n", o->method, o->path, o->body ? o->body : "");
    ops_free(&c);
    return 0;
}

static void caddy_apply(sw_proxy_driver_t *d, const sw_routes_t *t, sw_driver_cb cb, void *payload)
{
    caddy_t *c = (caddy_t *)d;
    (void)t; /* the config does not depend on it: the DNS responder and the edge answer it */
    c->cb = cb;
    c->payload = payload;
    c->changed = c->repaired = 0;
    int r = admin(c, "GET", "/config/", NULL, on_config);
    if (r != 0) {
        c->cb = NULL;
        cb(r, 0, 0, "the Caddy admin API request could not start", payload);
    }
}

bool sw_caddy_log_failure(const char *line, size_t len, char *host, size_t host_len, char *error,
                          size_t error_len)
{
    json_t *j = json_loadb(line, len, JSON_DISABLE_EOF_CHECK, NULL);
    const char *logger = json_string_value(json_object_get(j, "logger"));
    const char *msg = json_string_value(json_object_get(j, "msg"));
    const char *id = json_string_value(json_object_get(j, "identifier"));
    const char *why = json_string_value(json_object_get(j, "error"));
    bool ok = logger && strcmp(logger, "tls.obtain") == 0 && msg &&
              strcmp(msg, "could not get certificate from issuer") == 0 && id && why &&
              strlen(id) < host_len;
    if (ok) {
        snprintf(host, host_len, "%s", id);
        snprintf(error, error_len, "%s", why);
    }
    json_decref(j);
    return ok;
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
    .table_in_dns = true,
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
    snprintf(c->edge, sizeof(c->edge), "%s", env->edge_address);
    *out = &c->base;
    return 0;
}
