"""Runtime output of app instances (issue 5, item "runtime logs"): every line an instance
prints goes through the same path as build output (masked, numbered per app) into a capped
Redis list per app, read with GET apps/:id/logs?lines=N."""

import uuid

import pytest
import redis as redis_lib

from deploy_kit import *  # noqa: F401,F403 - fixtures and helpers
from deploy_kit import START

LOG_KEYS = {"seq", "stream", "line", "instance", "timestamp"}


def app_logs(who, app_id, expect=200, **params):
    r = who.get(f"apps/{app_id}/logs", params=params)
    assert r.status_code == expect, f"GET apps/{app_id}/logs {params}: {r.status_code} {r.text}"
    return r.json()


def wait_line(who, app_id, needle, timeout=15.0, lines=1000):
    """The stored lines once one of them contains needle."""
    def seen():
        data = app_logs(who, app_id, lines=lines)["data"]
        return any(needle in ln["line"] for ln in data) and data
    return wait_for(seen, timeout=timeout, message=f"runtime line with {needle!r}")


def test_runtime_lines_masked_numbered_and_bounded_by_lines(droot, dres, hello_repo):
    app = hello_app(dres, droot, hello_repo)
    secret, _ = dres.set_env(droot, app["id"], "APP_SECRET", runtime=True, build_time=False)
    marker = uuid.uuid4().hex[:10]
    start = f'echo "start {marker} token=$APP_SECRET"; echo "warn {marker}" >&2; {START}'
    r = droot.patch(f"apps/{app['id']}", json={"start_command": start})
    assert r.status_code == 200, r.text
    deps = Deployments(droot)
    done, _ = deps.deploy(app["id"])
    assert done["status"] == "success", (done, deps.tail(done["id"]))
    [ep] = droot.get(f"apps/{app['id']}").json()["endpoints"]
    assert fetch(ep, f"/ping-{marker}")[0] == 404  # the server logs each request to stdout

    data = wait_line(droot, app["id"], f"/ping-{marker}")
    for ln in data:
        assert set(ln) == LOG_KEYS, ln
        assert secret not in ln["line"], ln
        parse_ts(ln["timestamp"])
    seqs = [ln["seq"] for ln in data]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs
    by_text = {ln["line"]: ln for ln in data}
    assert by_text[f"start {marker} token=***"]["stream"] == "stdout", data
    assert by_text[f"warn {marker}"]["stream"] == "stderr", data
    instance = by_text[f"warn {marker}"]["instance"]
    assert instance.startswith(done["id"][:8]), instance
    assert any(ln["stream"] == "stdout" and f"/ping-{marker}" in ln["line"] for ln in data)

    # ?lines=N: the last N, oldest first.
    last2 = app_logs(droot, app["id"], lines=2)["data"]
    assert last2 == data[-2:], (last2, data[-2:])
    assert len(app_logs(droot, app["id"])["data"]) == min(len(data), 100)
    for bad in ("0", "1001", "x", "-1"):
        assert_invalid(droot.get(f"apps/{app['id']}/logs", params={"lines": bad}), "lines")


def test_runtime_logs_need_access_to_the_app(auth, droot, dres, hello_repo):
    app = hello_app(dres, droot, hello_repo)
    stranger = dres.user(droot)
    assert stranger.get(f"apps/{app['id']}/logs").status_code == 404
    viewer = dres.user(droot)
    dres.member(droot, app["project_id"], viewer, "viewer")
    body = app_logs(viewer, app["id"])
    assert body == {"data": []}, body
    assert droot.get(f"apps/{uuid.uuid4()}/logs").status_code == 404


@pytest.fixture
def ring_env():
    return make_deploy_env(SLIPWAY_RUNTIME_LOG_LINES=50)


def test_runtime_log_ring_is_capped_and_written_in_batches(auth, ring_env, hello_repo,
                                                          redis_server):
    d = auth.daemon(env=ring_env)
    root = auth.setup_owner(d)
    res = Res(auth, d)
    app = hello_app(res, root, hello_repo)
    n = 3000
    start = f"seq 1 {n} | sed 's/^/burst /'; {START}"
    assert root.patch(f"apps/{app['id']}", json={"start_command": start}).status_code == 200
    rc = redis_lib.Redis.from_url(redis_server.url())
    rpush_before = rc.info("commandstats").get("cmdstat_rpush", {}).get("calls", 0)
    deps = Deployments(root)
    done, _ = deps.deploy(app["id"])
    assert done["status"] == "success", (done, deps.tail(done["id"]))

    data = wait_line(root, app["id"], f"burst {n}")
    assert len(data) == 50, len(data)
    lines = [ln["line"] for ln in data]
    assert "burst 1" not in lines and f"burst {n}" in lines, lines
    first = lines.index(f"burst {n - 40}") if f"burst {n - 40}" in lines else None
    assert first is not None, f"the ring should hold the last lines: {lines}"
    keys = [k for k in rc.scan_iter("slipway:*:applog:" + app["id"])]
    assert len(keys) == 1 and rc.llen(keys[0]) == 50, keys
    rpush = rc.info("commandstats")["cmdstat_rpush"]["calls"] - rpush_before
    # 3000 lines at once: a handful of batches (one per 100 ms at most), never one per line.
    assert rpush < 30, f"{rpush} RPUSH commands for {n} lines"
