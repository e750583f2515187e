-- Every app's builds and process instances run under a uid of their own, drawn from
-- SLIPWAY_APP_UID_RANGE the first time a worker runs one of its deployments and kept for the
-- app's life: one uid is never shared by two apps (UNIQUE), whichever node allocated it.
ALTER TABLE apps ADD COLUMN run_uid integer UNIQUE CHECK (run_uid > 0);
