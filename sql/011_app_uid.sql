-- Every app's builds and process instances run under a uid of their own, drawn from
-- SLIPWAY_APP_UID_RANGE the first time a worker runs one of its deployments. A uid is given
-- once, ever: app_uids keeps it after its app is deleted (a process or a file the old app left
-- behind must never belong to a new one), whichever node allocated it.
CREATE TABLE app_uids (
    uid integer PRIMARY KEY CHECK (uid > 0),
    app_id uuid REFERENCES apps (id) ON DELETE SET NULL,
    allocated_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE apps ADD COLUMN run_uid integer UNIQUE REFERENCES app_uids (uid);
