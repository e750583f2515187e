-- Every slipwayd process registers itself here and heartbeats; GET /api/v1/nodes reads it.
CREATE TABLE nodes (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text UNIQUE NOT NULL,
    role text NOT NULL,
    version text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    load jsonb NOT NULL DEFAULT '{}'
);
