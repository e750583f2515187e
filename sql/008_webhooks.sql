-- Outgoing webhooks (DESIGN.md §5). Events are queued here, by triggers, in the transaction
-- that changed the deployment or app: whoever made the change (an API process, a worker,
-- someone at a psql prompt) and whatever happens to any slipwayd afterwards, the delivery
-- row exists exactly when the change committed. src/deploy/webhooks.c sends them.

CREATE TABLE webhooks (
    id uuid PRIMARY KEY,
    url text NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    events text[] NOT NULL CHECK (cardinality(events) > 0 AND events <@ ARRAY[
        'deployment.started', 'deployment.succeeded', 'deployment.failed',
        'deployment.cancelled', 'app.created', 'app.deleted']),
    -- NULL: every project's events (instance admins only)
    project_id uuid REFERENCES projects (id) ON DELETE CASCADE,
    -- the signing secret's hex text, sealed with the secret box, associated data
    -- "webhook:<id>"; it is opened to sign every delivery, so it cannot be a hash
    secret_sealed text NOT NULL,
    created_by uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhooks_project ON webhooks (project_id);

-- One row per (webhook, event occurrence). payload is the exact body that is signed and
-- sent, kept as text so every attempt sends the same bytes. A webhook's deliveries go out one
-- at a time, in seq order: a receiver sees deployment.started before deployment.succeeded,
-- and a delivery being retried holds back the ones queued after it.
CREATE TABLE webhook_deliveries (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    seq bigserial NOT NULL,
    webhook_id uuid NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event text NOT NULL,
    payload text NOT NULL,
    state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts int NOT NULL DEFAULT 0,
    -- when the next attempt is due; while a dispatcher holds the delivery, the end of its
    -- lease (so a crashed dispatcher's claim lapses by itself)
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- bumped by every claim: a dispatcher records its attempt only under its own claim
    claim bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE state = 'pending';
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (webhook_id, created_at);
CREATE INDEX webhook_deliveries_queue ON webhook_deliveries (webhook_id, seq)
    WHERE state = 'pending';

-- One row per attempt.
CREATE TABLE webhook_attempts (
    id bigserial PRIMARY KEY,
    delivery_id uuid NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    webhook_id uuid NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event text NOT NULL,
    attempt int NOT NULL,
    status_code int,                    -- NULL: no answer
    latency_ms int NOT NULL DEFAULT 0,
    response text NOT NULL DEFAULT '',  -- the answer's first bytes (at most 1 KiB), as text
    error text,                         -- why it failed without an answer
    next_attempt_at timestamptz,        -- when the next attempt is due; NULL: none follows
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_attempts_webhook ON webhook_attempts (webhook_id, created_at);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id);

CREATE FUNCTION sw_webhook_json(w webhooks) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object('id', w.id, 'url', w.url, 'events', to_json(w.events),
                             'project_id', w.project_id, 'created_by', w.created_by,
                             'created_at', w.created_at)
$$;

-- Queues ev for every webhook that wants it: its events hold ev, and it watches every project
-- or this one. The body is {event, timestamp, data}.
CREATE FUNCTION sw_webhook_enqueue(ev text, project uuid, data json) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO webhook_deliveries (webhook_id, event, payload)
    SELECT w.id, ev, json_build_object('event', ev, 'timestamp', now(), 'data', data)::text
    FROM webhooks w
    WHERE ev = ANY (w.events) AND (w.project_id IS NULL OR w.project_id = project)
    ORDER BY w.id
$$;

CREATE FUNCTION sw_webhook_wanted(ev text, project uuid) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM webhooks w
                   WHERE ev = ANY (w.events) AND (w.project_id IS NULL OR w.project_id = project))
$$;

-- started: pending -> building (a deployment the worker handed back when it stopped starts
-- again, and says so again); succeeded, failed, cancelled: on reaching that status.
CREATE FUNCTION sw_webhooks_deployment() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    ev text;
BEGIN
    ev := CASE
        WHEN NEW.status = 'building' AND OLD.status = 'pending' THEN 'deployment.started'
        WHEN NEW.status = 'success' THEN 'deployment.succeeded'
        WHEN NEW.status = 'failed' THEN 'deployment.failed'
        WHEN NEW.status = 'cancelled' THEN 'deployment.cancelled'
    END;
    -- The JSON is built only when someone wants it.
    IF ev IS NOT NULL AND sw_webhook_wanted(ev, NEW.project_id) THEN
        PERFORM sw_webhook_enqueue(ev, NEW.project_id, sw_deployment_json(NEW));
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER deployments_webhooks AFTER UPDATE OF status ON deployments
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION sw_webhooks_deployment();

-- app.created and app.deleted. Deleting a project deletes its apps by cascade, and each of
-- them says app.deleted to the webhooks that watch every project; the project's own webhooks
-- go with the project, and so does anything queued for them.
CREATE FUNCTION sw_webhooks_app() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    ev text;
    a apps;
BEGIN
    IF TG_OP = 'INSERT' THEN
        ev := 'app.created';
        a := NEW;
    ELSE
        ev := 'app.deleted';
        a := OLD;
    END IF;
    IF sw_webhook_wanted(ev, a.project_id) THEN
        PERFORM sw_webhook_enqueue(ev, a.project_id, sw_app_json(a));
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER apps_webhooks AFTER INSERT OR DELETE ON apps
    FOR EACH ROW EXECUTE FUNCTION sw_webhooks_app();
