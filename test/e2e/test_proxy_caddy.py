"""Edge routing through a real Caddy (issue 14, DESIGN.md §13): domains serve their apps,
neither release switches nor domains added or removed change Caddy's config (so no request
and no WebSocket is dropped), drift is repaired, and a proxy that cannot take a release leaves
the old one serving."""

import json
import socket
import subprocess
import time

import pytest
import requests
import websocket

from conftest import free_port, parse_metrics
from deploy_kit import *  # noqa: F401,F403
from deploy_kit import Deployments, hello_app, make_deploy_env, wait_for
from proxy_kit import Pebble, ReleaseWatch, caddy, pebble, proxy_env  # noqa: F401


@pytest.fixture
def pdaemon(auth, caddy):
    return auth.daemon(env=make_deploy_env(**proxy_env(caddy)))


@pytest.fixture
def proot(auth, pdaemon):
    return auth.setup_owner(pdaemon)


@pytest.fixture
def pres(auth, pdaemon):
    return Res(auth, pdaemon)  # noqa: F405


def serves(caddy, host, want_body=None, want_release=None):
    try:
        r = caddy.get(host)
    except requests.RequestException:
        return False
    if r.status_code != 200:
        return False
    if want_body is not None and r.text.strip() != want_body:
        return False
    return want_release is None or r.headers.get("Slipway-Release") == want_release


def send_log_line(dns, host, error):
    """A line of Caddy's log saying an order for host failed, as Caddy sends it."""
    ip, port = dns.rsplit(":", 1)
    line = json.dumps({"level": "error", "ts": time.time(), "logger": "tls.obtain",
                       "msg": "could not get certificate from issuer", "identifier": host,
                       "issuer": "test", "error": error}) + "\n"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(line.encode(), (ip, int(port)))


def repairs_total(d):
    return sum(v for name, _, v in parse_metrics(d.get("/metrics").text)
               if name == "slipway_proxy_repairs_total")


def test_a_domain_serves_its_app_through_caddy(caddy, proot, pres, hello_repo):
    app = hello_app(pres, proot, hello_repo)
    pres.domain(proot, app["id"], "shop.test")
    dep, _ = Deployments(proot).deploy(app["id"])
    assert dep["status"] == "success", dep
    # success means Caddy already serves it: no waiting here
    r = caddy.get("shop.test")
    assert r.status_code == 200 and r.text.strip() == "v1", (r.status_code, r.text)
    assert r.headers["Slipway-Release"] == dep["id"]
    # one route takes every host; the hostnames are in slipwayd's DNS answers, not in Caddy
    assert caddy.route_ids() == ["slipway-apps"]
    # and it is the host that decides, whatever its case or port
    r = requests.get(f"http://127.0.0.1:{caddy.http_port}/",
                     headers={"Host": f"SHOP.Test:{caddy.http_port}"}, timeout=5)
    assert r.status_code == 200 and r.headers["Slipway-Release"] == dep["id"], r
    # the domain shows how it is routed
    dom = proot.get(f"apps/{app['id']}/domains").json()["data"][0]
    app_now = proot.get(f"apps/{app['id']}").json()

    def routed():
        d = proot.get(f"domains/{dom['id']}").json()
        return d["routing"]["status"] == "active" and d

    d = wait_for(routed, timeout=10, message="routing.status active")
    assert d["routing"]["endpoints"] == app_now["endpoints"], (d, app_now)
    assert d["tls"]["status"] == "pending"  # no HTTPS listener here: nothing observed


def test_a_switch_changes_no_caddy_config_and_drops_no_request(caddy, proot, pres, hello_repo,
                                                               tmp_path):
    web = hello_app(pres, proot, hello_repo)
    pres.domain(proot, web["id"], "web.test")
    other_repo = type(hello_repo)(tmp_path / "other-repo")
    other = hello_app(pres, proot, other_repo)
    pres.domain(proot, other["id"], "ws.test")
    deps = Deployments(proot)
    first, _ = deps.deploy(web["id"])
    assert first["status"] == "success", first
    assert deps.deploy(other["id"])[0]["status"] == "success"
    config_before = caddy.config()

    # A WebSocket to the other app, through Caddy, held across every switch of this one.
    ws = websocket.create_connection(f"ws://127.0.0.1:{caddy.http_port}/ws",
                                     host="ws.test", timeout=5)
    ws.send("hello")
    assert ws.recv() == "v1:hello"

    successes = [(0.0, first["id"])]
    with ReleaseWatch(f"http://127.0.0.1:{caddy.http_port}/", "web.test") as watch:
        for i in range(10):
            hello_repo.version(f"v{i + 2}")
            dep, _ = deps.deploy(web["id"])
            assert dep["status"] == "success", dep
            successes.append((time.monotonic(), dep["id"]))
        # a rollback (to a build still kept) and a restart go through the same switch
        back = proot.post(f"deployments/{successes[-3][1]}/rollback")
        assert back.status_code in (201, 202), back.text
        dep = deps.wait_terminal(back.json()["id"])[0]
        assert dep["status"] == "success", dep.get("error_message")
        successes.append((time.monotonic(), dep["id"]))
        again = proot.post(f"apps/{web['id']}/restart")
        assert again.status_code == 202, again.text
        dep = deps.wait_terminal(again.json()["id"])[0]
        assert dep["status"] == "success", dep.get("error_message")
        successes.append((time.monotonic(), dep["id"]))
        wait_for(lambda: watch.latest_is(dep["id"]), timeout=10)
    watch.check(successes, min_seen=0)
    # The switches changed nothing in Caddy: its config is as it was...
    assert caddy.config() == config_before
    # ...so the other app's WebSocket is still open and answering.
    ws.send("still there")
    assert ws.recv() == "v1:still there"
    ws.close()


def test_a_caddy_restarted_empty_is_whole_again_by_itself(caddy, pdaemon, proot, pres,
                                                          hello_repo):
    app = hello_app(pres, proot, hello_repo)
    pres.domain(proot, app["id"], "again.test")
    dep, _ = Deployments(proot).deploy(app["id"])
    assert dep["status"] == "success", dep
    repairs = repairs_total(pdaemon)
    caddy.restart()
    # (the reconciler may have put the route back already: the repairs counter says it did)
    wait_for(lambda: serves(caddy, "again.test", "v1", dep["id"]), timeout=10,
             message="the route back in a restarted Caddy")
    # a route edited by hand is put back as well
    cfg = caddy.config()
    route = cfg["apps"]["http"]["servers"]["slipway"]["routes"][0]
    route["match"] = [{"host": ["elsewhere.test"]}]
    requests.post(caddy.admin + "/load", json=cfg, timeout=10).raise_for_status()
    wait_for(lambda: "match" not in caddy.routes()[0], timeout=10,
             message="the hand-edited route repaired")
    assert serves(caddy, "again.test", "v1", dep["id"])
    # the round counts once Caddy has answered its last change, a moment after Caddy serves it
    wait_for(lambda: repairs_total(pdaemon) >= repairs + 2, timeout=10,
             message="both repairs counted")


def test_a_deploy_into_a_caddy_restarted_empty_repairs_it_at_once(auth, caddy, hello_repo):
    # The timer's round is an hour away: only the deployment can bring the route back.
    d = auth.daemon(env=make_deploy_env(**proxy_env(caddy, SLIPWAY_PROXY_RECONCILE_MS=3600000)))
    root = auth.setup_owner(d)
    res = Res(auth, d)  # noqa: F405
    app = hello_app(res, root, hello_repo)
    res.domain(root, app["id"], "restarted.test")
    deps = Deployments(root)
    first, _ = deps.deploy(app["id"])
    assert first["status"] == "success", first
    caddy.restart()
    assert caddy.routes() == []
    hello_repo.version("v2")
    dep, _ = deps.deploy(app["id"], timeout=60)
    assert dep["status"] == "success", dep
    assert serves(caddy, "restarted.test", "v2", dep["id"])
    assert caddy.get("nobody.test").status_code == 404
    # An operator's bare NOTIFY asks for the whole comparison at once, too.
    caddy.restart()
    res.db.execute("NOTIFY slipway_routes")
    wait_for(lambda: serves(caddy, "restarted.test", "v2", dep["id"]), timeout=10,
             message="the routes back after a bare NOTIFY")


def test_domains_come_and_go_without_a_config_change(caddy, proot, pres, hello_repo,
                                                    tmp_path):
    app = hello_app(pres, proot, hello_repo)
    a = pres.domain(proot, app["id"], "a.test")
    dep, _ = Deployments(proot).deploy(app["id"])
    assert dep["status"] == "success", dep
    config_before = caddy.config()
    ws = websocket.create_connection(f"ws://127.0.0.1:{caddy.http_port}/ws",
                                     host="a.test", timeout=5)
    ws.send("hello")
    assert ws.recv() == "v1:hello"
    # A domain added is served at once, and Caddy's config (so every open stream) is untouched.
    b = pres.domain(proot, app["id"], "b.test")
    wait_for(lambda: serves(caddy, "b.test", "v1", dep["id"]), timeout=10,
             message="the new domain served")
    assert caddy.config() == config_before
    ws.send("still there")
    assert ws.recv() == "v1:still there"
    ws.close()
    assert proot.delete(f"domains/{a['id']}").status_code == 204
    wait_for(lambda: caddy.get("a.test").status_code == 404, timeout=10, message="a.test gone")
    gone = caddy.get("a.test")
    # A host no app has is told so (Caddy alone would answer an empty 200), by the edge.
    assert "No app is served" in gone.text, gone.text
    assert gone.headers["Slipway-Edge"] == "no-app" and gone.headers["Slipway-Release"] == "edge"
    assert caddy.get("nobody.test").status_code == 404
    # the edge's certificate question is Caddy's own: through Caddy it is just a path
    assert caddy.get("nobody.test", "/ask?domain=b.test").status_code == 404
    assert serves(caddy, "b.test", "v1")
    assert caddy.config() == config_before
    # A domain whose app has no release yet says that instead.
    idle = hello_app(pres, proot, type(hello_repo)(tmp_path / "idle-repo"))
    pres.domain(proot, idle["id"], "idle.test")
    wait_for(lambda: caddy.get("idle.test").status_code == 503, timeout=10,
             message="the idle app's domain answered")
    r = caddy.get("idle.test")
    assert r.headers["Slipway-Edge"] == "no-release" and r.headers["Slipway-Release"] == "edge"
    # A Host no DNS name can carry falls back to the edge too.
    assert caddy.get("bad_name!.test").status_code == 404
    # Slipway's route removed by hand comes back.
    r = requests.delete(f"{caddy.admin}/id/slipway-apps", timeout=5)
    assert r.status_code == 200, r.text
    wait_for(lambda: serves(caddy, "b.test", "v1"), timeout=20, message="the route put back")
    del b


def test_a_wildcard_domain_serves_each_name_under_it(auth, caddy, hello_repo, tmp_path):
    env = make_deploy_env(**proxy_env(caddy, SLIPWAY_ALLOW_WILDCARD_DOMAINS="true"))
    d = auth.daemon(env=env)
    root = auth.setup_owner(d)
    res = Res(auth, d)  # noqa: F405
    wild = hello_app(res, root, hello_repo)
    res.domain(root, wild["id"], "*.shops.test")
    other_repo = type(hello_repo)(tmp_path / "exact-repo")
    other_repo.version("exact")
    exact = hello_app(res, root, other_repo)
    res.domain(root, exact["id"], "main.shops.test")
    deps = Deployments(root)
    w, _ = deps.deploy(wild["id"])
    e, _ = deps.deploy(exact["id"])
    assert w["status"] == "success" and e["status"] == "success", (w, e)
    assert serves(caddy, "one.shops.test", "v1", w["id"])
    assert serves(caddy, "Two.Shops.Test", "v1", w["id"])
    # the exact name wins over the wildcard; a wildcard covers one label only
    assert serves(caddy, "main.shops.test", "exact", e["id"])
    assert caddy.get("a.b.shops.test").status_code == 404
    assert caddy.get("shops.test").status_code == 404
    # Certificates: any name under the wildcard is ours, but strangers must not spend the CA's
    # limits for the domain with random names: 20 new names an hour, exact names unlimited.
    edge = env["SLIPWAY_PROXY_DNS"]

    def ask(name):
        return requests.get(f"http://{edge}/ask", params={"domain": name}, timeout=5).status_code

    assert [ask(f"n{i}.shops.test") for i in range(20)] == [200] * 20
    assert ask("n20.shops.test") == 429
    assert ask("main.shops.test") == 200 and ask("x.y.shops.test") == 404


def test_an_unreachable_caddy_fails_the_deploy_and_the_old_release_serves_on(caddy, proot, pres,
                                                                              hello_repo):
    app = hello_app(pres, proot, hello_repo)
    pres.domain(proot, app["id"], "keep.test")
    deps = Deployments(proot)
    first, _ = deps.deploy(app["id"])
    assert first["status"] == "success", first
    before = proot.get(f"apps/{app['id']}").json()
    caddy.stop()
    hello_repo.version("v2")
    dep, _ = deps.deploy(app["id"], timeout=90)
    assert dep["status"] == "failed", dep
    assert "proxy" in dep["error_message"] and "Caddy admin API" in dep["error_message"], \
        dep["error_message"]
    after = proot.get(f"apps/{app['id']}").json()
    assert after["active_deployment_id"] == first["id"]
    assert after["endpoints"] == before["endpoints"]
    assert fetch(after["endpoints"][0]) == (200, "v1")  # noqa: F405
    caddy.start()
    wait_for(lambda: serves(caddy, "keep.test", "v1", first["id"]), timeout=10,
             message="the old release routed again once Caddy is back")


def test_https_with_a_certificate_pebble_issued(caddy, pebble, auth, hello_repo, tmp_path):
    env = make_deploy_env(**proxy_env(caddy, https=True, SLIPWAY_ACME_CA=pebble.directory,
                                      SLIPWAY_ACME_EMAIL="ops@example.com",
                                      SLIPWAY_ACME_CA_ROOT=str(pebble.cert)))
    daemon = auth.daemon(env=env)
    root = auth.setup_owner(daemon)
    res = Res(auth, daemon)  # noqa: F405
    app = hello_app(res, root, hello_repo)
    res.domain(root, app["id"], "shop.test")
    dep, _ = Deployments(root).deploy(app["id"])
    assert dep["status"] == "success", dep
    ca = pebble.root_pem(tmp_path / "pebble-root.pem")

    def https_answer():
        # only Pebble's root is trusted, and the name is checked
        r = subprocess.run(["curl", "-sS", "--max-time", "5", "--cacert", str(ca), "--resolve",
                            f"shop.test:{caddy.https_port}:127.0.0.1", "-D", "-",
                            f"https://shop.test:{caddy.https_port}/"],
                           capture_output=True, text=True)
        return r.returncode == 0 and r.stdout.rstrip().endswith("v1") and r.stdout

    out = wait_for(https_answer, timeout=30, message="HTTPS with Pebble's certificate")
    assert f"slipway-release: {dep['id']}" in out.lower(), out
    # the domain says so, from a handshake of its own with Caddy
    dom = root.get(f"apps/{app['id']}/domains").json()["data"][0]

    def tls_active():
        d = root.get(f"domains/{dom['id']}").json()
        return d["tls"]["status"] == "active" and d

    d = wait_for(tls_active, timeout=30, message="tls.status active")
    assert "pebble" in d["tls"]["issuer"].lower(), d["tls"]
    assert d["tls"]["not_after"] and d["tls"]["error"] is None, d["tls"]
    assert d["routing"]["status"] == "active", d["routing"]
    # A name served with a certificate is not one Caddy orders for: a line saying its order
    # failed (here a forged one, as anyone on the DNS address could send) changes nothing.
    send_log_line(env["SLIPWAY_PROXY_DNS"], "shop.test", "forged")
    wait_for(lambda: any(e.get("msg", "").startswith("a certificate failure was ignored") and
                         e.get("host") == "shop.test" for e in daemon.logs()),
             timeout=10, message="the line read and ignored")
    assert root.get(f"domains/{dom['id']}").json()["tls"]["status"] == "active"
    # Certificates are on demand, asked of slipwayd's edge first: a name no app has gets none.
    edge = env["SLIPWAY_PROXY_DNS"]
    assert requests.get(f"http://{edge}/ask", params={"domain": "shop.test"},
                        timeout=5).status_code == 200
    assert requests.get(f"http://{edge}/ask", params={"domain": "nobody.test"},
                        timeout=5).status_code == 404
    r = subprocess.run(["curl", "-sS", "--max-time", "5", "--cacert", str(ca), "--resolve",
                        f"nobody.test:{caddy.https_port}:127.0.0.1",
                        f"https://nobody.test:{caddy.https_port}/"], capture_output=True, text=True)
    assert r.returncode != 0 and not r.stdout, (r.stdout, r.stderr)


def test_a_certificate_that_cannot_be_issued_says_why(caddy, auth, tmp_path):
    # This Pebble validates for real, and looks names up at slipwayd's DNS responder, which
    # knows no fail.test: the order fails, and only Caddy's log says why.
    dns = f"127.0.0.1:{free_port()}"
    pebble = Pebble(tmp_path / "strict-pebble", caddy.http_port, caddy.https_port,
                    always_valid=False, dnsserver=dns).start()
    try:
        d = auth.daemon(env=make_deploy_env(**proxy_env(
            caddy, https=True, SLIPWAY_PROXY_DNS=dns, SLIPWAY_ACME_CA=pebble.directory,
            SLIPWAY_ACME_CA_ROOT=str(pebble.cert))))
        root = auth.setup_owner(d)
        res = Res(auth, d)  # noqa: F405
        app = res.app(root, res.production(root, res.project(root)["id"])["id"])
        dom = res.domain(root, app["id"], "fail.test")

        def tls_error():
            t = root.get(f"domains/{dom['id']}").json()["tls"]
            return t["status"] == "error" and t

        # at once, not after the two minutes a certificate may take to be issued
        t = wait_for(tls_error, timeout=40, message="tls.status error")
        assert t["error"].startswith("the certificate could not be issued: "), t
        assert "fail.test" in t["error"] and "urn:ietf:params:acme:error" in t["error"], t
        assert t["issuer"] is None and t["not_after"] is None, t
        # A line longer than any DNS message is read whole (a CA's answer can be long).
        send_log_line(dns, "fail.test", "long reason " + "x" * 3000)
        wait_for(lambda: "long reason x" in root.get(f"domains/{dom['id']}").json()["tls"]["error"],
                 timeout=10, message="the long line read")
    finally:
        pebble.stop()


def test_the_public_url_host_reaches_the_api_through_caddy(caddy, auth):
    d = auth.daemon(env=make_deploy_env(**proxy_env(caddy,
                                                    SLIPWAY_PUBLIC_URL="http://panel.test")))

    def api_through_caddy():
        r = caddy.get("panel.test", "/health")
        return r.status_code == 200 and r.headers.get("Slipway-Release") == "api" and r

    r = wait_for(api_through_caddy, timeout=15, message="the API at its public host")
    assert r.json()["status"] in ("ok", "degraded"), r.text
    del d


def test_the_admin_api_on_a_unix_socket(auth, hello_repo, tmp_path):
    from proxy_kit import Caddy
    c = Caddy(tmp_path / "caddy-unix", unix=True).start()
    try:
        d = auth.daemon(env=make_deploy_env(**proxy_env(c)))
        root = auth.setup_owner(d)
        res = Res(auth, d)  # noqa: F405
        app = hello_app(res, root, hello_repo)
        res.domain(root, app["id"], "sock.test")
        dep, _ = Deployments(root).deploy(app["id"])
        assert dep["status"] == "success", dep
        assert serves(c, "sock.test", "v1", dep["id"])
        assert c.route_ids() == ["slipway-apps"]
    finally:
        c.stop()
