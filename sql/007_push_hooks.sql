-- Push hooks: each app's hook secret, the deliveries that deployed, and who wrote the commit
-- a deployment was pushed with.

-- One secret per app, sealed with the secret box (associated data "app_hook:<app id>"):
-- the plain secret exists only in the answer of POST apps/:id/hook/rotate.
CREATE TABLE app_hooks (
    app_id uuid PRIMARY KEY REFERENCES apps (id) ON DELETE CASCADE,
    secret_sealed text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    rotated_at timestamptz NOT NULL DEFAULT now()
);

-- A delivery id is taken once per app: the row is written by the statement that inserts the
-- deployment, so a repeated delivery fails that statement on the key and deploys nothing.
-- Rows older than 30 days are removed by later deliveries to the same app.
CREATE TABLE hook_deliveries (
    app_id uuid NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    delivery_id text NOT NULL CHECK (length(delivery_id) BETWEEN 1 AND 200),
    provider text NOT NULL CHECK (provider IN ('github', 'gitea', 'gitlab')),
    deployment_id uuid REFERENCES deployments (id) ON DELETE SET NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, delivery_id)
);
CREATE INDEX hook_deliveries_received ON hook_deliveries (app_id, received_at);

-- "Name <email>" of the pushed commit's author, as the hook reported it ('' otherwise).
ALTER TABLE deployments ADD COLUMN commit_author text NOT NULL DEFAULT '';

CREATE OR REPLACE FUNCTION sw_deployment_json(d deployments) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object(
        'id', d.id, 'app_id', d.app_id, 'project_id', d.project_id,
        'deployment_number', d.deployment_number, 'status', d.status, 'stage', d.stage,
        'progress', d.progress, 'ref', d.ref, 'commit_sha', d.commit_sha,
        'commit_hash', d.commit_hash, 'commit_message', d.commit_message,
        'commit_author', d.commit_author,
        'error_message', nullif(d.error_message, ''), 'rolled_back_from', d.rolled_back_from,
        'is_active', d.is_active, 'node_id', nullif(d.node_id, ''),
        'created_at', d.created_at, 'started_at', d.started_at, 'finished_at', d.finished_at,
        'duration', extract(epoch FROM d.finished_at - d.started_at),
        'queue_position', CASE WHEN d.status = 'pending' THEN (
            SELECT count(*) + 1 FROM deployments p
            WHERE p.status = 'pending' AND (p.created_at, p.id) < (d.created_at, d.id))
        END)
$$;
