-- Image deploys (issue 15): an app may run an image instead of building its repository, with
-- write-only credentials for the image's registry, sealed like env values (associated data
-- "app_registry_auth:<app id>"); a deployment pins the image it releases, so a rollback to it
-- runs that image again whatever the app says by then.
ALTER TABLE apps ADD COLUMN image text NOT NULL DEFAULT '';
ALTER TABLE apps ADD COLUMN registry_auth_sealed text NOT NULL DEFAULT '';
ALTER TABLE deployments ADD COLUMN image text NOT NULL DEFAULT '';
-- Whether the node that released the app enforces its resources (cgroups for processes, the
-- CLI's limits for containers), and why not; NULL until a release of an app with resources.
ALTER TABLE apps ADD COLUMN resources_enforced boolean;
ALTER TABLE apps ADD COLUMN resources_note text NOT NULL DEFAULT '';

CREATE OR REPLACE FUNCTION sw_app_json(a apps) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object('id', a.id, 'name', a.name, 'project_id', a.project_id,
                             'environment_id', a.environment_id, 'repo_url', a.repo_url,
                             'branch', a.branch, 'build_command', a.build_command,
                             'start_command', a.start_command,
                             'dockerfile_path', a.dockerfile_path, 'runtime', a.runtime,
                             'image', a.image,
                             'port', a.port, 'health_check_path', a.health_check_path,
                             'replicas', a.replicas,
                             'resources', json_strip_nulls(json_build_object(
                                 'cpu', nullif(a.cpu, ''), 'memory', nullif(a.memory, ''))),
                             'resources_enforced', a.resources_enforced,
                             'resources_note', nullif(a.resources_note, ''),
                             'auto_deploy', a.auto_deploy, 'status', a.status,
                             'endpoints', a.endpoints,
                             'active_deployment_id', a.active_deployment_id,
                             'has_git_token', a.git_token_sealed <> '',
                             'has_registry_auth', a.registry_auth_sealed <> '',
                             'created_at', a.created_at, 'updated_at', a.updated_at)
$$;
