/* The "none" proxy driver: Slipway drives no edge proxy. Whatever routes traffic reads
 * apps.endpoints, so there is nothing to apply, and a release has nothing to verify. */
#include <stdlib.h>

#include "internal.h"

static void none_apply(sw_proxy_driver_t *d, const sw_routes_t *t, sw_driver_cb cb, void *payload)
{
    (void)d;
    (void)t;
    cb(0, 0, 0, NULL, payload);
}

static void none_free(sw_proxy_driver_t *d)
{
    free(d);
}

static const sw_proxy_driver_ops_t none_ops = {
    .name = "none",
    .apply = none_apply,
    .free = none_free,
};

int sw_proxy_none_new(sw_proxy_driver_t **out, const sw_driver_env_t *env, char *why,
                      size_t why_len)
{
    (void)env;
    (void)why;
    (void)why_len;
    sw_proxy_driver_t *d = sw_calloc(1, sizeof(*d));
    d->ops = &none_ops;
    *out = d;
    return 0;
}
