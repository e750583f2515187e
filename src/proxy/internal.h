/* What the proxy module's files share: the routing table, the driver interface, the DNS
 * responder Caddy's dynamic upstreams ask, and the probe through the proxy. */
#ifndef SLIPWAY_PROXY_INTERNAL_H
#define SLIPWAY_PROXY_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "slipway/buf.h"
#include "slipway/common.h"
#include "slipway/config.h"
#include "slipway/pg.h"
#include "slipway/proxy.h"

/* The PostgreSQL channel that says "the routing table changed" (sql/012_routes.sql). */
#define SW_PROXY_CHANNEL "slipway_routes"
/* Upper bounds on what one route carries. */
#define SW_ROUTE_MAX_ENDPOINTS 32
#define SW_ROUTE_HOST_MAX      253

/* ---- the routing table (routes.c) ---- */

/* One hostname to the endpoints of one release. Every route of one app shares its key (the
 * app id), which names the app's upstream set in the DNS responder. */
typedef struct {
    char host[SW_ROUTE_HOST_MAX + 1];
    char key[40];     /* the app id; "api" for the public URL's host */
    char release[40]; /* the deployment serving; "" when none does */
    char *endpoints[SW_ROUTE_MAX_ENDPOINTS];
    size_t nendpoints;
} sw_route_t;

typedef struct {
    sw_route_t *v; /* sorted by host; exact hosts before wildcards (see sw_routes_sort) */
    size_t n;
} sw_routes_t;

/* Reads the table: domains and generated hostnames, each with its app's active release and
 * endpoints, and the public URL's host with the api nodes. cb gets status 0 and the table
 * (the callee owns it), or a negative code and a reason. */
typedef void (*sw_routes_cb)(int status, sw_routes_t *t, const char *error, void *payload);
int sw_routes_load(sw_pg_pool_t *pg, const sw_config_t *cfg, sw_routes_cb cb, void *payload);
/* Sets key's release and endpoints in every route of that key. */
void sw_routes_override(sw_routes_t *t, const char *key, const char *release,
                        const char *const *endpoints, size_t n);
/* The first route of key, or NULL. */
const sw_route_t *sw_routes_find_key(const sw_routes_t *t, const char *key);
/* The route a request's host takes: the exact hostname, else a wildcard over its first label
 * ("*.example.com" for "a.example.com"), whatever the case. NULL: none. */
const sw_route_t *sw_routes_find_host(const sw_routes_t *t, const char *host);
/* Exact hosts first (sorted), then wildcards: a proxy that matches in order picks the most
 * specific. */
void sw_routes_sort(sw_routes_t *t);
void sw_routes_free(sw_routes_t *t);
/* Whether host is a hostname the table may hold (labels of [a-z0-9-], or a leading "*."). */
bool sw_routes_host_ok(const char *host);

/* ---- drivers ---- */

typedef struct sw_proxy_driver sw_proxy_driver_t;

/* status 0 with how many routes had to be changed (0: the proxy already served the table)
 * and, of those, how many were repaired: put back to what the driver's last successful
 * apply left the proxy serving, where the table asked for nothing new (the proxy had
 * drifted: restarted empty, edited by hand). Or a negative code with a reason. */
typedef void (*sw_driver_cb)(int status, unsigned changed, unsigned repaired, const char *error,
                             void *payload);

typedef struct {
    const char *name;
    /* The proxy's config does not depend on the table: a release switch, or a hostname added
     * or removed, is only what the DNS responder and the edge answer (caddy). A publish is
     * live as soon as the table in memory says so, and the config is compared for drift. */
    bool table_in_dns;
    /* Makes the proxy serve exactly t; compares first, so an unchanged proxy is not touched.
     * One call at a time. t stays valid until cb. */
    void (*apply)(sw_proxy_driver_t *d, const sw_routes_t *t, sw_driver_cb cb, void *payload);
    /* Called once nothing is in flight. */
    void (*free)(sw_proxy_driver_t *d);
} sw_proxy_driver_ops_t;

struct sw_proxy_driver {
    const sw_proxy_driver_ops_t *ops;
};

typedef struct {
    uv_loop_t *loop;
    const sw_config_t *cfg;
    const char *dns_address;  /* the DNS responder's bound "host:port" (caddy) */
    const char *edge_address; /* the edge's (caddy) */
} sw_driver_env_t;

int sw_proxy_none_new(sw_proxy_driver_t **out, const sw_driver_env_t *env, char *why,
                      size_t why_len);
int sw_proxy_caddy_new(sw_proxy_driver_t **out, const sw_driver_env_t *env, char *why,
                       size_t why_len);
int sw_proxy_nginx_new(sw_proxy_driver_t **out, const sw_driver_env_t *env, char *why,
                       size_t why_len);

/* The nginx include file for t (nginx.c), appended to out, and the hex hash its check server
 * answers with. Pure: for tests. 0, or -EINVAL when SLIPWAY_PROXY_HTTP is not host:port. */
#define SW_NGINX_HASH_HEX 33 /* 16 bytes in hex, and the NUL */
int sw_nginx_render(const sw_routes_t *t, const sw_config_t *cfg, sw_buf_t *out,
                    char hash[SW_NGINX_HASH_HEX]);

/* What a round of the caddy driver (caddy.c) sends Caddy when its GET /config/ answered body
 * (the edge on dns_address too): one line per admin request, "METHOD path body" (body empty
 * when none), appended to out. 0, or -EPROTO when body is not JSON. Pure: for tests. */
int sw_caddy_plan(const sw_config_t *cfg, const char *dns_address, const char *body, size_t len,
                  sw_buf_t *out);

/* Whether line, one datagram of Caddy's log (caddy.c asks Caddy to send them), says an ACME
 * order failed; then the name it was for and Caddy's reason, cut to the sizes given. */
bool sw_caddy_log_failure(const char *line, size_t len, char *host, size_t host_len, char *error,
                          size_t error_len);

/* ---- the DNS responder (dns.c) ----
 *
 * Answers, over UDP, what Caddy's dynamic upstreams ask: SRV <host>.host.slipway. lists the
 * endpoints of the route that host takes (sw_routes_find_host), each as target
 * <release>.<address label>.ip.slipway.; a host without a route, or whose app serves no
 * release, gets the edge (edge.c) as its one target, edge.<label>.ip.slipway. A or AAAA of
 * such a target is the address its label spells (127-0-0-1, or x + 32 hex digits for IPv6).
 * Everything else is NXDOMAIN. */
#define SW_DNS_SUFFIX "slipway"
typedef struct sw_dns sw_dns_t;
int sw_dns_new(sw_dns_t **out, uv_loop_t *loop, const char *listen, char *why, size_t why_len);
/* The table answers come from; the caller keeps it alive until the next call (NULL: none). */
void sw_dns_set_routes(sw_dns_t *d, const sw_routes_t *t);
/* A datagram that is a line of JSON, not a query (Caddy's log, see caddy.c), goes to cb. */
void sw_dns_on_log(sw_dns_t *d, void (*cb)(const char *line, size_t len, void *payload),
                   void *payload);
/* The bound "host:port". */
const char *sw_dns_address(const sw_dns_t *d);
/* Closes the socket; on_closed follows from the loop. */
void sw_dns_close(sw_dns_t *d, void (*on_closed)(void *payload), void *payload);

/* Builds the answer to one query from t into out (at most out_size bytes); edge is the
 * edge's "host:port" (NULL: a host without a route is NXDOMAIN). Returns the answer's
 * length, or 0 when the query deserves no answer at all. Pure: for tests. */
size_t sw_dns_answer(const sw_routes_t *t, const char *edge, const uint8_t *q, size_t qlen,
                     uint8_t *out, size_t out_size);
/* The name an endpoint's address is given by: "<release>.<label>.ip.slipway." into out.
 * Returns -EINVAL for an endpoint that is not an IP literal with a port. */
int sw_dns_target(const char *release, const char *endpoint, char *out, size_t out_size,
                  uint16_t *port);

/* ---- the edge (edge.c) ----
 *
 * Answers over TCP where no app does: a host no route takes (404) or whose app serves no
 * release (503), each marked "Slipway-Edge: <why>"; and GET /ask?domain=<name>, Caddy's
 * on-demand TLS question, 200 only for a name a route takes. */
typedef struct sw_edge sw_edge_t;
int sw_edge_new(sw_edge_t **out, uv_loop_t *loop, const char *listen, char *why, size_t why_len);
/* The table answers come from; the caller keeps it alive until the next call (NULL: none). */
void sw_edge_set_routes(sw_edge_t *e, const sw_routes_t *t);
/* The bound "host:port". */
const char *sw_edge_address(const sw_edge_t *e);
/* Stops listening, lets answers in flight finish; on_closed (may be NULL) follows. */
void sw_edge_close(sw_edge_t *e, void (*on_closed)(void *payload), void *payload);

/* ---- what the proxy serves for a hostname, observed (state.c, tlsprobe.c) ---- */

/* A certificate a TLS handshake with the proxy was answered with. */
typedef struct {
    bool ok; /* it names the host and has not expired */
    char issuer[128];
    char not_after[32]; /* ISO 8601, UTC; "" when unknown */
    char error[512];    /* why not ok */
} sw_tls_seen_t;

typedef struct sw_tlsprobe sw_tlsprobe_t;
typedef void (*sw_tlsprobe_cb)(const char *host, const sw_tls_seen_t *seen, void *payload);
/* Handshakes with addr, SNI = host, on the threadpool; cb on the loop. 0 or a uv error. */
int sw_tlsprobe_start(uv_loop_t *loop, const struct sockaddr_storage *addr, const char *host,
                      sw_tlsprobe_cb cb, void *payload);

/* Records in domain_state what each round did (routing) and, with an HTTPS listener, what
 * certificate each hostname is served with (tls), rewriting a row only when it changed. */
typedef struct sw_proxy_state sw_proxy_state_t;
sw_proxy_state_t *sw_proxy_state_new(uv_loop_t *loop, const sw_config_t *cfg, sw_pg_pool_t *pg);
/* After a round over t (NULL when the table could not be read): status 0, or the failure. */
void sw_proxy_state_round(sw_proxy_state_t *s, const sw_routes_t *t, int status, const char *error);
/* The proxy says a certificate for host could not be issued, and why: its tls state is an
 * error at once (not two minutes later), until a handshake sees a certificate. false: not
 * taken (host is not observed here, or is served with a certificate). */
bool sw_proxy_state_tls_failed(sw_proxy_state_t *s, const char *host, const char *error);
/* Stops; what is in flight finishes first. NULL is fine. */
void sw_proxy_state_free(sw_proxy_state_t *s);

/* "host:port" (":port" meaning loopback) as a socket address. 0 or -EINVAL. */
int sw_proxy_sockaddr(const char *hostport, struct sockaddr_storage *ss);

/* ---- the probe through the proxy (probe.c) ---- */

typedef struct sw_probe sw_probe_t;
/* Requests path at the proxy's HTTP address with Host: host until Slipway-Release equals
 * release or timeout_ms passes. cb once; error says what was seen last. */
int sw_probe_start(uv_loop_t *loop, const sw_config_t *cfg, const char *host, const char *path,
                   const char *release, uint32_t timeout_ms, sw_proxy_cb cb, void *payload,
                   sw_probe_t **out);
/* cb is called with -ECANCELED before this returns (unless it ran already). */
void sw_probe_cancel(sw_probe_t *pr);

#endif
