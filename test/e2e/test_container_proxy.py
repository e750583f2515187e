"""Container releases through the edge (issues 14 and 15): a client sending requests to a
container app's domain through a real Caddy across redeploys and a rollback sees no failed
request, and never an older release once a newer one reported success."""

import time

import pytest

from conftest import wait_for
from container_kit import (cenv, container_repo, deployed_app, podman_store)  # noqa: F401
from deploy_kit import Res
from proxy_kit import ReleaseWatch, caddy, proxy_env  # noqa: F401


@pytest.fixture
def cpdaemon(auth, cenv, caddy):
    return auth.daemon(env=dict(cenv, **proxy_env(caddy)))


def test_container_redeploys_through_caddy_drop_no_request(auth, cpdaemon, caddy,
                                                            container_repo):
    root = auth.setup_owner(cpdaemon)
    res = Res(auth, cpdaemon)
    app, deps, first = deployed_app(res, root, container_repo)
    res.domain(root, app["id"], "box.test")
    # the domain was added after the release: it is routed once the reconciler has it
    wait_for(lambda: caddy.get("box.test").headers.get("Slipway-Release") == first["id"],
             timeout=15, message="box.test served through Caddy")

    successes = [(0.0, first["id"])]
    with ReleaseWatch(f"http://127.0.0.1:{caddy.http_port}/index.html", "box.test") as watch:
        for i in range(3):
            container_repo.version(f"v{i + 2}")
            dep, _ = deps.deploy(app["id"], timeout=90)
            assert dep["status"] == "success", deps.tail(dep["id"], 40)
            successes.append((time.monotonic(), dep["id"]))
        back = root.post(f"deployments/{successes[1][1]}/rollback")
        assert back.status_code in (201, 202), back.text
        dep = deps.wait_terminal(back.json()["id"], timeout=60)[0]
        assert dep["status"] == "success", deps.tail(dep["id"], 40)
        successes.append((time.monotonic(), dep["id"]))
        wait_for(lambda: watch.latest_is(dep["id"]), timeout=10)
    watch.check(successes)
