-- Environments carry how many apps they hold and how many of those run now (Miso's
-- `applications: {total, active}`): counted when read, so they are never stale. apps already
-- notifies the read cache, so a cached environment is dropped when one of its apps changes.

CREATE INDEX apps_environment ON apps (environment_id, status);

CREATE OR REPLACE FUNCTION sw_environment_json(e environments) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object('id', e.id, 'project_id', e.project_id, 'name', e.name,
                             'applications',
                             (SELECT json_build_object('total', count(*), 'active',
                                                       count(*) FILTER (WHERE a.status = 'running'))
                              FROM apps a WHERE a.environment_id = e.id),
                             'created_at', e.created_at, 'updated_at', e.updated_at)
$$;
