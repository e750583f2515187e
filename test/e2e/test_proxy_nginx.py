"""Edge routing through a real nginx (issue 14 item 3, DESIGN.md §13): slipwayd renders an
include file, checks it with nginx -t, reloads, and waits until the check server answers the
new hash. Domains serve their apps, switches drop no request, drift is repaired, and a config
nginx refuses fails the deploy with nginx's words while the old release serves on."""

import subprocess
import time

import pytest
import requests
import websocket
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from deploy_kit import *  # noqa: F401,F403
from conftest import free_port
from deploy_kit import Deployments, hello_app, make_deploy_env, wait_for
from test_tls import Pki
from proxy_kit import ReleaseWatch, nginx, nginx_env, proxy_repairs, proxy_serves  # noqa: F401


@pytest.fixture
def ndaemon(auth, nginx):
    return auth.daemon(env=make_deploy_env(**nginx_env(nginx)))


@pytest.fixture
def nroot(auth, ndaemon):
    return auth.setup_owner(ndaemon)


@pytest.fixture
def nres(auth, ndaemon):
    return Res(auth, ndaemon)  # noqa: F405


def test_a_domain_serves_its_app_through_nginx(nginx, nroot, nres, hello_repo):
    app = hello_app(nres, nroot, hello_repo)
    nres.domain(nroot, app["id"], "shop.test")
    dep, _ = Deployments(nroot).deploy(app["id"])
    assert dep["status"] == "success", dep
    # success means nginx already serves it: no waiting here
    r = nginx.get("shop.test")
    assert r.status_code == 200 and r.text.strip() == "v1", (r.status_code, r.text)
    assert r.headers["Slipway-Release"] == dep["id"]
    conf = nginx.include.read_text()
    assert "server_name shop.test;" in conf and f'"{dep["id"]}"' in conf, conf
    # a name nginx does not route gets 404 from the default server, not some app
    other = nginx.get("elsewhere.test")
    assert other.status_code == 404 and "Slipway-Release" not in other.headers
    # the check server answers the hash of the file that is live
    check = nginx.get("_slipway-config-check")
    assert check.status_code == 200 and check.text.strip() in conf


def test_redeploys_through_nginx_drop_no_request(nginx, nroot, nres, hello_repo, tmp_path):
    web = hello_app(nres, nroot, hello_repo)
    nres.domain(nroot, web["id"], "web.test")
    other_repo = type(hello_repo)(tmp_path / "other-repo")
    other = hello_app(nres, nroot, other_repo)
    nres.domain(nroot, other["id"], "ws.test")
    deps = Deployments(nroot)
    first, _ = deps.deploy(web["id"])
    assert first["status"] == "success", first
    assert deps.deploy(other["id"])[0]["status"] == "success"

    assert proxy_serves(nginx, "ws.test", "v1")
    # A WebSocket to the other app, through nginx, held across every reload: a reload is
    # graceful, so the old worker keeps it.
    ws = websocket.create_connection(f"ws://127.0.0.1:{nginx.http_port}/ws",
                                     host="ws.test", timeout=5)
    ws.send("hello")
    assert ws.recv() == "v1:hello"

    # A reload closes the old workers' idle keep-alive connections; a GET sent on one at that
    # instant is reset, and clients retry it on a fresh connection as browsers do. Every
    # answer nginx gives still counts: a 502 or 503 is a failure.
    s = requests.Session()
    retry = Retry(total=2, connect=2, read=2, status=0, allowed_methods=["GET"],
                  raise_on_status=False)
    s.mount("http://", HTTPAdapter(max_retries=retry))
    successes = [(0.0, first["id"])]
    with ReleaseWatch(f"http://127.0.0.1:{nginx.http_port}/", "web.test", s) as watch:
        for i in range(5):
            hello_repo.version(f"v{i + 2}")
            dep, _ = deps.deploy(web["id"])
            assert dep["status"] == "success", (dep, nginx.log_tail())
            successes.append((time.monotonic(), dep["id"]))
        wait_for(lambda: watch.latest_is(dep["id"]), timeout=10)
    watch.check(successes)
    ws.send("still there")
    assert ws.recv() == "v1:still there"
    ws.close()


def test_an_include_removed_or_edited_by_hand_is_repaired(nginx, ndaemon, nroot, nres,
                                                          hello_repo):
    app = hello_app(nres, nroot, hello_repo)
    nres.domain(nroot, app["id"], "again.test")
    dep, _ = Deployments(nroot).deploy(app["id"])
    assert dep["status"] == "success", dep
    good = nginx.include.read_text()
    repairs = proxy_repairs(ndaemon)

    # edited by hand and reloaded: nginx serves nothing of Slipway's until the reconciler
    # puts the file back and reloads
    nginx.include.write_text("# emptied by hand\n")
    assert nginx.reload().returncode == 0
    wait_for(lambda: proxy_repairs(ndaemon) >= repairs + 1, timeout=10,
             message="the hand edit repaired")
    wait_for(lambda: proxy_serves(nginx, "again.test", "v1", dep["id"]), timeout=10,
             message="the route back after a hand edit")
    assert nginx.include.read_text() == good

    # removed: the file comes back as it was
    nginx.include.unlink()
    wait_for(lambda: proxy_repairs(ndaemon) >= repairs + 2, timeout=10,
             message="the removal repaired")
    assert nginx.include.read_text() == good
    assert proxy_serves(nginx, "again.test", "v1", dep["id"])


def test_a_config_nginx_refuses_fails_the_deploy_and_the_old_release_serves_on(
        nginx, nroot, nres, hello_repo):
    app = hello_app(nres, nroot, hello_repo)
    nres.domain(nroot, app["id"], "keep.test")
    deps = Deployments(nroot)
    first, _ = deps.deploy(app["id"])
    assert first["status"] == "success", first
    good = nginx.include.read_text()
    before = nroot.get(f"apps/{app['id']}").json()

    # The main config now has an error: nginx -t refuses whatever is rendered, and the
    # running nginx keeps its last good config.
    nginx.write_conf(extra_http="slipway_no_such_directive on;")
    hello_repo.version("v2")
    dep, _ = deps.deploy(app["id"], timeout=90)
    assert dep["status"] == "failed", dep
    msg = dep["error_message"]
    assert "nginx -t" in msg and 'unknown directive "slipway_no_such_directive"' in msg, msg
    after = nroot.get(f"apps/{app['id']}").json()
    assert after["active_deployment_id"] == first["id"]
    assert after["endpoints"] == before["endpoints"]
    # the refused file did not stay: the one nginx serves is back on disk
    assert nginx.include.read_text() == good
    assert proxy_serves(nginx, "keep.test", "v1", first["id"])

    # with the main config fixed, the next deploy goes through
    nginx.write_conf()
    hello_repo.version("v3")
    dep, _ = deps.deploy(app["id"], timeout=90)
    assert dep["status"] == "success", dep
    assert proxy_serves(nginx, "keep.test", "v3", dep["id"])


# ---- HTTPS with one certificate (SLIPWAY_NGINX_TLS_*) ----


def edge_certificate(d, names):
    """A throwaway CA and a certificate of it for names: (ca, cert, key) paths."""
    pki = Pki(d, ca_name="Slipway nginx test CA", san=",".join(f"DNS:{n}" for n in names))
    return (pki.ca, *pki.issue("edge", 7))


def test_https_through_nginx_with_one_certificate(auth, nginx, hello_repo, tmp_path):
    ca, cert, key = edge_certificate(tmp_path / "pki", ["shop.test", "*.shop.test"])
    https_port = free_port()
    d = auth.daemon(env=make_deploy_env(**nginx_env(
        nginx, SLIPWAY_PROXY_HTTPS=f"127.0.0.1:{https_port}", SLIPWAY_NGINX_TLS_CERT_FILE=cert,
        SLIPWAY_NGINX_TLS_KEY_FILE=key)))
    root = auth.setup_owner(d)
    res = Res(auth, d)  # noqa: F405
    app = hello_app(res, root, hello_repo)
    dom = res.domain(root, app["id"], "shop.test")
    dep, _ = Deployments(root).deploy(app["id"])
    assert dep["status"] == "success", dep

    def https_get(host):
        # the client trusts only the test CA and checks the name
        r = subprocess.run(["curl", "-sS", "--max-time", "5", "--cacert", ca, "--resolve",
                            f"{host}:{https_port}:127.0.0.1", "-D", "-",
                            f"https://{host}:{https_port}/"], capture_output=True, text=True)
        return r.returncode, r.stdout, r.stderr

    rc, out, err = https_get("shop.test")
    assert rc == 0, err
    assert out.startswith("HTTP/1.1 200") and out.rstrip().endswith("v1"), out
    assert f"Slipway-Release: {dep['id']}" in out, out
    # plain HTTP serves on beside it
    assert proxy_serves(nginx, "shop.test", "v1", dep["id"])
    # a name nginx does not route: the default server's 404, over HTTPS too
    rc, out, _ = https_get("elsewhere.shop.test")
    assert rc == 0 and out.startswith("HTTP/1.1 404"), out

    def active():
        t = root.get(f"domains/{dom['id']}").json()["tls"]
        return t["status"] == "active" and t
    tls = wait_for(active, timeout=30, message="the domain's certificate observed")
    assert tls["issuer"] == "Slipway nginx test CA" and tls["not_after"], tls


def test_a_wrong_nginx_certificate_stops_the_start(slipwayd, nginx, tmp_path):
    _, cert, key = edge_certificate(tmp_path / "one", ["shop.test"])
    _, _, other_key = edge_certificate(tmp_path / "two", ["shop.test"])
    base = nginx_env(nginx, SLIPWAY_PROXY_HTTPS=f"127.0.0.1:{free_port()}")

    def fails(**env):
        dmn = slipwayd(env=dict(base, **env), args=["--check-config"], wait=False)
        assert dmn.wait_exit(30) == 2, dmn.log_tail()
        return dmn.log_text()

    msg = fails(SLIPWAY_NGINX_TLS_CERT_FILE=cert, SLIPWAY_NGINX_TLS_KEY_FILE=other_key)
    assert f"SLIPWAY_NGINX_TLS_KEY_FILE {other_key} does not match" in msg, msg
    msg = fails(SLIPWAY_NGINX_TLS_CERT_FILE=cert)
    assert "SLIPWAY_NGINX_TLS_KEY_FILE" in msg and "together" in msg, msg
    # a path nginx's syntax would give a meaning to never reaches its config
    msg = fails(SLIPWAY_NGINX_TLS_CERT_FILE=cert + ";evil", SLIPWAY_NGINX_TLS_KEY_FILE=key)
    assert "must be absolute paths" in msg, msg
    msg = fails(SLIPWAY_NGINX_TLS_CERT_FILE=cert, SLIPWAY_NGINX_TLS_KEY_FILE=key,
                SLIPWAY_PROXY_HTTPS="")
    assert "SLIPWAY_PROXY_HTTPS is empty" in msg, msg
    ok = slipwayd(env=dict(base, SLIPWAY_NGINX_TLS_CERT_FILE=cert, SLIPWAY_NGINX_TLS_KEY_FILE=key),
                  args=["--check-config"], wait=False)
    assert ok.wait_exit(30) == 0, ok.log_tail()
