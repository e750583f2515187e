"""Deployments: trigger, status walk, git, build, release, cancel, queueing, secrets in logs,
Redis outages, access and validation (issue 5; /tmp/lead/deploy_contract.md, DESIGN.md §7).

Every test deploys contrib/examples/hello from a local bare repository the test commits to.
"""

import random
import threading
import time
import uuid

import pytest

from deploy_kit import *  # noqa: F401,F403 - fixtures and helpers


def is_subsequence(seq, order):
    """True when seq's items appear in order (each at most once, repeats allowed in a row)."""
    pos = -1
    for item in seq:
        i = order.index(item)
        if i < pos:
            return False
        pos = i
    return True


def assert_success(dep, history=None):
    assert dep["status"] == "success", f"{dep} (seen {history})"
    assert dep["stage"] == "completed" and dep["progress"] == 100, dep
    assert dep["error_message"] is None, dep
    assert dep["is_active"] is True, dep


# --------------------------------------------------------------------------- happy path


def test_deploy_succeeds_and_serves(droot, dres, hello_repo):
    # short pauses so 50 ms polling sees both the build and the release under way
    app = hello_app(dres, droot, hello_repo,
                    build_command='sleep 0.3; HELLO_VERSION="$(cat VERSION)" sh build.sh',
                    start_command="sleep 0.3; exec python3 server.py")
    deps = Deployments(droot)
    dep = deps.trigger(app["id"])

    assert set(dep) >= DEP_KEYS, DEP_KEYS - set(dep)
    uuid.UUID(dep["id"])
    assert dep["app_id"] == app["id"] and dep["project_id"] == app["project_id"]
    assert dep["deployment_number"] == 1
    assert dep["status"] == "pending" and dep["stage"] == "queued" and dep["progress"] == 0
    assert dep["ref"] == "main", dep
    assert dep["commit_hash"] == "" and dep["commit_message"] == ""
    assert dep["error_message"] is None and dep["rolled_back_from"] is None
    assert dep["is_active"] is False and dep["node_id"] is None
    assert dep["started_at"] is None and dep["finished_at"] is None and dep["duration"] is None
    assert isinstance(dep["queue_position"], int), dep
    parse_ts(dep["created_at"])

    done, history = deps.wait_terminal(dep["id"])
    assert_success(done, history)
    statuses = [s for s, _ in history]
    stages = [st for _, st in history]
    # Polling every 50 ms sees the build and the release of a build that runs python.
    assert "building" in statuses and "deploying" in statuses, history
    assert is_subsequence([s for s in statuses if s in STATUS_ORDER], STATUS_ORDER), history
    assert set(statuses) <= set(STATUS_ORDER), history
    assert is_subsequence(stages, STAGE_ORDER), history
    for status, stage in history:
        if status == "building":
            assert stage in ("cloning_repo", "building_image"), history
        if status == "deploying":
            assert stage in ("starting_new", "health_check", "switching_traffic",
                             "stopping_old"), history

    assert done["commit_hash"] == hello_repo.head(), done
    assert done["commit_message"].strip() == "hello v1", done
    assert done["commit_author"] == "Slipway Test <test@example.com>", done
    assert done["queue_position"] is None, done
    started, finished = parse_ts(done["started_at"]), parse_ts(done["finished_at"])
    assert parse_ts(done["created_at"]) <= started <= finished, done
    assert isinstance(done["duration"], (int, float)) and done["duration"] >= 0, done
    assert abs(done["duration"] - (finished - started).total_seconds() * 1000) < 1500 or \
        abs(done["duration"] - (finished - started).total_seconds()) < 1.5, done

    a = droot.get(f"apps/{app['id']}").json()
    assert a["status"] == "running", a
    assert a["active_deployment_id"] == dep["id"], a
    assert len(a["endpoints"]) == 1 and a["endpoints"][0].startswith("127.0.0.1:"), a
    assert fetch(a["endpoints"][0]) == (200, "v1")
    assert fetch(a["endpoints"][0], "/health") == (200, "ok")

    # the same deployment through every read
    assert deps.get(dep["id"]) == done
    listed = droot.get(f"apps/{app['id']}/deployments").json()["data"]
    assert [d["id"] for d in listed] == [dep["id"]]
    listed = droot.get("deployments", params={"app_id": app["id"]}).json()["data"]
    assert [d["id"] for d in listed] == [dep["id"]]
    assert droot.get("deployments", params={"status": "success"}).json()["data"][0]["id"] == \
        dep["id"]
    assert droot.get("deployments", params={"status": "failed"}).json()["data"] == []


def test_environment_counts_running_apps_as_active(droot, dres, hello_repo):
    """An environment's applications.active counts the apps running now: one after a
    deployment, none once it is stopped; total counts them all."""
    app = hello_app(dres, droot, hello_repo)
    env_id = app["environment_id"]
    dres.app(droot, env_id)  # never deployed: counted in total only

    def counts():
        return droot.get(f"environments/{env_id}").json()["applications"]

    assert counts() == {"total": 2, "active": 0}
    done, history = Deployments(droot).deploy(app["id"])
    assert done["status"] == "success", (done, history)
    wait_for(lambda: counts() == {"total": 2, "active": 1}, timeout=10,
             message="the running app counted as active")
    [listed] = [e for e in droot.get("environments", params={"limit": 100}).json()["data"]
                if e["id"] == env_id]
    assert listed["applications"] == {"total": 2, "active": 1}, listed
    assert droot.post(f"apps/{app['id']}/stop").status_code == 202
    wait_for(lambda: counts() == {"total": 2, "active": 0}, timeout=15,
             message="the stopped app no longer active")


def test_build_logs_in_order_with_both_streams(droot, dres, hello_repo):
    app = hello_app(dres, droot, hello_repo,
                    build_command='echo one; echo two; echo err-three >&2; echo four; '
                                  + 'HELLO_VERSION="$(cat VERSION)" sh build.sh')
    deps = Deployments(droot)
    done, history = deps.deploy(app["id"])
    assert_success(done, history)

    lines = deps.all_logs(done["id"])
    seqs = [ln["seq"] for ln in lines]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs
    for ln in lines:
        assert set(ln) >= {"seq", "stream", "line", "timestamp"}, ln
        assert ln["stream"] in ("stdout", "stderr", "system"), ln
        parse_ts(ln["timestamp"])
    out = [ln["line"] for ln in lines if ln["stream"] == "stdout"]
    err = [ln["line"] for ln in lines if ln["stream"] == "stderr"]
    want_out = ["one", "two", "four", "hello: wrote version.txt (v1)"]
    got = [x for x in out if x in want_out]
    assert got == want_out, out
    assert any(x.startswith("hello: building in ") for x in out), out
    assert "err-three" in err and "hello: build done" in err, err
    # stdout lines written before the stderr one keep their place relative to each other
    pos = {ln["line"]: ln["seq"] for ln in lines}
    assert pos["one"] < pos["two"] < pos["four"] < pos["hello: wrote version.txt (v1)"]

    # without since_seq: the last `lines`; with since_seq: the lines after it
    last2 = deps.logs(done["id"], lines=2)
    assert [ln["seq"] for ln in last2["data"]] == seqs[-2:], last2
    after = deps.logs(done["id"], since_seq=pos["two"])
    assert [ln["seq"] for ln in after["data"]] == [s for s in seqs if s > pos["two"]]
    whole = deps.logs(done["id"])
    assert [ln["seq"] for ln in whole["data"]] == seqs
    # next_seq continues where the answer ended: nothing new once the deployment ended
    nxt = deps.logs(done["id"], since_seq=whole["next_seq"])
    assert nxt["data"] == [], nxt


def test_build_environment_is_minimal(droot, dres, hello_repo):
    app = hello_app(dres, droot, hello_repo,
                    build_command='echo "path=$PATH"; echo "home=$HOME"; echo "pwd=$(pwd)"; '
                                  'echo "db=${SLIPWAY_DATABASE_URL:-none}"; '
                                  'echo "rt=${RT_ONLY:-unset}"; echo "bt=${BT_ON:-unset}"; '
                                  + 'HELLO_VERSION="$(cat VERSION)" sh build.sh')
    dres.set_env(droot, app["id"], "RT_ONLY", "runtime-only-value", build_time=False)
    dres.set_env(droot, app["id"], "BT_ON", "build-time-value", build_time=True)
    deps = Deployments(droot)
    done, history = deps.deploy(app["id"])
    assert_success(done, history)
    out = [ln["line"] for ln in deps.all_logs(done["id"]) if ln["stream"] == "stdout"]
    assert "path=/usr/local/bin:/usr/bin:/bin" in out, out
    home = [x for x in out if x.startswith("home=")]
    pwd = [x for x in out if x.startswith("pwd=")]
    assert home and pwd and home[0][5:] == pwd[0][4:], out
    assert "db=none" in out, out
    assert "rt=unset" in out, out  # runtime-only vars stay out of the build
    assert "bt=***" in out, out  # build-time vars are there, masked in the stored lines


# --------------------------------------------------------------------------- releases


def test_redeploy_switches_and_stops_old(droot, dres, hello_repo):
    app = hello_app(dres, droot, hello_repo)
    deps = Deployments(droot)
    first, h1 = deps.deploy(app["id"])
    assert_success(first, h1)
    old = droot.get(f"apps/{app['id']}").json()["endpoints"][0]
    assert fetch(old) == (200, "v1")

    sha2 = hello_repo.version("v2")
    second, h2 = deps.deploy(app["id"])
    assert_success(second, h2)
    assert second["deployment_number"] == 2
    assert second["commit_hash"] == sha2 and second["commit_message"].strip() == "hello v2"
    a = droot.get(f"apps/{app['id']}").json()
    assert a["active_deployment_id"] == second["id"] and a["status"] == "running", a
    new = a["endpoints"][0]
    assert new != old, a
    assert fetch(new) == (200, "v2")
    assert deps.get(first["id"])["is_active"] is False
    wait_for(lambda: refused(old), timeout=15, message=f"old instance {old} to stop")
    listed = droot.get(f"apps/{app['id']}/deployments").json()["data"]
    assert [d["id"] for d in listed] == [second["id"], first["id"]], "newest first"


def test_redeploy_has_no_downtime(droot, dres, hello_repo):
    """A client that follows app.endpoints (as the proxy will) always gets an answer."""
    app = hello_app(dres, droot, hello_repo)
    deps = Deployments(droot)
    first, h1 = deps.deploy(app["id"])
    assert_success(first, h1)
    hello_repo.version("v2")

    answers, failures = [], []
    stop = threading.Event()

    def client():
        while not stop.is_set():
            ep = droot.get(f"apps/{app['id']}").json()["endpoints"]
            try:
                answers.append(fetch(ep[0]))
            except Exception as exc:  # noqa: BLE001
                # the endpoint may have switched between reading it and asking it
                now = droot.get(f"apps/{app['id']}").json()["endpoints"]
                if now == ep:
                    failures.append((ep, repr(exc)))

    t = threading.Thread(target=client)
    t.start()
    try:
        second, h2 = deps.deploy(app["id"])
        wait_for(lambda: answers and answers[-1] == (200, "v2"), timeout=10)
    finally:
        stop.set()
        t.join(20)
    assert_success(second, h2)
    assert not failures, failures[:5]
    assert all(a in ((200, "v1"), (200, "v2")) for a in answers), set(answers)
    first_v2 = answers.index((200, "v2"))
    assert (200, "v1") not in answers[first_v2:], "answers went back to the old commit"
    assert answers[0] == (200, "v1")


def test_deploy_a_commit_sha_and_a_ref(droot, dres, hello_repo):
    sha1 = hello_repo.head()
    hello_repo.version("v2")
    sha_feature = hello_repo.commit({"VERSION": "feature\n"}, "feature work", branch="feature")
    app = hello_app(dres, droot, hello_repo)
    deps = Deployments(droot)

    d1, h = deps.deploy(app["id"], commit_sha=sha1)
    assert_success(d1, h)
    assert d1["commit_hash"] == sha1 and d1["commit_sha"] == sha1, d1
    ep = droot.get(f"apps/{app['id']}").json()["endpoints"][0]
    assert fetch(ep) == (200, "v1")

    d2, h = deps.deploy(app["id"], commit_sha=sha1[:7])
    assert_success(d2, h)
    assert d2["commit_hash"] == sha1, d2

    trig = deps.trigger(app["id"], ref="feature")
    assert trig["ref"] == "feature", trig
    d3, h = deps.wait_terminal(trig["id"])
    assert_success(d3, h)
    assert d3["commit_hash"] == sha_feature, d3
    ep = droot.get(f"apps/{app['id']}").json()["endpoints"][0]
    assert fetch(ep) == (200, "feature")


def test_unknown_ref_fails_clone(droot, dres, hello_repo):
    app = hello_app(dres, droot, hello_repo)
    deps = Deployments(droot)
    done, history = deps.deploy(app["id"], ref="no-such-branch")
    assert done["status"] == "failed", (done, history)
    assert done["error_message"].startswith("clone failed"), done
    assert done["is_active"] is False and done["finished_at"] is not None, done
    a = droot.get(f"apps/{app['id']}").json()
    assert a["active_deployment_id"] is None and a["endpoints"] == [], a


# --------------------------------------------------------------------------- failures


def test_build_failure_keeps_old_release(droot, dres, hello_repo):
    app = hello_app(dres, droot, hello_repo)
    deps = Deployments(droot)
    first, h = deps.deploy(app["id"])
    assert_success(first, h)
    ep = droot.get(f"apps/{app['id']}").json()["endpoints"][0]

    hello_repo.version("v2")
    r = droot.patch(f"apps/{app['id']}",
                    json={"build_command": "echo about-to-fail; echo oops >&2; exit 3"})
    assert r.status_code == 200, r.text
    failed, h = deps.deploy(app["id"])
    assert failed["status"] == "failed", (failed, h)
    assert "build" in failed["error_message"] and "exit code 3" in failed["error_message"], \
        failed
    assert failed["is_active"] is False and failed["finished_at"] is not None
    assert "deploying" not in [s for s, _ in h], h
    lines = deps.all_logs(failed["id"])
    assert "about-to-fail" in [ln["line"] for ln in lines if ln["stream"] == "stdout"]
    assert "oops" in [ln["line"] for ln in lines if ln["stream"] == "stderr"]

    a = droot.get(f"apps/{app['id']}").json()
    assert a["active_deployment_id"] == first["id"] and a["endpoints"] == [ep], a
    assert a["status"] == "running", a
    assert deps.get(first["id"])["is_active"] is True
    assert fetch(ep) == (200, "v1")


@pytest.fixture
def health_env():
    return make_deploy_env(SLIPWAY_HEALTH_TIMEOUT_MS=3000)


def test_unhealthy_release_keeps_old(auth, health_env, hello_repo):
    d = auth.daemon(env=health_env)
    root = auth.setup_owner(d)
    res = Res(auth, d)
    app = hello_app(res, root, hello_repo)
    deps = Deployments(root)
    first, h = deps.deploy(app["id"])
    assert_success(first, h)
    ep = root.get(f"apps/{app['id']}").json()["endpoints"][0]

    # the build leaves the flag that makes /health answer 500
    hello_repo.version("v2")
    r = root.patch(f"apps/{app['id']}",
                   json={"build_command": 'HELLO_VERSION="$(cat VERSION)" sh build.sh && '
                                          'touch unhealthy'})
    assert r.status_code == 200, r.text
    t0 = time.monotonic()
    failed, h = deps.deploy(app["id"], timeout=30)
    assert failed["status"] == "failed", (failed, h)
    assert failed["error_message"].startswith("health check failed"), failed
    assert "deploying" in [s for s, _ in h], h
    assert time.monotonic() - t0 < 20, "the health timeout is 3 s"
    a = root.get(f"apps/{app['id']}").json()
    assert a["active_deployment_id"] == first["id"] and a["endpoints"] == [ep], a
    assert fetch(ep) == (200, "v1")

    # a start command that never listens: failed, and the instance is stopped
    marker = str(random.randrange(6000, 6999))
    r = root.patch(f"apps/{app['id']}", json={"build_command": "",
                                               "start_command": f"exec sleep {marker}"})
    assert r.status_code == 200, r.text
    failed2, h = deps.deploy(app["id"], timeout=30)
    assert failed2["status"] == "failed", (failed2, h)
    assert failed2["error_message"].startswith("health check failed"), failed2
    wait_gone(f"sleep {marker}", timeout=15)
    assert fetch(ep) == (200, "v1")
    assert root.get(f"apps/{app['id']}").json()["active_deployment_id"] == first["id"]


# --------------------------------------------------------------------------- cancel


def test_cancel_running_build(droot, dres, hello_repo):
    marker = str(random.randrange(3000, 3999))
    app = hello_app(dres, droot, hello_repo, build_command=f"echo started; sleep {marker}")
    deps = Deployments(droot)
    dep = deps.trigger(app["id"])
    wait_for(lambda: procs_matching(f"sleep {marker}"), timeout=30,
             message="the build's sleep to run")
    assert deps.get(dep["id"])["status"] == "building"

    t0 = time.monotonic()
    r = deps.cancel(dep["id"])
    assert r.status_code == 202, r.text
    done, h = deps.wait_terminal(dep["id"], timeout=5)
    elapsed = time.monotonic() - t0
    assert done["status"] == "cancelled", (done, h)
    assert elapsed < 2.0, f"cancelled after {elapsed:.2f}s"
    assert done["finished_at"] is not None and done["is_active"] is False, done
    wait_gone(f"sleep {marker}", timeout=2)

    again = deps.cancel(dep["id"])
    error_of(again, 409)
    a = droot.get(f"apps/{app['id']}").json()
    assert a["active_deployment_id"] is None, a


def test_cancel_pending(droot, dres, hello_repo):
    marker = str(random.randrange(4000, 4999))
    app = hello_app(dres, droot, hello_repo, build_command=f"sleep {marker}")
    deps = Deployments(droot)
    running = deps.trigger(app["id"])
    deps.wait_status(running["id"], ("building",))
    queued = deps.trigger(app["id"])
    assert queued["status"] == "pending" and isinstance(queued["queue_position"], int), queued
    assert queued["deployment_number"] == 2

    r = deps.cancel(queued["id"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == queued["id"] and body["status"] == "cancelled", body
    got = deps.get(queued["id"])
    assert got["status"] == "cancelled" and got["queue_position"] is None, got
    assert got["finished_at"] is not None and got["is_active"] is False, got
    error_of(deps.cancel(queued["id"]), 409)

    assert deps.cancel(running["id"]).status_code == 202
    done, h = deps.wait_terminal(running["id"], timeout=5)
    assert done["status"] == "cancelled", (done, h)
    wait_gone(f"sleep {marker}", timeout=2)
    # the cancelled pending one never ran: no clone, no build output
    got = deps.get(queued["id"])
    assert got["status"] == "cancelled" and got["commit_hash"] == "", got
    assert all(ln["stream"] == "system" for ln in deps.all_logs(queued["id"]))


# --------------------------------------------------------------------------- queueing


def test_one_app_runs_one_deployment_at_a_time(droot, dres, hello_repo):
    app = hello_app(dres, droot, hello_repo,
                    build_command='sleep 1; HELLO_VERSION="$(cat VERSION)" sh build.sh')
    deps = Deployments(droot)
    a = deps.trigger(app["id"])
    b = deps.trigger(app["id"])
    assert (a["deployment_number"], b["deployment_number"]) == (1, 2)
    assert b["status"] == "pending" and isinstance(b["queue_position"], int)
    da, ha = deps.wait_terminal(a["id"])
    db, hb = deps.wait_terminal(b["id"])
    assert da["status"] == "success" and db["status"] == "success", (da, db)
    assert parse_ts(db["started_at"]) >= parse_ts(da["finished_at"]), (da, db)
    assert deps.get(a["id"])["is_active"] is False and db["is_active"] is True
    assert droot.get(f"apps/{app['id']}").json()["active_deployment_id"] == b["id"]


def test_two_apps_run_in_parallel(droot, dres, hello_repo):
    p = dres.project(droot)
    env_id = dres.production(droot, p["id"])["id"]
    slow = 'sleep 2; HELLO_VERSION="$(cat VERSION)" sh build.sh'
    a1 = hello_app(dres, droot, hello_repo, env_id=env_id, build_command=slow)
    a2 = hello_app(dres, droot, hello_repo, env_id=env_id, build_command=slow)
    deps = Deployments(droot)
    x = deps.trigger(a1["id"])
    y = deps.trigger(a2["id"])
    dx, _ = deps.wait_terminal(x["id"])
    dy, _ = deps.wait_terminal(y["id"])
    assert dx["status"] == "success" and dy["status"] == "success", (dx, dy)
    # the runs overlap
    assert parse_ts(dy["started_at"]) < parse_ts(dx["finished_at"]), (dx, dy)
    assert parse_ts(dx["started_at"]) < parse_ts(dy["finished_at"]), (dx, dy)


# --------------------------------------------------------------------------- secrets


def test_secret_values_masked_in_logs(auth, droot, dres, hello_repo):
    app = hello_app(dres, droot, hello_repo)
    key_value, _ = dres.set_env(droot, app["id"], "API_KEY", build_time=True)
    rt_value, _ = dres.set_env(droot, app["id"], "DB_PASSWORD", build_time=False)
    # the runtime secret also sits in a committed file the build prints
    hello_repo.commit({"leak.txt": f"file says {rt_value}\n"}, "a file holding a secret")
    r = droot.patch(f"apps/{app['id']}", json={
        "build_command": 'echo "key=$API_KEY"; echo "again $API_KEY here" >&2; cat leak.txt; '
                         'HELLO_VERSION="$(cat VERSION)" sh build.sh'})
    assert r.status_code == 200, r.text
    deps = Deployments(droot)
    done, h = deps.deploy(app["id"])
    assert_success(done, h)

    lines = deps.all_logs(done["id"])
    texts = [ln["line"] for ln in lines]
    assert "key=***" in texts, texts
    assert "again *** here" in texts, texts
    assert "file says ***" in texts, texts
    raw = deps.who.get(f"deployments/{done['id']}/logs").text
    for v in (key_value, rt_value):
        assert v not in raw
        assert all(v not in t for t in texts)
    # auth's teardown also fails the test if either value reached slipwayd's own log


# --------------------------------------------------------------------------- Redis


def test_trigger_while_redis_is_down(auth, redis_factory, hello_repo):
    rs = redis_factory()
    d = auth.daemon(env=make_deploy_env(), redis=rs)
    root = auth.setup_owner(d)
    res = Res(auth, d)
    app = hello_app(res, root, hello_repo)
    deps = Deployments(root)

    rs.stop()
    dep = deps.trigger(app["id"])
    assert dep["status"] == "pending", dep
    # nothing can run it while Redis is away
    assert deps.get(dep["id"])["status"] == "pending"
    rs.start()
    done, h = deps.wait_terminal(dep["id"], timeout=40)
    assert_success(done, h)
    ep = root.get(f"apps/{app['id']}").json()["endpoints"][0]
    assert fetch(ep) == (200, "v1")


# --------------------------------------------------------------------------- access


def test_access_to_deployments(auth, droot, dres, hello_repo):
    app = hello_app(dres, droot, hello_repo)
    deps = Deployments(droot)
    dep, h = deps.deploy(app["id"])
    assert_success(dep, h)
    did, aid = dep["id"], app["id"]

    outsider = dres.user(droot)
    for method, path in (("GET", f"deployments/{did}"), ("GET", f"deployments/{did}/logs"),
                         ("POST", f"deployments/{did}/cancel"),
                         ("GET", f"apps/{aid}/deployments"),
                         ("POST", f"apps/{aid}/deployments")):
        error_of(outsider.call(method, path), 404, "RESOURCE_NOT_FOUND")
    r = outsider.get("deployments", params={"app_id": aid})
    assert r.status_code == 200 and r.json()["data"] == [], r.text
    assert outsider.get("deployments").json()["data"] == []

    viewer = dres.user(droot)
    dres.member(droot, app["project_id"], viewer, "viewer")
    assert viewer.get(f"deployments/{did}").status_code == 200
    assert viewer.get(f"deployments/{did}/logs").status_code == 200
    assert [d["id"] for d in viewer.get("deployments").json()["data"]] == [did]
    error_of(viewer.post(f"apps/{aid}/deployments"), 403, "INSUFFICIENT_ROLE")
    error_of(viewer.post(f"deployments/{did}/cancel"), 403, "INSUFFICIENT_ROLE")

    dev = dres.user(droot)
    dres.member(droot, app["project_id"], dev, "developer")
    read_only = auth.make_token(dev, ["read"])
    write_only = auth.make_token(dev, ["write"])
    deployer = auth.make_token(dev, ["deploy"])
    error_of(read_only.post(f"apps/{aid}/deployments"), 403, "INSUFFICIENT_ROLE")
    error_of(write_only.post(f"apps/{aid}/deployments"), 403, "INSUFFICIENT_ROLE")
    assert read_only.get(f"deployments/{did}").status_code == 200
    mine = Deployments(deployer).trigger(aid)
    assert mine["deployment_number"] == 2
    r = deployer.post(f"deployments/{mine['id']}/cancel")
    assert r.status_code in (200, 202, 409), r.text
    done, _ = Deployments(dev).wait_terminal(mine["id"])
    assert done["status"] in ("cancelled", "success"), done

    for path in (f"deployments/{uuid.uuid4()}", "deployments/not-a-uuid",
                 f"deployments/{uuid.uuid4()}/logs"):
        error_of(droot.get(path), 404, "RESOURCE_NOT_FOUND")
    error_of(droot.post(f"deployments/{uuid.uuid4()}/cancel"), 404, "RESOURCE_NOT_FOUND")
    error_of(droot.post(f"apps/{uuid.uuid4()}/deployments"), 404, "RESOURCE_NOT_FOUND")
    error_of(auth.anon(droot.d, "GET", f"deployments/{did}"), 401, "AUTHENTICATION_ERROR")


# --------------------------------------------------------------------------- validation


BAD_BODIES = [
    ("ref", {"ref": "a..b"}), ("ref", {"ref": "has space"}), ("ref", {"ref": "-x"}),
    ("ref", {"ref": "x.lock"}), ("ref", {"ref": ""}), ("ref", {"ref": 5}),
    ("ref", {"ref": "r" * 256}),
    ("commit_sha", {"commit_sha": "abc12"}), ("commit_sha", {"commit_sha": "ABCDEF1"}),
    ("commit_sha", {"commit_sha": "xyz1234"}), ("commit_sha", {"commit_sha": "a" * 41}),
    ("commit_sha", {"commit_sha": ""}), ("commit_sha", {"commit_sha": 1234567}),
]


def test_trigger_validation(droot, dres, hello_repo):
    app = hello_app(dres, droot, hello_repo)
    for field, body in BAD_BODIES:
        r = droot.post(f"apps/{app['id']}/deployments", json=body)
        assert_invalid(r, field)
    r = droot.post(f"apps/{app['id']}/deployments", json={"branch": "main"})
    error_of(r, 400, "VALIDATION_ERROR")
    # nothing was created
    assert droot.get(f"apps/{app['id']}/deployments").json()["data"] == []


def test_list_and_log_validation(droot, dres, hello_repo):
    app = hello_app(dres, droot, hello_repo, build_command="", start_command="exec sleep 1")
    dep = Deployments(droot).trigger(app["id"])
    assert_invalid(droot.get("deployments", params={"status": "bogus"}), "status")
    assert_invalid(droot.get("deployments", params={"app_id": "nope"}), "app_id")
    for params, field in (({"lines": "0"}, "lines"), ({"lines": "x"}, "lines"),
                          ({"since_seq": "-1"}, "since_seq"), ({"since_seq": "a"}, "since_seq"),
                          ({"follow": "yes"}, "follow")):
        assert_invalid(droot.get(f"deployments/{dep['id']}/logs", params=params), field)
    r = droot.post(f"deployments/{dep['id']}/cancel")
    assert r.status_code in (200, 202, 409), r.text
    Deployments(droot).wait_terminal(dep["id"])


# --------------------------------------------------------------------------- metrics


def test_worker_metrics(ddaemon, droot, dres, hello_repo):
    """/metrics counts what the worker finished by outcome, times its builds, and shows the
    queue as of its last reconciliation."""
    from conftest import parse_metrics

    def sample(name, **labels):
        return next((v for n, lb, v in parse_metrics(ddaemon.get("/metrics").text)
                     if n == name and all(lb.get(k) == want for k, want in labels.items())), None)

    deps = Deployments(droot)
    ok, _ = deps.deploy(hello_app(dres, droot, hello_repo)["id"])
    assert ok["status"] == "success", ok
    bad, _ = deps.deploy(hello_app(dres, droot, hello_repo, build_command="exit 7")["id"])
    assert bad["status"] == "failed", bad
    assert sample("slipway_deployments_total", status="success") == 1
    assert sample("slipway_deployments_total", status="failed") == 1
    assert sample("slipway_deployments_total", status="cancelled") == 0
    assert sample("slipway_deployments_running") == 0
    assert sample("slipway_build_duration_seconds_count") == 2
    assert sample("slipway_build_duration_seconds_bucket", le="+Inf") == 2
    assert sample("slipway_build_duration_seconds_bucket", le="1800") == 2
    assert sample("slipway_build_duration_seconds_sum") > 0
    wait_for(lambda: sample("slipway_deploy_queue_depth") == 0, timeout=15,
             message="the queue depth from a reconciliation")
