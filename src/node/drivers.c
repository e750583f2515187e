/* Driver choice: which runtime runs this node's instances and which proxy routes traffic to
 * them. The worker calls them through runtime.h and proxy.h and never learns which they are;
 * the container runtime and the Caddy and nginx drivers are chosen here when they come. */
#include "internal.h"

#include "slipway/log.h"

int sw_node_drivers(const sw_config_t *cfg, sw_worker_drivers_t *out)
{
    (void)cfg; /* one runtime and one proxy today: child processes, apps.endpoints only */
    out->runtime_new = sw_runtime_process_new;
    int r = sw_proxy_none_new(&out->proxy);
    if (r != 0)
        sw_log_kv(SW_LOG_ERROR, NULL, "the proxy driver did not start", "driver", "none", "error",
                  sw_strerror(r), NULL);
    return r;
}
