"""Protocol and API hardening (issue 12, the "Low" items): integer query parameters past
bigint, users sorted like every list, Host and HTTP/1.0 framing, WebSocket close payloads
and frame headers over the message cap, chunk sizes over the body limit.

Each test sends the attack as a client would and checks the answer on a real slipwayd.
"""

import base64
import os
import socket
import struct

import pytest

from conftest import API, detail_fields, error_of
from deploy_kit import *  # noqa: F401,F403 - fixtures and helpers
from deploy_kit import Deployments, hello_app
from resources_kit import assert_invalid, listing

BIGINT_MAX = 2**63 - 1


# --------------------------------------------------------------------------- integers


def test_integer_query_parameters_past_their_range_are_400(auth, ddaemon, droot, dres,
                                                           hello_repo):
    app = hello_app(dres, droot, hello_repo)
    deps = Deployments(droot)
    dep = deps.trigger(app["id"])
    deps.wait_terminal(dep["id"])
    logs = f"deployments/{dep['id']}/logs"

    # The issue's request: one past bigint answered 500 from PostgreSQL.
    for since in (BIGINT_MAX + 1, 2**64 - 1, 2**64, 10**30):
        r = droot.get(logs, params={"since_seq": str(since)})
        assert_invalid(r, "since_seq")
        assert r.json()["error"]["message"].startswith("invalid request: since_seq")
        # The follow form reads the same parameter.
        assert_invalid(droot.get(logs, params={"since_seq": str(since), "follow": "true"}),
                       "since_seq")
    for bad in ("-1", "1e3", "", " 1", "0x10"):
        assert_invalid(droot.get(logs, params={"since_seq": bad}), "since_seq")
    # The largest bigint is a valid resume point: nothing follows it.
    body = deps.logs(dep["id"], since_seq=str(BIGINT_MAX))
    assert body["data"] == [] and body["next_seq"] == BIGINT_MAX
    assert deps.logs(dep["id"], since_seq="0")["data"], "the build wrote no lines"

    # The same flaw on the other whole-number parameters.
    for huge in (str(BIGINT_MAX + 1), str(2**64), "99999999999999999999999"):
        assert_invalid(droot.get(logs, params={"lines": huge}), "lines")
        assert_invalid(droot.get(f"apps/{app['id']}/logs", params={"lines": huge}), "lines")
        for name in ("limit", "page", "offset"):
            assert_invalid(droot.get("apps", params={name: huge}), name)
            assert_invalid(droot.get("users", params={name: huge}), name)
    # In range they still work.
    assert len(deps.logs(dep["id"], lines="1")["data"]) == 1
    assert droot.get(f"apps/{app['id']}/logs", params={"lines": "1"}).status_code == 200


# --------------------------------------------------------------------------- users sort


def test_users_list_sorts_and_refuses_unknown_fields(auth, owner):
    names = ["delta", "Alpha", "charlie", "bravo"]
    for i, name in enumerate(names):
        role = "admin" if i % 2 else "member"
        r = owner.post("users", json={"email": f"{name.lower()}-{os.urandom(3).hex()}@example.com",
                                      "password": "a long passphrase", "name": name,
                                      "role": role})
        assert r.status_code == 201, r.text

    # The issue's request: an unknown field was ignored with 200.
    for sort in ("bogus:asc", "bogus", "password_hash", "email:up", ":asc", "totp_secret:desc"):
        r = owner.get("users", params={"sort": sort})
        error_of(r, 400, "VALIDATION_ERROR")
        assert detail_fields(r) == ["sort"], r.text

    def emails(**params):
        params.setdefault("limit", 100)
        return [u["email"] for u in listing(owner, "users", **params)["data"]]

    every = emails()
    assert len(every) == 5
    assert emails(sort="email:asc") == sorted(every)
    assert emails(sort="email") == sorted(every)
    assert emails(sort="email:desc") == sorted(every, reverse=True)

    by_name = [u["name"] for u in listing(owner, "users", sort="name:asc")["data"]]
    assert by_name == sorted(by_name, key=str.lower), by_name
    assert by_name[:4] == ["Alpha", "bravo", "charlie", "delta"], by_name
    desc = [u["name"] for u in listing(owner, "users", sort="name:desc")["data"]]
    assert desc == list(reversed(by_name))

    roles = [u["role"] for u in listing(owner, "users", sort="role:asc")["data"]]
    assert roles == sorted(roles), roles
    stamps = [u["created_at"] for u in listing(owner, "users", sort="created_at:desc")["data"]]
    assert stamps == sorted(stamps, reverse=True)
    # The default stays oldest first: the owner made first.
    assert every[0] == owner.email
    # Pages of a sorted list neither overlap nor skip.
    paged = []
    for page in (1, 2, 3):
        paged += emails(sort="email:desc", page=page, limit=2)
    assert paged == sorted(every, reverse=True)
    assert listing(owner, "users", sort="updated_at:asc")["pagination"]["total"] == 5


# --------------------------------------------------------------------------- Host, HTTP/1.0


def assert_refused_and_closed(c, fragment):
    r = c.read_response()
    assert r.status == 400, r
    assert r.json()["error"]["code"] == "VALIDATION_ERROR"
    assert fragment in r.json()["error"]["message"], r
    assert (r.header("Connection") or "").lower() == "close", r
    data, closed = c.read_all(timeout=5)
    assert data == b"", f"served more after the refusal: {data[:300]!r}"
    assert closed, "the connection stayed open after the refusal"


@pytest.mark.parametrize("head,fragment", [
    ("GET /health HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n", "at most one Host"),
    ("GET /health HTTP/1.1\r\nHost: a.example\r\nhost: a.example\r\n", "at most one Host"),
    ("GET /health HTTP/1.1\r\n", "needs a Host header"),
    ("GET /health HTTP/1.1\r\nX-Host: x\r\n", "needs a Host header"),
    ("GET /health HTTP/1.0\r\nHost: a\r\nHost: b\r\n", "at most one Host"),
])
def test_host_header_missing_or_repeated_is_400(slipwayd, head, fragment):
    d = slipwayd()
    c = d.raw()
    # A pipelined request behind it must not be served either.
    c.send(head + "X-Request-Id: bad-host\r\n\r\n"
           "GET /health HTTP/1.1\r\nHost: x\r\nX-Request-Id: behind\r\n\r\n")
    assert_refused_and_closed(c, fragment)
    c.close()
    # One Host on HTTP/1.1, or none on HTTP/1.0, is served.
    for ok in ("GET /health HTTP/1.1\r\nHost: x\r\n\r\n", "GET /health HTTP/1.0\r\n\r\n"):
        c = d.raw()
        c.send(ok)
        assert c.read_response().status in (200, 503)
        c.close()


def test_chunked_on_http10_is_refused_and_closed(slipwayd):
    d = slipwayd()
    c = d.raw()
    # The issue's request: chunked framing an HTTP/1.0 peer cannot mean, kept alive, with a
    # second request pipelined behind it that used to be served.
    c.send("POST /api/v1/nope HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n"
           "Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
           "2\r\n{}\r\n0\r\n\r\n"
           "GET /health HTTP/1.1\r\nHost: x\r\nX-Request-Id: smuggled\r\n\r\n")
    assert_refused_and_closed(c, "Transfer-Encoding is not allowed")
    c.close()
    # HTTP/1.1 chunked is still fine.
    c = d.raw()
    c.send("POST /nope HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
           "2\r\n{}\r\n0\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\nX-Request-Id: next\r\n\r\n")
    assert c.read_response().status == 404
    assert c.read_response().header("X-Request-Id") == "next"
    c.close()


# --------------------------------------------------------------------------- chunk sizes


def test_chunk_larger_than_body_limit_is_413_at_once(slipwayd):
    # The body timeout stays at its 30 s default: a 408 could only come after the read below
    # has given up, so the 413 must come from the size line alone.
    d = slipwayd(env={"SLIPWAY_MAX_BODY_BYTES": "1000"})
    for size in ("3E9", "FFFFFFFF", "7FFFFFFFFFFFFFFF"):
        c = d.raw(timeout=10)
        c.send("POST /api/v1/nope HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
               f"Content-Type: application/json\r\n\r\n{size}\r\n{{\"a\":")
        r = c.read_response()
        assert r.status == 413, r
        assert r.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
        assert c.closed_by_peer(timeout=5), "the connection stayed open after 413"
        c.close()
    # Chunks that add up past the limit are refused too; within it, served.
    c = d.raw(timeout=10)
    c.send("POST /nope HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
           "3E8\r\n" + "x" * 1000 + "\r\n1\r\n")
    assert c.read_response().status == 413
    c.close()
    c = d.raw(timeout=10)
    c.send("POST /nope HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
           "3E8\r\n" + "x" * 1000 + "\r\n0\r\n\r\n")
    assert c.read_response().status == 404
    c.close()


# --------------------------------------------------------------------------- WebSocket

WS_MAX_MESSAGE = 64 * 1024  # the live endpoints' cap (src/api/live.c)


def ws_open(who):
    """A raw WebSocket on the metrics stream; returns (socket, bytes already read)."""
    s = socket.create_connection((who.d.host, who.d.port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET {API}/system/metrics/stream HTTP/1.1\r\nHost: x\r\n"
               "Upgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
               f"Authorization: Bearer {who.token}\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        assert chunk, f"closed during the handshake: {buf!r}"
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return s, rest


def masked(opcode, payload, fin=True, declared=None):
    """A client frame; declared overrides the length in the header (payload not sent)."""
    n = len(payload) if declared is None else declared
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def close_code_then_eof(s, buf):
    """Skips data frames (metrics) up to the server's close; returns its code (None when
    the close is empty) once the connection has ended."""
    def need(n):
        nonlocal buf
        while len(buf) < n:
            chunk = s.recv(65536)
            assert chunk, f"the connection ended without a close frame: {buf[:64]!r}"
            buf += chunk

    while True:
        need(2)
        opcode, n, off = buf[0] & 0x0F, buf[1] & 0x7F, 2
        if n >= 126:
            off = 4 if n == 126 else 10
            need(off)
            n = int.from_bytes(buf[2:off], "big")
        need(off + n)
        payload, buf = buf[off:off + n], buf[off + n:]
        if opcode == 0x8:
            break
    s.settimeout(5)
    rest = b""
    try:
        while chunk := s.recv(65536):
            rest += chunk
    except ConnectionResetError:
        pass
    assert rest == b"", f"bytes after the close: {rest[:64]!r}"
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None


def test_ws_one_byte_close_payload_is_answered_1002(owner):
    s, buf = ws_open(owner)
    # The issue's frame: a close whose payload is one byte got an empty close back.
    s.sendall(masked(0x8, b"\x03"))
    assert close_code_then_eof(s, buf) == 1002
    s.close()
    # A proper close is still echoed with its code, an empty one empty.
    s, buf = ws_open(owner)
    s.sendall(masked(0x8, struct.pack("!H", 1000) + b"bye"))
    assert close_code_then_eof(s, buf) == 1000
    s.close()
    s, buf = ws_open(owner)
    s.sendall(masked(0x8, b""))
    assert close_code_then_eof(s, buf) is None
    s.close()


@pytest.mark.parametrize("declared", [WS_MAX_MESSAGE + 1, 2**40, 2**63 - 1])
def test_ws_frame_header_over_the_cap_is_1009_before_its_payload(owner, declared):
    s, buf = ws_open(owner)
    # Only the header: the payload it announces is never sent. The socket timeout bounds
    # the wait; the close must come from the header alone.
    s.sendall(masked(0x1, b"", declared=declared))
    assert close_code_then_eof(s, buf) == 1009
    s.close()


def test_ws_fragment_header_taking_a_message_over_the_cap_is_1009(owner):
    s, buf = ws_open(owner)
    first = WS_MAX_MESSAGE // 2
    s.sendall(masked(0x1, b"a" * first, fin=False))
    s.sendall(masked(0x0, b"", declared=WS_MAX_MESSAGE - first + 1))
    assert close_code_then_eof(s, buf) == 1009
    s.close()
    # A message exactly at the cap, in two fragments, is taken (the stream ignores it).
    s, buf = ws_open(owner)
    s.sendall(masked(0x1, b"a" * first, fin=False))
    s.sendall(masked(0x0, b"b" * (WS_MAX_MESSAGE - first)))
    s.sendall(masked(0x8, struct.pack("!H", 1000)))
    assert close_code_then_eof(s, buf) == 1000
    s.close()
