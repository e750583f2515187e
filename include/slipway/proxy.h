/* The edge proxy: how traffic for an app's domains reaches the instances of its release.
 *
 * The routing table is derived, never edited: every domain of every app (and, with
 * SLIPWAY_APPS_DOMAIN, the generated <app>.<project>.<apps domain>) to the endpoints of its
 * active release, read from PostgreSQL. A level-triggered reconciler makes the proxy serve
 * exactly that table, on every change and every SLIPWAY_PROXY_RECONCILE_MS, and repairs
 * whatever drifted. Drivers (SLIPWAY_PROXY): none (nothing is driven), caddy (the admin API;
 * a release switch changes no configuration: Caddy asks slipwayd's DNS responder for each
 * app's upstreams), nginx (a rendered include file, checked and reloaded).
 *
 * A release goes through the proxy in three steps: publish (the new endpoints are pinned
 * over what the table says and applied), verify (a request through the proxy with the app's
 * Host sees the new release in Slipway-Release), and settle (the database now says the same,
 * so the pin goes; or the release failed, and the pin goes so the table's old release serves
 * again). */
#ifndef SLIPWAY_PROXY_H
#define SLIPWAY_PROXY_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "slipway/buf.h"
#include "slipway/config.h"
#include "slipway/pg.h"

typedef struct sw_proxy sw_proxy_t;

/* What a release serves. The strings belong to the caller and live through the call only. */
typedef struct {
    const char *app_id;
    const char *deployment_id;    /* the release about to serve */
    const char *const *endpoints; /* "host:port" of each healthy instance */
    size_t nendpoints;
    const char *probe_path; /* what verify requests through the proxy: the health check path */
} sw_proxy_release_t;

/* status 0, or a negative code with a one-line reason (error may be NULL). Never called from
 * inside the function it was given to. */
typedef void (*sw_proxy_cb)(int status, const char *error, void *payload);

/* Starts the driver cfg->proxy names, its reconciler (which LISTENs for routing changes on
 * a connection of its own) and, for caddy, the DNS responder. 0, or a negative code with why
 * filled in. */
int sw_proxy_new(sw_proxy_t **out, uv_loop_t *loop, const sw_config_t *cfg, sw_pg_pool_t *pg,
                 char *why, size_t why_len);
/* Stops the reconciler and frees the proxy once nothing of it is in flight; a callback still
 * owed is called with -ECANCELED first. NULL is fine. */
void sw_proxy_free(sw_proxy_t *p);

/* Pins the release over the table for its app and applies the result now. */
void sw_proxy_publish(sw_proxy_t *p, const sw_proxy_release_t *rel, sw_proxy_cb cb, void *payload);
/* Requests the probe path through the proxy with each of the app's hostnames until every
 * answer carries Slipway-Release: <deployment id>, or timeout_ms passes. An app without a
 * hostname has nothing to verify. */
void sw_proxy_verify(sw_proxy_t *p, const sw_proxy_release_t *rel, uint32_t timeout_ms,
                     sw_proxy_cb cb, void *payload);
/* The release's outcome is in the database (or it failed): the app's pin goes, and the
 * table is read and applied again. */
void sw_proxy_settle(sw_proxy_t *p, const char *app_id);

/* Appends the proxy's Prometheus metrics (repairs, reconcile rounds, failures). */
void sw_proxy_metrics(sw_buf_t *out, void *payload);

#endif
