/* This node's load: the host's rates (sampled from /proc when asked, shared by every reader),
 * this process's memory and the deployments it runs; for the heartbeat, GET system/metrics and
 * the metrics stream. */
#include <string.h>

#include "internal.h"

void sw_node_load_json(sw_buf_t *out, void *payload)
{
    sw_node_t *node = payload;
    sw_host_stats_t st;
    sw_host_sample(&node->host, uv_now(node->loop), node->cfg->data_dir, &st);
    sw_buf_append_cstr(out, "{\"node\":\"");
    sw_buf_append_json_str(out, node->name, strlen(node->name));
    sw_buf_append_cstr(out, "\",");
    sw_host_stats_json_members(&st, node->cfg->data_dir, out);
    sw_buf_printf(out, ",\"process\":{\"rss_bytes\":%llu},\"deployments_running\":%u}",
                  (unsigned long long)sw_process_rss_bytes(),
                  sw_worker_runs(node->worker ? node->worker : node->worker_draining));
}
