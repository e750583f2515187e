/* The edge: what answers, over TCP on the DNS responder's address, where no app does.
 *
 * Caddy's one route takes every host and asks the DNS responder for its upstreams; a host no
 * route takes, or whose app has no instance up, is given this server instead (dns.c). It says
 * which, in a status, a line of text and Slipway-Edge (Caddy adds Slipway-Release: edge, the
 * SRV target's first label, which no deployment id can equal).
 *
 * Caddy's on-demand TLS asks here too, GET /ask?domain=<name>, before it orders a
 * certificate for a name a client sent in its handshake: 200 only for a name a route takes,
 * so nobody can have certificates ordered for names that are not ours. Under a wildcard
 * domain any name would be ours, so each wildcard has a budget of new names an hour: a
 * stranger's handshakes for random names must not spend the CA's rate limits for the domain
 * (Let's Encrypt allows 50 certificates a week per registered domain). Caddy asks directly;
 * a request that came through Caddy (it carries X-Forwarded-For) is never taken for that. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "slipway/log.h"
#include "slipway/ratelimit.h"
#include "slipway/server.h"

/* Certificates asked for under one wildcard domain: a burst of 20, then 20 an hour. */
#define WILD_NAMES_PER_HOUR 20
#define WILD_DOMAINS_MAX    4096

struct sw_edge {
    uv_loop_t *loop;
    sw_http_server_t *http;
    sw_ratelimit_t *wild_names; /* by wildcard domain */
    const sw_routes_t *routes;
    char address[80];
    void (*on_closed)(void *payload);
    void *closed_payload;
};

/* A request's Host without its port (and the brackets of an IPv6 literal kept). */
static void host_of(const sw_http_req_t *req, char *out, size_t len)
{
    sw_iov_t h = sw_http_req_header(req, "Host");
    size_t n = h.base ? h.len : 0;
    if (n && h.base[0] != '[') {
        const char *colon = memchr(h.base, ':', n);
        if (colon)
            n = (size_t)(colon - h.base);
    }
    snprintf(out, len, "%.*s", (int)SW_MIN(n, len - 1), n ? h.base : "");
}

static void answer(sw_http_req_t *req, int status, const char *mark, const char *text)
{
    sw_http_add_header(req, "Slipway-Edge", mark);
    sw_http_add_header(req, "Cache-Control", "no-store");
    sw_http_respond(req, status, "text/plain; charset=utf-8", text, strlen(text));
}

static void on_request(sw_http_req_t *req, void *payload)
{
    sw_edge_t *e = payload;
    bool direct = !sw_http_req_header(req, "X-Forwarded-For").base;
    if (direct && req->path.len == 4 && memcmp(req->path.base, "/ask", 4) == 0) {
        const char *domain = sw_http_req_query(req, "domain");
        const sw_route_t *r = domain ? sw_routes_find_host(e->routes, domain) : NULL;
        if (r && r->host[0] == '*') {
            sw_ratelimit_result_t rl;
            sw_ratelimit_take(e->wild_names, r->host, 1, uv_now(e->loop), &rl);
            if (!rl.allowed) {
                answer(req, 429, "ask", "too many new names under this wildcard domain\n");
                return;
            }
            if (rl.remaining == 0) /* said once per emptied budget, not per refusal */
                sw_log_kv(SW_LOG_WARN, NULL,
                          "certificates for new names under a wildcard domain are refused for "
                          "now: its budget of new names an hour is spent",
                          "domain", r->host, NULL);
        }
        answer(req, r ? 200 : 404, "ask", r ? "yes\n" : "no\n");
        return;
    }
    char host[SW_ROUTE_HOST_MAX + 2];
    host_of(req, host, sizeof(host));
    const sw_route_t *r = sw_routes_find_host(e->routes, host);
    if (r && !r->release[0])
        answer(req, 503, "no-release", "This app has no release serving yet.\n");
    else if (r)
        answer(req, 503, "no-instance", "No instance of this app is up right now.\n");
    else
        answer(req, 404, "no-app", "No app is served at this host.\n");
}

static void on_drained(sw_http_server_t *server, void *payload)
{
    sw_edge_t *e = payload;
    void (*cb)(void *) = e->on_closed;
    void *cb_payload = e->closed_payload;
    sw_http_server_free(server);
    sw_ratelimit_free(e->wild_names);
    free(e);
    if (cb)
        cb(cb_payload);
}

int sw_edge_new(sw_edge_t **out, uv_loop_t *loop, const char *listen, char *why, size_t why_len)
{
    sw_edge_t *e = sw_calloc(1, sizeof(*e));
    e->loop = loop;
    e->wild_names =
        sw_ratelimit_new(WILD_NAMES_PER_HOUR, 3600000, WILD_NAMES_PER_HOUR, WILD_DOMAINS_MAX);
    /* Small answers to Caddy alone: every size and time is short. */
    sw_http_server_opts_t o = {
        .max_header_bytes = 16384,
        .max_headers = 128,
        .max_body_bytes = 1 << 20,
        .max_connections = 1024,
        .max_pipelined = 8,
        .header_timeout_ms = 10000,
        .body_timeout_ms = 10000,
        .idle_timeout_ms = 30000,
        .drain_timeout_ms = 1000,
        .on_request = on_request,
        .on_drained = on_drained,
        .payload = e,
    };
    sw_http_server_new(&e->http, loop, &o);
    int r = sw_http_server_listen(e->http, listen);
    if (r != 0) {
        snprintf(why, why_len, "the proxy's edge cannot listen on TCP %s: %s", listen,
                 sw_strerror(r));
        sw_edge_close(e, NULL, NULL); /* its handles close on the loop */
        return r;
    }
    sw_http_server_address(e->http, 0, e->address, sizeof(e->address));
    *out = e;
    return 0;
}

void sw_edge_set_routes(sw_edge_t *e, const sw_routes_t *t)
{
    e->routes = t;
}

const char *sw_edge_address(const sw_edge_t *e)
{
    return e->address;
}

void sw_edge_close(sw_edge_t *e, void (*on_closed)(void *payload), void *payload)
{
    e->on_closed = on_closed;
    e->closed_payload = payload;
    e->routes = NULL;
    sw_http_server_drain(e->http);
}
