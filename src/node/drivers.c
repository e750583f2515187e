/* Driver choice: which runtime runs this node's instances and which proxy routes traffic to
 * them (SLIPWAY_PROXY). The worker calls them through runtime.h and proxy.h and never learns
 * which they are; container apps run on the container runtime beside the process one. */
#include "internal.h"

#include "slipway/log.h"

int sw_node_drivers(sw_node_t *node, sw_worker_drivers_t *out)
{
    out->runtime_new = sw_runtime_process_new;
    out->container_new = sw_runtime_container_new;
    char why[512] = "";
    int r = sw_proxy_new(&out->proxy, node->loop, node->cfg, node->pg, why, sizeof(why));
    if (r != 0)
        sw_log_kv(SW_LOG_ERROR, NULL, "the proxy driver did not start", "driver", node->cfg->proxy,
                  "error", why[0] ? why : sw_strerror(r), NULL);
    return r;
}
