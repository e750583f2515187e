"""The container runtime (issue 15): Dockerfile builds with build-time env as secrets,
instances as labelled containers with env through a removed env file, redeploys, rollbacks
that reuse the image, and failed builds that leave the old release serving."""

import json
import os

from conftest import wait_for
from container_kit import (cdaemon, cenv, container_repo, cres, croot,  # noqa: F401
                           deployed_app, dockerfile_app, podman_store)
from deploy_kit import (Deployments, Res, fetch, procs_matching, refused,  # noqa: F401
                        stray_instances)


def active(who, app_id):
    return who.get(f"apps/{app_id}").json()


def test_dockerfile_app_builds_with_secrets_and_runs_as_a_labelled_container(
        croot, cres, cenv, cdaemon, container_repo, podman_store):
    app = dockerfile_app(cres, croot, container_repo)
    token, _ = cres.set_env(croot, app["id"], "BUILD_TOKEN", build_time=True, runtime=False)
    greeting, _ = cres.set_env(croot, app["id"], "GREETING", build_time=False, runtime=True)
    deps = Deployments(croot)
    dep, _ = deps.deploy(app["id"], timeout=90)
    assert dep["status"] == "success", (dep, deps.tail(dep["id"], 40))
    a = active(croot, app["id"])
    endpoint = a["endpoints"][0]
    assert fetch(endpoint, "/index.html") == (200, "v1")
    # The build read the secret (its length is in the image), yet no layer keeps it.
    assert fetch(endpoint, "/tokenlen") == (200, str(len(token)))
    assert fetch(endpoint, "/greeting") == (200, greeting)
    assert not procs_matching(greeting) and not procs_matching(token), "no value in ps"
    image = f"slipway/{app['id']}:{dep['deployment_number']}"
    history = podman_store.run("history", "--no-trunc", image).stdout
    inspect = podman_store.run("image", "inspect", image).stdout
    assert token not in history and token not in inspect
    assert "BUILD_TOKEN=" not in history and "BUILD_TOKEN=" not in inspect, "no build arg"

    lines = [ln["line"] for ln in deps.all_logs(dep["id"])]
    assert any("building image" in ln for ln in lines), lines
    assert any("COMMIT" in ln or "STEP" in ln for ln in lines), "the build's output streams"

    node = cenv["SLIPWAY_NODE_NAME"]
    ours = podman_store.containers(node)
    assert len(ours) == 1 and ours[0][1] == "true" and ours[0][2] == app["id"], ours
    labels = json.loads(podman_store.run("inspect", ours[0][0]).stdout)[0]["Config"]["Labels"]
    assert labels["slipway.deployment"] == dep["id"] and labels["slipway.node"] == node + "-0"
    # The env file is gone once the container has started.
    leftovers = os.listdir(os.path.join(cdaemon.env["SLIPWAY_DATA_DIR"], "containers"))
    assert not [f for f in leftovers if f.endswith(".env")], leftovers
    # Its output comes from the log file podman writes for us, its end through a pidfd: no
    # process of slipwayd's per instance (a `logs -f` cost ~40 MB each).
    name = podman_store.run("inspect", "--format", "{{.Name}}", ours[0][0]).stdout.strip()
    assert [f for f in leftovers if f.endswith(".log")] == [name + ".log"], leftovers
    helpers = [c for _, c in procs_matching(ours[0][0]) if " logs " in c or " wait " in c]
    assert not helpers, helpers


def test_redeploy_switches_and_rollback_reuses_the_image(croot, cres, cenv, cdaemon,
                                                          container_repo, podman_store):
    app, deps, first = deployed_app(cres, croot, container_repo)
    v1 = active(croot, app["id"])["endpoints"][0]

    container_repo.version("v2")
    second, _ = deps.deploy(app["id"], timeout=90)
    assert second["status"] == "success", deps.tail(second["id"], 40)
    v2 = active(croot, app["id"])["endpoints"][0]
    assert fetch(v2, "/index.html") == (200, "v2")
    wait_for(lambda: refused(v1), timeout=20, message="the v1 container to stop")
    wait_for(lambda: len(podman_store.containers(cenv["SLIPWAY_NODE_NAME"])) == 1, timeout=20,
             message="the old container to be removed")
    log_dir = os.path.join(cdaemon.env["SLIPWAY_DATA_DIR"], "containers")
    wait_for(lambda: len([f for f in os.listdir(log_dir) if f.endswith(".log")]) == 1,
             timeout=10, message="the old container's log file to go with it")

    r = croot.post(f"deployments/{first['id']}/rollback")
    assert r.status_code == 202, r.text
    rb, _ = deps.wait_terminal(r.json()["id"], timeout=60)
    assert rb["status"] == "success", deps.tail(rb["id"], 40)
    lines = [ln["line"] for ln in deps.all_logs(rb["id"])]
    assert not any("building image" in ln for ln in lines), "a rollback does not build"
    assert fetch(active(croot, app["id"])["endpoints"][0], "/index.html") == (200, "v1")


def test_failing_build_keeps_the_old_release(croot, cres, container_repo):
    app, deps, first = deployed_app(cres, croot, container_repo)
    endpoint = active(croot, app["id"])["endpoints"][0]
    container_repo.commit({"Dockerfile": "FROM localhost/slipway-test-base:1\nRUN false\n"},
                          "broken")
    bad, _ = deps.deploy(app["id"], timeout=90)
    assert bad["status"] == "failed" and "build failed" in bad["error_message"], bad
    assert fetch(endpoint, "/index.html") == (200, "v1")


def test_old_images_are_pruned_to_keep_builds(auth, cenv, container_repo, podman_store):
    d = auth.daemon(env=dict(cenv, SLIPWAY_KEEP_BUILDS="1"))
    root = auth.setup_owner(d)
    res = Res(auth, d)
    app = dockerfile_app(res, root, container_repo)
    res.set_env(root, app["id"], "BUILD_TOKEN", build_time=True, runtime=False)
    deps = Deployments(root)
    for version in ("v1", "v2"):
        container_repo.version(version)
        dep, _ = deps.deploy(app["id"], timeout=90)
        assert dep["status"] == "success", deps.tail(dep["id"], 40)

    def tags():
        out = podman_store.run("images", "--format", "{{.Repository}}:{{.Tag}}").stdout
        return sorted(t.rpartition("/")[2] for t in out.split() if app["id"] in t)

    wait_for(lambda: tags() == [f"{app['id']}:{dep['deployment_number']}"], timeout=20,
             message=f"only the active image left (have {tags()})")


def test_unhealthy_container_keeps_the_old_release_and_restart_reuses_the_image(
        croot, cres, cenv, container_repo, podman_store):
    app, deps, first = deployed_app(cres, croot, container_repo)
    endpoint = active(croot, app["id"])["endpoints"][0]

    r = croot.patch(f"apps/{app['id']}", json={"health_check_path": "/nothing-here"})
    assert r.status_code == 200, r.text
    bad, _ = deps.deploy(app["id"], timeout=90)
    assert bad["status"] == "failed" and "health check failed" in bad["error_message"], bad
    assert fetch(endpoint, "/index.html") == (200, "v1")
    wait_for(lambda: len(podman_store.containers(cenv["SLIPWAY_NODE_NAME"])) == 1, timeout=20,
             message="the unhealthy container to be removed")

    assert croot.patch(f"apps/{app['id']}",
                       json={"health_check_path": "/index.html"}).status_code == 200
    r = croot.post(f"apps/{app['id']}/restart")
    assert r.status_code == 202, r.text
    again, _ = deps.wait_terminal(r.json()["id"], timeout=60)
    assert again["status"] == "success", deps.tail(again["id"], 40)
    lines = [ln["line"] for ln in deps.all_logs(again["id"])]
    assert not any("building image" in ln for ln in lines), "a restart does not build"
    assert fetch(active(croot, app["id"])["endpoints"][0], "/index.html") == (200, "v1")
