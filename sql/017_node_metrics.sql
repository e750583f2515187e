-- Every node's metric samples for GET /api/v1/system/metrics/history: each slipwayd samples
-- itself every SLIPWAY_METRICS_SAMPLE_MS (src/node/sampler.c) and stores what it sampled here,
-- a batch at a time; each batch also removes every node's samples older than a day, and a node
-- removed from nodes (a day after its last heartbeat) takes its samples with it. One row per
-- sample: 8,640 a day per node at the default 10 s. Kept in the database rather than asked of
-- each node, so any api node answers for all of them, and a node that crashed still shows what
-- led up to it.
CREATE TABLE node_metrics (
    node_id uuid NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    at timestamptz NOT NULL,
    cpu_percent double precision,
    load_1m double precision,
    memory_total_bytes double precision,
    memory_available_bytes double precision,
    disk_total_bytes double precision,
    disk_free_bytes double precision,
    network_rx_bytes_per_s double precision,
    network_tx_bytes_per_s double precision,
    process_rss_bytes double precision,
    http_connections double precision, -- NULL on a worker-only node
    deployments_running double precision,
    PRIMARY KEY (node_id, at)
);
CREATE INDEX node_metrics_at ON node_metrics (at);
