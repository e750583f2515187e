"""Live streams (issue 6, DESIGN.md §6): a deployment's lines and status over WebSocket, SSE
and NDJSON, with no gap and no duplicate however late a watcher comes; across processes;
slow watchers told they lagged; access checked before the upgrade.

Every line a watcher gets is compared with what the database stored for the deployment.
"""

import base64
import json
import os
import signal
import socket
import struct
import threading
import time

import pytest
import requests
import websocket

from deploy_kit import *  # noqa: F401,F403 - fixtures and helpers
from deploy_kit import BUILD

# A build that prints `n` numbered lines in bursts, pausing so watchers can join mid-way.
def counting_build(n, burst=50, pause=0.05):
    return (f'i=1; while [ $i -le {n} ]; do echo "line-$i"; '
            f'if [ $((i % {burst})) -eq 0 ]; then sleep {pause}; fi; i=$((i+1)); done; '
            + BUILD)


def ws_url(d, path, **query):
    q = "&".join(f"{k}={v}" for k, v in query.items())
    return f"ws://{d.host}:{d.port}{API}/{path}" + (f"?{q}" if q else "")


def ws_connect(who, path, **kw):
    return websocket.create_connection(ws_url(who.d, path), timeout=30,
                                       header=[f"Authorization: Bearer {who.token}"], **kw)


def ws_messages(ws, until_end=True, limit=None):
    """Reads messages until `end` (or limit messages); returns them decoded."""
    out = []
    while True:
        text = ws.recv()
        if not text:
            break
        msg = json.loads(text)
        out.append(msg)
        if until_end and msg["type"] == "end":
            break
        if limit is not None and len(out) >= limit:
            break
    return out


def log_lines(msgs):
    return [(m["data"]["seq"], m["data"]["line"]) for m in msgs if m["type"] == "log"]


def stored(deps, dep_id):
    return [(ln["seq"], ln["line"]) for ln in deps.all_logs(dep_id)]


def assert_envelopes(msgs):
    for m in msgs:
        assert set(m) == {"type", "timestamp", "data"}, m
        assert m["type"] in ("status", "log", "metrics", "lagged", "end", "error"), m
        parse_ts(m["timestamp"])
        if m["type"] == "log":
            assert {"seq", "stream", "line"} <= set(m["data"]), m
        if m["type"] == "status":
            assert {"deployment_id", "status", "stage", "progress", "error_message"} <= \
                set(m["data"]), m


class Collector(threading.Thread):
    """Reads a WebSocket to its end on a thread."""

    def __init__(self, ws):
        super().__init__(daemon=True)
        self.ws = ws
        self.msgs = []
        self.error = None

    def run(self):
        try:
            while True:
                text = self.ws.recv()
                if not text:
                    return
                msg = json.loads(text)
                self.msgs.append(msg)
                if msg["type"] == "end":
                    return
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def lines(self):
        return len([m for m in self.msgs if m["type"] == "log"])


def blocker(dres, droot, hello_repo, seconds=1.5):
    """An app whose deployment holds its lease a while, so the next one waits pending."""
    return hello_app(dres, droot, hello_repo, build_command=f"sleep {seconds}; " + BUILD)


# --------------------------------------------------------------------------- WebSocket


def test_early_and_late_watchers_get_every_line_once(droot, dres, hello_repo):
    n = 600
    app = hello_app(dres, droot, hello_repo, build_command=f"sleep 1; {counting_build(n)}")
    deps = Deployments(droot)
    dep = deps.trigger(app["id"])

    early = Collector(ws_connect(droot, f"deployments/{dep['id']}/stream"))
    early.start()
    wait_for(lambda: early.lines() >= n // 3, timeout=40, message="early watcher half-way")
    late = Collector(ws_connect(droot, f"deployments/{dep['id']}/stream"))
    late.start()
    early.join(60)
    late.join(60)
    assert not early.is_alive() and not late.is_alive(), "watchers did not see the end"
    assert early.error is None and late.error is None, (early.error, late.error)

    done = deps.get(dep["id"])
    assert done["status"] == "success", done
    want = stored(deps, dep["id"])
    assert [s for s, _ in want] == list(range(1, len(want) + 1)), "stored seqs not contiguous"
    for c in (early, late):
        assert_envelopes(c.msgs)
        assert log_lines(c.msgs) == want
        assert c.msgs[-1]["type"] == "end"
        statuses = [m["data"]["status"] for m in c.msgs if m["type"] == "status"]
        assert statuses[-1] == "success", statuses
    assert [ln for _, ln in want if ln.startswith("line-")] == [f"line-{i}" for i in
                                                                 range(1, n + 1)]
    early_statuses = [m["data"]["status"] for m in early.msgs if m["type"] == "status"]
    assert "building" in early_statuses and "deploying" in early_statuses, early_statuses


def test_watcher_of_a_pending_deployment(droot, dres, hello_repo):
    app = blocker(dres, droot, hello_repo)
    deps = Deployments(droot)
    first = deps.trigger(app["id"])
    second = deps.trigger(app["id"])
    ws = ws_connect(droot, f"deployments/{second['id']}/stream")
    msgs = ws_messages(ws)
    ws.close()
    assert msgs[0]["type"] == "status" and msgs[0]["data"]["status"] == "pending", msgs[0]
    assert msgs[-1]["type"] == "end"
    assert log_lines(msgs) == stored(deps, second["id"])
    assert deps.get(first["id"])["status"] == "success"


def test_finished_deployment_replays_then_ends(droot, dres, hello_repo):
    app = hello_app(dres, droot, hello_repo, build_command=counting_build(30))
    deps = Deployments(droot)
    done, _ = deps.deploy(app["id"])
    ws = ws_connect(droot, f"deployments/{done['id']}/stream")
    msgs = ws_messages(ws)
    opcode, payload = ws.recv_data(control_frame=True)
    assert opcode == websocket.ABNF.OPCODE_CLOSE
    assert struct.unpack("!H", payload[:2])[0] == 1000
    ws.close()
    assert msgs[0]["type"] == "status" and msgs[0]["data"]["status"] == "success"
    assert log_lines(msgs) == stored(deps, done["id"])
    assert msgs[-1]["type"] == "end"


def test_secret_values_are_masked_live(auth, droot, dres, hello_repo):
    app = hello_app(dres, droot, hello_repo,
                    build_command=f'echo "token is $LIVE_SECRET"; sleep 0.5; {BUILD}')
    value, _ = dres.set_env(droot, app["id"], "LIVE_SECRET", build_time=True)
    deps = Deployments(droot)
    dep = deps.trigger(app["id"])
    ws = ws_connect(droot, f"deployments/{dep['id']}/stream")
    msgs = ws_messages(ws)
    ws.close()
    text = json.dumps(msgs)
    assert value not in text
    assert "token is ***" in [ln for _, ln in log_lines(msgs)]


# --------------------------------------------------------------------------- SSE and NDJSON


def sse_events(resp, limit=None):
    """Parses an SSE response into (id, message) pairs until `end` or limit."""
    out = []
    ident = None
    data = []
    for raw in resp.iter_lines(decode_unicode=True):
        if raw is None:
            continue
        if raw == "":
            if data:
                msg = json.loads("\n".join(data))
                out.append((ident, msg))
                data = []
                ident = None
                if msg["type"] == "end" or (limit is not None and len(out) >= limit):
                    return out
            continue
        if raw.startswith(":") or raw.startswith("retry:"):
            continue
        field, _, value = raw.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "id":
            ident = value
        elif field == "data":
            data.append(value)
    return out


def sse_get(who, path, last_event_id=None):
    headers = {"Authorization": f"Bearer {who.token}", "Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    r = requests.get(f"{who.d.url}{API}/{path}", headers=headers, stream=True, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/event-stream")
    return r


def test_sse_reconnect_with_last_event_id_has_no_gap(droot, dres, hello_repo):
    n = 400
    app = hello_app(dres, droot, hello_repo, build_command=f"sleep 0.5; {counting_build(n)}")
    deps = Deployments(droot)
    dep = deps.trigger(app["id"])
    path = f"deployments/{dep['id']}/stream"

    first = sse_get(droot, path)
    part1 = sse_events(first, limit=120)
    first.close()
    logs1 = [(int(i), m) for i, m in part1 if m["type"] == "log"]
    assert logs1, part1
    for ident, m in logs1:
        assert ident == m["data"]["seq"]
    last_id = logs1[-1][0]

    second = sse_get(droot, path, last_event_id=last_id)
    part2 = sse_events(second)
    second.close()
    assert part2[-1][1]["type"] == "end"
    got = log_lines([m for _, m in part1] + [m for _, m in part2])
    assert got == stored(deps, dep["id"])


def test_follow_streams_ndjson_until_the_end(droot, dres, hello_repo):
    app = hello_app(dres, droot, hello_repo, build_command=f"sleep 0.5; {counting_build(200)}")
    deps = Deployments(droot)
    dep = deps.trigger(app["id"])
    r = requests.get(f"{droot.d.url}{API}/deployments/{dep['id']}/logs",
                     params={"follow": "true"}, stream=True, timeout=60,
                     headers={"Authorization": f"Bearer {droot.token}"})
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/x-ndjson")
    msgs = [json.loads(line) for line in r.iter_lines() if line]
    assert_envelopes(msgs)
    assert msgs[-1]["type"] == "end"
    assert log_lines(msgs) == stored(deps, dep["id"])

    # since_seq: only what follows it
    r = requests.get(f"{droot.d.url}{API}/deployments/{dep['id']}/logs",
                     params={"follow": "true", "since_seq": 150}, stream=True, timeout=60,
                     headers={"Authorization": f"Bearer {droot.token}"})
    later = [json.loads(line) for line in r.iter_lines() if line]
    assert log_lines(later) == [x for x in stored(deps, dep["id"]) if x[0] > 150]


def test_follow_with_lines_replays_the_last_lines_then_follows(droot, dres, hello_repo):
    """?follow=true&lines=N: the last N stored lines, then every new one until the end."""
    hold = HoldListener()
    build = (f'i=1; while [ $i -le 60 ]; do echo "before-$i"; i=$((i+1)); done; '
             f'{hold.build_wait()}; echo after-1; echo after-2; {BUILD}')
    app = hello_app(dres, droot, hello_repo, build_command=build)
    deps = Deployments(droot)
    try:
        dep = deps.trigger(app["id"])
        wait_for(lambda: any(ln == "before-60" for _, ln in stored(deps, dep["id"])),
                 timeout=30, message="the first 60 lines stored")
        before = stored(deps, dep["id"])
        r = requests.get(f"{droot.d.url}{API}/deployments/{dep['id']}/logs",
                         params={"follow": "true", "lines": 10}, stream=True, timeout=60,
                         headers={"Authorization": f"Bearer {droot.token}"})
        assert r.status_code == 200, r.text
        msgs = []
        it = r.iter_lines()
        # the replay, read before the build goes on so its start is fixed
        while len(log_lines(msgs)) < 10:
            msgs.append(json.loads(next(it)))
        assert log_lines(msgs) == before[-10:]
        hold.close()
        msgs.extend(json.loads(line) for line in it if line)
        r.close()
    finally:
        hold.close()
    assert_envelopes(msgs)
    assert msgs[-1]["type"] == "end"
    got = log_lines(msgs)
    assert got == [x for x in stored(deps, dep["id"]) if x[0] >= before[-10][0]]
    assert ("after-1" in [ln for _, ln in got]), got

    # a resume point wins over lines
    r = requests.get(f"{droot.d.url}{API}/deployments/{dep['id']}/logs",
                     params={"follow": "true", "lines": 5, "since_seq": 3}, stream=True,
                     timeout=60, headers={"Authorization": f"Bearer {droot.token}"})
    later = [json.loads(line) for line in r.iter_lines() if line]
    assert log_lines(later) == [x for x in stored(deps, dep["id"]) if x[0] > 3]
    # and lines is checked as without follow
    bad = droot.get(f"deployments/{dep['id']}/logs", params={"follow": "true", "lines": 0})
    assert bad.status_code == 400 and "lines" in bad.text, bad.text


def test_failed_deployment_streams_an_error_before_end(droot, dres, hello_repo):
    """Mist's clients read a failure from {"type": "error", "data": {"message"}} before
    `end`; the status with error_message still comes too. Live, over WS, SSE and NDJSON, and
    for a watcher that comes after the end."""
    hold = HoldListener()
    app = hello_app(dres, droot, hello_repo,
                    build_command=f"echo building; {hold.build_wait()}; echo boom >&2; exit 3")
    deps = Deployments(droot)
    try:
        dep = deps.trigger(app["id"])
        path = f"deployments/{dep['id']}/stream"
        ws = ws_connect(droot, path)
        ws_live = Collector(ws)
        ws_live.start()
        sse = sse_get(droot, path)
        nd = requests.get(f"{droot.d.url}{API}/deployments/{dep['id']}/logs",
                          params={"follow": "true"}, stream=True, timeout=60,
                          headers={"Authorization": f"Bearer {droot.token}"})
        wait_for(lambda: deps.get(dep["id"])["stage"] == "building_image", timeout=30,
                 message="the build running")
        hold.close()
        sse_msgs = [m for _, m in sse_events(sse)]
        nd_msgs = [json.loads(line) for line in nd.iter_lines() if line]
        ws_live.join(timeout=60)
        ws.close()
    finally:
        hold.close()
    done = deps.get(dep["id"])
    assert done["status"] == "failed" and done["error_message"], done
    late = ws_connect(droot, path)
    late_msgs = ws_messages(late)
    late.close()
    for name, msgs in (("ws", ws_live.msgs), ("sse", sse_msgs), ("ndjson", nd_msgs),
                       ("late ws", late_msgs)):
        assert_envelopes(msgs)
        assert [m["type"] for m in msgs[-2:]] == ["error", "end"], (name, msgs[-3:])
        assert msgs[-2]["data"] == {"message": done["error_message"]}, (name, msgs[-2])
        failed = [m for m in msgs if m["type"] == "status" and m["data"]["status"] == "failed"]
        assert failed and failed[-1]["data"]["error_message"] == done["error_message"], \
            (name, failed)
        assert sum(m["type"] == "error" for m in msgs) == 1, (name, msgs)

    # a deployment that succeeds sends no error
    ok = deps.trigger(hello_app(dres, droot, hello_repo)["id"])
    ws = ws_connect(droot, f"deployments/{ok['id']}/stream")
    msgs = ws_messages(ws)
    ws.close()
    assert deps.get(ok["id"])["status"] == "success"
    assert msgs[-1]["type"] == "end" and not [m for m in msgs if m["type"] == "error"], msgs


# --------------------------------------------------------------------------- across processes


def test_watcher_on_api_process_sees_lines_built_by_worker_process(auth, deploy_env,
                                                                    hello_repo):
    api = auth.daemon(env=dict(deploy_env, SLIPWAY_ROLE="api"))
    owner = auth.setup_owner(api)
    # a worker-only process serves no HTTP: it is ready when its log says so
    worker = auth.daemon(env=dict(deploy_env, SLIPWAY_ROLE="worker"),
                         database_url=api.database_url, wait=False)
    wait_for(lambda: "deployment worker started" in worker.log_text(), timeout=30,
             message="the worker process started")
    res = Res(auth, api)
    app = hello_app(res, owner, hello_repo, build_command=f"sleep 1; {counting_build(300)}")
    deps = Deployments(owner)
    dep = deps.trigger(app["id"])
    ws = ws_connect(owner, f"deployments/{dep['id']}/stream")
    msgs = ws_messages(ws)
    ws.close()
    done = deps.get(dep["id"])
    assert done["status"] == "success" and done["node_id"], done
    assert log_lines(msgs) == stored(deps, dep["id"])
    # the lines came live through the relay, not only from the final catch-up
    metrics = requests.get(f"{api.url}/metrics", timeout=5).text
    relayed = [ln for ln in metrics.splitlines() if ln.startswith("slipway_live_relayed_total")]
    assert relayed and float(relayed[0].split()[1]) > 0, relayed


# --------------------------------------------------------------------------- slow watchers


def raw_ws(d, path, token, rcvbuf=None, origin=None, cookie=None, extra=b""):
    """A WebSocket handshake on a plain socket; returns (socket, response head, leftover)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(30)
    s.connect((d.host, d.port))
    key = base64.b64encode(os.urandom(16)).decode()
    head = [f"GET {API}/{path} HTTP/1.1", f"Host: {d.host}:{d.port}", "Upgrade: websocket",
            "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    if token:
        head.append(f"Authorization: Bearer {token}")
    if origin:
        head.append(f"Origin: {origin}")
    if cookie:
        head.append(f"Cookie: {cookie}")
    s.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + extra)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    resp, _, rest = buf.partition(b"\r\n\r\n")
    return s, resp.decode(), rest


def read_frame(s, buf):
    """(opcode, payload, rest) of the next server frame, reading more as needed."""
    def need(n):
        nonlocal buf
        while len(buf) < n:
            chunk = s.recv(65536)
            if not chunk:
                raise EOFError("closed")
            buf += chunk
    need(2)
    opcode = buf[0] & 0x0F
    length = buf[1] & 0x7F
    off = 2
    if length == 126:
        need(4)
        length = struct.unpack("!H", buf[2:4])[0]
        off = 4
    elif length == 127:
        need(10)
        length = struct.unpack("!Q", buf[2:10])[0]
        off = 10
    need(off + length)
    return opcode, buf[off:off + length], buf[off + length:]


def client_frame(opcode, payload, mask=True):
    head = bytes([0x80 | opcode])
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head += bytes([mbit | n])
    elif n < 65536:
        head += bytes([mbit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mbit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class FastWatcher(threading.Thread):
    """Reads frames off a raw socket in big reads, as fast as Python can."""

    def __init__(self, d, path, token):
        super().__init__(daemon=True)
        self.sock, head, self.buf = raw_ws(d, path, token)
        assert head.startswith("HTTP/1.1 101"), head
        self.buf = bytearray(self.buf)
        self.msgs = []
        self.error = None

    def run(self):
        off = 0
        buf = self.buf
        try:
            while True:
                if len(buf) - off >= 2:
                    opcode, length, at = buf[off] & 0x0F, buf[off + 1] & 0x7F, off + 2
                    if length == 126 and len(buf) - off >= 4:
                        length, at = struct.unpack_from("!H", buf, off + 2)[0], off + 4
                    elif length == 127 and len(buf) - off >= 10:
                        length, at = struct.unpack_from("!Q", buf, off + 2)[0], off + 10
                    if length < 126 or at > off + 2:
                        if len(buf) - at >= length:
                            payload = bytes(buf[at:at + length])
                            off = at + length
                            if opcode == 8:
                                return
                            if opcode == 9:
                                self.sock.sendall(client_frame(10, payload))
                                continue
                            msg = json.loads(payload)
                            self.msgs.append(msg)
                            if msg["type"] == "end":
                                return
                            continue
                if off > (1 << 20):
                    del buf[:off]
                    off = 0
                chunk = self.sock.recv(1 << 20)
                if not chunk:
                    return
                buf += chunk
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        finally:
            self.sock.close()


def test_stalled_watcher_lags_while_fast_one_gets_everything(droot, dres, hello_repo):
    n = 100_000
    # 100,000 lines in bursts of 1,000 every 50 ms: a high rate a reader can still keep up with,
    # also under ASan on a loaded machine (every 20 ms let the fast watcher fall behind there)
    app = hello_app(dres, droot, hello_repo,
                    build_command=f"sleep 1; for b in $(seq 0 {n // 1000 - 1}); do "
                                  f"seq -f 'row-%.0f' $((b * 1000 + 1)) $((b * 1000 + 1000)); "
                                  f"sleep 0.05; done; {BUILD}")
    deps = Deployments(droot)
    dep = deps.trigger(app["id"])
    path = f"deployments/{dep['id']}/stream"
    stalled, head, rest = raw_ws(droot.d, path, droot.token, rcvbuf=4096)
    assert head.startswith("HTTP/1.1 101"), head
    fast = FastWatcher(droot.d, path, droot.token)
    fast.start()
    fast.join(120)
    assert not fast.is_alive() and fast.error is None, fast.error
    done = deps.get(dep["id"])
    assert done["status"] == "success", done
    assert log_lines(fast.msgs) == stored(deps, dep["id"])
    assert not [m for m in fast.msgs if m["type"] == "lagged"]

    # Now the stalled one reads: it lost lines, was told how many, and still ends.
    msgs = []
    buf = rest
    while True:
        opcode, payload, buf = read_frame(stalled, buf)
        if opcode == 8:
            break
        if opcode == 9:
            stalled.sendall(client_frame(10, payload))
            continue
        assert opcode == 1, opcode
        msgs.append(json.loads(payload))
        if msgs[-1]["type"] == "end":
            break
    stalled.close()
    lagged = [m for m in msgs if m["type"] == "lagged"]
    assert lagged and all(m["data"]["dropped"] > 0 for m in lagged), \
        (len(msgs), log_lines(msgs)[:2], log_lines(msgs)[-2:], [m for m in msgs if m["type"] != "log"])
    seqs = [s for s, _ in log_lines(msgs)]
    assert seqs == sorted(set(seqs)), "out of order or repeated after lagging"
    assert msgs[-1]["type"] == "end"
    metrics = requests.get(f"{droot.d.url}/metrics", timeout=5).text
    dropped = [ln for ln in metrics.splitlines()
               if ln.startswith("slipway_ws_messages_dropped_total")]
    assert float(dropped[0].split()[1]) > 0, dropped


# --------------------------------------------------------------------------- protocol


def test_protocol_rules_on_the_real_daemon(droot, dres, hello_repo):
    app = hello_app(dres, droot, hello_repo)
    deps = Deployments(droot)
    done, _ = deps.deploy(app["id"])
    assert done["status"] == "success", done
    # the app's runtime stream stays open; a finished deployment's stream ends with 1000 on
    # its own, which could race the close these checks wait for
    path = f"apps/{app['id']}/logs/stream"

    # ping answered with pong, first thing after the upgrade (sent with the handshake)
    s, head, buf = raw_ws(droot.d, path, droot.token, extra=client_frame(9, b"are-you-there"))
    assert head.startswith("HTTP/1.1 101"), head
    assert "Sec-WebSocket-Accept:" in head
    seen = []
    while True:
        opcode, payload, buf = read_frame(s, buf)
        seen.append(opcode)
        if opcode == 10:
            assert payload == b"are-you-there"
            break
    s.close()

    # an unmasked client frame is a protocol error: 1002
    s, head, buf = raw_ws(droot.d, path, droot.token)
    s.sendall(client_frame(1, b"hello", mask=False))
    while True:
        opcode, payload, buf = read_frame(s, buf)
        if opcode == 8:
            assert struct.unpack("!H", payload[:2])[0] == 1002, payload
            break
    s.close()

    # invalid UTF-8 in a text frame: 1007
    s, head, buf = raw_ws(droot.d, path, droot.token)
    s.sendall(client_frame(1, b"\xff\xfe"))
    while True:
        opcode, payload, buf = read_frame(s, buf)
        if opcode == 8:
            assert struct.unpack("!H", payload[:2])[0] == 1007, payload
            break
    s.close()


# --------------------------------------------------------------------------- access


def test_stream_access_is_checked_before_the_upgrade(auth, droot, dres, hello_repo):
    app = hello_app(dres, droot, hello_repo)
    deps = Deployments(droot)
    done, _ = deps.deploy(app["id"])
    path = f"deployments/{done['id']}/stream"

    s, head, _ = raw_ws(droot.d, path, None)
    assert head.startswith("HTTP/1.1 401"), head
    s.close()

    stranger = auth.make_user(droot)
    s, head, _ = raw_ws(droot.d, path, stranger.token)
    assert head.startswith("HTTP/1.1 404"), head
    s.close()
    r = requests.get(f"{droot.d.url}{API}/{path}", stream=True, timeout=10,
                     headers={"Authorization": f"Bearer {stranger.token}",
                              "Accept": "text/event-stream"})
    assert r.status_code == 404

    # the session cookie from a foreign page: refused; from our own origin: upgraded
    cookie = f"slipway_session={droot.token}"
    s, head, _ = raw_ws(droot.d, path, None, cookie=cookie, origin="http://evil.example")
    assert head.startswith("HTTP/1.1 403"), head
    s.close()
    s, head, _ = raw_ws(droot.d, path, None, cookie=cookie)
    assert head.startswith("HTTP/1.1 403"), head  # no Origin at all is no proof either
    s.close()
    s, head, _ = raw_ws(droot.d, path, None, cookie=cookie,
                        origin=f"http://{droot.d.host}:{droot.d.port}")
    assert head.startswith("HTTP/1.1 101"), head
    s.close()

    # ?token= works, and a revoked session's token no longer does
    other = auth.login_principal(droot.d, droot.email, droot.password)
    ws = websocket.create_connection(ws_url(droot.d, path, token=other.token), timeout=10)
    assert ws_messages(ws)[-1]["type"] == "end"
    ws.close()
    assert other.post("auth/logout").status_code == 204
    with pytest.raises(websocket.WebSocketBadStatusException) as exc:
        websocket.create_connection(ws_url(droot.d, path, token=other.token), timeout=10)
    assert exc.value.status_code == 401

    # HEAD: the head of the stream, no body and no stream
    r = requests.head(f"{droot.d.url}{API}/{path}", timeout=10,
                      headers={"Authorization": f"Bearer {droot.token}",
                               "Accept": "text/event-stream"})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/event-stream")
    assert r.content == b""

    # not a WebSocket and not SSE on a GET without Accept: NDJSON
    r = requests.get(f"{droot.d.url}{API}/{path}", stream=True, timeout=10,
                     headers={"Authorization": f"Bearer {droot.token}"})
    assert r.headers["Content-Type"].startswith("application/x-ndjson")
    assert json.loads(list(r.iter_lines())[-1])["type"] == "end"


# --------------------------------------------------------------------------- node metrics


def test_system_metrics_stream_for_admins(auth, droot):
    ws = ws_connect(droot, "system/metrics/stream")
    msgs = ws_messages(ws, until_end=False, limit=2)
    ws.close()
    for m in msgs:
        assert m["type"] == "metrics", m
        data = m["data"]
        assert {"cpu_percent", "memory", "load", "disk", "network", "node"} <= set(data), data
        assert data["memory"]["total_bytes"] > 0 and len(data["load"]) == 3
        assert data["disk"]["total_bytes"] > 0
    t0, t1 = (parse_ts(m["timestamp"]) for m in msgs)
    assert 0.5 <= (t1 - t0).total_seconds() <= 3, (t0, t1)

    member = auth.make_user(droot)
    s, head, _ = raw_ws(droot.d, "system/metrics/stream", member.token)
    assert head.startswith("HTTP/1.1 403"), head
    s.close()

    # sampling stops when nobody watches: the connections gauge goes back to zero
    def gauge():
        text = requests.get(f"{droot.d.url}/metrics", timeout=5).text
        line = [ln for ln in text.splitlines() if ln.startswith("slipway_ws_connections ")]
        return float(line[0].split()[1])
    wait_for(lambda: gauge() == 0, timeout=10, message="ws connections back to 0")


# --------------------------------------------------------------------------- app runtime logs


def test_app_runtime_output_history_then_live(droot, dres, hello_repo):
    app = hello_app(dres, droot, hello_repo)
    done, _ = Deployments(droot).deploy(app["id"])
    assert done["status"] == "success", done
    endpoint = droot.get(f"apps/{app['id']}").json()["endpoints"][0]
    for i in range(3):
        assert fetch(endpoint, f"/?before={i}")[0] == 200
    wait_for(lambda: len([ln for ln in droot.get(f"apps/{app['id']}/logs",
                                                 params={"lines": 100}).json()["data"]
                          if "before=" in ln["line"]]) == 3,
             timeout=10, message="the three requests in the runtime log")

    ws = ws_connect(droot, f"apps/{app['id']}/logs/stream?lines=2")
    history = ws_messages(ws, until_end=False, limit=2)
    assert [m["type"] for m in history] == ["log", "log"], history
    assert "before=2" in history[-1]["data"]["line"], history
    fetch(endpoint, "/?live=yes")
    live = []
    while not any("live=yes" in m["data"].get("line", "") for m in live):
        live.extend(ws_messages(ws, until_end=False, limit=1))
    ws.close()
    assert_envelopes(history + live)
    seqs = [m["data"]["seq"] for m in history + live if m["type"] == "log"]
    assert seqs == sorted(set(seqs)), seqs
    assert all(m["data"]["instance"] for m in live if m["type"] == "log")


def test_watcher_leaving_while_its_history_is_read(auth, deploy_env, redis_factory, hello_repo):
    """The history read outlives the watcher that asked for it: nothing may touch the gone
    watcher when the answer comes (the sanitizer run catches a use after free)."""
    redis_server = redis_factory()  # this test pauses it
    d = auth.daemon(env=deploy_env, redis=redis_server)
    droot = auth.setup_owner(d)
    app = hello_app(Res(auth, d), droot, hello_repo)

    def watchers():
        text = requests.get(f"{d.url}/metrics", timeout=5).text
        return float([ln for ln in text.splitlines()
                      if ln.startswith("slipway_live_watchers ")][0].split()[1])

    pid = redis_server.proc.pid
    os.kill(pid, signal.SIGSTOP)  # the LRANGE of the history waits in Redis
    try:
        s = socket.create_connection((d.host, d.port), timeout=10)
        s.sendall((f"GET {API}/apps/{app['id']}/logs/stream HTTP/1.1\r\nHost: x\r\n"
                   f"Authorization: Bearer {droot.token}\r\nAccept: text/event-stream\r\n\r\n")
                  .encode())
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        wait_for(lambda: watchers() == 1, timeout=10, message="the watcher subscribed")
        s.close()  # and leaves before its history came back
        wait_for(lambda: watchers() == 0, timeout=10, message="the watcher gone")
    finally:
        os.kill(pid, signal.SIGCONT)
    # Redis answers in order: once this read returns, so has the stream's.
    assert droot.get(f"apps/{app['id']}/logs").status_code == 200
    assert d.alive()
