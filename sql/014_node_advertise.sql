-- Where the edge proxy reaches a node's HTTP API: SLIPWAY_ADVERTISE_ADDRESS with the port of
-- its first listener, written by each heartbeat of an api or all node ('' for a worker). The
-- routing table sends SLIPWAY_PUBLIC_URL's host to the api nodes that are up.
ALTER TABLE nodes ADD COLUMN advertise text NOT NULL DEFAULT '';

CREATE TRIGGER nodes_routes AFTER INSERT OR DELETE OR UPDATE OF advertise, stopped_at ON nodes
    FOR EACH ROW EXECUTE FUNCTION sw_routes_notify();
