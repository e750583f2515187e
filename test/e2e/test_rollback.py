"""Rollback: a new deployment that releases an earlier deployment's build again, with no
fetch and no build, and marks the release it replaces rolled_back."""

from conftest import wait_for
from deploy_kit import (Deployments, ddaemon, deploy_env, dres, droot, fetch,  # noqa: F401
                        hello_app, hello_repo, refused, stray_instances)


def test_rollback_releases_the_earlier_build(droot, dres, hello_repo):
    app = hello_app(dres, droot, hello_repo)
    deps = Deployments(droot)
    first, _ = deps.deploy(app["id"])
    assert first["status"] == "success", first
    hello_repo.version("v2")
    second, _ = deps.deploy(app["id"])
    assert second["status"] == "success", second
    v2 = droot.get(f"apps/{app['id']}").json()["endpoints"][0]
    assert fetch(v2) == (200, "v2")

    r = droot.post(f"deployments/{first['id']}/rollback")
    assert r.status_code == 202, r.text
    rb = r.json()
    assert rb["rolled_back_from"] == first["id"] and rb["status"] == "pending"
    assert rb["deployment_number"] == 3
    done, _ = deps.wait_terminal(rb["id"])
    assert done["status"] == "success", done
    assert done["commit_hash"] == first["commit_hash"]

    lines = [entry["line"] for entry in deps.all_logs(rb["id"])]
    assert any("rolling back" in line for line in lines), lines
    assert not any(line.startswith("fetching") or "build command" in line for line in lines), \
        "a rollback must neither fetch nor build"

    a = droot.get(f"apps/{app['id']}").json()
    assert a["active_deployment_id"] == rb["id"]
    assert fetch(a["endpoints"][0]) == (200, "v1")
    assert deps.get(second["id"])["status"] == "rolled_back"
    assert deps.get(second["id"])["is_active"] is False
    wait_for(lambda: refused(v2), timeout=15, message="the v2 instance to stop")


def test_rollback_needs_a_successful_deployment(droot, dres, hello_repo):
    app = hello_app(dres, droot, hello_repo, build_command="exit 3")
    deps = Deployments(droot)
    failed, _ = deps.wait_terminal(deps.trigger(app["id"])["id"])
    assert failed["status"] == "failed", failed
    r = droot.post(f"deployments/{failed['id']}/rollback")
    assert r.status_code == 409, r.text
    assert r.json()["error"]["code"] == "RESOURCE_CONFLICT"
    assert droot.post("deployments/00000000-0000-4000-8000-000000000000/rollback"
                      ).status_code == 404


def test_stop_start_restart(droot, dres, hello_repo):
    app = hello_app(dres, droot, hello_repo)
    deps = Deployments(droot)
    first, _ = deps.deploy(app["id"])
    assert first["status"] == "success", first
    ep = droot.get(f"apps/{app['id']}").json()["endpoints"][0]
    assert fetch(ep) == (200, "v1")

    r = droot.post(f"apps/{app['id']}/stop")
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "stopped" and r.json()["endpoints"] == []
    wait_for(lambda: refused(ep), timeout=15, message="the instance to stop")

    r = droot.post(f"apps/{app['id']}/start")
    assert r.status_code == 202, r.text
    started, _ = deps.wait_terminal(r.json()["id"])
    assert started["status"] == "success", (started["error_message"], deps.tail(started["id"]))
    assert started["commit_hash"] == first["commit_hash"]
    a = droot.get(f"apps/{app['id']}").json()
    assert a["status"] == "running" and a["active_deployment_id"] == started["id"]
    ep2 = a["endpoints"][0]
    assert fetch(ep2) == (200, "v1")
    assert deps.get(first["id"])["status"] == "success", "a start is not a rollback"

    r = droot.post(f"apps/{app['id']}/restart")
    assert r.status_code == 202, r.text
    restarted, _ = deps.wait_terminal(r.json()["id"])
    assert restarted["status"] == "success", (restarted["error_message"], deps.tail(restarted["id"]))
    ep3 = droot.get(f"apps/{app['id']}").json()["endpoints"][0]
    assert fetch(ep3) == (200, "v1")
    wait_for(lambda: refused(ep2), timeout=15, message="the pre-restart instance to stop")


def test_start_needs_a_deployment(droot, dres, hello_repo):
    app = hello_app(dres, droot, hello_repo)
    r = droot.post(f"apps/{app['id']}/start")
    assert r.status_code == 409, r.text
    assert droot.post(f"apps/{app['id']}/restart").status_code == 409
