-- Credentials for private repositories: an https token and an ssh deploy key per app, both
-- sealed with the secret box, and the ssh host keys each app trusts.

-- sealed, associated data "app_git_token:<app id>"; '' when none
ALTER TABLE apps ADD COLUMN git_token_sealed text NOT NULL DEFAULT '';

CREATE TABLE app_deploy_keys (
    app_id uuid PRIMARY KEY REFERENCES apps (id) ON DELETE CASCADE,
    public_key text NOT NULL,     -- authorized_keys line
    fingerprint text NOT NULL,    -- SHA256:...
    private_sealed text NOT NULL, -- OpenSSH private key, associated data "app_deploy_key:<app id>"
    created_at timestamptz NOT NULL DEFAULT now()
);

-- host is "name" or "name:port" (port 22 left out), as the worker names the repository's host
CREATE TABLE app_known_hosts (
    app_id uuid NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    host text NOT NULL CHECK (length(host) BETWEEN 1 AND 261),
    key_type text,
    sha256 text NOT NULL CHECK (sha256 ~ '^SHA256:[A-Za-z0-9+/]{43}$'),
    source text NOT NULL CHECK (source IN ('first_use', 'user')),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, host, sha256)
);

CREATE OR REPLACE FUNCTION sw_app_json(a apps) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object('id', a.id, 'name', a.name, 'project_id', a.project_id,
                             'environment_id', a.environment_id, 'repo_url', a.repo_url,
                             'branch', a.branch, 'build_command', a.build_command,
                             'start_command', a.start_command,
                             'dockerfile_path', a.dockerfile_path, 'runtime', a.runtime,
                             'port', a.port, 'health_check_path', a.health_check_path,
                             'replicas', a.replicas,
                             'resources', json_strip_nulls(json_build_object(
                                 'cpu', nullif(a.cpu, ''), 'memory', nullif(a.memory, ''))),
                             'auto_deploy', a.auto_deploy, 'status', a.status,
                             'endpoints', a.endpoints,
                             'active_deployment_id', a.active_deployment_id,
                             'has_git_token', a.git_token_sealed <> '',
                             'created_at', a.created_at, 'updated_at', a.updated_at)
$$;

CREATE FUNCTION sw_known_hosts_json(app uuid) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT coalesce(json_agg(json_build_object('host', h.host, 'key_type', h.key_type,
                                               'sha256', h.sha256, 'source', h.source,
                                               'created_at', h.created_at)
                             ORDER BY h.host, h.created_at, h.sha256), '[]'::json)
    FROM app_known_hosts h WHERE h.app_id = app
$$;
