"""Deployments across a worker's death and shutdown, and a build that floods its log
(issue 5; /tmp/lead/deploy_contract.md, DESIGN.md §3 "SIGTERM drains" and §7 step 6).

- kill -9 in the middle of a build: the next worker on the same PostgreSQL and Redis ends
  the deployment (failed "abandoned", or success), nothing stays building.
- SIGTERM during a build: slipwayd exits 0 within its drain bound, the deployment goes back
  to pending, and the next worker runs it to success.
- 200,000 build lines: all stored, in order, pageable with since_seq, and slipwayd's RSS
  does not grow with them.
"""

import os
import random
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from deploy_kit import *  # noqa: F401,F403 - fixtures and helpers
from deploy_kit import BUILD, START
from resources_kit import Res

LEASE_TTL_MS = 3000
DRAIN_TIMEOUT_MS = 5000
ACTIVE = ("pending", "building", "deploying")


@pytest.fixture
def lease_env(deploy_env):
    """deploy_env with a short lease, so a dead worker's hold lapses in seconds."""
    return dict(deploy_env, SLIPWAY_LEASE_TTL_MS=str(LEASE_TTL_MS),
                SLIPWAY_DRAIN_TIMEOUT_MS=str(DRAIN_TIMEOUT_MS))


def start_pair_a(auth, env):
    """Daemon A, its owner and a Res on it."""
    d = auth.daemon(env=env)
    return d, auth.setup_owner(d), Res(auth, d)


def start_b(auth, a, env):
    """Daemon B on A's database and Redis (the slipwayd factory shares the Redis server)."""
    return auth.daemon(env=env, database_url=a.database_url)


def wait_building_image(deps, dep_id, timeout=40.0):
    seen = {}

    def building():
        d = deps.get(dep_id)
        seen["last"] = (d["status"], d["stage"], d["queue_position"], d["node_id"])
        assert d["status"] not in TERMINAL, f"deployment ended before its build ran: {d}; " \
                                            f"log: {deps.tail(dep_id)}"
        return d["status"] == "building" and d["stage"] == "building_image" and d

    try:
        return wait_for(building, timeout=timeout,
                        message=f"deployment {dep_id} building / building_image")
    except TimeoutError as e:
        raise TimeoutError(f"{e}; last seen (status, stage, queue_position, node): "
                           f"{seen.get('last')}; log: {deps.tail(dep_id)}") from e


def db_row(auth, d, dep_id):
    with auth.db(d).cursor() as cur:
        cur.execute("SELECT status, stage, error_message FROM deployments WHERE id = %s",
                    (dep_id,))
        return cur.fetchone()


def kill_matching(needle):
    """SIGKILLs the process groups (and processes) whose command line holds needle."""
    for pid, _ in procs_matching(needle):
        for kill in (lambda p: os.killpg(os.getpgid(p), signal.SIGKILL),
                     lambda p: os.kill(p, signal.SIGKILL)):
            try:
                kill(pid)
            except (ProcessLookupError, PermissionError):
                pass


def pgrep(needle):
    r = subprocess.run(["pgrep", "-f", needle], capture_output=True, text=True)
    return [int(p) for p in r.stdout.split()]


def rss_kb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def hwm_kb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return -1


# --------------------------------------------------------------------------- kill -9


def test_kill9_mid_build_is_abandoned_by_next_worker(auth, lease_env, hello_repo):
    # A unique duration marks this build's process among everything else running.
    marker = f"sleep 30.{random.randrange(10**6, 10**7)}"
    a, root, res = start_pair_a(auth, lease_env)
    app = hello_app(res, root, hello_repo, build_command=marker)
    deps = Deployments(root)
    try:
        dep = deps.trigger(app["id"])
        wait_building_image(deps, dep["id"])
        wait_for(lambda: pgrep(marker), timeout=10, message=f"build process {marker!r}")

        a.proc.kill()  # SIGKILL: no drain, no hand-back, the lease just stops being renewed
        assert a.wait_exit(10) == -signal.SIGKILL, a.proc.returncode
        # (the fixture's teardown only judges daemons that are still running)
        killed_at = time.monotonic()
        row = db_row(auth, a, dep["id"])
        assert row[0] == "building", f"a killed worker cannot have moved its deployment: {row}"

        b = start_b(auth, a, lease_env)
        deps_b = Deployments(root.on(b))
        done, history = deps_b.wait_terminal(dep["id"], timeout=15.0)
        took = time.monotonic() - killed_at
        assert done["status"] in ("failed", "success"), f"{done} (seen {history})"
        if done["status"] == "failed":
            assert "abandoned" in (done["error_message"] or ""), done
            assert done["finished_at"] is not None, done
        # Nothing of this app is left pending, building or deploying.
        r = root.on(b).get(f"apps/{app['id']}/deployments")
        assert r.status_code == 200, r.text
        stuck = [(d["id"], d["status"]) for d in r.json()["data"] if d["status"] in ACTIVE]
        assert not stuck, f"deployments left active after takeover: {stuck}"
        r = root.on(b).get("deployments", params={"status": "building"})
        assert r.status_code == 200, r.text
        assert r.json()["data"] == [], r.json()
        print(f"kill -9 takeover: {done['status']} {done['error_message']!r} "
              f"{took:.1f}s after the kill")
    finally:
        kill_matching(marker)
    wait_for(lambda: not pgrep(marker), timeout=5, message=f"{marker!r} killed")


def test_kill9_then_restart_as_the_same_node_settles_its_deployments_first(auth, deploy_env,
                                                                           hello_repo):
    """A node with a stable name settles what its previous process left building before it
    claims anything, without waiting for the lease (a minute here) to lapse; then it deploys."""
    env = dict(deploy_env, SLIPWAY_NODE_NAME=f"node-{uuid.uuid4().hex[:8]}",
               SLIPWAY_LEASE_TTL_MS="60000")
    marker = f"sleep 30.{random.randrange(10**6, 10**7)}"
    a, root, res = start_pair_a(auth, env)
    stuck_app = hello_app(res, root, hello_repo, build_command=marker)
    deps = Deployments(root)
    try:
        dep = deps.trigger(stuck_app["id"])
        wait_building_image(deps, dep["id"])
        a.proc.kill()
        assert a.wait_exit(10) == -signal.SIGKILL, a.proc.returncode

        b = start_b(auth, a, env)
        deps_b = Deployments(root.on(b))
        done, history = deps_b.wait_terminal(dep["id"], timeout=15.0)
        assert done["status"] == "failed", (done, history)
        assert done["error_message"] == "abandoned: the worker running it stopped", done
        other = hello_app(Res(auth, b), root.on(b), hello_repo)
        ok, history = deps_b.deploy(other["id"])
        assert ok["status"] == "success", (ok, history, deps_b.tail(ok["id"]))
        assert ok["node_id"] == done["node_id"] == f"{env['SLIPWAY_NODE_NAME']}-0", ok
    finally:
        kill_matching(marker)
    wait_for(lambda: not pgrep(marker), timeout=5, message=f"{marker!r} killed")


# --------------------------------------------------------------------------- SIGTERM


def test_sigterm_hands_back_and_next_worker_runs_it(auth, lease_env, hello_repo, tmp_path):
    # The build holds while a loopback listener of the test's accepts: a file would not do,
    # as the build's /tmp is its own.
    hold = HoldListener()
    marker = f"hold-build-{uuid.uuid4().hex[:8]}"
    build = f": {marker}; {hold.build_wait()}; {BUILD}"
    a, root, res = start_pair_a(auth, lease_env)
    app = hello_app(res, root, hello_repo, build_command=build)
    deps = Deployments(root)
    try:
        dep = deps.trigger(app["id"])
        wait_building_image(deps, dep["id"])
        wait_for(lambda: procs_matching(str(marker)), timeout=10, message="build loop running")

        t0 = time.monotonic()
        a.signal(signal.SIGTERM)
        bound = DRAIN_TIMEOUT_MS / 1000 + 2.0  # the drain bound plus a stop grace
        rc = a.wait_exit(bound)
        took = time.monotonic() - t0
        assert rc is not None, f"slipwayd still running {bound}s after SIGTERM"
        assert rc == 0, f"slipwayd exited {rc} on SIGTERM:\n{a.log_tail(30)}"
        # The build's process group went with it.
        wait_gone(str(marker), timeout=5)

        status, stage, error = db_row(auth, a, dep["id"])
        assert status == "pending", \
            f"after SIGTERM expected the deployment handed back as pending, got " \
            f"{status}/{stage} {error!r}"
        assert stage == "queued", (status, stage, error)

        hold.close()  # B's build goes straight through
        b = start_b(auth, a, lease_env)
        deps_b = Deployments(root.on(b))
        done, history = deps_b.wait_terminal(dep["id"], timeout=25.0)
        assert done["status"] == "success", \
            f"expected B to run the handed-back deployment to success, got {done} " \
            f"(seen {history}); log: {deps_b.tail(dep['id'])}"
        assert done["is_active"] is True and done["stage"] == "completed", done
        app_now = root.on(b).get(f"apps/{app['id']}").json()
        assert app_now["active_deployment_id"] == dep["id"], app_now
        [endpoint] = app_now["endpoints"]
        assert fetch(endpoint, "/") == (200, "v1")
        print(f"SIGTERM: exit 0 after {took:.2f}s; B ran it: {history}")
    finally:
        hold.close()


# --------------------------------------------------------------------------- big logs


def test_200k_build_lines_stored_in_order_and_rss_flat(auth, lease_env, hello_repo):
    n = 200_000
    # every line stored: above SLIPWAY_BUILD_LOG_MAX_BYTES's default (test_log_safety.py
    # checks the cut)
    d, root, res = start_pair_a(auth, dict(lease_env, SLIPWAY_BUILD_LOG_MAX_BYTES=64 << 20))
    app = hello_app(res, root, hello_repo,
                    build_command=f"seq 1 {n}; {BUILD} >/dev/null 2>&1")
    deps = Deployments(root)
    before = rss_kb(d.pid)

    done, history = deps.deploy(app["id"], timeout=60.0)
    assert done["status"] == "success", f"{done} (seen {history}); log {deps.tail(done['id'])}"
    at_success = rss_kb(d.pid)

    # The last chunks may still be on their way to PostgreSQL when the status says success
    # (test_build_output_stored_when_deployment_ends checks that separately): wait until
    # the last build line is stored.
    wait_for(lambda: any(ln["line"] == str(n) for ln in
                         deps.logs(done["id"], lines=1000)["data"]),
             timeout=15, message=f"line {n} stored")
    after = rss_kb(d.pid)  # the deployment is over: ended and its output stored
    t0 = time.monotonic()
    lines = deps.all_logs(done["id"], page=10000)
    paging = time.monotonic() - t0
    after_paging = rss_kb(d.pid)

    seqs = [ln["seq"] for ln in lines]
    bad = next((i for i in range(1, len(seqs)) if seqs[i] <= seqs[i - 1]), None)
    assert bad is None, f"seq not strictly increasing at {bad}: {seqs[bad - 1]} then {seqs[bad]}"
    out = [ln["line"] for ln in lines if ln["stream"] == "stdout"]
    assert len(out) == n, f"expected {n} stdout lines, got {len(out)}; first {out[:3]} " \
                          f"last {out[-3:]}"
    expected = [str(i) for i in range(1, n + 1)]
    if out != expected:
        i = next(i for i, (x, y) in enumerate(zip(out, expected)) if x != y)
        raise AssertionError(f"stdout line {i}: expected {expected[i]!r}, got {out[i]!r}")

    grow = (after - before) / 1024
    grow_paging = (after_paging - before) / 1024
    print(f"200k lines: RSS {before / 1024:.1f} MB before, {at_success / 1024:.1f} MB when "
          f"it said success, {after / 1024:.1f} MB once stored, {after_paging / 1024:.1f} MB "
          f"after paging ({paging:.1f}s); peak {hwm_kb(d.pid) / 1024:.1f} MB")
    if sanitized(d.pid):
        # AddressSanitizer keeps freed memory in quarantine: RSS says nothing about us there.
        return
    assert grow < 20, f"VmRSS grew {grow:.1f} MB over a 200k-line build ({before} -> {after} kB)"
    assert grow_paging < 20, \
        f"VmRSS grew {grow_paging:.1f} MB after paging the logs ({before} -> {after_paging} kB)"


def sanitized(pid):
    """True when the daemon runs with AddressSanitizer's runtime mapped in."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            return "libasan" in f.read()
    except OSError:
        return False


def test_build_output_stored_when_deployment_ends(auth, lease_env, hello_repo):
    """Once GET deployments/:id says the deployment ended, its build output is in the log:
    a client that waits for the end and then reads the log sees all of it."""
    n = 50_000
    d, root, res = start_pair_a(auth, lease_env)
    app = hello_app(res, root, hello_repo,
                    build_command=f"seq 1 {n}; {BUILD} >/dev/null 2>&1")
    deps = Deployments(root)
    done, history = deps.deploy(app["id"], timeout=60.0)
    assert done["status"] == "success", f"{done} (seen {history})"
    lines = deps.all_logs(done["id"], page=10000)
    out = [ln["line"] for ln in lines if ln["stream"] == "stdout"]
    # How long the rest took to appear, for the failure message.
    t0 = time.monotonic()
    wait_for(lambda: any(ln["line"] == str(n) for ln in
                         deps.logs(done["id"], lines=1000)["data"]),
             timeout=15, message=f"line {n} stored")
    lag = time.monotonic() - t0
    assert len(out) == n, \
        f"deployment reported {done['status']} (finished_at {done['finished_at']}) with " \
        f"{len(out)} of its {n} build lines stored ({len(lines)} lines in all); the rest " \
        f"appeared {lag:.2f}s later"
