-- Every slipwayd keeps a cache of authorised reads (a resource's project, the caller's role in
-- it, the resource's JSON) and LISTENs on slipway_read_cache. Any change to a row those reads
-- come from notifies the channel when its transaction commits, whoever made it: an API
-- process, a worker, or someone at a psql prompt. A notification empties every cache, so its
-- payload (the table) is only for people watching. A lookup (project_lookup_sql in
-- src/api/service.c, and the sw_*_json functions it calls) that comes to read another table
-- needs that table's trigger too, in a later migration.

CREATE FUNCTION sw_read_cache_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Identical notifications in one transaction are folded into one by PostgreSQL.
    PERFORM pg_notify('slipway_read_cache', TG_TABLE_NAME);
    RETURN NULL;
END
$$;

-- Row triggers, so a statement that changes no row (a reconciler's sweep) notifies nobody;
-- TRUNCATE fires no row trigger, so it has a statement one. A deployment's JSON holds its
-- queue position, which every other deployment moves: any deployment change counts.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['projects', 'project_members', 'environments', 'apps', 'domains',
                             'deployments'] LOOP
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE ON %I '
                       'FOR EACH ROW EXECUTE FUNCTION sw_read_cache_notify()',
                       t || '_read_cache', t);
        EXECUTE format('CREATE TRIGGER %I AFTER TRUNCATE ON %I '
                       'FOR EACH STATEMENT EXECUTE FUNCTION sw_read_cache_notify()',
                       t || '_read_cache_truncate', t);
    END LOOP;
END
$$;

-- The instance role comes from the credential cache, not from these reads; a user's role or
-- removal notifies all the same, so no future read that joins users can go stale.
CREATE TRIGGER users_read_cache AFTER UPDATE OF role OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION sw_read_cache_notify();
