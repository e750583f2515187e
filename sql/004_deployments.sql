-- Deployments, their log chunks, and the per-app counter that numbers them.

ALTER TABLE apps ADD COLUMN deployment_counter int NOT NULL DEFAULT 0;

CREATE TABLE deployments (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    app_id uuid NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    deployment_number int NOT NULL,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'building', 'deploying',
        'success', 'failed', 'cancelled', 'rolled_back')),
    stage text NOT NULL DEFAULT 'queued' CHECK (stage IN ('queued', 'cloning_repo',
        'building_image', 'starting_new', 'health_check', 'switching_traffic', 'stopping_old',
        'completed')),
    progress int NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    ref text NOT NULL DEFAULT '',
    commit_sha text NOT NULL DEFAULT '',     -- as requested
    commit_hash text NOT NULL DEFAULT '',    -- as resolved
    commit_message text NOT NULL DEFAULT '',
    error_message text NOT NULL DEFAULT '',
    rolled_back_from uuid REFERENCES deployments (id) ON DELETE SET NULL,
    -- the deployment whose build directory this release uses (NULL: its own); set by
    -- rollback, start and restart, always to the deployment that actually built it
    build_of uuid REFERENCES deployments (id) ON DELETE SET NULL,
    is_active boolean NOT NULL DEFAULT false,
    node_id text NOT NULL DEFAULT '',
    enqueued boolean NOT NULL DEFAULT false, -- has an entry in the Redis stream
    cancel_requested boolean NOT NULL DEFAULT false,
    created_by uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (app_id, deployment_number)
);
CREATE INDEX deployments_app ON deployments (app_id, created_at DESC);
CREATE INDEX deployments_unfinished ON deployments (created_at)
    WHERE status IN ('pending', 'building', 'deploying');

-- Build and release output, in chunks of lines: never one row per line.
CREATE TABLE deployment_log_chunks (
    deployment_id uuid NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    first_seq bigint NOT NULL,
    last_seq bigint NOT NULL,
    lines jsonb NOT NULL, -- [{"seq", "stream", "line", "timestamp"}]
    PRIMARY KEY (deployment_id, first_seq)
);

CREATE FUNCTION sw_deployment_json(d deployments) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object(
        'id', d.id, 'app_id', d.app_id, 'project_id', d.project_id,
        'deployment_number', d.deployment_number, 'status', d.status, 'stage', d.stage,
        'progress', d.progress, 'ref', d.ref, 'commit_sha', d.commit_sha,
        'commit_hash', d.commit_hash, 'commit_message', d.commit_message,
        'error_message', nullif(d.error_message, ''), 'rolled_back_from', d.rolled_back_from,
        'is_active', d.is_active, 'node_id', nullif(d.node_id, ''),
        'created_at', d.created_at, 'started_at', d.started_at, 'finished_at', d.finished_at,
        'duration', extract(epoch FROM d.finished_at - d.started_at),
        'queue_position', CASE WHEN d.status = 'pending' THEN (
            SELECT count(*) + 1 FROM deployments p
            WHERE p.status = 'pending' AND (p.created_at, p.id) < (d.created_at, d.id))
        END)
$$;

-- This instance's identity: Redis keys carry it, so instances sharing one Redis never read
-- each other's queues.
CREATE TABLE instance (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    id uuid NOT NULL DEFAULT gen_random_uuid()
);
INSERT INTO instance DEFAULT VALUES;
