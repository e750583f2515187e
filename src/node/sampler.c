/* This node's metric history: a sample every SLIPWAY_METRICS_SAMPLE_MS into a ring, and the
 * ring's pending samples stored in node_metrics after each one (one statement in flight at a
 * time; a failed or skipped store leaves them pending for the next). */
#include <math.h>
#include <stdlib.h>

#include "internal.h"
#include "slipway/history.h"
#include "slipway/log.h"
#include "slipway/metrics.h"

struct sw_node_sampler {
    sw_node_t *node;
    uv_timer_t timer;
    sw_history_ring_t ring;
    uint64_t sending_upto; /* the batch in flight ends before this sequence number */
    bool in_flight;
    bool failing; /* the last store failed: logged once until one succeeds */
    bool stopping;
    void (*on_stopped)(void *payload);
    void *payload;
};

/* The batch's arrays: [at_ms, the sw_history_value_t values in order]. */
static const char store_sql[] =
    "WITH gone AS (DELETE FROM node_metrics WHERE at < now() - interval '1 day'), "
    "ins AS (INSERT INTO node_metrics (node_id, at, cpu_percent, load_1m, memory_total_bytes, "
    "memory_available_bytes, disk_total_bytes, disk_free_bytes, network_rx_bytes_per_s, "
    "network_tx_bytes_per_s, process_rss_bytes, http_connections, deployments_running) "
    "SELECT n.id, to_timestamp((e->>0)::float8 / 1000), (e->>1)::float8, (e->>2)::float8, "
    "(e->>3)::float8, (e->>4)::float8, (e->>5)::float8, (e->>6)::float8, (e->>7)::float8, "
    "(e->>8)::float8, (e->>9)::float8, (e->>10)::float8, (e->>11)::float8 "
    "FROM nodes n, jsonb_array_elements($2::jsonb) e WHERE n.name = $1 "
    "ON CONFLICT DO NOTHING) "
    /* stored once this node has its row (the first heartbeat may still be on its way) */
    "SELECT count(*) FROM nodes WHERE name = $1";

static void on_closed(uv_handle_t *h)
{
    sw_node_sampler_t *s = h->data;
    void (*cb)(void *) = s->on_stopped;
    void *payload = s->payload;
    sw_history_ring_free(&s->ring);
    free(s);
    if (cb)
        cb(payload);
}

static void on_stored(int status, sw_pg_result_t *res, void *payload)
{
    sw_node_sampler_t *s = payload;
    s->in_flight = false;
    bool stored =
        status == 0 && sw_pg_result_rows(res) == 1 && atoi(sw_pg_result_value(res, 0, 0)) == 1;
    if (stored)
        sw_history_ring_ack(&s->ring, s->sending_upto);
    if (status != 0 && !s->failing)
        sw_log_kv(SW_LOG_WARN, NULL, "metric samples not stored; kept for the next attempt",
                  "error", res ? sw_pg_result_error(res) : sw_strerror(status), NULL);
    s->failing = status != 0;
    if (s->stopping)
        uv_close((uv_handle_t *)&s->timer, on_closed);
}

static void take(sw_node_sampler_t *s)
{
    sw_node_t *node = s->node;
    sw_host_stats_t st;
    sw_history_sample_t x;
    uv_timeval64_t now;
    if (uv_gettimeofday(&now) != 0)
        return;
    sw_host_sample(&node->host, uv_now(node->loop), node->cfg->data_dir, &st);
    x.at_ms = (uint64_t)now.tv_sec * 1000u + (uint64_t)now.tv_usec / 1000u;
    x.v[SW_HISTORY_CPU_PERCENT] = st.cpu_percent;
    x.v[SW_HISTORY_LOAD_1M] = st.load[0];
    x.v[SW_HISTORY_MEMORY_TOTAL] = (double)st.memory_total_bytes;
    x.v[SW_HISTORY_MEMORY_AVAILABLE] = (double)st.memory_available_bytes;
    x.v[SW_HISTORY_DISK_TOTAL] = (double)st.disk_total_bytes;
    x.v[SW_HISTORY_DISK_FREE] = (double)st.disk_free_bytes;
    x.v[SW_HISTORY_RX_PER_S] = st.rx_bytes_per_s;
    x.v[SW_HISTORY_TX_PER_S] = st.tx_bytes_per_s;
    x.v[SW_HISTORY_PROCESS_RSS] = (double)sw_process_rss_bytes();
    x.v[SW_HISTORY_HTTP_CONNECTIONS] = NAN;
    if (node->api) {
        sw_http_server_stats_t hs = {0};
        sw_api_http_stats(node->api, &hs);
        x.v[SW_HISTORY_HTTP_CONNECTIONS] = (double)hs.connections;
    }
    x.v[SW_HISTORY_DEPLOYMENTS_RUNNING] =
        (double)sw_worker_runs(node->worker ? node->worker : node->worker_draining);
    sw_history_ring_push(&s->ring, &x);
}

static void store(sw_node_sampler_t *s)
{
    if (s->in_flight || sw_history_ring_pending(&s->ring) == 0)
        return;
    sw_buf_t batch = SW_BUF_INIT;
    s->sending_upto = sw_history_ring_batch(&s->ring, SW_HISTORY_RING_SAMPLES, &batch);
    const char *params[] = {s->node->name, batch.base};
    s->in_flight = sw_pg_query(s->node->pg, store_sql, 2, params, on_stored, s) == 0;
    sw_buf_free(&batch);
}

static void on_timer(uv_timer_t *t)
{
    sw_node_sampler_t *s = t->data;
    take(s);
    store(s);
}

sw_node_sampler_t *sw_node_sampler_start(sw_node_t *node)
{
    sw_node_sampler_t *s = sw_calloc(1, sizeof(*s));
    s->node = node;
    sw_history_ring_init(&s->ring, SW_HISTORY_RING_SAMPLES);
    uv_timer_init(node->loop, &s->timer);
    s->timer.data = s;
    uv_timer_start(&s->timer, on_timer, 0, node->cfg->metrics_sample_ms);
    return s;
}

void sw_node_sampler_stop(sw_node_sampler_t *s, void (*on_stopped)(void *payload), void *payload)
{
    s->stopping = true;
    s->on_stopped = on_stopped;
    s->payload = payload;
    uv_timer_stop(&s->timer);
    if (!s->in_flight)
        uv_close((uv_handle_t *)&s->timer, on_closed);
    /* otherwise the store's answer closes it: the query holds the sampler until then */
}
