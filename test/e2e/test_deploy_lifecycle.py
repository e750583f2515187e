"""The worker's housekeeping (issue 5): old builds pruned, timeouts that name their step,
stop escalating to SIGKILL, app instances started again after slipwayd restarts, and the
instances and runtime logs of deleted apps cleared away."""

import random
import signal
import time
import uuid
from pathlib import Path

import pytest
import redis as redis_lib

from deploy_kit import *  # noqa: F401,F403 - fixtures and helpers
from deploy_kit import START


def builds_dir(d, app_id):
    return Path(d.env["SLIPWAY_DATA_DIR"]) / "builds" / app_id


def deployed(who, d, app):
    """Deploys the app; (deployment, its one endpoint) once it runs from its build."""
    deps = Deployments(who)
    done, _ = deps.deploy(app["id"])
    assert done["status"] == "success", (done, deps.tail(done["id"]))
    [ep] = who.get(f"apps/{app['id']}").json()["endpoints"]
    assert procs_under(builds_dir(d, app["id"])), "the instance should run from its build"
    return done, ep


# --------------------------------------------------------------------------- pruning


@pytest.fixture
def deploy_env():
    return make_deploy_env(SLIPWAY_KEEP_BUILDS=5)


def test_only_the_last_builds_are_kept(auth, hello_repo):
    # No drain: an instance still draining keeps its build (pruned at the next success), and
    # seven deployments in a row would otherwise leave the sixth build until an eighth.
    ddaemon = auth.daemon(env=make_deploy_env(SLIPWAY_DRAIN_MS=0))
    droot = auth.setup_owner(ddaemon)
    dres = Res(auth, ddaemon)
    app = hello_app(dres, droot, hello_repo, build_command="true")
    deps = Deployments(droot)
    done = []
    for i in range(7):
        hello_repo.version(f"v{i + 2}")
        d, _ = deps.deploy(app["id"])
        assert d["status"] == "success", (d, deps.tail(d["id"]))
        done.append(d)
    # pruning follows the success, on the threadpool: wait for it rather than race it
    want = sorted(d["id"] for d in done[-5:])
    left = wait_for(lambda: (ls := sorted(p.name for p in builds_dir(ddaemon, app["id"])
                                          .iterdir())) == want and ls,
                    timeout=10, message=f"the builds left to be {want}")

    # A rollback to a pruned build fails and says why; the active release keeps serving.
    r = droot.post(f"deployments/{done[0]['id']}/rollback")
    assert r.status_code == 202, r.text
    failed, _ = deps.wait_terminal(r.json()["id"])
    assert failed["status"] == "failed", failed
    assert "no longer on this node" in failed["error_message"], failed
    assert "pruned" in failed["error_message"], failed
    a = droot.get(f"apps/{app['id']}").json()
    assert a["active_deployment_id"] == done[-1]["id"], a

    # Rolling back to a kept build works, and the build the app now runs is never pruned.
    r = droot.post(f"deployments/{done[2]['id']}/rollback")
    assert r.status_code == 202, r.text
    back, _ = deps.wait_terminal(r.json()["id"])
    assert back["status"] == "success", (back, deps.tail(back["id"]))
    for i in range(5):
        hello_repo.version(f"w{i}")
        d, _ = deps.deploy(app["id"])
        assert d["status"] == "success", (d, deps.tail(d["id"]))
        done.append(d)
    # the rollback's build was replaced as the active one, so it goes too
    left = wait_for(lambda: (ls := {p.name for p in builds_dir(ddaemon, app["id"]).iterdir()})
                    and len(ls) == 5 and done[2]["id"] not in ls and ls,
                    timeout=10, message="five builds left, the rolled-back-to one gone")
    assert done[-1]["id"] in left, left


# --------------------------------------------------------------------------- timeouts


def test_build_timeout_names_the_step(auth, hello_repo):
    d = auth.daemon(env=make_deploy_env(SLIPWAY_BUILD_TIMEOUT_MS=1000))
    root = auth.setup_owner(d)
    marker = f"sleep 30.{random.randrange(10**6, 10**7)}"
    app = hello_app(Res(auth, d), root, hello_repo, build_command=marker)
    deps = Deployments(root)
    failed, _ = deps.deploy(app["id"], timeout=30)
    assert failed["status"] == "failed", failed
    assert failed["error_message"] == "build timed out after 1 s", failed
    wait_gone(marker, timeout=5)


def test_health_timeout_names_the_step(auth, hello_repo):
    d = auth.daemon(env=make_deploy_env(SLIPWAY_HEALTH_TIMEOUT_MS=1500))
    root = auth.setup_owner(d)
    app = hello_app(Res(auth, d), root, hello_repo, health_check_path="/nope")
    deps = Deployments(root)
    failed, _ = deps.deploy(app["id"], timeout=30)
    assert failed["status"] == "failed", failed
    assert failed["error_message"].startswith("health check failed: timed out after 1500 ms"), \
        failed


def test_stop_sends_sigkill_after_the_stop_timeout(auth, hello_repo):
    grace = 1.5
    d = auth.daemon(env=make_deploy_env(SLIPWAY_STOP_GRACE_MS=int(grace * 1000)))
    root = auth.setup_owner(d)
    res = Res(auth, d)
    app = hello_app(res, root, hello_repo)
    res.set_env(root, app["id"], "HELLO_IGNORE_TERM", "1", runtime=True, build_time=False)
    done, ep = deployed(root, d, app)

    t0 = time.monotonic()
    assert root.post(f"apps/{app['id']}/stop").status_code == 202
    wait_for(lambda: refused(ep), timeout=grace + 10, message="the instance to be killed")
    took = time.monotonic() - t0
    # It ignored SIGTERM, so only the SIGKILL at the end of the grace period ended it.
    assert took >= grace - 0.2, f"gone after {took:.2f}s: it should have survived SIGTERM"
    wait_for(lambda: not procs_under(builds_dir(d, app["id"])), timeout=5,
             message="no process of the instance left")


# --------------------------------------------------------------------------- restart


def node_env(tmp_path, **extra):
    data = tmp_path / "node-data"
    data.mkdir(exist_ok=True)
    return make_deploy_env(SLIPWAY_DATA_DIR=str(data), SLIPWAY_LEASE_TTL_MS=2000, **extra)


def log_event(d, msg):
    return next((e for e in d.logs() if e.get("msg") == msg), None)


def test_kill9_then_restart_relaunches_the_app(auth, hello_repo, tmp_path):
    env = node_env(tmp_path)
    a = auth.daemon(env=env)
    root = auth.setup_owner(a)
    res = Res(auth, a)
    app = hello_app(res, root, hello_repo)
    secret, _ = res.set_env(root, app["id"], "RUN_SECRET", runtime=True, build_time=False)
    start = f'echo "boot token=$RUN_SECRET"; {START}'
    assert root.patch(f"apps/{app['id']}", json={"start_command": start}).status_code == 200
    done, old_ep = deployed(root, a, app)
    old = procs_under(builds_dir(a, app["id"]))
    logs_before = wait_for(
        lambda: (x := root.get(f"apps/{app['id']}/logs").json()["data"]) and
        any(ln["line"] == "boot token=***" for ln in x) and x,
        timeout=10, message="the instance's first line stored")
    last_seq = max(ln["seq"] for ln in logs_before)

    a.proc.kill()
    assert a.wait_exit(10) == -signal.SIGKILL
    # (it cannot answer any more: its output pipe broke with slipwayd, but it still runs)
    assert procs_under(builds_dir(a, app["id"])), "a killed slipwayd leaves its instance"

    b = auth.daemon(env=env, database_url=a.database_url)
    rb = root.on(b)

    old_pids = {pid for pid, _ in old}

    # The relaunch may land on the old port again (ports are drawn at random from a small
    # range), so it is told apart by its processes, not by its endpoint.
    def relaunched():
        x = rb.get(f"apps/{app['id']}").json()
        if x["status"] != "running" or len(x["endpoints"]) != 1:
            return None
        alive = {pid for pid, _ in procs_under(builds_dir(b, app["id"]))}
        return alive and not alive & old_pids and fetch(x["endpoints"][0]) == (200, "v1") and x

    x = wait_for(relaunched, timeout=30, message="the app relaunched by new processes")
    [ep] = x["endpoints"]
    assert x["active_deployment_id"] == done["id"], "a relaunch is not a new deployment"
    # Nothing of the old instance remains.
    alive = {pid for pid, _ in procs_under(builds_dir(b, app["id"]))}
    assert not alive & old_pids, (old, alive)
    assert ep == old_ep or refused(old_ep)
    # Its output is numbered after the old one's, masked the same way.
    def fresh_boot():
        data = rb.get(f"apps/{app['id']}/logs", params={"lines": 1000}).json()["data"]
        fresh = [ln for ln in data if ln["seq"] > last_seq]
        return any(ln["line"] == "boot token=***" for ln in fresh) and data

    after = wait_for(fresh_boot, timeout=10, message="the relaunched instance's output")
    seqs = [ln["seq"] for ln in after]
    assert seqs == sorted(set(seqs)), seqs
    assert all(secret not in ln["line"] for ln in after)

    # A stopped app stays stopped across a restart.
    assert rb.post(f"apps/{app['id']}/stop").status_code == 202
    wait_for(lambda: refused(ep), timeout=15, message="the instance to stop")
    b.proc.kill()
    assert b.wait_exit(10) == -signal.SIGKILL
    c = auth.daemon(env=env, database_url=a.database_url)
    rc = root.on(c)
    wait_for(lambda: log_event(c, "worker state loaded"), timeout=15,
             message="the worker to read its state")
    state = log_event(c, "worker state loaded")
    if state.get("apps") != "0":
        wait_for(lambda: log_event(c, "relaunch"), timeout=15, message="the relaunch pass")
    x = rc.get(f"apps/{app['id']}").json()
    assert x["status"] == "stopped" and x["endpoints"] == [], x
    assert not procs_under(builds_dir(c, app["id"])), procs_under(builds_dir(c, app["id"]))


@pytest.mark.parametrize("ports", [24, 1], ids=["range", "one_port"])
def test_sigterm_restart_relaunches_the_app(auth, hello_repo, tmp_path, ports):
    """With a one-port range the relaunch must take the very port the stopped instance had,
    while its closed connections still linger in TIME_WAIT."""
    lo, hi = free_port_range(ports)
    env = node_env(tmp_path, SLIPWAY_PORT_RANGE=f"{lo}-{hi}")
    a = auth.daemon(env=env)
    root = auth.setup_owner(a)
    app = hello_app(Res(auth, a), root, hello_repo)
    deps = Deployments(root)
    done, _ = deps.deploy(app["id"])
    assert done["status"] == "success", (done, deps.tail(done["id"]))
    [old_ep] = root.get(f"apps/{app['id']}").json()["endpoints"]
    assert a.stop() == 0
    assert refused(old_ep), "a stopping slipwayd stops its instances"

    b = auth.daemon(env=env, database_url=a.database_url)
    rb = root.on(b)
    # Whatever answers now was started by b, possibly on the old port again: nothing of a's
    # is left to answer.
    x = wait_for(lambda: (x := rb.get(f"apps/{app['id']}").json())["status"] == "running" and
                 len(x["endpoints"]) == 1 and fetch(x["endpoints"][0]) == (200, "v1") and x,
                 timeout=30, message="the app relaunched and answering")
    assert x["active_deployment_id"] == done["id"], "a relaunch is not a new deployment"
    assert log_event(b, "relaunch")["apps"] == "1"


# --------------------------------------------------------------------------- deletion


def applog_keys(rc, app_id):
    return sorted(k.decode() for k in rc.scan_iter(f"slipway:*:applog:{app_id}*"))


def test_deleted_apps_stop_and_their_runtime_logs_go(auth, hello_repo, redis_server):
    """An app deleted alone, one deleted with its project and one deleted at a psql prompt
    (which no API call announces: the worker's reconciliation finds it): each one's instance
    stops, and within a janitor round the runtime logs Redis kept for it are gone. A live app's
    keys, and keys that are not runtime logs, stay."""
    d = auth.daemon(env=make_deploy_env(SLIPWAY_JANITOR_INTERVAL_MS=1000))
    root = auth.setup_owner(d)
    res = Res(auth, d)
    rc = redis_lib.Redis.from_url(redis_server.url())
    start = f'echo "hello from $PORT"; {START}'
    apps = {name: hello_app(res, root, hello_repo, start_command=start)
            for name in ("alone", "with_project", "at_psql")}
    endpoints = {}
    for name, app in apps.items():
        _, endpoints[name] = deployed(root, d, app)
        wait_for(lambda a=app: len(applog_keys(rc, a["id"])) == 2, timeout=15,
                 message=f"{name}'s runtime log and its counter in Redis")
    prefix = applog_keys(rc, apps["alone"]["id"])[0][:-36]
    kept = hello_app(res, root, hello_repo)  # never deployed; its keys seeded as if it had run
    ghost = str(uuid.uuid4())                # an app no database row ever named
    seeded = {f"{prefix}{kept['id']}": b"line", f"{prefix}{kept['id']}:seq": b"7",
              f"{prefix}{ghost}": b"line", f"{prefix}{ghost}:seq": b"3",
              f"{prefix}not-an-app": b"x", f"{prefix}{kept['id']}:other": b"x"}
    for k, v in seeded.items():
        rc.set(k, v)

    assert root.delete(f"apps/{apps['alone']['id']}").status_code == 204
    project_id = root.get(f"apps/{apps['with_project']['id']}").json()["project_id"]
    assert root.delete(f"projects/{project_id}").status_code == 204
    auth.db(d).execute("DELETE FROM apps WHERE id = %s", (apps["at_psql"]["id"],))

    for name, app in apps.items():
        wait_for(lambda ep=endpoints[name]: refused(ep), timeout=20,
                 message=f"the instance of the app deleted {name} to stop")
        wait_for(lambda a=app: not procs_under(builds_dir(d, a["id"])), timeout=10,
                 message=f"no process of the app deleted {name} left")
        wait_for(lambda a=app: applog_keys(rc, a["id"]) == [], timeout=15,
                 message=f"the runtime logs of the app deleted {name} removed")
    wait_for(lambda: applog_keys(rc, ghost) == [], timeout=15, message="the ghost's keys removed")
    assert applog_keys(rc, kept["id"]) == sorted([f"{prefix}{kept['id']}",
                                                  f"{prefix}{kept['id']}:other",
                                                  f"{prefix}{kept['id']}:seq"])
    assert rc.get(f"{prefix}not-an-app") == b"x"
    for k in seeded:
        rc.delete(k)
    # the app deleted at the psql prompt was found by the worker's reconciliation
    assert any(e.get("msg") == "stopping the instances of a deleted app" for e in d.logs())


def test_janitor_prunes_old_deployment_output_but_the_active_ones(auth, hello_repo):
    d = auth.daemon(env=make_deploy_env(SLIPWAY_JANITOR_INTERVAL_MS=1000,
                                        SLIPWAY_DEPLOYMENT_LOG_KEEP_DAYS=30))
    root = auth.setup_owner(d)
    res = Res(auth, d)
    app = hello_app(res, root, hello_repo, build_command="echo building; true")
    deps = Deployments(root)
    done = []
    for i in range(3):
        hello_repo.version(f"r{i}")
        dep, _ = deps.deploy(app["id"])
        assert dep["status"] == "success", (dep, deps.tail(dep["id"]))
        assert deps.logs(dep["id"])["data"], "a deployment should have output"
        done.append(dep)
    old, recent, active = done
    db = auth.db(d)

    def chunks(dep):
        return db.execute("SELECT count(*) FROM deployment_log_chunks WHERE deployment_id = %s",
                          (dep["id"],)).fetchone()[0]

    # The oldest and the active one finished 31 days ago; the middle one is recent.
    db.execute("UPDATE deployments SET finished_at = now() - interval '31 days' "
               "WHERE id = ANY(%s::uuid[])", ([old["id"], active["id"]],))
    wait_for(lambda: chunks(old) == 0, timeout=15, message="the old deployment's output pruned")
    assert deps.logs(old["id"])["data"] == []
    assert root.get(f"deployments/{old['id']}").status_code == 200  # the history stays
    assert chunks(recent) > 0 and chunks(active) > 0
    assert deps.logs(active["id"])["data"], "the active release's output is kept"
