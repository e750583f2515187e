-- What the proxy reconcilers observed about each hostname: whether the proxy routes it and
-- to which endpoints, and which certificate a TLS handshake with the proxy (SNI = the name)
-- was answered with. Keyed by hostname, not domain id, because generated hostnames have no
-- domain row; a row whose hostname left the routing table is deleted by the next round.
-- Rows are only rewritten when something in them changed, so the read cache's trigger fires
-- on news, not on every round.

CREATE TABLE domain_state (
    hostname text PRIMARY KEY,
    routing_status text NOT NULL DEFAULT 'pending'
        CHECK (routing_status IN ('active', 'pending', 'error')),
    routing_endpoints text[] NOT NULL DEFAULT '{}',
    routing_error text NOT NULL DEFAULT '',
    tls_status text NOT NULL DEFAULT 'pending' CHECK (tls_status IN ('active', 'pending', 'error')),
    tls_issuer text NOT NULL DEFAULT '',
    tls_not_after timestamptz,
    tls_error text NOT NULL DEFAULT '',
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER domain_state_read_cache AFTER INSERT OR UPDATE OR DELETE ON domain_state
    FOR EACH ROW EXECUTE FUNCTION sw_read_cache_notify();

CREATE FUNCTION sw_domain_routing_json(host text) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT json_build_object('status', s.routing_status, 'endpoints', s.routing_endpoints,
                                  'error', nullif(s.routing_error, ''))
         FROM domain_state s WHERE s.hostname = host),
        json_build_object('status', 'pending', 'endpoints', '{}'::text[], 'error', NULL))
$$;

CREATE FUNCTION sw_domain_tls_json(host text) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT json_build_object('status', s.tls_status, 'issuer', nullif(s.tls_issuer, ''),
                                  'not_after', s.tls_not_after, 'error', nullif(s.tls_error, ''))
         FROM domain_state s WHERE s.hostname = host),
        json_build_object('status', 'pending', 'issuer', NULL, 'not_after', NULL, 'error', NULL))
$$;

CREATE OR REPLACE FUNCTION sw_domain_json(d domains) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object('id', d.id, 'app_id', d.app_id, 'hostname', d.hostname,
                             'created_at', d.created_at,
                             'routing', sw_domain_routing_json(d.hostname),
                             'tls', sw_domain_tls_json(d.hostname))
$$;
