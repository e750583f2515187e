"""Live streams close when their caller loses access (issue 12, item 4): a member removed
from the project, a logout, a revoked API token, a deleted user, an expired credential. The
WebSocket gets close code 1008 and the SSE stream ends within the same second or so that
REST starts answering 401 or 404 — on the process that made the change and on other
processes and daemons sharing the database. And a cookie-authenticated SSE stream from our
own origin (which sends no Origin) is served, while other sites' are refused.

Every watcher watches a deployment whose build keeps printing, so a stream that stays open
keeps receiving lines: the tests wait for conditions with deadlines, never sleep.
"""

import json
import struct
import threading
import time

import pytest
import requests
import websocket

from conftest import parse_metrics
from deploy_kit import *  # noqa: F401,F403 - fixtures and helpers
from deploy_kit import BUILD

CLOSE_WITHIN = 2.0  # seconds from the revocation's answer to the stream's close

# A build that prints a line every 50 ms for a minute: the stream always has something to say.
TICKING = ('i=0; while [ $i -lt 1200 ]; do echo "tick-$i"; sleep 0.05; i=$((i+1)); done; '
           + BUILD)


def ws_url(d, path, **query):
    q = "&".join(f"{k}={v}" for k, v in query.items())
    return f"ws://{d.host}:{d.port}{API}/{path}" + (f"?{q}" if q else "")


class WsWatcher(threading.Thread):
    """A WebSocket watcher reading on a thread: its messages, and the close code it got."""

    def __init__(self, d, path, token):
        super().__init__(daemon=True)
        self.ws = websocket.create_connection(ws_url(d, path), timeout=30,
                                              header=[f"Authorization: Bearer {token}"])
        self.msgs = []
        self.close_code = None
        self.closed_at = None
        self.error = None
        self.start()

    def run(self):
        try:
            while True:
                opcode, data = self.ws.recv_data(control_frame=True)
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    self.close_code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 0
                    self.closed_at = time.monotonic()
                    return
                if opcode == websocket.ABNF.OPCODE_TEXT:
                    self.msgs.append(json.loads(data))
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
            self.closed_at = time.monotonic()

    def lines(self):
        return sum(1 for m in self.msgs if m["type"] == "log")

    def close(self):
        try:
            self.ws.close()
        except Exception:  # noqa: BLE001
            pass


class SseWatcher(threading.Thread):
    """An SSE watcher (or, with ndjson, an NDJSON follower) reading on a thread until its
    stream ends."""

    def __init__(self, d, path, token, ndjson=False):
        super().__init__(daemon=True)
        self.ndjson = ndjson
        accept = "application/x-ndjson" if ndjson else "text/event-stream"
        self.resp = requests.get(f"{d.url}{API}/{path}", stream=True, timeout=30,
                                 headers={"Authorization": f"Bearer {token}", "Accept": accept})
        assert self.resp.status_code == 200, self.resp.text
        assert self.resp.headers["Content-Type"].startswith(accept)
        self.msgs = []
        self.ended_at = None
        self.error = None
        self.start()

    def run(self):
        try:
            for raw in self.resp.iter_lines(decode_unicode=True):
                if raw and self.ndjson:
                    self.msgs.append(json.loads(raw))
                elif raw and raw.startswith("data:"):
                    self.msgs.append(json.loads(raw[5:].strip()))
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        self.ended_at = time.monotonic()

    def lines(self):
        return sum(1 for m in self.msgs if m["type"] == "log")

    def close(self):
        self.resp.close()


def live_metric(d, name):
    values = [v for n, _, v in parse_metrics(d.get("/metrics").text) if n == name]
    return values[0] if values else 0


def ticking_deployment(dres, owner, hello_repo):
    """(project, app, deployment) with a deployment printing a line every 50 ms."""
    p = dres.project(owner)
    env = dres.production(owner, p["id"])
    app = hello_app(dres, owner, hello_repo, env_id=env["id"], build_command=TICKING)
    dep = Deployments(owner).trigger(app["id"])
    return p, app, dep


def open_watchers(d, dep_id, token, ws_count=1):
    """WebSocket and SSE watchers of the deployment, once each has had live lines."""
    path = f"deployments/{dep_id}/stream"
    wss = [WsWatcher(d, path, token) for _ in range(ws_count)]
    sse = SseWatcher(d, path, token)
    wait_for(lambda: all(w.lines() >= 3 for w in wss) and sse.lines() >= 3, timeout=30,
             message="every watcher receiving lines")
    return wss, sse


def assert_closed_for_revocation(wss, sse, t0):
    """Every WebSocket got 1008 and the SSE stream ended with an error message, all within
    CLOSE_WITHIN of t0 (a deadline, not a pause)."""
    wait_for(lambda: all(w.closed_at for w in wss) and sse.ended_at,
             timeout=CLOSE_WITHIN + 5, interval=0.02, message="the streams to close")
    for w in wss:
        assert w.error is None, w.error
        assert w.close_code == 1008, w.close_code
        assert w.closed_at - t0 <= CLOSE_WITHIN, f"closed {w.closed_at - t0:.2f}s after"
    assert sse.error is None, sse.error
    assert sse.ended_at - t0 <= CLOSE_WITHIN, f"SSE ended {sse.ended_at - t0:.2f}s after"
    assert sse.msgs[-1]["type"] == "error", sse.msgs[-1]
    assert "revoked" in sse.msgs[-1]["data"]["message"]


def refused_soon(who, path, status):
    """REST on another process learns of a change from the same notification or invalidation
    as that process's streams, so it too gets a (short) deadline."""
    wait_for(lambda: who.get(path).status_code == status, timeout=CLOSE_WITHIN, interval=0.02,
             message=f"{who.d.url} answering {status}")


def stop(deployer, dep_id, *watchers):
    for w in watchers:
        w.close()
    deployer.cancel(dep_id)


# --------------------------------------------------------------------------- revocations


def test_member_removed_from_the_project(auth, droot, dres, hello_repo):
    d = droot.d
    p, _, dep = ticking_deployment(dres, droot, hello_repo)
    viewer = auth.make_user(droot)
    dres.member(droot, p["id"], viewer, "viewer")
    # Many streams of one caller on one project are one grant: one recheck, not one each.
    wss, sse = open_watchers(d, dep["id"], viewer.token, ws_count=8)
    follow = SseWatcher(d, f"deployments/{dep['id']}/logs?follow=true", viewer.token, ndjson=True)
    wait_for(lambda: follow.lines() >= 3, timeout=10, message="the NDJSON follower")
    checks = live_metric(d, "slipway_live_access_checks_total")

    r = droot.delete(f"projects/{p['id']}/members/{viewer.id}")
    assert r.status_code == 204, r.text
    t0 = time.monotonic()
    assert viewer.get(f"deployments/{dep['id']}").status_code == 404
    assert_closed_for_revocation(wss, sse, t0)
    assert_closed_for_revocation([], follow, t0)
    assert live_metric(d, "slipway_live_revoked_total") == 10
    assert live_metric(d, "slipway_live_access_checks_total") - checks <= 3
    # Nobody else lost anything: the owner's stream of the same deployment goes on.
    owner_ws = WsWatcher(d, f"deployments/{dep['id']}/stream", droot.token)
    wait_for(lambda: owner_ws.lines() >= 3, timeout=10, message="the owner's stream")
    assert owner_ws.close_code is None
    stop(Deployments(droot), dep["id"], owner_ws, sse, follow, *wss)


def test_logout(auth, droot, dres, hello_repo):
    d = droot.d
    _, _, dep = ticking_deployment(dres, droot, hello_repo)
    session = auth.login_principal(d, droot.email, droot.password)
    wss, sse = open_watchers(d, dep["id"], session.token)
    # The owner's other session watches too, and keeps watching.
    keep = WsWatcher(d, f"deployments/{dep['id']}/stream", droot.token)

    assert session.post("auth/logout").status_code == 204
    t0 = time.monotonic()
    assert session.get(f"deployments/{dep['id']}").status_code == 401
    assert_closed_for_revocation(wss, sse, t0)
    n = keep.lines()
    wait_for(lambda: keep.lines() > n + 3, timeout=10, message="the other session's stream")
    assert keep.close_code is None
    stop(Deployments(droot), dep["id"], keep, sse, *wss)


@pytest.mark.parametrize("kind", ["api_token", "access_token"])
def test_api_token_revoked(auth, droot, dres, hello_repo, kind):
    """An API token used directly, or the client_credentials bearer issued for one (which
    lives only as long as its API token)."""
    d = droot.d
    _, _, dep = ticking_deployment(dres, droot, hello_repo)
    token = auth.make_token(droot, ["read"])
    if kind == "access_token":
        token = auth.client_credentials(token)
    wss, sse = open_watchers(d, dep["id"], token.token)

    assert droot.delete(f"tokens/{token.token_id}").status_code == 204
    t0 = time.monotonic()
    assert token.get(f"deployments/{dep['id']}").status_code == 401
    assert_closed_for_revocation(wss, sse, t0)
    stop(Deployments(droot), dep["id"], sse, *wss)


def test_user_deleted(auth, droot, dres, hello_repo):
    d = droot.d
    p, _, dep = ticking_deployment(dres, droot, hello_repo)
    viewer = auth.make_user(droot)
    dres.member(droot, p["id"], viewer, "viewer")
    token = auth.make_token(viewer, ["read"])
    wss, sse = open_watchers(d, dep["id"], viewer.token)
    twss, tsse = open_watchers(d, dep["id"], token.token)

    assert droot.delete(f"users/{viewer.id}").status_code == 204
    t0 = time.monotonic()
    assert viewer.get(f"deployments/{dep['id']}").status_code == 401
    assert token.get(f"deployments/{dep['id']}").status_code == 401
    assert_closed_for_revocation(wss, sse, t0)
    assert_closed_for_revocation(twss, tsse, t0)
    stop(Deployments(droot), dep["id"], sse, tsse, *wss, *twss)


def test_admin_demoted_loses_projects_and_node_metrics(auth, droot, dres, hello_repo):
    """An instance admin sees every project without being a member; demoted, they see none,
    and the node metrics stream (admins only) closes as well."""
    d = droot.d
    _, _, dep = ticking_deployment(dres, droot, hello_repo)
    admin = auth.make_user(droot, role="admin")
    wss, sse = open_watchers(d, dep["id"], admin.token)
    metrics = WsWatcher(d, "system/metrics/stream", admin.token)
    wait_for(lambda: len(metrics.msgs) >= 1, timeout=10, message="a metrics sample")

    r = droot.patch(f"users/{admin.id}", json={"role": "member"})
    assert r.status_code == 200, r.text
    t0 = time.monotonic()
    assert admin.get(f"deployments/{dep['id']}").status_code == 404
    assert admin.get("system/metrics").status_code == 403
    assert_closed_for_revocation(wss + [metrics], sse, t0)
    stop(Deployments(droot), dep["id"], metrics, sse, *wss)


def test_expired_token_and_session(auth, droot, dres, hello_repo):
    """Expiry is no event anyone sends: the stream closes when the credential's time is up.
    Lifetimes are shortened in the database before the credentials are first used."""
    d = droot.d
    _, _, dep = ticking_deployment(dres, droot, hello_repo)
    token = auth.make_token(droot, ["read"])
    session = auth.login_principal(d, droot.email, droot.password)
    db = auth.db(d)
    db.execute("UPDATE api_tokens SET expires_at = now() + interval '10 seconds' WHERE id = %s",
               (token.token_id,))
    db.execute("UPDATE sessions SET absolute_expires_at = now() + interval '10 seconds' "
               "WHERE id = (SELECT id FROM sessions WHERE user_id = %s "
               "ORDER BY created_at DESC LIMIT 1)", (droot.id,))
    expires = time.monotonic() + 10
    wss, sse = open_watchers(d, dep["id"], token.token)
    swss, ssse = open_watchers(d, dep["id"], session.token)
    assert token.get(f"deployments/{dep['id']}").status_code == 200
    assert session.get(f"deployments/{dep['id']}").status_code == 200
    assert time.monotonic() < expires - 1, "setting up took longer than the credentials live"
    assert not any(w.closed_at for w in wss + swss) and not sse.ended_at and not ssse.ended_at

    wait_for(lambda: token.get(f"deployments/{dep['id']}").status_code == 401, timeout=10,
             interval=0.05, message="REST refusing the expired token")
    wait_for(lambda: session.get(f"deployments/{dep['id']}").status_code == 401, timeout=10,
             interval=0.05, message="REST refusing the expired session")
    assert_closed_for_revocation(wss, sse, expires)
    assert_closed_for_revocation(swss, ssse, expires)
    assert droot.get(f"deployments/{dep['id']}").status_code == 200
    stop(Deployments(droot), dep["id"], sse, ssse, *wss, *swss)


# --------------------------------------------------------------------------- across daemons


def test_revocation_on_one_daemon_closes_streams_on_another(auth, deploy_env, hello_repo):
    a = auth.daemon(env=deploy_env)
    owner = auth.setup_owner(a)
    b = auth.daemon(env=deploy_env, database_url=a.database_url)
    res = Res(auth, a)
    p, _, dep = ticking_deployment(res, owner, hello_repo)
    viewer = auth.make_user(owner)
    res.member(owner, p["id"], viewer, "viewer")
    token = auth.make_token(owner, ["read"])
    session = auth.login_principal(a, owner.email, owner.password)

    # every stream on daemon B
    vwss, vsse = open_watchers(b, dep["id"], viewer.token)
    twss, tsse = open_watchers(b, dep["id"], token.token)
    swss, ssse = open_watchers(b, dep["id"], session.token)

    # every revocation through daemon A: a membership (PostgreSQL's notification) ...
    assert owner.delete(f"projects/{p['id']}/members/{viewer.id}").status_code == 204
    t0 = time.monotonic()
    refused_soon(viewer.on(b), f"deployments/{dep['id']}", 404)
    assert_closed_for_revocation(vwss, vsse, t0)
    # ... an API token and a session (the auth invalidation through Redis)
    assert owner.delete(f"tokens/{token.token_id}").status_code == 204
    t0 = time.monotonic()
    refused_soon(token.on(b), f"deployments/{dep['id']}", 401)
    assert_closed_for_revocation(twss, tsse, t0)
    assert session.post("auth/logout").status_code == 204
    t0 = time.monotonic()
    refused_soon(session.on(b), f"deployments/{dep['id']}", 401)
    assert_closed_for_revocation(swss, ssse, t0)
    assert live_metric(b, "slipway_live_revoked_total") == 6
    stop(Deployments(owner), dep["id"], vsse, tsse, ssse, *vwss, *twss, *swss)


def test_revocation_with_several_processes(auth, deploy_env, hello_repo):
    """SLIPWAY_HTTP_WORKERS=3: streams land on any process, the revocation on any other."""
    d = auth.daemon(env=dict(deploy_env, SLIPWAY_HTTP_WORKERS="3"))
    owner = auth.setup_owner(d)
    res = Res(auth, d)
    p, _, dep = ticking_deployment(res, owner, hello_repo)
    viewer = auth.make_user(owner)
    res.member(owner, p["id"], viewer, "viewer")
    wss, sse = open_watchers(d, dep["id"], viewer.token, ws_count=6)

    assert owner.delete(f"projects/{p['id']}/members/{viewer.id}").status_code == 204
    t0 = time.monotonic()
    refused_soon(viewer, f"deployments/{dep['id']}", 404)
    assert_closed_for_revocation(wss, sse, t0)
    stop(Deployments(owner), dep["id"], sse, *wss)


# --------------------------------------------------------------------------- same-origin SSE


def sse_with_cookie(d, path, token, **headers):
    h = {"Cookie": f"slipway_session={token}", "Accept": "text/event-stream"}
    h.update(headers)
    r = requests.get(f"{d.url}{API}/{path}", headers=h, stream=True, timeout=30)
    r.close()
    return r.status_code


def test_same_origin_sse_with_the_session_cookie(droot, dres, hello_repo):
    d = droot.d
    app = hello_app(dres, droot, hello_repo)
    done, _ = Deployments(droot).deploy(app["id"])
    path = f"deployments/{done['id']}/stream"
    own = f"http://{d.host}:{d.port}"

    # What a page of our own origin's EventSource sends: no Origin at all.
    assert sse_with_cookie(d, path, droot.token) == 200
    assert sse_with_cookie(d, path, droot.token, **{"Sec-Fetch-Site": "same-origin"}) == 200
    assert sse_with_cookie(d, path, droot.token, Referer=f"{own}/dashboard") == 200
    assert sse_with_cookie(d, path, droot.token, Origin=own) == 200
    # Another site's page: refused, however it says so.
    assert sse_with_cookie(d, path, droot.token, Origin="http://evil.example") == 403
    assert sse_with_cookie(d, path, droot.token, **{"Sec-Fetch-Site": "cross-site"}) == 403
    assert sse_with_cookie(d, path, droot.token, **{"Sec-Fetch-Site": "same-site"}) == 403
    assert sse_with_cookie(d, path, droot.token, Referer="http://evil.example/page") == 403
    assert sse_with_cookie(d, path, droot.token, Origin="http://evil.example",
                           **{"Sec-Fetch-Site": "same-origin"}) == 403
    # A WebSocket always carries its page's Origin, so it still needs one (test_live.py).
    with_cookie = [f"Cookie: slipway_session={droot.token}"]
    try:
        websocket.create_connection(ws_url(d, path), timeout=10, header=with_cookie,
                                    suppress_origin=True)
        raise AssertionError("a WebSocket without Origin was upgraded")
    except websocket.WebSocketBadStatusException as exc:
        assert exc.status_code == 403
