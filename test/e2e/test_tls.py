"""slipwayd's own TLS (issue 14 item 7, DESIGN.md §13): SLIPWAY_TLS_CERT_FILE and
SLIPWAY_TLS_KEY_FILE turn every listener into https - keep-alive, pipelining, chunked bodies,
wss:// and SSE over it - and SIGHUP swaps the certificate without dropping connections.

Each test makes its own throwaway CA and server certificates with the openssl command.
"""

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time

import pytest
import requests
import websocket

from conftest import API, RawHttp, new_email, new_password, wait_for

# ---------------------------------------------------------------------------- certificates


def openssl(*args, cwd):
    r = subprocess.run(["openssl", *args], cwd=cwd, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


class Pki:
    """A throwaway CA in a directory (named ca_name), issuing server certificates for the
    subject alternative names san (127.0.0.1 and localhost unless told)."""

    def __init__(self, d, ca_name="Slipway test CA", san="DNS:localhost,IP:127.0.0.1"):
        self.dir = d
        d.mkdir(parents=True, exist_ok=True)
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
                "-subj", f"/CN={ca_name}", cwd=d)
        (d / "ext.cnf").write_text("basicConstraints=CA:FALSE\n"
                                   "keyUsage=digitalSignature,keyEncipherment\n"
                                   "extendedKeyUsage=serverAuth\n"
                                   f"subjectAltName={san}\n")
        self.ca = str(d / "ca.pem")

    def issue(self, name, serial):
        """(cert path, key path) of a new certificate with the given serial."""
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", "/CN=localhost",
                cwd=self.dir)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-set_serial", str(serial), "-days", "2", "-extfile", "ext.cnf",
                "-out", f"{name}.pem", cwd=self.dir)
        return str(self.dir / f"{name}.pem"), str(self.dir / f"{name}.key")


@pytest.fixture
def pki(tmp_path):
    return Pki(tmp_path / "pki")


def tls_env(cert, key, **extra):
    env = {"SLIPWAY_TLS_CERT_FILE": cert, "SLIPWAY_TLS_KEY_FILE": key}
    env.update(extra)
    return env


def base(d):
    return f"https://127.0.0.1:{d.port}"


def start_tls(slipwayd, pki, cert, key, **extra):
    """A daemon serving https with cert, once /ready says its backends and schema are up."""
    d = slipwayd(env=tls_env(cert, key, **extra))

    def ready():
        return requests.get(f"{base(d)}/ready", verify=pki.ca, timeout=5).status_code == 200

    wait_for(ready, timeout=30, message="slipwayd ready over https")
    return d


# ---------------------------------------------------------------------------- clients


def client_ctx(pki, **kw):
    ctx = ssl.create_default_context(cafile=pki.ca)
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


class TlsRaw(RawHttp):
    """conftest's raw client over TLS."""

    def __init__(self, d, ctx, timeout=10.0, rcvbuf=None):  # pylint: disable=super-init-not-called
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:  # before connecting, so the window the server sees is small too
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(timeout)
        s.connect(("127.0.0.1", d.port))
        self.sock = ctx.wrap_socket(s, server_hostname="localhost")
        self.buf = b""
        self.eof = False

    def _fill(self):
        try:
            return super()._fill()
        except ssl.SSLError:
            self.eof = True  # cut without close_notify
            return False

    def serial(self):
        return int(self.sock.getpeercert()["serialNumber"], 16)


def health_req():
    return b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n"


def owner_token(d, pki):
    r = requests.post(f"{base(d)}{API}/auth/setup", verify=pki.ca, timeout=10,
                      json={"email": new_email("owner"), "password": new_password(),
                            "name": "Owner"})
    assert r.status_code == 201, r.text
    return r.json()["token"]


def metrics_ok(msg):
    m = json.loads(msg) if isinstance(msg, (str, bytes)) else msg
    assert m["type"] == "metrics", m
    assert m["data"]["memory"]["total_bytes"] > 0, m
    return m


# ---------------------------------------------------------------------------- serving


def test_https_health_api_keepalive_and_pipelining(slipwayd, pki):
    cert, key = pki.issue("server", 1)
    d = start_tls(slipwayd, pki, cert, key)

    s = requests.Session()  # (verify= per call: REQUESTS_CA_BUNDLE beats Session.verify)
    assert s.get(f"{base(d)}/health", verify=pki.ca, timeout=10).status_code == 200
    assert requests.get(f"https://localhost:{d.port}/health", verify=pki.ca,
                        timeout=10).status_code == 200
    token = owner_token(d, pki)
    me = s.get(f"{base(d)}{API}/auth/me", headers={"Authorization": f"Bearer {token}"},
               verify=pki.ca, timeout=10)
    assert me.status_code == 200, me.text
    assert s.get(f"{base(d)}{API}/auth/me", verify=pki.ca, timeout=10).status_code == 401

    # keep-alive: many requests, one TLS connection, ALPN http/1.1
    ctx = client_ctx(pki)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    c = TlsRaw(d, ctx)
    assert c.sock.selected_alpn_protocol() == "http/1.1"
    assert c.sock.version() in ("TLSv1.2", "TLSv1.3")
    for _ in range(5):
        c.send(health_req())
        assert c.read_response().status == 200
    # pipelined, in one write, answered in order
    c.send(health_req() * 3 + f"GET {API}/auth/me HTTP/1.1\r\nHost: localhost\r\n"
           f"Authorization: Bearer {token}\r\n\r\n".encode())
    assert [c.read_response().status for _ in range(4)] == [200, 200, 200, 200]
    # a chunked request body, split across TLS records
    c.send(f"POST {API}/auth/login HTTP/1.1\r\nHost: localhost\r\n"
           "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
    body = json.dumps({"email": "nobody@example.com", "password": "wrong-password"}).encode()
    c.send(b"%x\r\n%s\r\n" % (10, body[:10]))
    c.send(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body) - 10, body[10:]))
    r = c.read_response()
    assert r.status == 401, (r.status, r.body)
    # and the connection still serves after it
    c.send(health_req())
    assert c.read_response().status == 200
    # large answers to a peer that reads only once it has asked for all of them: more than
    # the socket takes at once, written in parts, in order, nothing lost
    spec = requests.get(f"{base(d)}{API}/openapi.json", verify=pki.ca, timeout=10).content
    assert len(spec) > 65536 and json.loads(spec)["openapi"]
    # (48 answers, 5.6 MB, are more than the kernel's buffers hold: the server's send buffer
    # grows to 4 MB, and a receive buffer this small at connect keeps the window small; the
    # server pauses reading requests at 32 unwritten answers and resumes as they go)
    slow = TlsRaw(d, client_ctx(pki), rcvbuf=4096)
    slow.send(f"GET {API}/openapi.json HTTP/1.1\r\nHost: localhost\r\n\r\n".encode() * 48)
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)  # read faster
    for _ in range(48):
        r = slow.read_response()
        assert r.status == 200 and r.body == spec
    slow.close()
    # Connection: close ends with close_notify, not a cut
    c.send(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    assert c.read_response().status == 200
    assert c.closed_by_peer(timeout=5)
    c.close()


def test_limits_hold_over_tls(slipwayd, pki):
    cert, key = pki.issue("server", 1)
    d = start_tls(slipwayd, pki, cert, key, SLIPWAY_MAX_HEADER_BYTES=2048,
                  SLIPWAY_MAX_BODY_BYTES=4096)
    c = TlsRaw(d, client_ctx(pki))
    c.send(b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * 8000 + b"\r\n\r\n")
    assert c.read_response().status == 431
    c.close()
    c = TlsRaw(d, client_ctx(pki))
    c.send(f"POST {API}/auth/login HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n"
           "Content-Type: application/json\r\n\r\n".encode())
    assert c.read_response().status == 413
    c.close()


def test_wss_live_stream(slipwayd, pki):
    cert, key = pki.issue("server", 1)
    d = start_tls(slipwayd, pki, cert, key)
    token = owner_token(d, pki)
    ws = websocket.create_connection(f"wss://localhost:{d.port}{API}/system/metrics/stream",
                                     timeout=30, header=[f"Authorization: Bearer {token}"],
                                     sslopt={"ca_certs": pki.ca})
    first = metrics_ok(ws.recv())
    # the peer's frames are read over TLS too: a ping is answered
    ws.ping(b"tls-ping")
    while True:
        opcode, frame = ws.recv_data_frame(True)
        if opcode == websocket.ABNF.OPCODE_PONG:
            assert frame.data == b"tls-ping"
            break
        metrics_ok(frame.data.decode())
    second = metrics_ok(ws.recv())
    assert second["timestamp"] != first["timestamp"]
    ws.close()


def node_ws_available():
    if not shutil.which("node"):
        return None
    for path in (os.environ.get("NODE_PATH"), "/usr/share/nodejs", "/usr/lib/nodejs"):
        if not path:
            continue
        r = subprocess.run(["node", "-e", "require('ws')"], env={**os.environ, "NODE_PATH": path},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if r.returncode == 0:
            return path
    return None


NODE_CLIENT = r"""
const WebSocket = require('ws');
const fs = require('fs');
const [url, token, ca] = process.argv.slice(1);
const ws = new WebSocket(url, {headers: {Authorization: 'Bearer ' + token},
                               ca: fs.readFileSync(ca), servername: 'localhost'});
const got = [];
ws.on('message', (m) => {
  got.push(JSON.parse(m.toString()).type);
  if (got.length === 2) { console.log(JSON.stringify(got)); ws.close(); }
});
ws.on('error', (e) => { console.error(String(e)); process.exit(1); });
// the close handshake completes over TLS too
ws.on('close', () => process.exit(got.length === 2 ? 0 : 1));
setTimeout(() => { console.error('timeout'); process.exit(1); }, 20000);
"""


def test_wss_live_stream_with_node_ws(slipwayd, pki):
    node_path = node_ws_available()
    if node_path is None:
        pytest.skip("node with the ws package is not installed (apt-get install node-ws)")
    cert, key = pki.issue("server", 1)
    d = start_tls(slipwayd, pki, cert, key)
    token = owner_token(d, pki)
    r = subprocess.run(["node", "-e", NODE_CLIENT,
                        f"wss://localhost:{d.port}{API}/system/metrics/stream", token, pki.ca],
                       env={**os.environ, "NODE_PATH": node_path}, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == ["metrics", "metrics"]


def test_sse_and_ndjson_over_https(slipwayd, pki):
    cert, key = pki.issue("server", 1)
    d = start_tls(slipwayd, pki, cert, key)
    token = owner_token(d, pki)
    r = requests.get(f"{base(d)}{API}/system/metrics/stream", verify=pki.ca, stream=True,
                     timeout=30, headers={"Authorization": f"Bearer {token}",
                                          "Accept": "text/event-stream"})
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/event-stream")
    events = []
    for line in r.iter_lines(decode_unicode=True):
        if line.startswith("data:"):
            events.append(metrics_ok(line[5:].strip()))
            if len(events) == 2:
                break
    r.close()

    r = requests.get(f"{base(d)}{API}/system/metrics/stream", verify=pki.ca, stream=True,
                     timeout=30, headers={"Authorization": f"Bearer {token}"})
    assert r.headers["Content-Type"].startswith("application/x-ndjson")
    metrics_ok(next(r.iter_lines()))
    r.close()


# ---------------------------------------------------------------------------- reloading


def test_sighup_swaps_the_certificate_and_keeps_connections(slipwayd, pki, tmp_path):
    cert1, key1 = pki.issue("one", 1)
    cert2, key2 = pki.issue("two", 2)
    live_cert, live_key = tmp_path / "live.pem", tmp_path / "live.key"
    shutil.copy(cert1, live_cert)
    shutil.copy(key1, live_key)
    d = start_tls(slipwayd, pki, str(live_cert), str(live_key))

    old = TlsRaw(d, client_ctx(pki))
    assert old.serial() == 1
    old.send(health_req())
    assert old.read_response().status == 200
    token = owner_token(d, pki)
    ws = websocket.create_connection(f"wss://localhost:{d.port}{API}/system/metrics/stream",
                                     timeout=30, header=[f"Authorization: Bearer {token}"],
                                     sslopt={"ca_certs": pki.ca})
    metrics_ok(ws.recv())

    shutil.copy(cert2, live_cert)
    shutil.copy(key2, live_key)
    d.signal(signal.SIGHUP)
    wait_for(lambda: any(e.get("msg") == "TLS certificate reloaded" for e in d.logs()),
             timeout=10, message="the reload to be logged")
    new = TlsRaw(d, client_ctx(pki))
    assert new.serial() == 2
    new.send(health_req())
    assert new.read_response().status == 200
    # the connections made before the reload go on, on the old certificate
    old.send(health_req())
    assert old.read_response().status == 200
    metrics_ok(ws.recv())

    # a bad pair on reload: logged as an error, the current certificate stays
    live_cert.write_text("not a certificate\n")
    d.signal(signal.SIGHUP)
    wait_for(lambda: any(e.get("msg", "").startswith("TLS certificate reload failed")
                         for e in d.logs()), timeout=10, message="the failed reload")
    failed = [e for e in d.logs() if e.get("msg", "").startswith("TLS certificate reload failed")]
    assert failed[0]["level"] == "error", failed
    assert str(live_cert) in failed[0]["error"], failed
    after = TlsRaw(d, client_ctx(pki))
    assert after.serial() == 2
    after.send(health_req())
    assert after.read_response().status == 200
    for c in (old, new, after):
        c.close()
    ws.close()


# ---------------------------------------------------------------------------- bad config


def start_fails(slipwayd, env, args=()):
    d = slipwayd(env=env, args=args, wait=False)
    assert d.wait_exit(30) == 2, d.log_tail()
    lines = [ln for ln in d.log_text().splitlines() if "invalid configuration" in ln]
    assert len(lines) == 1, d.log_text()
    return lines[0]


def test_bad_certificate_or_key_stops_the_start(slipwayd, pki, tmp_path):
    cert1, key1 = pki.issue("one", 1)
    cert2, key2 = pki.issue("two", 2)
    msg = start_fails(slipwayd, tls_env(cert1, key2))
    assert "does not match" in msg and key2 in msg, msg

    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
    msg = start_fails(slipwayd, tls_env(str(garbage), key1))
    assert str(garbage) in msg and "SLIPWAY_TLS_CERT_FILE" in msg, msg
    msg = start_fails(slipwayd, tls_env(cert1, str(garbage)))
    assert str(garbage) in msg and "SLIPWAY_TLS_KEY_FILE" in msg, msg

    missing = str(tmp_path / "missing.pem")
    msg = start_fails(slipwayd, tls_env(missing, key1))
    assert missing in msg and "No such file" in msg, msg

    msg = start_fails(slipwayd, {"SLIPWAY_TLS_CERT_FILE": cert1})
    assert "SLIPWAY_TLS_KEY_FILE" in msg, msg
    msg = start_fails(slipwayd, {"SLIPWAY_TLS_KEY_FILE": key1})
    assert "SLIPWAY_TLS_CERT_FILE" in msg, msg


def test_check_config_reads_the_files(slipwayd, pki, tmp_path):
    cert, key = pki.issue("one", 1)
    bad = tmp_path / "bad.pem"
    bad.write_text("garbage\n")
    msg = start_fails(slipwayd, tls_env(str(bad), key), args=["--check-config"])
    assert str(bad) in msg, msg
    d = slipwayd(env=tls_env(cert, key), args=["--check-config"], wait=False)
    assert d.wait_exit(30) == 0, d.log_tail()
    assert "configuration ok" in d.log_text()


# ---------------------------------------------------------------------------- protocol


def test_plain_http_to_the_tls_port_is_answered_and_closed(slipwayd, pki):
    cert, key = pki.issue("server", 1)
    d = start_tls(slipwayd, pki, cert, key, SLIPWAY_HEADER_TIMEOUT_MS=500)
    started = time.monotonic()
    c = RawHttp("127.0.0.1", d.port, timeout=5)
    c.send(health_req())
    r = c.read_response()
    assert r.status == 400 and b"HTTPS port" in r.body, r.body
    assert c.closed_by_peer(timeout=5)
    assert time.monotonic() - started < 3
    c.close()

    # bytes that are neither TLS nor HTTP: closed at once
    c = RawHttp("127.0.0.1", d.port, timeout=5)
    c.send(b"\x00" * 64)
    data, closed = c.read_all(timeout=5)
    assert closed, data
    c.close()

    # a handshake that never comes is bounded by the header timeout
    started = time.monotonic()
    c = RawHttp("127.0.0.1", d.port, timeout=5)
    data, closed = c.read_all(timeout=5)
    assert closed and data == b""
    assert time.monotonic() - started < 4
    c.close()
    # and half a handshake too: a record header that promises more than ever comes
    started = time.monotonic()
    c = RawHttp("127.0.0.1", d.port, timeout=5)
    c.send(bytes.fromhex("1603010200") + b"\x01")
    data, closed = c.read_all(timeout=5)
    assert closed and data == b""
    assert time.monotonic() - started < 4
    c.close()
    assert requests.get(f"{base(d)}/health", verify=pki.ca, timeout=10).status_code == 200


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # asking for TLS 1.1 is the point
def test_old_protocols_are_refused(slipwayd, pki):
    cert, key = pki.issue("server", 1)
    d = start_tls(slipwayd, pki, cert, key)
    old = client_ctx(pki, minimum_version=ssl.TLSVersion.TLSv1,
                     maximum_version=ssl.TLSVersion.TLSv1_1)
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        TlsRaw(d, old)
    v12 = client_ctx(pki, maximum_version=ssl.TLSVersion.TLSv1_2)
    c = TlsRaw(d, v12)
    assert c.sock.version() == "TLSv1.2"
    c.send(health_req())
    assert c.read_response().status == 200
    c.close()


def test_drain_on_sigterm_finishes_over_tls(slipwayd, pki):
    cert, key = pki.issue("server", 1)
    d = start_tls(slipwayd, pki, cert, key)
    c = TlsRaw(d, client_ctx(pki))
    c.send(health_req())
    assert c.read_response().status == 200
    d.signal(signal.SIGTERM)
    # the idle keep-alive connection is closed, and the daemon exits cleanly
    data, closed = c.read_all(timeout=10)
    assert closed
    assert d.wait_exit(20) == 0, d.log_tail()
