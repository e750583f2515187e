-- Accounts, sessions, API tokens, TOTP recovery codes and the audit log.

CREATE TABLE users (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email text NOT NULL UNIQUE CHECK (email = lower(email) AND length(email) <= 254),
    name text NOT NULL DEFAULT '' CHECK (length(name) <= 200),
    password_hash text NOT NULL,
    role text NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    -- sealed with the secret box, associated data "totp:<user id>"
    totp_secret text,
    totp_enabled boolean NOT NULL DEFAULT false,
    -- the last accepted TOTP step: a code is never accepted twice
    totp_last_counter bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_tokens (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    token_hash text NOT NULL UNIQUE,
    scopes text[] NOT NULL CHECK (scopes <@ ARRAY['read', 'write', 'deploy', 'admin']::text[]
                                  AND cardinality(scopes) > 0),
    expires_at timestamptz,
    last_used_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);

-- Interactive sessions (login) and short-lived bearer tokens issued for an API token through
-- OAuth2 client_credentials (api_token_id set: the token's scopes apply).
CREATE TABLE sessions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    api_token_id uuid REFERENCES api_tokens (id) ON DELETE CASCADE,
    token_hash text NOT NULL UNIQUE,
    address text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    absolute_expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE totp_recovery_codes (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash text NOT NULL,
    used_at timestamptz
);
CREATE INDEX totp_recovery_codes_user ON totp_recovery_codes (user_id);

CREATE TABLE audit_log (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    actor_id uuid,
    actor_email text NOT NULL DEFAULT '',
    action text NOT NULL,
    resource text NOT NULL,
    resource_id text NOT NULL DEFAULT '',
    project_id uuid,
    address text NOT NULL DEFAULT '',
    details jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at ON audit_log (at DESC);
CREATE INDEX audit_log_actor ON audit_log (actor_id, at DESC);

-- One row, inserted by the first-run setup: two concurrent setups cannot both succeed.
CREATE TABLE instance_setup (
    id int PRIMARY KEY CHECK (id = 1),
    at timestamptz NOT NULL DEFAULT now()
);

-- The public shape of a user, in one place.
CREATE FUNCTION sw_user_json(u users) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object('id', u.id, 'email', u.email, 'name', u.name, 'role', u.role,
                             'totp_enabled', u.totp_enabled, 'created_at', u.created_at,
                             'updated_at', u.updated_at)
$$;

-- The list envelope of DESIGN.md §4 around an already ordered JSON array.
CREATE FUNCTION sw_page(data json, total bigint, page int, page_limit int) RETURNS json
LANGUAGE sql IMMUTABLE AS $$
    SELECT json_build_object(
        'data', coalesce(data, '[]'::json),
        'pagination', json_build_object(
            'page', page, 'limit', page_limit, 'total', total,
            'pages', ceil(total::numeric / page_limit)::bigint,
            'has_next', (page::bigint * page_limit) < total,
            'has_prev', page > 1))
$$;
