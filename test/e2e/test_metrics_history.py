"""GET system/metrics/history (issue 16): every node samples itself every
SLIPWAY_METRICS_SAMPLE_MS into node_metrics; the API answers one metric per node and over all
nodes, in buckets of `step` aggregated by avg, min or max."""

import time

from conftest import error_of, wait_for
from resources_kit import Res

SAMPLE_ENV = {"SLIPWAY_METRICS_SAMPLE_MS": 100, "SLIPWAY_NODE_HEARTBEAT_MS": 500}
KEYS = {"metric", "unit", "aggregation", "time_range", "step", "from", "to", "series"}
METRICS = ["cpu_percent", "load_1m", "memory_used_bytes", "memory_used_percent",
           "disk_free_bytes", "disk_used_percent", "network_rx_bytes_per_s",
           "network_tx_bytes_per_s", "process_rss_bytes", "http_connections",
           "deployments_running"]


def history(who, **params):
    r = who.get("system/metrics/history", params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == KEYS, body
    return body


def series_of(body):
    return {s["node"]: s for s in body["series"]}


def node_names(who):
    r = who.get("nodes")
    assert r.status_code == 200, r.text
    return {n["name"]: n["id"] for n in r.json()["data"]}


def test_a_node_records_its_own_history(auth):
    d = auth.daemon(env=SAMPLE_ENV)
    root = auth.setup_owner(d)
    [(name, node_id)] = wait_for(lambda: node_names(root), timeout=10,
                                 message="the node's row").items()

    def sampled(metric, points=3):
        def enough():
            b = history(root, metric=metric, time_range="5m", step="1s")
            s = series_of(b).get(name)
            return b if s and len(s["points"]) >= points else None
        return wait_for(enough, timeout=15, message=f"{points} buckets of {metric}")

    b = sampled("memory_used_bytes")
    assert b["metric"] == "memory_used_bytes" and b["unit"] == "bytes", b
    assert b["aggregation"] == "avg" and b["time_range"] == 300 and b["step"] == 1, b
    assert [s["node"] for s in b["series"]] == [name, "all"], b
    mine, everyone = series_of(b)[name], series_of(b)["all"]
    assert mine["node_id"] == node_id and everyone["node_id"] is None
    now = time.time()
    total = root.get("system/metrics").json()["memory"]["total_bytes"]
    ts = [t for t, _ in mine["points"]]
    assert ts == sorted(set(ts)), ts  # one point per bucket, oldest first
    for t, v in mine["points"]:
        assert isinstance(t, int) and now - 330 <= t <= now + 5, (t, now)
        assert 0 < v <= total, (v, total)
    # one node: all is that node
    assert everyone["points"] == mine["points"]

    cores = len(open("/proc/cpuinfo").read().split("processor\t:")) - 1
    for metric, ok in (("cpu_percent", lambda v: 0 <= v <= 100),
                       ("memory_used_percent", lambda v: 0 < v < 100),
                       ("load_1m", lambda v: 0 <= v <= 100 * max(cores, 1)),
                       ("disk_used_percent", lambda v: 0 < v <= 100),
                       ("disk_free_bytes", lambda v: v > 0),
                       ("process_rss_bytes", lambda v: 1 << 20 < v < 1 << 32),
                       ("network_rx_bytes_per_s", lambda v: v >= 0),
                       ("http_connections", lambda v: 0 <= v < 100),
                       ("deployments_running", lambda v: v == 0)):
        pts = series_of(sampled(metric))[name]["points"]
        assert all(ok(v) for _, v in pts), (metric, pts)

    # min <= avg <= max in every bucket that is over (the current one still fills)
    def agg(a):
        b = history(root, metric="process_rss_bytes", time_range="5m", step="1s", aggregation=a)
        assert b["aggregation"] == a
        return dict(series_of(b)[name]["points"])
    def over():
        lo, mid, hi = agg("min"), agg("avg"), agg("max")
        closed = [t for t in lo if t < time.time() - 2 and t in mid and t in hi]
        return closed and (lo, mid, hi, closed)
    lo, mid, hi, closed = wait_for(over, timeout=10, message="a bucket that is over")
    assert all(lo[t] <= mid[t] <= hi[t] for t in closed), (lo, mid, hi)

    # one node, by name or by id; a node that does not exist
    for key in (name, node_id):
        b = history(root, metric="cpu_percent", node=key, time_range="1m", step="1s")
        assert [s["node"] for s in b["series"]] == [name], b
    error_of(root.get("system/metrics/history", params={"metric": "cpu_percent",
                                                        "node": "no-such-node"}),
             404, "RESOURCE_NOT_FOUND")


def test_buckets_and_aggregations_are_exact(auth):
    """Samples written with known values at known times: each bucket's avg, min and max, per
    node and over all, empty buckets left out, samples outside the range ignored, and a sample
    older than a day pruned by the next store."""
    d = auth.daemon(env=SAMPLE_ENV)
    root = auth.setup_owner(d)
    db = auth.db(d)
    base = (int(time.time()) // 60) * 60 - 600  # a minute boundary 10-11 minutes ago
    ids = {}
    for n in ("fake-a", "fake-b"):
        ids[n] = db.execute("INSERT INTO nodes (name, role, version) VALUES (%s, 'worker', 't') "
                            "RETURNING id::text", (n,)).fetchone()[0]
    rows = [("fake-a", base + 0, 10, 1000, 250), ("fake-a", base + 20, 30, 1000, 500),
            ("fake-a", base + 120, 50, 1000, 1000), ("fake-b", base + 10, 40, 2000, 0),
            ("fake-a", base - 20 * 60 + 600, 99, 1000, 0)]  # 20 minutes ago: out of range
    for n, at, cpu, total, avail in rows:
        db.execute("INSERT INTO node_metrics (node_id, at, cpu_percent, memory_total_bytes, "
                   "memory_available_bytes) VALUES (%s, to_timestamp(%s), %s, %s, %s)",
                   (ids[n], at, cpu, total, avail))

    def fake(metric, aggregation, **kw):
        b = history(root, metric=metric, aggregation=aggregation, time_range="15m", step="1m",
                    **kw)
        return {n: [p for p in s["points"] if p[0] <= base + 120]
                for n, s in series_of(b).items() if n in ("fake-a", "fake-b", "all")}

    assert fake("cpu_percent", "avg") == {"fake-a": [[base, 20], [base + 120, 50]],
                                          "fake-b": [[base, 40]],
                                          "all": [[base, 26.667], [base + 120, 50]]}
    assert fake("cpu_percent", "min") == {"fake-a": [[base, 10], [base + 120, 50]],
                                          "fake-b": [[base, 40]],
                                          "all": [[base, 10], [base + 120, 50]]}
    assert fake("cpu_percent", "max") == {"fake-a": [[base, 30], [base + 120, 50]],
                                          "fake-b": [[base, 40]],
                                          "all": [[base, 40], [base + 120, 50]]}
    # a metric derived from two columns
    assert fake("memory_used_percent", "max")["all"] == [[base, 100], [base + 120, 0]]
    # one node: its series alone, by id
    b = history(root, metric="cpu_percent", aggregation="max", time_range="15m", step="5m",
                node=ids["fake-b"])
    assert b["series"] == [{"node": "fake-b", "node_id": ids["fake-b"],
                            "points": [[base - base % 300, 40]]}], b
    # a metric no fake sample has (NULL) gives them no series
    assert "fake-a" not in series_of(history(root, metric="http_connections"))

    # older than a day: pruned by the real node's next store
    db.execute("INSERT INTO node_metrics (node_id, at, cpu_percent) VALUES "
               "(%s, now() - interval '25 hours', 1)", (ids["fake-a"],))
    wait_for(lambda: db.execute("SELECT count(*) FROM node_metrics WHERE at < now() - "
                                "interval '1 day'").fetchone()[0] == 0,
             timeout=10, message="the day-old sample pruned")


def test_two_nodes_on_one_database(auth):
    a = auth.daemon(env=SAMPLE_ENV)
    root = auth.setup_owner(a)
    b = auth.daemon(env=SAMPLE_ENV, database_url=a.database_url)
    rb = root.on(b)
    names = wait_for(lambda: len(n := node_names(root)) == 2 and n, timeout=10,
                     message="both nodes' rows")

    def both(who):
        body = history(who, metric="process_rss_bytes", time_range="5m", step="1s")
        s = series_of(body)
        return body if set(s) == set(names) | {"all"} and all(
            len(s[n]["points"]) >= 2 for n in names) else None

    body = wait_for(lambda: both(root), timeout=15, message="both nodes' samples, asked of a")
    # the same history from the other node: nothing depends on which node answers
    assert set(series_of(wait_for(lambda: both(rb), timeout=5))) == set(names) | {"all"}
    s = series_of(body)
    # all is every node's samples together: its max is the larger of the two in each bucket
    maxed = series_of(history(root, metric="process_rss_bytes", time_range="5m", step="1s",
                              aggregation="max"))
    per = [dict(maxed[n]["points"]) for n in names]
    for t, v in maxed["all"]["points"]:
        assert v == max(p[t] for p in per if t in p), (t, v, per)
    assert s["all"]["node_id"] is None

    # a stopped node's history stays
    [a_name] = [n for n in names if n.endswith(f"-{a.pid}")]
    assert a.stop() == 0
    after = series_of(history(rb, metric="process_rss_bytes", time_range="5m", step="1s"))
    assert a_name in after and after[a_name]["points"], after


def test_validation_and_access(auth):
    d = auth.daemon(env=SAMPLE_ENV)
    root = auth.setup_owner(d)

    def invalid(field, want, **params):
        err = error_of(root.get("system/metrics/history", params=params), 400,
                       "VALIDATION_ERROR")
        details = {x["field"]: x["message"] for x in err["details"]}
        assert field in details and want in details[field], err
        return details[field]

    listed = invalid("metric", "is required", time_range="1h")
    assert listed.split(": one of ")[1].split(", ") == METRICS
    listed = invalid("metric", "must be one of", metric="cpu")
    assert listed.split("must be one of ")[1].split(", ") == METRICS
    invalid("aggregation", "must be one of avg, min, max", metric="cpu_percent",
            aggregation="median")
    invalid("time_range", "at most 86400s", metric="cpu_percent", time_range="25h")
    invalid("time_range", "must be a duration", metric="cpu_percent", time_range="an hour")
    invalid("step", "at least 87s", metric="cpu_percent", time_range="24h", step="1m")
    invalid("step", "must not exceed time_range", metric="cpu_percent", time_range="1h",
            step="2h")
    invalid("step", "must be a duration", metric="cpu_percent", step="0s")
    invalid("node", "1 to 160 characters", metric="cpu_percent", node="n" * 161)
    # every problem at once
    err = error_of(root.get("system/metrics/history",
                            params={"aggregation": "mean", "step": "x"}), 400)
    assert {x["field"] for x in err["details"]} == {"metric", "aggregation", "step"}, err

    # the documented metrics are the ones served
    doc = d.get("/api/v1/openapi.json").json()
    op = doc["paths"]["/api/v1/system/metrics/history"]["get"]
    params = {p["name"]: p for p in op["parameters"]}
    assert params["metric"]["required"] is True and params["metric"]["schema"]["enum"] == METRICS
    assert set(params) == {"metric", "time_range", "step", "aggregation", "node"}
    schema = doc["components"]["schemas"]["MetricsHistory"]
    assert schema["properties"]["metric"]["enum"] == METRICS
    assert "400" in op["responses"] and "403" in op["responses"]

    # instance admins only, like GET nodes and system/metrics
    member = Res(auth, d).user(root)
    error_of(member.get("system/metrics/history", params={"metric": "cpu_percent"}), 403,
             "INSUFFICIENT_ROLE")
    error_of(d.request("GET", "/api/v1/system/metrics/history?metric=cpu_percent"), 401,
             "AUTHENTICATION_ERROR")
    admin = auth.make_user(root, role="admin")
    assert admin.get("system/metrics/history",
                     params={"metric": "cpu_percent"}).status_code == 200
