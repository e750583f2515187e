/* From a started node to running roles: migrations on the threadpool, retried with backoff
 * until they succeed; then the instance id, which names the queue's Redis keys; then the live
 * hub, the deployment worker, the webhook dispatcher, the janitor, the heartbeat and
 * the metric sampler. */
#include <stdio.h>

#include "internal.h"
#include "slipway/hub.h"
#include "slipway/janitor.h"
#include "slipway/log.h"
#include "slipway/queue.h"
#include "slipway/webhooks.h"

#define MIGRATE_RETRY_MAX_MS 10000

static void on_instance_retry(uv_timer_t *t);

static void migrate_work(uv_work_t *w)
{
    sw_node_t *node = sw_container_of(w, sw_node_t, migrate_work);
    node->migrate_applied = 0;
    node->migrate_status = sw_migrate_run(node->cfg->database_url, &node->migrate_applied,
                                          node->migrate_err, sizeof(node->migrate_err));
}

/* The instance id names the queue's Redis keys; the worker starts once it is known. */
static void on_instance(int status, sw_pg_result_t *res, void *payload)
{
    sw_node_t *node = payload;
    if (node->stopping)
        return;
    if (status != 0 || sw_pg_result_rows(res) != 1) {
        uv_timer_start(&node->migrate_timer, on_instance_retry, 1000, 0);
        return;
    }
    sw_queue_set_instance(sw_pg_result_value(res, 0, 0));
    if (!node->hub) {
        sw_hub_opts_t ho = {
            .queue_max_msgs = SW_LIVE_QUEUE_MSGS,
            .queue_max_bytes = SW_LIVE_QUEUE_BYTES,
            .write_window = SW_LIVE_WRITE_WINDOW,
            .node = node->name,
            .instance = sw_pg_result_value(res, 0, 0),
        };
        if (sw_hub_new(&node->hub, node->loop, node->redis, &ho) != 0)
            sw_log(SW_LOG_ERROR, NULL, "the live hub did not start");
        else if (node->api)
            sw_api_set_hub(node->api, node->hub);
    }
    if (node->cfg->role != SW_NODE_API && !node->worker) {
        sw_worker_drivers_t drivers;
        int r = sw_node_drivers(node, &drivers);
        if (r == 0)
            r = sw_worker_start(&node->worker, node->loop, node->cfg, node->pg, &node->box,
                                node->hub, node->name, &drivers);
        if (r != 0)
            sw_log_kv(SW_LOG_ERROR, NULL, "the deployment worker did not start", "error",
                      sw_strerror(r), NULL);
        else
            sw_log_kv(SW_LOG_INFO, NULL, "deployment worker started", "node", node->name, NULL);
    }
    if (node->cfg->role != SW_NODE_API && !node->webhooks &&
        sw_webhooks_start(&node->webhooks, node->loop, node->cfg, node->pg, &node->box) != 0)
        sw_log(SW_LOG_ERROR, NULL, "the webhook dispatcher did not start");
    if (node->cfg->role != SW_NODE_API && !node->janitor &&
        sw_janitor_start(&node->janitor, node->loop, node->cfg, node->pg, node->redis) != 0)
        sw_log(SW_LOG_ERROR, NULL, "the janitor did not start");
    if (!node->heartbeat)
        node->heartbeat = sw_node_heartbeat_start(node);
    if (!node->sampler)
        node->sampler = sw_node_sampler_start(node);
}

static void instance_load(sw_node_t *node)
{
    sw_pg_query(node->pg, "SELECT id FROM instance", 0, NULL, on_instance, node);
}

static void on_instance_retry(uv_timer_t *t)
{
    sw_node_t *node = sw_container_of(t, sw_node_t, migrate_timer);
    if (!node->stopping)
        instance_load(node);
}

static void migrate_after(uv_work_t *w, int status)
{
    sw_node_t *node = sw_container_of(w, sw_node_t, migrate_work);
    node->migrating = false;
    if (node->stopping) {
        if (node->closing)
            sw_node_closed_one(node);
        return;
    }
    if (status == 0 && node->migrate_status == 0) {
        char n[16];
        snprintf(n, sizeof(n), "%d", node->migrate_applied);
        node->migrated = true;
        if (node->api)
            sw_api_set_migrated(node->api);
        sw_log_kv(SW_LOG_INFO, NULL, "migrations applied", "applied", n, NULL);
        instance_load(node);
        return;
    }
    sw_log_kv(SW_LOG_WARN, NULL, "migrations failed; retrying", "error", node->migrate_err, NULL);
    sw_node_migrate_schedule(node);
}

static void on_migrate_timer(uv_timer_t *t)
{
    sw_node_t *node = sw_container_of(t, sw_node_t, migrate_timer);
    if (node->stopping || node->migrating)
        return;
    node->migrating = true;
    node->migrate_attempts++;
    if (uv_queue_work(node->loop, &node->migrate_work, migrate_work, migrate_after) != 0) {
        node->migrating = false;
        sw_node_migrate_schedule(node);
    }
}

void sw_node_migrate_schedule(sw_node_t *node)
{
    uint64_t delay = node->migrate_attempts == 0 ? 0 : 250u << SW_MIN(node->migrate_attempts, 6u);
    uv_timer_start(&node->migrate_timer, on_migrate_timer, SW_MIN(delay, MIGRATE_RETRY_MAX_MS), 0);
}
