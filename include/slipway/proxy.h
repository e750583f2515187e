/* The edge proxy seam: how traffic for an app's domains reaches the instances of its
 * release. A release first writes apps.endpoints (the routing table's truth, in
 * PostgreSQL), then publishes the endpoints to the proxy and verifies that the proxy serves
 * them, and only then stops the instances of the release before. Drivers: none.c (no proxy
 * is driven: apps.endpoints is all there is, as before); Caddy's admin API and a rendered
 * nginx config are to come behind the same table. */
#ifndef SLIPWAY_PROXY_H
#define SLIPWAY_PROXY_H

#include <stddef.h>

typedef struct sw_proxy sw_proxy_t;

/* What a release serves. The strings belong to the caller and live through the call only;
 * a driver that answers later copies what it needs. */
typedef struct {
    const char *app_id;
    const char *deployment_id;    /* the release now serving */
    const char *const *domains;   /* the app's hostnames */
    size_t ndomains;              /* 0: the app has no domain (yet) */
    const char *const *endpoints; /* "host:port" of each healthy instance */
    size_t nendpoints;
} sw_proxy_release_t;

/* status 0, or a negative code with a one-line reason (error may be NULL). May be called
 * before the function that was given it returns. */
typedef void (*sw_proxy_cb)(int status, const char *error, void *payload);

typedef struct {
    const char *name;
    /* Makes the proxy route the release's domains to its endpoints (replacing the app's
     * previous endpoints). */
    void (*publish)(sw_proxy_t *p, const sw_proxy_release_t *rel, sw_proxy_cb cb, void *payload);
    /* Checks that the proxy now serves the release's endpoints for its domains. */
    void (*verify)(sw_proxy_t *p, const sw_proxy_release_t *rel, sw_proxy_cb cb, void *payload);
    void (*free)(sw_proxy_t *p);
} sw_proxy_ops_t;

/* The part of every driver its callers see. */
struct sw_proxy {
    const sw_proxy_ops_t *ops;
};

/* No proxy is driven: publish and verify succeed at once. */
int sw_proxy_none_new(sw_proxy_t **out);

static inline void sw_proxy_publish(sw_proxy_t *p, const sw_proxy_release_t *rel, sw_proxy_cb cb,
                                    void *payload)
{
    p->ops->publish(p, rel, cb, payload);
}
static inline void sw_proxy_verify(sw_proxy_t *p, const sw_proxy_release_t *rel, sw_proxy_cb cb,
                                   void *payload)
{
    p->ops->verify(p, rel, cb, payload);
}
/* NULL is fine. */
static inline void sw_proxy_free(sw_proxy_t *p)
{
    if (p)
        p->ops->free(p);
}

#endif
