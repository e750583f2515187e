/* Stopping a node, in order: HTTP drains first (requests finish), then the janitor, the webhook
 * dispatcher and the worker stop, the heartbeat writes that this node stopped, and only then,
 * with nothing left that needs them, the backends and every handle close. */
#include <stdlib.h>

#include "internal.h"
#include "slipway/hub.h"
#include "slipway/janitor.h"
#include "slipway/log.h"
#include "slipway/webhooks.h"

void sw_node_closed_one(sw_node_t *node)
{
    if (--node->closes_pending > 0)
        return;
    sw_metrics_free(node->metrics);
    node->metrics = NULL;
    void (*cb)(void *) = node->on_stopped;
    void *payload = node->stop_payload;
    free(node);
    if (cb)
        cb(payload);
}

static void on_handle_closed(uv_handle_t *h)
{
    sw_node_closed_one(h->data);
}

static void on_backend_closed(void *payload)
{
    sw_node_closed_one(payload);
}

static void close_backends(void *payload)
{
    sw_node_t *node = payload;
    /* Now nothing needs the backends. */
    node->closes_pending = 2;
    node->closing = true;
    /* A migration on the threadpool cannot be interrupted and reads cfg and the node until it
     * returns: it holds one close, released by migrate_after. */
    if (node->migrating)
        node->closes_pending++;
    sw_health_close(&node->health, on_handle_closed, node);
    node->migrate_timer.data = node;
    uv_close((uv_handle_t *)&node->migrate_timer, on_handle_closed);
    /* The drain closed every stream, so no watcher is left; the worker has stopped. */
    sw_hub_free(node->hub);
    node->hub = NULL;
    sw_secretbox_clear(&node->box);
    node->closes_pending += 2;
    sw_pg_pool_close(node->pg, on_backend_closed, node);
    sw_redis_close(node->redis, on_backend_closed, node);
    node->pg = NULL;
    node->redis = NULL;
}

/* HTTP has drained, or the janitor, the webhook dispatcher, the worker or the heartbeat
 * stopped: on to the next. */
void sw_node_drain_next(void *payload)
{
    sw_node_t *node = payload;
    node->worker_draining = NULL; /* back here, the worker (if it was draining) has stopped */
    /* A janitor round ends at its next step; it needs PostgreSQL and Redis until then. */
    if (node->janitor) {
        sw_janitor_t *j = node->janitor;
        node->janitor = NULL;
        sw_janitor_stop(j, sw_node_drain_next, node);
        return;
    }
    /* Webhook attempts in flight are abandoned and due again at once, for the next process. */
    if (node->webhooks) {
        sw_webhooks_t *wh = node->webhooks;
        node->webhooks = NULL;
        sw_webhooks_stop(wh, sw_node_drain_next, node);
        return;
    }
    /* Requests are finished; running deployments go back to the queue next. */
    if (node->worker) {
        sw_worker_t *w = node->worker;
        node->worker = NULL;
        node->worker_draining = w;
        sw_worker_stop(w, sw_node_drain_next, node);
        return;
    }
    /* Its samples need the node's row: they stop before the heartbeat marks it stopped. */
    if (node->sampler) {
        sw_node_sampler_t *s = node->sampler;
        node->sampler = NULL;
        sw_node_sampler_stop(s, sw_node_drain_next, node);
        return;
    }
    /* Last, with nothing left running here: this node's row says it stopped. */
    if (node->heartbeat) {
        sw_node_heartbeat_t *n = node->heartbeat;
        node->heartbeat = NULL;
        sw_node_heartbeat_stop(n, sw_node_drain_next, node);
        return;
    }
    /* The HTTP role's own handles and connections (the session cache, the read cache's
     * listener) go before the backends they use. */
    if (node->api) {
        sw_api_t *api = node->api;
        node->api = NULL;
        sw_api_close(api, close_backends, node);
        return;
    }
    close_backends(node);
}

void sw_node_stop(sw_node_t *node, void (*on_stopped)(void *payload), void *payload)
{
    if (node->stopping)
        return;
    node->stopping = true;
    node->on_stopped = on_stopped;
    node->stop_payload = payload;
    sw_health_stop(&node->health);
    uv_timer_stop(&node->migrate_timer);
    sw_log(SW_LOG_INFO, NULL, "draining");
    if (node->api)
        sw_api_drain(node->api, sw_node_drain_next, node);
    else
        sw_node_drain_next(node);
}
