-- Every slipwayd process upserts its row in nodes at start and on each heartbeat (src/api/
-- nodes.c), with what it supervises, and marks it stopped when it drains. A row is "up" while
-- its heartbeats keep coming (three intervals of grace), "lost" when they stop without a
-- drain (a kill, a crash, a network split), and removed a day after its last heartbeat.
ALTER TABLE nodes
    ADD COLUMN heartbeat_ms int NOT NULL DEFAULT 5000 CHECK (heartbeat_ms > 0),
    ADD COLUMN listen text NOT NULL DEFAULT '',
    ADD COLUMN instances jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN stopped_at timestamptz;

CREATE FUNCTION sw_node_status(n nodes) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN n.stopped_at IS NOT NULL THEN 'stopped'
        WHEN n.heartbeat_at > now() - make_interval(secs => 3 * n.heartbeat_ms / 1000.0) THEN 'up'
        ELSE 'lost'
    END
$$;

CREATE FUNCTION sw_node_json(n nodes) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object(
        'id', n.id, 'name', n.name, 'role', n.role, 'version', n.version,
        'status', sw_node_status(n), 'listen', n.listen, 'started_at', n.started_at,
        'heartbeat_at', n.heartbeat_at, 'heartbeat_ms', n.heartbeat_ms,
        'stopped_at', n.stopped_at, 'load', n.load,
        'instances', CASE WHEN sw_node_status(n) = 'up' THEN n.instances ELSE '[]'::jsonb END)
$$;
