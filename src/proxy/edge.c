/* The edge: what answers, over TCP on the DNS responder's address, where no app does.
 *
 * Caddy's one route takes every host and asks the DNS responder for its upstreams; a host no
 * route takes, or whose app serves no release yet, is given this server instead (dns.c). It
 * says which, in a status and a line of text, and marks the answer with Slipway-Edge so that
 * Caddy adds no Slipway-Release to it.
 *
 * Caddy's on-demand TLS asks here too, GET /ask?domain=<name>, before it orders a
 * certificate for a name a client sent in its handshake: 200 only for a name a route takes,
 * so nobody can have certificates ordered for names that are not ours. Caddy asks directly;
 * a request that came through Caddy (it carries X-Forwarded-For) is never taken for that. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "slipway/server.h"

struct sw_edge {
    sw_http_server_t *http;
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
        bool ours = domain && sw_routes_find_host(e->routes, domain);
        answer(req, ours ? 200 : 404, "ask", ours ? "yes\n" : "no\n");
        return;
    }
    char host[SW_ROUTE_HOST_MAX + 2];
    host_of(req, host, sizeof(host));
    if (sw_routes_find_host(e->routes, host))
        answer(req, 503, "no-release", "This app has no release serving yet.\n");
    else
        answer(req, 404, "no-app", "No app is served at this host.\n");
}

static void on_drained(sw_http_server_t *server, void *payload)
{
    sw_edge_t *e = payload;
    void (*cb)(void *) = e->on_closed;
    void *cb_payload = e->closed_payload;
    sw_http_server_free(server);
    free(e);
    if (cb)
        cb(cb_payload);
}

int sw_edge_new(sw_edge_t **out, uv_loop_t *loop, const char *listen, char *why, size_t why_len)
{
    sw_edge_t *e = sw_calloc(1, sizeof(*e));
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
