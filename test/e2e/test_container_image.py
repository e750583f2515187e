"""Image deploys (issue 15): an app that runs an image from a registry instead of building a
repository, pulled with its write-only registry credentials (sealed like env values), the
pull's progress streamed; a bad reference, an unknown image or refused credentials fail
clearly."""

import uuid

import requests

from container_kit import (cdaemon, cenv, container_repo, cres, croot,  # noqa: F401
                           deployed_app, dockerfile_app, podman_store, push_web_image,
                           registries)
from deploy_kit import Deployments, Res, assert_invalid, fetch, stray_instances  # noqa: F401


def image_app(res, who, **fields):
    p = res.project(who)
    env_id = res.production(who, p["id"])["id"]
    body = {"runtime": "container", "health_check_path": "/index.html"}
    body.update(fields)
    return res.app(who, env_id, **body)


def test_image_apps_deploy_from_registries_with_and_without_credentials(
        auth, cenv, podman_store, registries):
    private, public, reg_env = registries
    d = auth.daemon(env=dict(cenv, **reg_env))
    root = auth.setup_owner(d)

    res = Res(auth, d)
    auth.remember(private.password)
    tag = uuid.uuid4().hex[:8]
    secret_ref = push_web_image(podman_store, private, f"team/web:{tag}", "private v1", reg_env)
    open_ref = push_web_image(podman_store, public, f"web:{tag}", "public v1", reg_env)
    deps = Deployments(root)

    app = image_app(res, root, image=secret_ref,
                    registry_auth={"username": private.user, "password": private.password})
    assert app["image"] == secret_ref and app["has_registry_auth"] is True, app
    assert "registry_auth" not in app
    dep, _ = deps.deploy(app["id"], timeout=90)
    assert dep["status"] == "success", deps.tail(dep["id"], 40)
    a = root.get(f"apps/{app['id']}").json()
    assert fetch(a["endpoints"][0], "/index.html") == (200, "private v1")
    lines = [ln["line"] for ln in deps.all_logs(dep["id"])]
    assert any("pulling image" in ln for ln in lines), lines
    assert any("Copying" in ln or "Writing manifest" in ln for ln in lines), \
        f"the pull's progress streams: {lines}"
    assert not any(private.password in ln for ln in lines)

    other = image_app(res, root, image=open_ref)
    assert other["has_registry_auth"] is False
    dep2, _ = deps.deploy(other["id"], timeout=90)
    assert dep2["status"] == "success", deps.tail(dep2["id"], 40)
    b = root.get(f"apps/{other['id']}").json()
    assert fetch(b["endpoints"][0], "/index.html") == (200, "public v1")

    # A deployment may name another image: it is pulled and released.
    new_ref = push_web_image(podman_store, public, f"web:{tag}-2", "public v2", reg_env)
    dep3, _ = deps.deploy(other["id"], timeout=90, image=new_ref)
    assert dep3["status"] == "success", deps.tail(dep3["id"], 40)
    b = root.get(f"apps/{other['id']}").json()
    assert fetch(b["endpoints"][0], "/index.html") == (200, "public v2")


def test_image_deploy_errors_are_clear(auth, cenv, podman_store, registries):
    private, public, reg_env = registries
    d = auth.daemon(env=dict(cenv, **reg_env))
    root = auth.setup_owner(d)

    res = Res(auth, d)
    deps = Deployments(root)
    tag = uuid.uuid4().hex[:8]
    ref = push_web_image(podman_store, private, f"team/web:{tag}", "private", reg_env)

    wrong = "not-the-password"
    auth.remember(wrong)
    app = image_app(res, root, image=ref,
                    registry_auth={"username": private.user, "password": wrong})
    dep, _ = deps.deploy(app["id"], timeout=60)
    assert dep["status"] == "failed", dep
    assert dep["error_message"].startswith(f"pulling image {ref} failed:"), dep
    assert "unauthorized" in dep["error_message"].lower() or \
        "authentication required" in dep["error_message"].lower(), dep

    unknown = image_app(res, root, image=f"{public.host}/nothing-here:{tag}")
    dep, _ = deps.deploy(unknown["id"], timeout=60)
    assert dep["status"] == "failed", dep
    assert "manifest unknown" in dep["error_message"] or "not found" in dep["error_message"], dep

    p = res.project(root)
    env_id = res.production(root, p["id"])["id"]
    for bad in ("-rm", "Web Server", "x@sha256:12", "a/"):
        assert_invalid(root.post("apps", json={"name": f"bad-{uuid.uuid4().hex[:6]}",
                                               "environment_id": env_id,
                                               "project_id": p["id"], "runtime": "container",
                                               "image": bad}), "image")
        assert_invalid(root.post(f"apps/{app['id']}/deployments", json={"image": bad}),
                       "image")
    assert_invalid(root.post("apps", json={"name": "proc-img", "environment_id": env_id,
                                           "project_id": p["id"], "image": ref}), "image")


def test_built_images_go_to_slipway_registry_and_come_back_from_it(
        auth, cenv, podman_store, registries, container_repo):
    _, public, reg_env = registries
    d = auth.daemon(env=dict(cenv, SLIPWAY_REGISTRY=public.host, **reg_env))
    root = auth.setup_owner(d)
    res = Res(auth, d)
    app, deps, dep = deployed_app(res, root, container_repo)
    tags = requests.get(f"http://{public.host}/v2/slipway/{app['id']}/tags/list", timeout=5)
    assert tags.status_code == 200 and tags.json()["tags"] == [str(dep["deployment_number"])], \
        tags.text

    # Another node would not have it: gone here too, a restart pulls it back.
    ref = f"{public.host}/slipway/{app['id']}:{dep['deployment_number']}"
    node = cenv["SLIPWAY_NODE_NAME"]
    podman_store.remove_node(node)
    podman_store.run("rmi", "-f", ref)
    r = root.post(f"apps/{app['id']}/restart")
    assert r.status_code == 202, r.text
    again, _ = deps.wait_terminal(r.json()["id"], timeout=60)
    assert again["status"] == "success", deps.tail(again["id"], 40)
    lines = [ln["line"] for ln in deps.all_logs(again["id"])]
    assert any("pull succeeded" in ln for ln in lines), lines
    assert fetch(root.get(f"apps/{app['id']}").json()["endpoints"][0], "/index.html") == \
        (200, "v1")
