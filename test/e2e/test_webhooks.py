"""Outgoing webhooks (issue 7, item 3; DESIGN.md §5): the API, the events the PostgreSQL
triggers queue, signed deliveries with retries, durability across restarts, the SSRF rule
and who may manage which webhook.

Every receiver is an http.server on a loopback port in this process, so the daemons that
deliver run with SLIPWAY_WEBHOOK_ALLOW_PRIVATE=true; the one that checks the refusal runs
without it. The https receivers use certificates the openssl command makes for the module: a CA
the daemon is told to trust (SLIPWAY_TLS_CA_FILE), a certificate it signed for localhost, one
it signed for another name, and a self-signed one."""

import hashlib
import hmac
import json
import re
import secrets
import signal
import socket
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import detail_fields, free_port
from deploy_kit import *  # noqa: F401,F403 - fixtures and helpers
from resources_kit import RECORDS

EVENTS = ["deployment.started", "deployment.succeeded", "deployment.failed",
          "deployment.cancelled", "app.created", "app.deleted"]
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


# --------------------------------------------------------------------------- the receiver


class Receiver:
    """An HTTP server on 127.0.0.1 that records every request. plan: the statuses of the
    first answers, in order; 200 after that. tls: (certificate, key) files to serve https with,
    named localhost in the URL and listening where localhost resolves first (where slipwayd
    connects)."""

    def __init__(self, plan=(), port=None, tls=None, answer=None):
        self.port = port or free_port()
        self.plan = list(plan)
        self.answer = answer
        self.tls = tls
        self.requests = []
        self.cond = threading.Condition()
        self.server = None

    @property
    def url(self):
        if self.tls:
            return f"https://localhost:{self.port}/hooks/slipway?k=1"
        return f"http://127.0.0.1:{self.port}/hooks/slipway?k=1"

    def start(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with receiver.cond:
                    status = receiver.plan.pop(0) if receiver.plan else 200
                    receiver.requests.append({"path": self.path, "headers": dict(self.headers),
                                              "body": body, "status": status})
                    receiver.cond.notify_all()
                answer = receiver.answer or f"answer {status} from the receiver".encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(answer)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        address = "127.0.0.1"
        server_class = ThreadingHTTPServer
        if self.tls:
            address = socket.getaddrinfo("localhost", self.port, type=socket.SOCK_STREAM,
                                         proto=socket.IPPROTO_TCP)[0][4][0]
            if ":" in address:
                server_class = type("Server6", (ThreadingHTTPServer,),
                                    {"address_family": socket.AF_INET6})
        self.server = server_class((address, self.port), Handler)
        self.server.daemon_threads = True
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*self.tls)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def wait(self, n, timeout=30.0):
        """Waits until at least n requests arrived; returns them all."""
        with self.cond:
            ok = self.cond.wait_for(lambda: len(self.requests) >= n, timeout=timeout)
            assert ok, f"{len(self.requests)} of {n} webhook requests after {timeout}s: " \
                       f"{[r['headers'].get('X-Slipway-Event') for r in self.requests]}"
            return list(self.requests)

    def events(self):
        with self.cond:
            return [r["headers"].get("X-Slipway-Event") for r in self.requests]


@pytest.fixture
def receivers():
    made = []

    def make(plan=(), port=None, start=True, tls=None, answer=None):
        r = Receiver(plan, port, tls, answer)
        made.append(r)
        return r.start() if start else r

    yield make
    for r in made:
        r.stop()


def webhook_env(**extra):
    """Daemons that deliver to loopback receivers, retry fast, and share one master key (a
    restarted daemon must open the signing secrets its predecessor sealed)."""
    env = {"SLIPWAY_WEBHOOK_ALLOW_PRIVATE": "true", "SLIPWAY_WEBHOOK_RETRY_BASE_MS": "150",
           "SLIPWAY_MASTER_KEY": secrets.token_hex(32)}
    env.update({k: str(v) for k, v in extra.items()})
    return make_deploy_env(**env)


@pytest.fixture
def whd(auth):
    return auth.daemon(env=webhook_env())


@pytest.fixture
def whroot(auth, whd):
    return auth.setup_owner(whd)


@pytest.fixture
def whres(auth, whd):
    return Res(auth, whd)


def create_webhook(who, url, events, project_id=None, expect=201):
    body = {"url": url, "events": events}
    if project_id is not None:
        body["project_id"] = project_id
    r = who.post("webhooks", json=body)
    assert r.status_code == expect, f"POST webhooks: {r.status_code} {r.text}"
    return r.json()


def verify(secret, req):
    """The receiver's side: the signature over the exact body, in constant time."""
    want = "sha256=" + hmac.new(secret.encode(), req["body"], hashlib.sha256).hexdigest()
    return hmac.compare_digest(want, req["headers"].get("X-Slipway-Signature", ""))


def attempts(who, hook_id, **params):
    params.setdefault("limit", 100)
    r = who.get(f"webhooks/{hook_id}/deliveries", params=params)
    assert r.status_code == 200, r.text
    return r.json()["data"]


# --------------------------------------------------------------------------- deployments


def test_deployment_started_then_succeeded_signed(auth, whd, whroot, whres, hello_repo,
                                                  receivers):
    rx = receivers()
    hook = create_webhook(whroot, rx.url, ["deployment.started", "deployment.succeeded"])
    secret = hook["secret"]
    assert re.fullmatch(r"[0-9a-f]{64}", secret), hook
    assert set(hook) == {"id", "url", "events", "project_id", "created_by", "created_at",
                         "secret"}, hook
    assert hook["events"] == ["deployment.started", "deployment.succeeded"]
    assert hook["project_id"] is None and hook["created_by"] == whroot.id

    app = hello_app(whres, whroot, hello_repo)
    env_value, _ = whres.set_env(whroot, app["id"], "WEBHOOK_SECRET_ENV")
    dep, history = Deployments(whroot).deploy(app["id"])
    assert dep["status"] == "success", (dep, history)

    reqs = rx.wait(2)
    assert [r["headers"]["X-Slipway-Event"] for r in reqs] == ["deployment.started",
                                                             "deployment.succeeded"]
    seen_ids = set()
    for req, event in zip(reqs, ["deployment.started", "deployment.succeeded"]):
        h = req["headers"]
        assert req["path"] == "/hooks/slipway?k=1"
        assert h["Content-Type"] == "application/json"
        assert h["User-Agent"].startswith("slipway/"), h
        assert UUID_RE.match(h["X-Slipway-Delivery"]), h
        seen_ids.add(h["X-Slipway-Delivery"])
        assert verify(secret, req), "the signature does not verify against the secret"
        # one byte changed: the same check refuses it
        tampered = dict(req, body=req["body"].replace(b'"event"', b'"Event"', 1))
        assert not verify(secret, tampered)
        body = json.loads(req["body"])
        assert set(body) == {"event", "timestamp", "data"}, body
        assert body["event"] == event
        parse_ts(body["timestamp"])
        assert body["data"]["id"] == dep["id"] and body["data"]["app_id"] == app["id"]
        assert body["data"]["status"] == ("building" if event == "deployment.started"
                                          else "success")
        assert env_value.encode() not in req["body"]
        assert secret.encode() not in req["body"]
    assert len(seen_ids) == 2

    # the attempts are recorded, and the secret appears nowhere but the creation answer
    rows = wait_for(lambda: len(r := attempts(whroot, hook["id"], sort="created_at:asc")) == 2
                    and r, timeout=10, message="two recorded attempts")
    assert [(a["event"], a["attempt"], a["status_code"], a["delivery_state"]) for a in rows] == [
        ("deployment.started", 1, 200, "delivered"),
        ("deployment.succeeded", 1, 200, "delivered")], rows
    assert {a["delivery_id"] for a in rows} == seen_ids
    assert all(a["error"] is None and a["next_attempt_at"] is None for a in rows), rows
    assert all(a["response"] == "answer 200 from the receiver" for a in rows), rows
    listed = whroot.get("webhooks").json()["data"]
    assert [w["id"] for w in listed] == [hook["id"]] and "secret" not in listed[0]
    mine = [rec for rec in RECORDS if secret.encode() in rec.body]
    assert len(mine) == 1 and mine[0].method == "POST" and mine[0].status == 201, mine
    with auth.db(whd).cursor() as cur:
        cur.execute("SELECT row_to_json(w)::text FROM webhooks w")
        [(row,)] = cur.fetchall()
        assert secret not in row, "the signing secret is stored in plain text"
        cur.execute("SELECT string_agg(row_to_json(t)::text, '') FROM audit_log t "
                    "WHERE resource = 'webhook'")
        audit = cur.fetchone()[0]
        assert "webhook.created" in audit and secret not in audit
        assert "/hooks/slipway" not in audit, "the audit log keeps only the target's origin"


def test_deployment_failed_and_cancelled(whroot, whres, hello_repo, receivers, tmp_path):
    rx = receivers()
    hook = create_webhook(whroot, rx.url, ["deployment.failed", "deployment.cancelled"])
    deps = Deployments(whroot)

    broken = hello_app(whres, whroot, hello_repo, build_command="echo broken >&2; exit 3")
    failed, _ = deps.deploy(broken["id"])
    assert failed["status"] == "failed", failed

    hold = HoldListener()
    slow = hello_app(whres, whroot, hello_repo, build_command=hold.build_wait())
    dep = deps.trigger(slow["id"])
    wait_for(lambda: deps.get(dep["id"])["stage"] == "building_image", timeout=30,
             message="the slow build running")
    assert deps.cancel(dep["id"]).status_code == 202
    cancelled, _ = deps.wait_terminal(dep["id"])
    hold.close()
    assert cancelled["status"] == "cancelled", cancelled

    reqs = rx.wait(2)
    got = {json.loads(q["body"])["event"]: json.loads(q["body"])["data"] for q in reqs}
    assert set(got) == {"deployment.failed", "deployment.cancelled"}, got
    assert [q["headers"]["X-Slipway-Event"] for q in reqs] == \
        [json.loads(q["body"])["event"] for q in reqs]
    assert got["deployment.failed"]["id"] == failed["id"]
    assert got["deployment.failed"]["status"] == "failed"
    assert got["deployment.failed"]["error_message"] == "build failed: exit code 3"
    assert got["deployment.cancelled"]["id"] == dep["id"]
    assert got["deployment.cancelled"]["status"] == "cancelled"
    assert all(verify(hook["secret"], q) for q in reqs)
    # the events not subscribed to (started, succeeded) sent nothing
    assert len(rx.requests) == 2


# --------------------------------------------------------------------------- retries


def test_500_twice_then_200_is_delivered_on_the_third_attempt(whroot, whres, receivers):
    rx = receivers(plan=[500, 500])
    hook = create_webhook(whroot, rx.url, ["app.created"])
    p = whres.project(whroot)
    app = whres.app(whroot, whres.production(whroot, p["id"])["id"])

    reqs = rx.wait(3)
    assert [r["status"] for r in reqs] == [500, 500, 200]
    # the same delivery, byte for byte, each time
    assert len({r["headers"]["X-Slipway-Delivery"] for r in reqs}) == 1
    assert len({r["body"] for r in reqs}) == 1
    assert all(verify(hook["secret"], r) for r in reqs)
    assert json.loads(reqs[0]["body"])["data"]["id"] == app["id"]

    def three_recorded():
        rows = attempts(whroot, hook["id"], sort="attempt:asc")
        return len(rows) == 3 and rows[-1]["delivery_state"] == "delivered" and rows

    rows = wait_for(three_recorded, timeout=10, message="three recorded attempts")
    assert [(a["attempt"], a["status_code"]) for a in rows] == [(1, 500), (2, 500), (3, 200)]
    assert rows[0]["response"] == "answer 500 from the receiver"
    assert all(isinstance(a["latency_ms"], int) and a["latency_ms"] >= 0 for a in rows)
    # the failures name when the next attempt is due, backing off; the success nothing
    t1, t2 = (parse_ts(rows[i]["next_attempt_at"]) for i in (0, 1))
    assert parse_ts(rows[0]["created_at"]) < t1
    assert (t2 - parse_ts(rows[1]["created_at"])) > (t1 - parse_ts(rows[0]["created_at"]))
    assert rows[2]["next_attempt_at"] is None
    # pages and filters
    r = whroot.get(f"webhooks/{hook['id']}/deliveries", params={"limit": 2})
    assert r.status_code == 200 and r.json()["pagination"]["total"] == 3
    assert len(r.json()["data"]) == 2 and r.json()["pagination"]["has_next"] is True
    assert attempts(whroot, hook["id"], delivery_id=rows[0]["delivery_id"]) != []
    assert attempts(whroot, hook["id"], event="app.deleted") == []


def test_a_long_2xx_answer_delivers_at_once(whroot, whres, receivers):
    """Only the start of an answer is read: a 2xx with a long body is a delivery, not a failure
    to retry, and its first 1 KiB is what the attempt keeps."""
    answer = b"".join(b"%07d\n" % i for i in range(32 * 1024))  # 256 KiB
    rx = receivers(answer=answer)
    hook = create_webhook(whroot, rx.url, ["app.created"])
    p = whres.project(whroot)
    whres.app(whroot, whres.production(whroot, p["id"])["id"])
    rx.wait(1)
    rows = wait_for(lambda: (r := attempts(whroot, hook["id"])) and
                    r[0]["delivery_state"] == "delivered" and r, timeout=10,
                    message="the delivery recorded")
    assert [(a["attempt"], a["status_code"], a["error"]) for a in rows] == [(1, 200, None)], rows
    assert rows[0]["response"] == answer[:1024].decode(), rows[0]["response"][:80]
    assert len(rx.requests) == 1


def test_gives_up_after_the_attempt_limit(auth, receivers):
    d = auth.daemon(env=webhook_env(SLIPWAY_WEBHOOK_MAX_ATTEMPTS=3))
    root = auth.setup_owner(d)
    res = Res(auth, d)
    rx = receivers(plan=[503] * 10)
    hook = create_webhook(root, rx.url, ["app.created"])
    p = res.project(root)
    res.app(root, res.production(root, p["id"])["id"])

    def failed():
        rows = attempts(root, hook["id"], sort="attempt:asc")
        return rows and rows[-1]["delivery_state"] == "failed" and rows

    rows = wait_for(failed, timeout=15, message="the delivery marked failed")
    assert [(a["attempt"], a["status_code"]) for a in rows] == [(1, 503), (2, 503), (3, 503)]
    assert rows[-1]["next_attempt_at"] is None
    assert len(rx.requests) == 3


# --------------------------------------------------------------------------- durability


def test_restart_with_undelivered_webhook_still_delivers(auth, receivers):
    env = webhook_env(SLIPWAY_WEBHOOK_MAX_ATTEMPTS=50)
    a = auth.daemon(env=env)
    root = auth.setup_owner(a)
    res = Res(auth, a)
    rx = receivers(start=False)  # nothing listens on its port yet
    hook = create_webhook(root, rx.url, ["app.created"])
    p = res.project(root)
    app = res.app(root, res.production(root, p["id"])["id"])

    rows = wait_for(lambda: attempts(root, hook["id"]), timeout=10, message="a failed attempt")
    assert rows[0]["status_code"] is None and rows[0]["error"] == "connection refused", rows
    assert rows[0]["delivery_state"] == "pending" and rows[0]["next_attempt_at"]

    assert a.stop() == 0, a.stop_problem  # SIGTERM: drains, hands back what is in flight
    rx.start()
    b = auth.daemon(env=env, database_url=a.database_url)
    reqs = rx.wait(1, timeout=30)
    body = json.loads(reqs[0]["body"])
    assert body["event"] == "app.created" and body["data"]["id"] == app["id"]
    assert verify(hook["secret"], reqs[0])
    final = wait_for(lambda: (r := attempts(root.on(b), hook["id"], sort="attempt:asc"))
                     and r[-1]["delivery_state"] == "delivered" and r,
                     timeout=10, message="the delivery recorded as delivered")
    assert final[-1]["status_code"] == 200 and len(rx.requests) == 1


def test_event_queued_before_a_kill_9_is_delivered_by_the_next_process(auth, receivers):
    # An API-only process queues the event (the trigger runs in its transaction) but has no
    # dispatcher; it dies without any goodbye, and a worker started later delivers.
    env = webhook_env()
    a = auth.daemon(env=dict(env, SLIPWAY_ROLE="api"))
    root = auth.setup_owner(a)
    res = Res(auth, a)
    rx = receivers()
    hook = create_webhook(root, rx.url, ["app.created", "app.deleted"])
    p = res.project(root)
    app = res.app(root, res.production(root, p["id"])["id"])
    with auth.db(a).cursor() as cur:
        cur.execute("SELECT event, state FROM webhook_deliveries WHERE webhook_id = %s",
                    (hook["id"],))
        assert cur.fetchall() == [("app.created", "pending")]
    a.proc.kill()
    assert a.wait_exit(10) == -signal.SIGKILL

    auth.daemon(env=dict(env, SLIPWAY_ROLE="worker"), database_url=a.database_url, wait=False)
    reqs = rx.wait(1, timeout=30)
    assert json.loads(reqs[0]["body"])["data"]["id"] == app["id"]
    assert verify(hook["secret"], reqs[0])


# --------------------------------------------------------------------------- events


def test_app_created_and_deleted_and_project_cascade(whroot, whres, receivers):
    rx = receivers()
    hook = create_webhook(whroot, rx.url, ["app.created", "app.deleted"])
    p = whres.project(whroot)
    env_id = whres.production(whroot, p["id"])["id"]
    a1 = whres.app(whroot, env_id, "one")
    reqs = rx.wait(1)
    assert json.loads(reqs[0]["body"])["event"] == "app.created"
    r = whroot.delete(f"apps/{a1['id']}")
    assert r.status_code == 204, r.text
    reqs = rx.wait(2)
    body = json.loads(reqs[1]["body"])
    assert body["event"] == "app.deleted" and body["data"]["id"] == a1["id"]
    assert body["data"]["name"] == "one" and body["data"]["project_id"] == p["id"]

    # deleting a project deletes its apps, and each one says so
    a2 = whres.app(whroot, env_id, "two")
    a3 = whres.app(whroot, env_id, "three")
    rx.wait(4)
    r = whroot.delete(f"projects/{p['id']}")
    assert r.status_code == 204, r.text
    reqs = rx.wait(6)
    deleted = {json.loads(q["body"])["data"]["id"] for q in reqs[4:]}
    assert [q["headers"]["X-Slipway-Event"] for q in reqs[4:]] == ["app.deleted"] * 2
    assert deleted == {a2["id"], a3["id"]}
    assert all(verify(hook["secret"], q) for q in reqs)


def test_project_webhook_gets_only_its_projects_events(auth, whd, whroot, whres, receivers):
    padmin = whres.user(whroot)
    mine = whres.project(padmin)
    other = whres.project(whroot)
    rx = receivers()
    hook = create_webhook(padmin, rx.url, ["app.created"], project_id=mine["id"])
    assert hook["project_id"] == mine["id"]
    other_app = whres.app(whroot, whres.production(whroot, other["id"])["id"])
    my_app = whres.app(padmin, whres.production(padmin, mine["id"])["id"])
    reqs = rx.wait(1)
    assert json.loads(reqs[0]["body"])["data"]["id"] == my_app["id"]
    # the trigger ran in each app's transaction: the other project's app queued nothing
    with auth.db(whd).cursor() as cur:
        cur.execute("SELECT payload::json->'data'->>'id' FROM webhook_deliveries "
                    "WHERE webhook_id = %s", (hook["id"],))
        assert [r[0] for r in cur.fetchall()] == [my_app["id"]]
    assert all(json.loads(q["body"])["data"]["id"] != other_app["id"] for q in rx.requests)
    wait_for(lambda: attempts(padmin, hook["id"]), timeout=10, message="the attempt recorded")
    assert len(rx.requests) == 1


# --------------------------------------------------------------------------- access


def test_who_may_manage_which_webhook(whroot, whres, receivers):
    rx = receivers()
    member = whres.user(whroot)
    padmin = whres.user(whroot)
    p = whres.project(padmin)
    whres.member(padmin, p["id"], member, "developer")
    outsider = whres.user(whroot)

    # an instance-wide webhook: instance admins only
    r = member.post("webhooks", json={"url": rx.url, "events": ["app.created"]})
    assert error_of(r, 403, "INSUFFICIENT_ROLE")
    glob = create_webhook(whroot, rx.url, ["app.created"])
    # a project's webhook: its admins (and instance admins), not its developers; outsiders
    # cannot even tell the project exists
    r = member.post("webhooks", json={"url": rx.url, "events": ["app.created"],
                                      "project_id": p["id"]})
    assert error_of(r, 403, "INSUFFICIENT_ROLE")
    r = outsider.post("webhooks", json={"url": rx.url, "events": ["app.created"],
                                        "project_id": p["id"]})
    error_of(r, 404, "RESOURCE_NOT_FOUND")
    r = whroot.post("webhooks", json={"url": rx.url, "events": ["app.created"],
                                      "project_id": "00000000-0000-4000-8000-000000000000"})
    error_of(r, 404, "RESOURCE_NOT_FOUND")
    ph = create_webhook(padmin, rx.url, ["app.deleted"], project_id=p["id"])
    rh = create_webhook(whroot, rx.url, ["app.created"], project_id=p["id"])

    def ids(who, **params):
        r = who.get("webhooks", params=params)
        assert r.status_code == 200, r.text
        return {w["id"] for w in r.json()["data"]}

    assert ids(whroot) == {glob["id"], ph["id"], rh["id"]}
    assert ids(whroot, project_id=p["id"]) == {ph["id"], rh["id"]}
    assert ids(padmin) == {ph["id"], rh["id"]}
    assert ids(member) == set() and ids(outsider) == set()
    for who, hid in [(padmin, glob["id"]), (member, ph["id"]), (outsider, ph["id"])]:
        error_of(who.get(f"webhooks/{hid}/deliveries"), 404, "RESOURCE_NOT_FOUND")
        error_of(who.delete(f"webhooks/{hid}"), 404, "RESOURCE_NOT_FOUND")
    assert padmin.get(f"webhooks/{ph['id']}/deliveries").status_code == 200
    error_of(whroot.delete("webhooks/not-a-uuid"), 404)

    # a read-only token may list but not create
    ro = whres.auth.make_token(whroot, ["read"])
    assert ro.get("webhooks").status_code == 200
    error_of(ro.post("webhooks", json={"url": rx.url, "events": ["app.created"]}), 403)

    r = padmin.delete(f"webhooks/{ph['id']}")
    assert r.status_code == 204, r.text
    error_of(padmin.delete(f"webhooks/{ph['id']}"), 404)
    r = whroot.delete(f"webhooks/{rh['id']}")
    assert r.status_code == 204, r.text
    assert ids(padmin) == set()
    with whres.db.cursor() as cur:
        cur.execute("SELECT action, project_id::text, details->>'target' FROM audit_log "
                    "WHERE resource = 'webhook' ORDER BY id")
        rows = cur.fetchall()
    origin = f"http://127.0.0.1:{rx.port}"
    assert rows == [("webhook.created", None, origin), ("webhook.created", p["id"], origin),
                    ("webhook.created", p["id"], origin), ("webhook.deleted", p["id"], origin),
                    ("webhook.deleted", p["id"], origin)], rows


# --------------------------------------------------------------------------- validation and SSRF


def test_validation(whroot):
    ok = "http://127.0.0.1:9/x"
    cases = [
        ({"url": "ftp://example.com/", "events": ["app.created"]}, "url"),
        ({"url": "http://user:pw@example.com/", "events": ["app.created"]}, "url"),
        ({"url": "http://example.com/" + "a" * 2040, "events": ["app.created"]}, "url"),
        ({"url": "http://exa mple.com/", "events": ["app.created"]}, "url"),
        ({"url": "http://example.com/#frag", "events": ["app.created"]}, "url"),
        ({"url": "http://example.com:99999/", "events": ["app.created"]}, "url"),
        ({"url": "http:///path", "events": ["app.created"]}, "url"),
        ({"url": ok, "events": []}, "events"),
        ({"url": ok, "events": ["app.renamed"]}, "events"),
        ({"url": ok, "events": "app.created"}, "events"),
        ({"url": ok}, "events"),
        ({"events": ["app.created"]}, "url"),
        ({"url": ok, "events": ["app.created"], "project_id": "nope"}, "project_id"),
        ({"url": ok, "events": ["app.created"], "secret": "mine"}, "secret"),
    ]
    for body, field in cases:
        r = whroot.post("webhooks", json=body)
        assert r.status_code == 400, (body, r.status_code, r.text)
        assert field in detail_fields(r), (body, r.text)
    # duplicates are folded; URLs may use upper-case schemes and hosts; https is welcome
    hook = create_webhook(whroot, "HTTP://LOCALHOST:9/x", ["app.created", "app.created"])
    assert hook["events"] == ["app.created"]
    hook = create_webhook(whroot, "https://localhost/x", ["app.created"])
    assert hook["url"] == "https://localhost/x"
    assert whroot.get("webhooks").json()["pagination"]["total"] == 2


PRIVATE_TARGETS = [
    ("http://127.0.0.1:{port}/", "loopback"),
    ("http://localhost:{port}/", "loopback"),
    ("http://[::1]:{port}/", "loopback"),
    ("http://10.1.2.3/", "private"),
    ("http://192.168.0.10:8080/", "private"),
    ("http://172.20.0.1/", "private"),
    ("http://169.254.169.254/latest/meta-data", "link-local"),
    ("http://0.0.0.0:{port}/", "unspecified"),
    ("http://[fd00::1]/", "private"),
    ("http://[fe80::1]/", "link-local"),
    ("http://[::ffff:10.0.0.1]/", "private"),
]


def test_private_targets_refused_at_creation_without_the_switch(auth, receivers):
    d = auth.daemon()  # SLIPWAY_WEBHOOK_ALLOW_PRIVATE is off by default
    root = auth.setup_owner(d)
    rx = receivers()
    for url, kind in PRIVATE_TARGETS:
        r = root.post("webhooks", json={"url": url.format(port=rx.port),
                                        "events": ["app.created"]})
        err = error_of(r, 422, "VALIDATION_ERROR")
        assert f"a {kind} address" in err["message"], (url, err)
        assert "SLIPWAY_WEBHOOK_ALLOW_PRIVATE" in err["message"], err
        assert [dd["field"] for dd in err["details"]] == ["url"], err
    assert root.get("webhooks").json()["pagination"]["total"] == 0
    assert rx.requests == []


# --------------------------------------------------------------------------- https


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=Slipway e2e CA")

    def leaf(name, san, signed=True):
        if signed:
            (d / f"{name}.ext").write_text(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n"
                                           "extendedKeyUsage=serverAuth\n")
            openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                    "-subj", f"/CN={name}")
            openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                    "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext",
                    "-out", f"{name}.pem")
        else:
            openssl("req", "-x509", *ec, "-keyout", f"{name}.key", "-out", f"{name}.pem",
                    "-days", "2", "-subj", f"/CN={name}", "-addext", f"subjectAltName={san}")
        return str(d / f"{name}.pem"), str(d / f"{name}.key")

    return {"ca": str(d / "ca.pem"),
            "localhost": leaf("localhost", "DNS:localhost,IP:127.0.0.1,IP:::1"),
            "other_name": leaf("other", "DNS:other.test"),
            "self_signed": leaf("stranger", "DNS:localhost", signed=False)}


def test_https_target_verified_against_the_ca_file(auth, receivers, tls_files):
    d = auth.daemon(env=webhook_env(SLIPWAY_TLS_CA_FILE=tls_files["ca"]))
    root = auth.setup_owner(d)
    res = Res(auth, d)
    rx = receivers(tls=tls_files["localhost"])
    hook = create_webhook(root, rx.url, ["app.created"])
    p = res.project(root)
    app = res.app(root, res.production(root, p["id"])["id"])

    req = rx.wait(1)[0]
    assert req["path"] == "/hooks/slipway?k=1"
    assert req["headers"]["Host"] == f"localhost:{rx.port}"
    assert req["headers"]["X-Slipway-Event"] == "app.created"
    assert verify(hook["secret"], req)
    assert json.loads(req["body"])["data"]["id"] == app["id"]
    rows = wait_for(lambda: (a := attempts(root, hook["id"])) and
                    a[0]["delivery_state"] == "delivered" and a,
                    timeout=10, message="the https delivery recorded")
    assert rows[0]["status_code"] == 200 and rows[0]["error"] is None
    assert rows[0]["response"] == "answer 200 from the receiver"


def test_https_target_that_does_not_verify_gets_nothing(auth, receivers, tls_files):
    """A certificate from an unknown issuer, one for another name, and a server that does not
    speak TLS: each attempt fails before the signed body is sent, and says why."""
    d = auth.daemon(env=webhook_env(SLIPWAY_TLS_CA_FILE=tls_files["ca"],
                                    SLIPWAY_WEBHOOK_MAX_ATTEMPTS=1))
    root = auth.setup_owner(d)
    res = Res(auth, d)
    cases = []
    for cert, reason in [("self_signed", "certificate verify failed: self-signed certificate"),
                         ("other_name", "certificate verify failed: hostname mismatch")]:
        rx = receivers(tls=tls_files[cert])
        cases.append((rx, create_webhook(root, rx.url, ["app.created"]), reason))
    plain = receivers()  # plain http on the port an https URL names
    plain_url = f"https://127.0.0.1:{plain.port}/hooks"
    cases.append((plain, create_webhook(root, plain_url, ["app.created"]),
                  "TLS handshake failed"))
    p = res.project(root)
    res.app(root, res.production(root, p["id"])["id"])

    for rx, hook, reason in cases:
        rows = wait_for(lambda h=hook: (a := attempts(root, h["id"])) and
                        a[0]["delivery_state"] == "failed" and a,
                        timeout=15, message=f"the failed attempt to {hook['url']}")
        assert len(rows) == 1 and rows[0]["status_code"] is None, rows
        assert reason in rows[0]["error"], (hook["url"], rows[0]["error"])
        assert rx.requests == [], hook["url"]


def test_https_uses_the_system_store_without_a_ca_file(auth, receivers, tls_files):
    """Without SLIPWAY_TLS_CA_FILE only the system's authorities are trusted, and the test's CA
    is not one of them."""
    d = auth.daemon(env=webhook_env(SLIPWAY_WEBHOOK_MAX_ATTEMPTS=1))
    root = auth.setup_owner(d)
    res = Res(auth, d)
    rx = receivers(tls=tls_files["localhost"])
    hook = create_webhook(root, rx.url, ["app.created"])
    p = res.project(root)
    res.app(root, res.production(root, p["id"])["id"])
    rows = wait_for(lambda: (a := attempts(root, hook["id"])) and
                    a[0]["delivery_state"] == "failed" and a,
                    timeout=15, message="the failed https attempt")
    assert "unable to get local issuer certificate" in rows[0]["error"], rows[0]["error"]
    assert rx.requests == []


# --------------------------------------------------------------------------- retention


def test_janitor_prunes_finished_deliveries_after_the_keep_days(auth, receivers):
    d = auth.daemon(env=webhook_env(SLIPWAY_JANITOR_INTERVAL_MS=1000,
                                    SLIPWAY_WEBHOOK_KEEP_DAYS=7))
    root = auth.setup_owner(d)
    res = Res(auth, d)
    rx = receivers()
    hook = create_webhook(root, rx.url, ["app.created"])
    env_id = res.production(root, res.project(root)["id"])["id"]
    old, recent = res.app(root, env_id, "old"), res.app(root, env_id, "recent")
    rx.wait(2)
    wait_for(lambda: [a["delivery_state"] for a in attempts(root, hook["id"])] ==
             ["delivered", "delivered"], timeout=10, message="both deliveries recorded")
    db = auth.db(d)

    def delivery_of(app):
        return "SELECT id FROM webhook_deliveries WHERE payload::json->'data'->>'id' = %s", \
            (app["id"],)

    old_id = db.execute(*delivery_of(old)).fetchone()[0]
    # Eight days ago: past the keep. A delivery still owed is never pruned, however old.
    db.execute("UPDATE webhook_deliveries SET updated_at = now() - interval '8 days', "
               "created_at = now() - interval '8 days' WHERE id = %s", (old_id,))
    owed = db.execute("INSERT INTO webhook_deliveries (webhook_id, event, payload, "
                      "next_attempt_at, created_at, updated_at) VALUES (%s, 'app.created', "
                      "'{}', now() + interval '1 day', now() - interval '90 days', "
                      "now() - interval '90 days') RETURNING id", (hook["id"],)).fetchone()[0]

    def count(sql, *args):
        return db.execute(sql, args).fetchone()[0]

    wait_for(lambda: count("SELECT count(*) FROM webhook_deliveries WHERE id = %s", old_id) == 0,
             timeout=15, message="the old delivery pruned")
    assert count("SELECT count(*) FROM webhook_attempts WHERE delivery_id = %s", old_id) == 0
    assert count("SELECT count(*) FROM webhook_deliveries WHERE id = %s", owed) == 1
    [left] = attempts(root, hook["id"])
    assert json.loads(rx.requests[1]["body"])["data"]["id"] == recent["id"]
    assert left["delivery_id"] == str(db.execute(*delivery_of(recent)).fetchone()[0])
    db.execute("DELETE FROM webhook_deliveries WHERE id = %s", (owed,))
