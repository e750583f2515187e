-- Projects and their members, environments, apps, encrypted env vars and domains.

CREATE TABLE projects (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    description text NOT NULL DEFAULT '' CHECK (length(description) <= 1000),
    created_by uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX projects_name ON projects (lower(name));

CREATE TABLE project_members (
    project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role text NOT NULL CHECK (role IN ('admin', 'developer', 'viewer')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, user_id)
);
CREATE INDEX project_members_user ON project_members (user_id);

CREATE TABLE environments (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name text NOT NULL CHECK (name ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (project_id, name)
);

CREATE TABLE apps (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    -- No cascade: deleting an environment that still holds an app fails, even one created
    -- while the delete waited (a NOT EXISTS check would read an older snapshot).
    environment_id uuid NOT NULL REFERENCES environments (id),
    name text NOT NULL CHECK (name ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
    repo_url text NOT NULL DEFAULT '',
    branch text NOT NULL DEFAULT 'main',
    build_command text NOT NULL DEFAULT '',
    start_command text NOT NULL DEFAULT '',
    dockerfile_path text NOT NULL DEFAULT '',
    runtime text NOT NULL DEFAULT 'process' CHECK (runtime IN ('process', 'container')),
    port int NOT NULL DEFAULT 3000 CHECK (port BETWEEN 1 AND 65535),
    health_check_path text NOT NULL DEFAULT '/',
    replicas int NOT NULL DEFAULT 1 CHECK (replicas >= 1),
    cpu text NOT NULL DEFAULT '',
    memory text NOT NULL DEFAULT '',
    auto_deploy boolean NOT NULL DEFAULT false,
    status text NOT NULL DEFAULT 'idle'
        CHECK (status IN ('idle', 'deploying', 'running', 'stopped', 'crashed')),
    active_deployment_id uuid,
    endpoints text[] NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (environment_id, name)
);
CREATE INDEX apps_project ON apps (project_id, created_at);

CREATE TABLE app_env (
    app_id uuid NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    key text NOT NULL CHECK (key ~ '^[A-Za-z_][A-Za-z0-9_]*$' AND length(key) <= 255),
    -- sealed with the secret box, associated data "app_env:<app id>:<key>"
    value_sealed text NOT NULL,
    build_time boolean NOT NULL DEFAULT false,
    runtime boolean NOT NULL DEFAULT true,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, key)
);

CREATE TABLE domains (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    app_id uuid NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    hostname text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX domains_app ON domains (app_id);

CREATE INDEX audit_log_project ON audit_log (project_id, at DESC);

-- Public shapes, in one place.
CREATE FUNCTION sw_project_json(p projects) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object('id', p.id, 'name', p.name, 'description', p.description,
                             'created_by', p.created_by, 'created_at', p.created_at,
                             'updated_at', p.updated_at)
$$;

CREATE FUNCTION sw_environment_json(e environments) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object('id', e.id, 'project_id', e.project_id, 'name', e.name,
                             'created_at', e.created_at, 'updated_at', e.updated_at)
$$;

CREATE FUNCTION sw_app_json(a apps) RETURNS json
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
                             'created_at', a.created_at, 'updated_at', a.updated_at)
$$;

CREATE FUNCTION sw_domain_json(d domains) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object('id', d.id, 'app_id', d.app_id, 'hostname', d.hostname,
                             'created_at', d.created_at)
$$;
