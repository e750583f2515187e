"""Foundation: health, readiness, errors, HTTP/1.1 limits and framing, drain, migrations,
configuration checks, metrics and OpenAPI, against a real slipwayd."""

import json
import re
import signal
import socket
import subprocess
import threading
import time

import psycopg
import pytest
import requests

from conftest import (REPO, _clean_env, free_port, have_ipv6_loopback, parse_metrics,
                      slipwayd_binary, wait_for)

REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def health_json(d):
    r = d.get("/health", timeout=5)
    return r.status_code, r.json()


def assert_error_envelope(r, status, code=None):
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    err = body["error"]
    if code is not None:
        assert err["code"] == code
    else:
        assert re.fullmatch(r"[A-Z][A-Z_]+", err["code"]), err
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err.get("details", []), list)
    assert err["request_id"] == r.headers["X-Request-Id"]
    return err


def assert_check_ok(check):
    assert check["status"] == "ok", check
    lat = check["latency_ms"]
    assert isinstance(lat, (int, float)) and not isinstance(lat, bool), check
    assert 0 <= lat < 10000


# --------------------------------------------------------------------------- health


def test_health_ok(slipwayd):
    d = slipwayd()
    wait_for(lambda: d.get("/health").status_code == 200, timeout=10, message="/health 200")
    status, body = health_json(d)
    assert status == 200
    assert body["status"] == "ok"
    assert_check_ok(body["checks"]["database"])
    assert_check_ok(body["checks"]["redis"])
    r = d.get("/health")
    assert r.headers["Content-Type"].startswith("application/json")


def test_ready(slipwayd):
    d = slipwayd()
    r = wait_for(lambda: (lambda r: r if r.status_code == 200 else None)(d.get("/ready")),
                 timeout=15, message="/ready 200")
    assert r.json() == {"status": "ready"} or r.json()["status"] == "ready"


def _wait_health(d, want_status, failing=None, timeout=20):
    def probe():
        status, body = health_json(d)
        if status != want_status:
            return None
        if failing is None:
            ok = body["status"] == "ok" and all(c["status"] == "ok"
                                                for c in body["checks"].values())
            return body if ok else None
        if body["status"] != "error" or body["checks"][failing]["status"] != "error":
            return None
        return body

    return wait_for(probe, timeout=timeout, interval=0.1,
                    message=f"/health {want_status} (failing={failing})")


def test_health_follows_redis_outage(slipwayd, redis_factory):
    rs = redis_factory()
    d = slipwayd(redis=rs, env={"SLIPWAY_HEALTH_INTERVAL_MS": "200"})
    _wait_health(d, 200)
    rs.stop()
    body = _wait_health(d, 503, failing="redis")
    assert isinstance(body["checks"]["redis"]["error"], str) and body["checks"]["redis"]["error"]
    assert body["checks"]["database"]["status"] == "ok"
    r = d.get("/health")
    assert r.headers.get("X-Request-Id")
    rs.start()
    _wait_health(d, 200, timeout=30)
    assert d.alive()


def test_health_follows_postgres_outage(slipwayd, pg_factory):
    ps = pg_factory()
    with psycopg.connect(ps.url("postgres"), autocommit=True) as conn:
        conn.execute("CREATE DATABASE slipway")
    d = slipwayd(pg=ps, database_url=ps.url("slipway"), env={"SLIPWAY_HEALTH_INTERVAL_MS": "200"})
    _wait_health(d, 200)
    ps.stop()
    body = _wait_health(d, 503, failing="database")
    assert isinstance(body["checks"]["database"]["error"], str)
    assert body["checks"]["database"]["error"]
    assert body["checks"]["redis"]["status"] == "ok"
    ps.start()
    _wait_health(d, 200, timeout=40)
    assert d.alive()


# --------------------------------------------------------------------------- errors, ids


def test_not_found_envelope(slipwayd):
    d = slipwayd()
    assert_error_envelope(d.get("/definitely/not/here"), 404, "RESOURCE_NOT_FOUND")
    assert_error_envelope(d.get("/api/v1/nope"), 404, "RESOURCE_NOT_FOUND")


def test_method_not_allowed_envelope(slipwayd):
    d = slipwayd()
    r = d.request("POST", "/health", data=b"{}")
    assert_error_envelope(r, 405)
    allow = [m.strip() for m in r.headers["Allow"].split(",")]
    assert "GET" in allow
    assert "POST" not in allow


def test_request_id_present_and_unique(slipwayd):
    d = slipwayd()
    ids = set()
    for path in ("/health", "/ready", "/nope", "/metrics"):
        rid = d.get(path).headers.get("X-Request-Id")
        assert rid and REQUEST_ID_RE.match(rid), rid
        ids.add(rid)
    assert len(ids) == 4


def test_request_id_echoed_when_sane(slipwayd):
    d = slipwayd()
    sane = "client-req_42.abc"
    r = d.get("/health", headers={"X-Request-Id": sane})
    assert r.headers["X-Request-Id"] == sane
    r = d.get("/nope", headers={"X-Request-Id": sane})
    assert r.headers["X-Request-Id"] == sane
    assert r.json()["error"]["request_id"] == sane


@pytest.mark.parametrize("bad", ["a" * 300, "abc\x01def", "abc\x7fdef", ""],
                         ids=["300-chars", "ctrl-01", "del-7f", "empty"])
def test_request_id_replaced_when_insane(slipwayd, bad):
    d = slipwayd()
    c = d.raw()
    c.send(f"GET /health HTTP/1.1\r\nHost: x\r\nX-Request-Id: {bad}\r\n\r\n")
    r = c.read_response()
    c.close()
    rid = r.header("X-Request-Id")
    assert rid, r
    assert rid != bad.strip()
    assert REQUEST_ID_RE.match(rid), rid


# --------------------------------------------------------------------------- limits


def test_oversized_headers_431(slipwayd):
    d = slipwayd()
    c = d.raw()
    c.send("GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + "a" * 20000 + "\r\n\r\n")
    r = c.read_response()
    assert r.status == 431, r
    assert r.header("X-Request-Id")
    c.close()
    # The daemon still serves others.
    assert d.get("/health").status_code in (200, 503)


def test_oversized_headers_respects_limit(slipwayd):
    d = slipwayd(env={"SLIPWAY_MAX_HEADER_BYTES": "2048"})
    c = d.raw()
    c.send("GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + "a" * 3000 + "\r\n\r\n")
    assert c.read_response().status == 431
    c.close()
    c = d.raw()
    c.send("GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + "a" * 1000 + "\r\n\r\n")
    assert c.read_response().status in (200, 503)
    c.close()


def test_too_many_headers_431(slipwayd):
    d = slipwayd()
    c = d.raw()
    hdrs = "".join(f"X-H{i}: v\r\n" for i in range(150))
    c.send(f"GET /health HTTP/1.1\r\nHost: x\r\n{hdrs}\r\n")
    assert c.read_response().status == 431
    c.close()


def test_oversized_body_413_without_reading_it(slipwayd):
    d = slipwayd()
    c = d.raw()
    c.send("POST /api/v1/nope HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           f"Content-Length: {10 * 1024 * 1024}\r\n\r\n" + "{" * 100)
    r = c.read_response()
    assert r.status == 413, r
    assert json.loads(r.body)["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert c.closed_by_peer(timeout=5), "server kept the connection open after 413"
    c.close()


def test_body_limit_is_configurable(slipwayd):
    d = slipwayd(env={"SLIPWAY_MAX_BODY_BYTES": "100"})
    c = d.raw()
    c.send("POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n")
    assert c.read_response().status == 413
    c.close()
    c = d.raw()
    c.send("POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + "x" * 100)
    assert c.read_response().status == 404
    c.close()


# --------------------------------------------------------------------------- framing


def test_pipelined_requests_answered_in_order(slipwayd):
    d = slipwayd()
    paths = ["/health", "/nope", "/ready", "/metrics", "/health",
             "/api/v1/openapi.json", "/nope2", "/health", "/ready", "/health"]
    c = d.raw()
    c.send("".join(f"GET {p} HTTP/1.1\r\nHost: x\r\nX-Request-Id: pipe-{i}\r\n\r\n"
                   for i, p in enumerate(paths)))
    got = []
    for i, p in enumerate(paths):
        r = c.read_response()
        got.append(r.header("X-Request-Id"))
        if p.startswith("/nope"):
            assert r.status == 404
    assert got == [f"pipe-{i}" for i in range(len(paths))]
    # Keep-alive: the connection still works afterwards.
    c.send("GET /health HTTP/1.1\r\nHost: x\r\nX-Request-Id: after\r\n\r\n")
    assert c.read_response().header("X-Request-Id") == "after"
    c.close()


def test_slow_header_client_cut_off_while_others_served(slipwayd):
    d = slipwayd(env={"SLIPWAY_HEADER_TIMEOUT_MS": "1500"})
    request = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 30 + b"\r\n\r\n"
    result = {"sent": 0}

    def slow():
        c = d.raw(timeout=20)
        t0 = time.monotonic()
        for i, byte in enumerate(request):
            if time.monotonic() - t0 > 8:
                break  # long past any sane header timeout: give up, the asserts will fail
            try:
                c.send(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            result["sent"] = i + 1
            # Pace at ~0.4 s a byte, but wake as soon as the server says something.
            if c.readable(0.4):
                break
        result["elapsed"] = time.monotonic() - t0
        data, eof = c.read_all(timeout=3)
        result["response"] = data
        result["closed"] = eof
        c.close()

    t = threading.Thread(target=slow)
    t.start()
    try:
        wait_for(lambda: result["sent"] >= 3, timeout=5, message="slow client started")
        # Served normally while the slow client trickles in.
        for _ in range(3):
            t0 = time.monotonic()
            r = d.get("/health", timeout=2)
            assert r.status_code in (200, 503)
            assert time.monotonic() - t0 < 1.0
    finally:
        t.join(timeout=30)
    assert not t.is_alive()
    assert result["sent"] < len(request), "header timeout never fired"
    assert result["elapsed"] < 6, result
    data = result["response"]
    assert data == b"" or data.startswith(b"HTTP/1.1 408"), data[:200]
    assert result["closed"]


def test_sigterm_drains_in_flight_request(slipwayd):
    d = slipwayd()
    c = d.raw(timeout=15)
    c.send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    c.read_response()
    c.send("POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345")

    def server_read_everything():
        out = subprocess.run(["ss", "-Htn", "state", "established", f"( sport = :{d.port} )"],
                             capture_output=True, text=True, check=True).stdout
        rows = [line.split() for line in out.splitlines() if line.strip()]
        return rows and all(row[0] == "0" for row in rows)  # Recv-Q empty

    wait_for(server_read_everything, timeout=5, message="server to read the partial body")
    d.signal(signal.SIGTERM)

    def refused():
        try:
            socket.create_connection((d.host, d.port), timeout=1).close()
            return False
        except OSError:
            return True

    wait_for(refused, timeout=5, message="listening socket to close")
    assert d.alive(), "exited before finishing the in-flight request"
    c.send("67890")
    r = c.read_response()
    assert 200 <= r.status < 600
    assert r.status != 503, "in-flight request was dropped with 503"
    c.close()
    assert d.wait_exit(timeout=15) == 0, d.log_tail()


def test_two_daemons_migrate_same_database_once(slipwayd, database):
    a = slipwayd(database_url=database, wait=False)
    b = slipwayd(database_url=database, wait=False)
    for d in (a, b):
        d.wait_started()
    for d in (a, b):
        wait_for(lambda d=d: d.get("/ready").status_code == 200, timeout=30,
                 message=f"/ready on {d.url}")
    sql_files = sorted(p for p in (REPO / "sql").glob("*.sql") if re.match(r"^\d+_", p.name))
    assert sql_files
    with psycopg.connect(database) as conn:
        rows = conn.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
    versions = [int(v) for v, _ in rows]
    assert len(versions) == len(set(versions)), rows
    assert len(rows) == len(sql_files)
    assert versions == sorted(int(p.name.split("_")[0]) for p in sql_files)


# --------------------------------------------------------------------------- config


def _check_config(env, args=()):
    return subprocess.run([str(slipwayd_binary()), "--check-config", *args], env=env,
                          capture_output=True, text=True, timeout=30)


def _valid_env(pg, redis_server, tmp_path):
    env = _clean_env()
    env.update({"SLIPWAY_DATABASE_URL": pg.url("postgres"),
                "SLIPWAY_REDIS_URL": redis_server.url(),
                "SLIPWAY_DATA_DIR": str(tmp_path),
                "SLIPWAY_LISTEN": f"127.0.0.1:{free_port()}"})
    return env


def test_check_config_valid(pg, redis_server, tmp_path):
    r = _check_config(_valid_env(pg, redis_server, tmp_path))
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("var,value", [
    ("SLIPWAY_DATABASE_URL", "postgres://user@host:notaport/db"),
    ("SLIPWAY_REDIS_URL", "http://127.0.0.1:6379"),
    ("SLIPWAY_LISTEN", "127.0.0.1:99999"),
    ("SLIPWAY_MAX_BODY_BYTES", "lots"),
    ("SLIPWAY_HEADER_TIMEOUT_MS", "-5"),
    ("SLIPWAY_LOG_LEVEL", "chatty"),
    ("SLIPWAY_TLS_CA_FILE", "/nonexistent/ca.pem"),
])
def test_check_config_rejects(pg, redis_server, tmp_path, var, value):
    env = _valid_env(pg, redis_server, tmp_path)
    env[var] = value
    r = _check_config(env)
    assert r.returncode != 0
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert var in r.stderr, r.stderr


def test_check_config_rejects_flag(pg, redis_server, tmp_path):
    r = _check_config(_valid_env(pg, redis_server, tmp_path),
                      ["--database-url", "postgres://user@host:notaport/db"])
    assert r.returncode == 2, r.stderr
    assert "SLIPWAY_DATABASE_URL" in r.stderr or "--database-url" in r.stderr


def test_help_lists_options():
    r = subprocess.run([str(slipwayd_binary()), "--help"], capture_output=True, text=True,
                       timeout=10, env=_clean_env())
    assert r.returncode == 0
    text = r.stdout + r.stderr
    for name in ("SLIPWAY_LISTEN", "--listen", "SLIPWAY_DATABASE_URL", "SLIPWAY_REDIS_URL",
                 "SLIPWAY_MAX_BODY_BYTES", "SLIPWAY_HEADER_TIMEOUT_MS",
                 "SLIPWAY_DRAIN_TIMEOUT_MS"):
        assert name in text, name


# --------------------------------------------------------------------------- HTTP details


def test_chunked_request_body(slipwayd):
    d = slipwayd()
    c = d.raw()
    c.send("POST /nope HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
           "Content-Type: application/json\r\n\r\n"
           "5\r\n{\"a\":\r\n3\r\n 1}\r\n0\r\n\r\n")
    r = c.read_response()
    assert r.status == 404, r
    c.send("GET /health HTTP/1.1\r\nHost: x\r\nX-Request-Id: after-chunked\r\n\r\n")
    r = c.read_response()
    assert r.status in (200, 503)
    assert r.header("X-Request-Id") == "after-chunked"
    c.close()


def test_expect_100_continue(slipwayd):
    d = slipwayd()
    c = d.raw()
    c.send("POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    first = c.read_response()
    assert first.status == 100, first
    assert first.version == "HTTP/1.1"
    c.send("hello")
    r = c.read_response()
    assert r.status == 404
    c.close()


def test_expect_100_continue_too_large_gets_413(slipwayd):
    d = slipwayd()
    c = d.raw()
    c.send("POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 104857600\r\n"
           "Expect: 100-continue\r\n\r\n")
    assert c.read_response().status == 413
    c.close()


def test_head_health_has_no_body(slipwayd):
    d = slipwayd()
    c = d.raw()
    c.send("HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n"
           "GET /health HTTP/1.1\r\nHost: x\r\nX-Request-Id: after-head\r\n\r\n")
    h = c.read_response(head=True)
    assert h.status in (200, 503)
    assert h.header("X-Request-Id")
    # If HEAD had a body, the next bytes would be that body, not a status line.
    g = c.read_response()
    assert g.version == "HTTP/1.1", g
    assert g.header("X-Request-Id") == "after-head"
    c.close()


def test_http10_and_connection_close(slipwayd):
    d = slipwayd()
    c = d.raw()
    c.send("GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert c.read_response().status in (200, 503)
    assert c.closed_by_peer(timeout=5)
    c.close()
    c = d.raw()
    c.send("GET /health HTTP/1.0\r\n\r\n")
    assert c.read_response().status in (200, 503)
    assert c.closed_by_peer(timeout=5)
    c.close()


def test_malformed_request_400(slipwayd):
    d = slipwayd()
    c = d.raw()
    c.send("GARBAGE\x01 / HTTP/9\r\n\r\n")
    r = c.read_response()
    assert r.status == 400
    c.close()


# --------------------------------------------------------------------------- metrics, openapi


def _requests_total(d):
    r = d.get("/metrics")
    assert r.status_code == 200
    return sum(v for n, labels, v in parse_metrics(r.text)
               if n == "slipway_http_requests_total" and labels.get("method") == "GET"
               and labels.get("code") == "200" and "health" in labels.get("route", ""))


def test_metrics_exposition(slipwayd):
    d = slipwayd()
    wait_for(lambda: d.get("/health").status_code == 200, timeout=10)
    r = d.get("/metrics")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    samples = parse_metrics(r.text)
    names = {n for n, _, _ in samples}
    for want in ("slipway_http_requests_total", "slipway_http_request_duration_seconds_bucket",
                 "slipway_http_request_duration_seconds_sum",
                 "slipway_http_request_duration_seconds_count", "slipway_pg_pool_connections",
                 "slipway_redis_up", "process_resident_memory_bytes",
                 "process_cpu_seconds_total", "process_open_fds"):
        assert want in names, want
    for n, labels, v in samples:
        if n == "slipway_http_requests_total":
            assert {"route", "method", "code"} <= set(labels), labels
        if n == "slipway_pg_pool_connections":
            assert "state" in labels
    assert any(n == "slipway_http_request_duration_seconds_bucket" and labels.get("le") == "+Inf"
               for n, labels, _ in samples)
    values = {n: v for n, labels, v in samples if not labels}
    assert values["process_resident_memory_bytes"] > 0
    assert values["process_open_fds"] > 0
    wait_for(lambda: any(n == "slipway_redis_up" and v == 1
                         for n, _, v in parse_metrics(d.get("/metrics").text)),
             timeout=10, message="slipway_redis_up 1")


def test_metrics_count_requests(slipwayd):
    d = slipwayd()
    wait_for(lambda: d.get("/health").status_code == 200, timeout=10)
    before = _requests_total(d)
    for _ in range(5):
        assert d.get("/health").status_code == 200
    after = _requests_total(d)
    assert after - before >= 5, (before, after)


def test_openapi(slipwayd):
    d = slipwayd()
    r = d.get("/api/v1/openapi.json")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    doc = r.json()
    assert re.fullmatch(r"3\.1\.\d+", doc["openapi"]), doc.get("openapi")
    assert doc["info"]["title"] and doc["info"]["version"]
    paths = doc["paths"]
    assert any(p.endswith("/health") for p in paths), list(paths)
    health = next(v for p, v in paths.items() if p.endswith("/health"))
    assert "get" in health


# --------------------------------------------------------------------------- listening


@pytest.mark.skipif(not have_ipv6_loopback(), reason="no ::1 on this machine")
def test_ipv6_listen(slipwayd):
    d = slipwayd(host="::1")
    r = d.get("/health")
    assert r.status_code in (200, 503)
    assert r.headers.get("X-Request-Id")


@pytest.mark.skipif(not have_ipv6_loopback(), reason="no ::1 on this machine")
def test_listen_list_serves_every_address(slipwayd):
    p4 = free_port()
    p6 = free_port("::1")
    d = slipwayd(listen=f"127.0.0.1:{p4},[::1]:{p6}", port=p4)
    assert requests.get(f"http://127.0.0.1:{p4}/health", timeout=5).status_code in (200, 503)
    assert requests.get(f"http://[::1]:{p6}/health", timeout=5).status_code in (200, 503)
    assert d.alive()


def test_connection_cap_answers_503(slipwayd):
    d = slipwayd(env={"SLIPWAY_MAX_CONNECTIONS": "2"})
    held = [d.raw(timeout=10) for _ in range(2)]
    for c in held:  # both are accepted and served
        c.send("GET /ready HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.read_response().status in (200, 503)
    extra = d.raw(timeout=10)
    r = extra.read_response()
    assert r.status == 503
    assert json.loads(r.body)["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert extra.closed_by_peer()
    for c in held:
        c.close()

    # Once a slot is free again, new clients are served.
    def served():
        return d.get("/ready").status_code == 200

    wait_for(served, timeout=10, message="a new connection served after others closed")


def test_http_workers_share_the_port(slipwayd):
    d = slipwayd(env={"SLIPWAY_HTTP_WORKERS": "2"})
    wait_for(lambda: d.get("/ready").status_code == 200, timeout=15, message="ready")

    def both_workers_listening():
        workers = {line.get("worker") for line in d.logs() if line.get("msg") == "listening"}
        return workers == {"0", "1"}

    wait_for(both_workers_listening, timeout=10, message="two workers listening")
    for _ in range(20):
        assert d.get("/health").status_code in (200, 503)
    d.signal(signal.SIGTERM)
    assert d.wait_exit(timeout=20) == 0, d.log_tail()


def test_stop_during_a_migration_waits_for_it(slipwayd, database):
    """SIGTERM while the migration runs on the threadpool: the migration cannot be interrupted,
    so the node lives until it returns, and then exits 0 (under ASan: without touching the
    freed node)."""
    with psycopg.connect(database) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(32488822435963257)")  # the migration lock
        d = slipwayd(database_url=database)

        def migration_waits():
            with psycopg.connect(database, autocommit=True) as c:
                return c.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = "
                                 "'Lock' AND query LIKE '%%pg_advisory_xact_lock%%' AND "
                                 "pid <> %s", (holder.info.backend_pid,)).fetchone()[0] > 0

        wait_for(migration_waits, timeout=15, message="the daemon's migration to wait for the lock")
        d.signal(signal.SIGTERM)
        wait_for(lambda: any(e.get("msg") == "draining" for e in d.logs()), timeout=10,
                 message="the daemon to start draining")
        assert d.alive()
        holder.rollback()  # the lock goes; the migration runs to its end
    assert d.wait_exit(timeout=30) == 0, d.log_tail()
    with psycopg.connect(database) as c:
        assert c.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] > 0
