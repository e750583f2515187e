"""Container apps outlive slipwayd (issue 15): a kill -9 leaves them serving, and the next
slipwayd on the same data directory follows the same containers again (no second instance,
logs go on without repeating what was read) instead of starting new ones; a container killed
for memory is reported with the reason and started again."""

import threading

import requests

from conftest import wait_for
from container_kit import (cdaemon, cenv, container_repo, cres, croot,  # noqa: F401
                           dockerfile_app, podman_store)
from deploy_kit import (Deployments, Res, ddaemon, deploy_env, dres, droot,  # noqa: F401
                        fetch, hello_app, hello_repo, stray_instances)


def app_lines(who, app_id):
    r = who.get(f"apps/{app_id}/logs", params={"lines": 1000})
    assert r.status_code == 200, r.text
    return r.json()["data"]


class Poller:
    """GETs every endpoint, about 50 rounds a second, until stopped; counts what failed."""

    def __init__(self, endpoints):
        self.endpoints = endpoints
        self.ok = self.failed = 0
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop_flag.is_set():
            for ep in self.endpoints:
                try:
                    good = requests.get(f"http://{ep}/index.html", timeout=2).status_code == 200
                except requests.RequestException:
                    good = False
                self.ok += good
                self.failed += not good
            # Paced, not a wait: unpaced, the app's log (a line per request) passes the
            # runtime log's rate limit and the lines this test looks for are dropped.
            self.stop_flag.wait(0.02)

    def stop(self):
        self.stop_flag.set()
        self.thread.join(timeout=10)


def test_kill9_keeps_container_apps_serving_and_the_next_slipwayd_follows_them(
        auth, cenv, container_repo, podman_store):
    a = auth.daemon(env=cenv)
    root = auth.setup_owner(a)
    res = Res(auth, a)
    deps = Deployments(root)
    apps = []
    for _ in range(2):
        app = dockerfile_app(res, root, container_repo)
        res.set_env(root, app["id"], "BUILD_TOKEN", build_time=True, runtime=False)
        app["greeting"], _ = res.set_env(root, app["id"], "GREETING", build_time=False,
                                         runtime=True)
        dep, _ = deps.deploy(app["id"], timeout=90)
        assert dep["status"] == "success", deps.tail(dep["id"], 40)
        apps.append(app)
    endpoints = [root.get(f"apps/{app['id']}").json()["endpoints"][0] for app in apps]
    for app in apps:
        wait_for(lambda app=app: any("serving on" in ln["line"] for ln in app_lines(root, app["id"])),
                 timeout=15, message="the app's first line")
    before = {c[0] for c in podman_store.containers(cenv["SLIPWAY_NODE_NAME"])}
    assert len(before) == 2, before

    node_name = cenv["SLIPWAY_NODE_NAME"] + "-0"
    started = next(n["started_at"] for n in root.get("nodes").json()["data"]
                   if n["name"] == node_name)
    poller = Poller(endpoints)
    try:
        a.proc.kill()
        a.wait_exit(10)
        b = auth.daemon(env=dict(cenv, SLIPWAY_DATA_DIR=a.env["SLIPWAY_DATA_DIR"]),
                        database_url=a.database_url)
        rb = root.on(b)

        def followed():
            nodes = rb.get("nodes").json()["data"]
            # The row says what b found, not what a said before it was killed.
            node = next((n for n in nodes if n["name"] == node_name and n["status"] == "up"
                         and n["started_at"] != started and n["instances"]), None)
            return node and len(node["instances"]) == 2 and \
                all(i["state"] == "running" for i in node["instances"]) and node

        node = wait_for(followed, timeout=20, message="the restarted node to follow both apps")
        assert {i["endpoint"] for i in node["instances"]} == set(endpoints), node
        # A request after the restart: its line comes through the followed logs, masked, even
        # when it comes before b has read the app's env to mask with.
        for ep, app in zip(endpoints, apps):
            assert fetch(ep, "/index.html") == (200, "v1")
            assert fetch(ep, "/" + app["greeting"])[0] == 404
    finally:
        poller.stop()
    assert poller.failed == 0 and poller.ok > 0, (poller.ok, poller.failed)
    after = {c[0] for c in podman_store.containers(cenv["SLIPWAY_NODE_NAME"])}
    assert after == before, "the same containers serve: none started again, none added"
    for app in apps:
        a_now = rb.get(f"apps/{app['id']}").json()
        assert a_now["status"] == "running", a_now
        lines = wait_for(lambda app=app: (d := app_lines(rb, app["id"])) and
                         sum("response:200" in ln["line"] for ln in d) > 0 and d,
                         timeout=15, message="lines logged after the restart")
        serving = [ln for ln in lines if "serving on" in ln["line"]]
        assert len(serving) == 1, "a followed container's earlier lines are not read twice"
        lines = wait_for(lambda app=app: (d := app_lines(rb, app["id"])) and
                         any("url:/***" in ln["line"] for ln in d) and d,
                         timeout=30, message=f"the masked request line in "
                         f"{[ln['line'] for ln in app_lines(rb, app['id'])][-8:]}")
        assert not any(app["greeting"] in ln["line"] for ln in lines)
    # A followed container's end is watched too: killed, it is seen ending and started again
    # as it was (its image, env and limits are the container's own, unknown to this slipwayd).
    victim = sorted(after)[0]
    podman_store.run("kill", victim)

    def restarted():
        nodes = rb.get("nodes").json()["data"]
        node = next(n for n in nodes if n["name"] == cenv["SLIPWAY_NODE_NAME"] + "-0")
        running = {c[0] for c in podman_store.containers(cenv["SLIPWAY_NODE_NAME"])
                   if c[1] == "true"}
        return any(i["restarts"] >= 1 for i in node["instances"]) and running == after

    wait_for(restarted, timeout=30, message="the killed container to run again")
    for ep in endpoints:
        wait_for(lambda ep=ep: fetch(ep, "/index.html") == (200, "v1"), timeout=15,
                 message="both apps answering again")


def test_a_container_past_its_memory_limit_is_reported_and_started_again(
        croot, cres, container_repo):
    app = dockerfile_app(
        cres, croot, container_repo, resources={"memory": "16Mi", "cpu": "500m"},
        start_command="echo started; httpd -p $PORT -h /www; sleep 4; "
                      "exec dd if=/dev/zero of=/dev/null bs=64M count=1")
    cres.set_env(croot, app["id"], "BUILD_TOKEN", build_time=True, runtime=False)
    deps = Deployments(croot)
    dep, _ = deps.deploy(app["id"], timeout=90)
    assert dep["status"] == "success", deps.tail(dep["id"], 40)
    a = croot.get(f"apps/{app['id']}").json()
    assert a["resources"] == {"memory": "16Mi", "cpu": "500m"}, a

    def reported():
        data = app_lines(croot, app["id"])
        crash = [ln["line"] for ln in data if "crashed" in ln["line"]]
        return crash and sum("started" == ln["line"] for ln in data) >= 2 and crash

    crash = wait_for(reported, timeout=30, message="the crash report and the restart")
    assert "memory" in crash[0] and "16Mi" in crash[0], crash


def test_a_process_past_its_memory_limit_is_killed_and_reported(droot, dres, hello_repo):
    """Process instances get a control group with the app's resources (v1 here)."""
    app = hello_app(dres, droot, hello_repo, resources={"memory": "64Mi", "cpu": "1"},
                    start_command="echo started; python3 server.py & sleep 4; "
                                  "exec dd if=/dev/zero of=/dev/null bs=256M count=1")
    deps = Deployments(droot)
    dep, _ = deps.deploy(app["id"], timeout=60)
    assert dep["status"] == "success", deps.tail(dep["id"], 40)
    a = droot.get(f"apps/{app['id']}").json()
    assert a["resources_enforced"] is True and a["resources_note"] is None, a

    def reported():
        crash = [ln["line"] for ln in app_lines(droot, app["id"]) if "crashed" in ln["line"]]
        return crash

    crash = wait_for(reported, timeout=30, message="the memory kill in the app's log")
    assert "more memory than its limit (64Mi)" in crash[0], crash
