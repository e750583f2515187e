"""Nodes and the system snapshot (DESIGN.md §5): every slipwayd process keeps a row in nodes,
refreshed by heartbeats with its load and the instances it supervises, marked stopped when it
drains and lost when its heartbeats stop; GET system/metrics answers this node's metrics."""

import os
import signal
import socket
import time
import uuid

from conftest import error_of, wait_for
from deploy_kit import *  # noqa: F401,F403 - fixtures and helpers
from resources_kit import Res

BEAT_MS = 1000
METRIC_KEYS = {"node", "cpu_percent", "memory", "load", "disk", "network", "process",
               "deployments_running"}
NODE_KEYS = {"id", "name", "role", "version", "status", "listen", "started_at", "heartbeat_at",
             "heartbeat_ms", "stopped_at", "load", "instances"}


def node_env(**extra):
    return make_deploy_env(SLIPWAY_NODE_HEARTBEAT_MS=BEAT_MS, **extra)


def nodes(who, **params):
    r = who.get("nodes", params=params)
    assert r.status_code == 200, r.text
    return r.json()["data"]


def node_named(who, name):
    return next((n for n in nodes(who) if n["name"] == name), None)


def name_of(d):
    """The node name a daemon logs when its worker starts (host-pid without NODE_NAME)."""
    event = wait_for(lambda: next((e for e in d.logs() if e.get("node")), None), timeout=15,
                     message="the daemon to log its node name")
    return event["node"]


def test_a_running_node_reports_its_load_and_instances(auth, hello_repo):
    d = auth.daemon(env=node_env())
    root = auth.setup_owner(d)
    app = hello_app(Res(auth, d), root, hello_repo)
    done, _ = Deployments(root).deploy(app["id"])
    assert done["status"] == "success", done
    [ep] = root.get(f"apps/{app['id']}").json()["endpoints"]
    name = name_of(d)

    def serving():
        n = node_named(root, name)
        return n and any(i["app_id"] == app["id"] and i["state"] == "running"
                         for i in n["instances"]) and n

    n = wait_for(serving, timeout=10, message="the instance in the node's heartbeat")
    assert set(n) == NODE_KEYS, n
    assert n["status"] == "up" and n["role"] == "all" and n["stopped_at"] is None, n
    assert n["heartbeat_ms"] == BEAT_MS and n["listen"] == f"127.0.0.1:{d.port}", n
    assert n["version"] == next(e for e in d.logs() if e.get("msg") == "starting")["version"]
    [inst] = [i for i in n["instances"] if i["app_id"] == app["id"]]
    assert inst["deployment_id"] == done["id"] and inst["endpoint"] == ep, inst
    assert isinstance(inst["pid"], int) and inst["restarts"] == 0, inst
    assert inst["name"].startswith(done["id"][:8]), inst
    assert set(n["load"]) == METRIC_KEYS and n["load"]["node"] == name, n["load"]
    assert n["load"]["process"]["rss_bytes"] > 0
    assert n["load"]["memory"]["total_bytes"] >= n["load"]["memory"]["available_bytes"] > 0

    # heartbeats keep coming
    first = n["heartbeat_at"]
    wait_for(lambda: node_named(root, name)["heartbeat_at"] != first, timeout=5,
             message="a later heartbeat")
    # the same node, by id
    r = root.get(f"nodes/{n['id']}")
    assert r.status_code == 200 and r.json()["id"] == n["id"] and r.json()["name"] == name

    # the snapshot: this node, now
    r = root.get("system/metrics")
    assert r.status_code == 200, r.text
    m = r.json()
    assert set(m) == METRIC_KEYS and m["node"] == name, m
    assert 0 <= m["cpu_percent"] <= 100 and len(m["load"]) == 3, m
    assert m["disk"]["path"].startswith("/"), m  # SLIPWAY_DATA_DIR's file system
    assert m["disk"]["total_bytes"] >= m["disk"]["free_bytes"] >= 0, m

    # a stopped app's instance leaves the next heartbeat
    assert root.post(f"apps/{app['id']}/stop").status_code == 202
    wait_for(lambda: not any(i["app_id"] == app["id"]
                             for i in node_named(root, name)["instances"]),
             timeout=15, message="the stopped instance gone from the heartbeat")


def test_drained_node_is_stopped_and_a_killed_one_lost(auth):
    env = node_env()
    a = auth.daemon(env=env)
    root = auth.setup_owner(a)
    a_name = name_of(a)
    b = auth.daemon(env=env, database_url=a.database_url)
    b_name = name_of(b)
    wait_for(lambda: {a_name, b_name} <= {n["name"] for n in nodes(root, status="up")},
             timeout=10, message="both nodes up")

    assert a.stop() == 0
    rb = root.on(b)
    n = node_named(rb, a_name)
    assert n["status"] == "stopped" and n["stopped_at"] is not None, n
    assert n["instances"] == [], n

    b.proc.kill()
    killed_at = time.monotonic()
    assert b.wait_exit(10) == -signal.SIGKILL
    c = auth.daemon(env=env, database_url=a.database_url)
    rc = root.on(c)
    n = wait_for(lambda: (x := node_named(rc, b_name)) and x["status"] == "lost" and x,
                 timeout=15, message="the killed node lost")
    # three heartbeats of grace from its last one, which came at most one interval before
    assert time.monotonic() - killed_at >= 2 * BEAT_MS / 1000 - 0.2
    assert n["stopped_at"] is None and n["instances"] == [], n
    assert [x["name"] for x in nodes(rc, status="lost")] == [b_name]
    assert a_name in [x["name"] for x in nodes(rc, status="stopped")]
    assert name_of(c) in [x["name"] for x in nodes(rc, status="up", role="all")]
    assert nodes(rc, role="api") == []
    names = [x["name"] for x in nodes(rc, sort="name:desc")]
    assert names == sorted(names, reverse=True), names

    # a node silent for more than a day is removed by the next heartbeat of any node
    auth.db(c).execute("UPDATE nodes SET heartbeat_at = now() - interval '25 hours' "
                       "WHERE name = %s", (b_name,))
    wait_for(lambda: node_named(rc, b_name) is None, timeout=10,
             message="the long-silent node removed")
    assert node_named(rc, a_name) is not None


def listening_sockets(pid):
    """The TCP sockets the process holds that are in LISTEN state (IPv4 and IPv6)."""
    held = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        if link.startswith("socket:["):
            held.add(link[len("socket:["):-1])
    listening = set()
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        listening |= {row.split()[9] for row in rows if row.split()[3] == "0A"}
    return held & listening


def test_a_worker_only_process_opens_no_http_listener(auth):
    env = node_env()
    a = auth.daemon(env=env)
    root = auth.setup_owner(a)
    w = auth.daemon(env=dict(env, SLIPWAY_ROLE="worker"), database_url=a.database_url,
                    wait=False)
    w_name = name_of(w)  # its worker has started: the node is fully up
    n = wait_for(lambda: node_named(root, w_name), timeout=10, message="the worker's node row")
    assert n["role"] == "worker" and n["listen"] == "", n

    # the control: a process with the HTTP role holds its listener
    assert listening_sockets(a.pid), "role all should hold a listening socket"
    assert listening_sockets(w.pid) == set()
    assert not any(e.get("msg") == "listening" for e in w.logs())
    with socket.socket() as s:
        s.settimeout(2)
        assert s.connect_ex(("127.0.0.1", w.port)) != 0  # nothing answers on its port


def test_validation_and_access(auth, owner):
    d = owner.d
    for params, field in (({"status": "down"}, "status"), ({"role": "web"}, "role")):
        r = owner.get("nodes", params=params)
        err = error_of(r, 400, "VALIDATION_ERROR")
        assert [x["field"] for x in err["details"]] == [field], err
    error_of(owner.get("nodes/not-a-uuid"), 404, "RESOURCE_NOT_FOUND")
    error_of(owner.get(f"nodes/{uuid.uuid4()}"), 404, "RESOURCE_NOT_FOUND")
    member = Res(auth, d).user(owner)
    for path in ("nodes", "system/metrics"):
        error_of(member.get(path), 403, "INSUFFICIENT_ROLE")
    r = d.request("GET", "/api/v1/system/metrics")
    error_of(r, 401, "AUTHENTICATION_ERROR")
