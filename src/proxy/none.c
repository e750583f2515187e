/* The "none" proxy driver: Slipway drives no edge proxy. Whatever routes traffic reads
 * apps.endpoints (written before publish), so there is nothing to publish or to check. */
#include "slipway/proxy.h"

#include <stdlib.h>

#include "slipway/common.h"

static void none_publish(sw_proxy_t *p, const sw_proxy_release_t *rel, sw_proxy_cb cb,
                         void *payload)
{
    (void)p;
    (void)rel;
    cb(0, NULL, payload);
}

static void none_free(sw_proxy_t *p)
{
    free(p);
}

static const sw_proxy_ops_t none_ops = {
    .name = "none",
    .publish = none_publish,
    .verify = none_publish, /* nothing was published: nothing can be missing */
    .free = none_free,
};

int sw_proxy_none_new(sw_proxy_t **out)
{
    sw_proxy_t *p = sw_calloc(1, sizeof(*p));
    p->ops = &none_ops;
    *out = p;
    return 0;
}
