-- The routing table (src/proxy/routes.c) is derived from domains, apps and projects. Every
-- proxy reconciler LISTENs on slipway_routes; any change that can move a route notifies it
-- when its transaction commits, whoever made it (an API process, a worker's release, a psql
-- prompt), and the reconciler reads the table again. Its timer is the guarantee; this is the
-- fast path.

CREATE FUNCTION sw_routes_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('slipway_routes', TG_TABLE_NAME);
    RETURN NULL;
END
$$;

CREATE TRIGGER domains_routes AFTER INSERT OR UPDATE OR DELETE ON domains
    FOR EACH ROW EXECUTE FUNCTION sw_routes_notify();
CREATE TRIGGER apps_routes_changed AFTER UPDATE OF name, endpoints, active_deployment_id
    ON apps FOR EACH ROW
    WHEN (OLD.name IS DISTINCT FROM NEW.name OR OLD.endpoints IS DISTINCT FROM NEW.endpoints
          OR OLD.active_deployment_id IS DISTINCT FROM NEW.active_deployment_id)
    EXECUTE FUNCTION sw_routes_notify();
CREATE TRIGGER apps_routes_added AFTER INSERT OR DELETE ON apps
    FOR EACH ROW EXECUTE FUNCTION sw_routes_notify();
CREATE TRIGGER projects_routes AFTER UPDATE OF name ON projects
    FOR EACH ROW WHEN (OLD.name IS DISTINCT FROM NEW.name)
    EXECUTE FUNCTION sw_routes_notify();
