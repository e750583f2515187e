"""Fixtures for end-to-end tests against a real slipwayd, PostgreSQL and Redis.

Run with /usr/bin/python3 -m pytest test/e2e (stdlib + psycopg + redis + requests only).

Session scope:   pg, redis_server            shared servers (reused from
                                             SLIPWAY_TEST_DATABASE_URL / SLIPWAY_TEST_REDIS_URL)
Function scope:  pg_factory, redis_factory   private servers a test may stop and restart
                 slipwayd                    factory: slipwayd(env=..., args=...) -> Daemon
Helpers:         wait_for, free_port, RawHttp, read_response, parse_metrics
                 (import them with `from conftest import wait_for, ...`)
"""

import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path

import psycopg
import pytest
import redis as redis_lib
import requests

REPO = Path(__file__).resolve().parents[2]
PG_BIN = Path(os.environ.get("SW_PG_BIN", "/usr/lib/postgresql/15/bin"))
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: ThreadSanitizer")


# --------------------------------------------------------------------------- helpers


def wait_for(predicate, timeout=10.0, interval=0.05, message=None):
    """Polls predicate until it returns a truthy value, which is returned. Exceptions raised
    by the predicate count as "not yet"; the last one is reported on timeout."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - a failing probe just means "not yet"
            last_exc = exc
        if time.monotonic() >= deadline:
            what = message or getattr(predicate, "__name__", "condition")
            detail = f" (last error: {last_exc!r})" if last_exc else ""
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}{detail}")
        time.sleep(interval)


def free_port(host="127.0.0.1"):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def have_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def _as_postgres(cmd):
    """PostgreSQL refuses to run as root: run its tools as the postgres user."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--"] + cmd
    return cmd


def _pg_tmpdir(prefix):
    d = tempfile.mkdtemp(prefix=prefix)
    os.chmod(d, 0o755)  # the postgres user must reach it
    return Path(d)


def url_with_db(url, dbname):
    """Returns the libpq URL/conninfo url pointing at database dbname."""
    if url.startswith(("postgres://", "postgresql://")):
        parts = urllib.parse.urlsplit(url)
        return urllib.parse.urlunsplit(parts._replace(path="/" + dbname))
    return psycopg.conninfo.make_conninfo(url, dbname=dbname)


# --------------------------------------------------------------------------- PostgreSQL


class PgServer:
    """A private PostgreSQL 15 cluster under a temporary directory. stop() and start()
    keep the port, so clients see the same server come back."""

    def __init__(self, port=None, tuned=True):
        self.dir = _pg_tmpdir("slipway-pg-")
        self.data = self.dir / "data"
        self.sock = self.dir / "sock"
        self.log = self.dir / "postgresql.log"
        self.port = port or free_port()
        self.tuned = tuned
        self._initdb()

    def _initdb(self):
        self.sock.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            shutil.chown(self.sock, "postgres", "postgres")
        subprocess.run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust",
                                     "-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8"]),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self):
        opts = f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 -c max_connections=300"
        if self.tuned:
            opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        r = subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l",
                                         str(self.log), "-o", opts, "-w", "-t", "60", "start"]),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not start: {r.stderr}\n{self.log_tail()}")
        wait_for(self.accepting, timeout=30, message=f"PostgreSQL on port {self.port}")
        return self

    def stop(self, mode="fast"):
        subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode,
                                     "-w", "-t", "60", "stop"]),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def running(self):
        return (self.data / "postmaster.pid").exists()

    def accepting(self):
        with psycopg.connect(self.url("postgres"), connect_timeout=2):
            return True

    def url(self, dbname="postgres"):
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def log_tail(self, n=20):
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def destroy(self):
        if self.running():
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


class ExternalPg:
    """A PostgreSQL server someone else runs (SLIPWAY_TEST_DATABASE_URL)."""

    def __init__(self, url):
        self.base_url = url

    def url(self, dbname="postgres"):
        return url_with_db(self.base_url, dbname)

    def destroy(self):
        pass


def create_database(server, prefix="sw_test"):
    """Creates a fresh database on server; returns its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    return server.url(name)


def drop_database(url):
    name = psycopg.conninfo.conninfo_to_dict(url).get("dbname")
    if not name:
        return
    try:
        with psycopg.connect(url_with_db(url, "postgres"), autocommit=True,
                             connect_timeout=5) as conn:
            conn.execute(psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                         .format(psycopg.sql.Identifier(name)))
    except psycopg.Error:
        pass


# --------------------------------------------------------------------------- Redis


class RedisServer:
    """A private redis-server in the foreground; stop() and start() keep the port."""

    def __init__(self, port=None):
        self.dir = Path(tempfile.mkdtemp(prefix="slipway-redis-"))
        self.port = port or free_port()
        self.proc = None
        self.log = self.dir / "redis.log"

    def start(self):
        self._log = open(self.log, "ab")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir)],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

        def pong():
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self.log.read_text(errors='replace')}")
            return redis_lib.Redis(port=self.port, socket_timeout=1).ping()

        wait_for(pong, timeout=20, message=f"Redis on port {self.port}")
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None

    def url(self, db=0):
        return f"redis://127.0.0.1:{self.port}/{db}"

    def destroy(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class ExternalRedis:
    def __init__(self, url):
        self.base_url = url

    def url(self, db=None):
        if db is None:
            return self.base_url
        parts = urllib.parse.urlsplit(self.base_url)
        return urllib.parse.urlunsplit(parts._replace(path=f"/{db}"))

    def destroy(self):
        pass


# --------------------------------------------------------------------------- raw HTTP


class Response:
    def __init__(self, version, status, reason, headers, body):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value), names as sent
        self.body = body

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<Response {self.status} {self.reason!r} {self.headers!r} {self.body[:200]!r}>"


class RawHttp:
    """A raw client socket with an input buffer, for tests that must control the bytes."""

    def __init__(self, host, port, timeout=10.0):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.buf = b""
        self.eof = False

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def _fill(self):
        """Reads more bytes; returns False at end of stream (FIN or reset)."""
        if self.eof:
            return False
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def readable(self, timeout):
        """True when bytes (or EOF) are waiting within timeout seconds."""
        if self.buf:
            return True
        r, _, _ = select.select([self.sock], [], [], timeout)
        return bool(r)

    def read_until(self, marker):
        while marker not in self.buf:
            if not self._fill():
                raise EOFError(f"connection closed before {marker!r}; got {self.buf[:300]!r}")
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def read_exact(self, n):
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError(f"connection closed with {len(self.buf)} of {n} bytes")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_response(self, head=False):
        """Reads one response; skips nothing (a 100 Continue is returned as a response)."""
        raw = self.read_until(b"\r\n\r\n").decode("latin-1")
        lines = raw[:-4].split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code, _, reason = rest.partition(" ")
        headers = []
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers.append((k.strip(), v.strip()))
        resp = Response(version, int(code), reason, headers, b"")
        if head or resp.status < 200 or resp.status in (204, 304):
            return resp
        te = (resp.header("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            body = b""
            while True:
                size_line = self.read_until(b"\r\n")
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    self.read_until(b"\r\n")  # no trailers expected
                    break
                body += self.read_exact(size)
                self.read_exact(2)
            resp.body = body
        elif resp.header("Content-Length") is not None:
            resp.body = self.read_exact(int(resp.header("Content-Length")))
        else:
            while self._fill():
                pass
            resp.body, self.buf = self.buf, b""
        return resp

    def closed_by_peer(self, timeout=5.0):
        """True when the peer closes (FIN or RST) within timeout with no further bytes."""
        self.sock.settimeout(timeout)
        try:
            while not self.eof:
                if not self._fill():
                    break
                if self.buf:
                    return False
        except socket.timeout:
            return False
        return True

    def read_all(self, timeout=5.0):
        """Reads until the peer closes or timeout; returns (bytes, closed_by_peer)."""
        self.sock.settimeout(timeout)
        try:
            while self._fill():
                pass
        except socket.timeout:
            pass
        data, self.buf = self.buf, b""
        return data, self.eof

    def close(self):
        self.sock.close()


def read_response(sock_client, head=False):
    return sock_client.read_response(head=head)


def parse_metrics(text):
    """Parses Prometheus text exposition into [(name, {label: value}, float)]."""
    out = []
    line_re = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?$')
    label_re = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = line_re.match(line)
        if not m:
            raise ValueError(f"bad metrics line: {line!r}")
        labels = dict(label_re.findall(m.group(3) or ""))
        out.append((m.group(1), labels, float(m.group(4))))
    return out


# --------------------------------------------------------------------------- slipwayd


def slipwayd_binary():
    path = Path(os.environ.get("SLIPWAYD", REPO / "build" / "slipwayd"))
    if not path.is_absolute():
        path = REPO / path
    return path


class Daemon:
    def __init__(self, binary, env, args, workdir, host, port, database_url, redis_url):
        self.binary = binary
        self.env = env
        self.args = args
        self.host = host
        self.port = port
        self.database_url = database_url
        self.redis_url = redis_url
        self.log_path = workdir / f"slipwayd-{port}.log"
        self.proc = None
        self.returncode = None

    @property
    def url(self):
        h = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{h}:{self.port}"

    @property
    def pid(self):
        return self.proc.pid

    def start(self):
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([str(self.binary)] + list(self.args), env=self.env,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=REPO)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_started(self, timeout=30.0):
        def up():
            if not self.alive():
                raise AssertionError(f"slipwayd exited with {self.proc.returncode}:\n"
                                     f"{self.log_tail()}")
            if any(e.get("msg") == "listening" for e in self.logs()):
                return True
            try:
                requests.get(self.url + "/health", timeout=1)
                return True
            except requests.RequestException:
                return False

        try:
            wait_for(up, timeout=timeout, interval=0.05, message="slipwayd to listen")
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{self.log_tail()}") from None
        return self

    def get(self, path, **kw):
        kw.setdefault("timeout", 10)
        return requests.get(self.url + path, **kw)

    def request(self, method, path, **kw):
        kw.setdefault("timeout", 10)
        return requests.request(method, self.url + path, **kw)

    def raw(self, timeout=10.0):
        return RawHttp(self.host, self.port, timeout=timeout)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout):
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def stop(self, timeout=20.0):
        """SIGTERM, then SIGKILL after timeout. Returns the exit status; records in
        self.stop_problem what went wrong if it was running and did not exit 0 in time."""
        self.stop_problem = None
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
                if self.proc.returncode != 0:
                    self.stop_problem = f"exited with {self.proc.returncode} on SIGTERM"
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.stop_problem = f"ignored SIGTERM for {timeout}s (killed)"
        self.returncode = self.proc.returncode
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None
        return self.returncode

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def logs(self):
        out = []
        for line in self.log_text().splitlines():
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                out.append(obj)
        return out

    def log_tail(self, n=60):
        return "\n".join(self.log_text().splitlines()[-n:])


def _clean_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLIPWAY_")}
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:halt_on_error=1")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    return env


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def pg():
    """The shared PostgreSQL server (SLIPWAY_TEST_DATABASE_URL, or a private one)."""
    url = os.environ.get("SLIPWAY_TEST_DATABASE_URL")
    server = ExternalPg(url) if url else PgServer().start()
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def redis_server():
    """The shared Redis server (SLIPWAY_TEST_REDIS_URL, or a private one)."""
    url = os.environ.get("SLIPWAY_TEST_REDIS_URL")
    server = ExternalRedis(url) if url else RedisServer().start()
    yield server
    server.destroy()


@pytest.fixture
def pg_factory():
    """pg_factory() -> a started private PgServer; the test may stop() and start() it."""
    servers = []

    def make(**kw):
        s = PgServer(**kw)
        servers.append(s)
        return s.start()

    yield make
    for s in servers:
        s.destroy()


@pytest.fixture
def redis_factory():
    """redis_factory() -> a started private RedisServer; stop() and start() keep the port."""
    servers = []

    def make(**kw):
        s = RedisServer(**kw)
        servers.append(s)
        return s.start()

    yield make
    for s in servers:
        s.destroy()


@pytest.fixture
def database(pg):
    """A fresh empty database URL on the shared server, dropped afterwards."""
    url = create_database(pg)
    yield url
    drop_database(url)


@pytest.fixture
def slipwayd(request, pg, redis_server, tmp_path):
    """Factory: slipwayd(env={...}, args=[...], pg=server, redis=server, database_url=...,
    host="127.0.0.1", port=None, wait=True) -> a started Daemon.

    Each daemon gets a fresh database unless database_url is given, a free port, its own
    data dir, and its stderr in a file attached to the report on failure. Teardown sends
    SIGTERM (SIGKILL after 20 s) and fails the test if the daemon did not exit 0 or a
    sanitizer reported anything."""
    binary = slipwayd_binary()
    if not binary.exists():
        pytest.fail(f"slipwayd binary not found at {binary} (set SLIPWAYD or build first)")
    daemons = []
    created_dbs = []
    request.node._slipway_daemons = daemons
    shared_pg = pg

    def start(env=None, args=(), pg=None, redis=None, database_url=None, host="127.0.0.1",
              port=None, listen=None, wait=True):
        pg_srv = pg or shared_pg
        redis_srv = redis or redis_server
        if database_url is None:
            database_url = create_database(pg_srv)
            created_dbs.append(database_url)
        port = port or free_port(host)
        h = f"[{host}]" if ":" in host else host
        full_env = _clean_env()
        data_dir = tmp_path / f"data-{port}"
        data_dir.mkdir(exist_ok=True)
        full_env.update({
            "SLIPWAY_LISTEN": listen or f"{h}:{port}",
            "SLIPWAY_DATABASE_URL": database_url,
            "SLIPWAY_REDIS_URL": redis_srv.url(),
            "SLIPWAY_DATA_DIR": str(data_dir),
            "SLIPWAY_LOG_LEVEL": "debug",
        })
        full_env.update({k: str(v) for k, v in (env or {}).items() if v is not None})
        for k, v in (env or {}).items():
            if v is None:
                full_env.pop(k, None)
        d = Daemon(binary, full_env, args, tmp_path, host, port, database_url,
                   full_env["SLIPWAY_REDIS_URL"])
        daemons.append(d)
        d.start()
        if wait:
            d.wait_started()
        return d

    yield start

    problems = []
    for d in daemons:
        d.stop()
        if d.stop_problem:
            problems.append(f"slipwayd on port {d.port}: {d.stop_problem}")
        text = d.log_text()
        for marker in SANITIZER_MARKERS:
            if marker in text:
                problems.append(f"slipwayd on port {d.port}: sanitizer report ({marker})")
                break
    for url in created_dbs:
        drop_database(url)
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.passed or report.skipped:
        return
    for d in getattr(item, "_slipway_daemons", []):
        report.sections.append((f"slipwayd {d.url} stderr (tail)", d.log_tail(80)))
