"""Fixtures for end-to-end tests against a real slipwayd, PostgreSQL and Redis.

Run with /usr/bin/python3 -m pytest test/e2e (stdlib + psycopg + redis + requests only).

Session scope:   pg, redis_server            shared servers (reused from
                                             SLIPWAY_TEST_DATABASE_URL / SLIPWAY_TEST_REDIS_URL)
Function scope:  pg_factory, redis_factory   private servers a test may stop and restart
                 slipwayd                    factory: slipwayd(env=..., args=...) -> Daemon
                 auth                        AuthKit: daemons (waited until /ready),
                                             setup_owner, login, make_user, make_token,
                                             client_credentials, db(d); fails the test if a
                                             secret it handled shows up in a daemon's log
                 owner                       a daemon with its owner set up (a Principal)
Helpers:         wait_for, free_port, RawHttp, read_response, parse_metrics,
                 totp_code, request_from (choose the source address),
                 parse_set_cookie, error_of, detail_fields
                 (import them with `from conftest import wait_for, ...`)
"""

import base64
import hashlib
import hmac
import http.client
import json
import os
import re
import secrets as _secrets
import select
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path

import psycopg
import psycopg.sql
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
        self.password = _secrets.token_hex(16)
        self._initdb()

    def _initdb(self):
        self.sock.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            shutil.chown(self.sock, "postgres", "postgres")
        # As contrib/lib.sh does: a password over TCP, never trust, so a build on this host
        # cannot reach the database without it.
        pwfile = self.dir / "pwfile"
        pwfile.write_text(self.password + "\n")
        if os.geteuid() == 0:
            shutil.chown(pwfile, "postgres", "postgres")
        pwfile.chmod(0o600)
        subprocess.run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(self.data),
                                     "--auth-local=peer", "--auth-host=scram-sha-256",
                                     f"--pwfile={pwfile}", "-U", "postgres", "-E", "UTF8",
                                     "--locale=C.UTF-8"]),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        pwfile.unlink()

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
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/{dbname}"

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
        # As contrib/lib.sh does: a password, in a 0600 file rather than on a command line.
        self.password = _secrets.token_hex(16)
        self.conf = self.dir / "redis.conf"
        self.conf.touch(mode=0o600)
        self.conf.write_text(f"requirepass {self.password}\n")

    def start(self):
        self._log = open(self.log, "ab")
        self.proc = subprocess.Popen(
            ["redis-server", str(self.conf), "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "",
             "--appendonly", "no", "--dir", str(self.dir)],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

        def pong():
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self.log.read_text(errors='replace')}")
            return redis_lib.Redis(port=self.port, password=self.password,
                                   socket_timeout=1).ping()

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
        return f"redis://:{self.password}@127.0.0.1:{self.port}/{db}"

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
        """The last n lines, without the debug line of each answered request: a test that
        polls the API would otherwise fill the tail with them and hide why it failed."""
        lines = [ln for ln in self.log_text().splitlines()
                 if not ('"msg":"request"' in ln and '"status":"2' in ln)]
        return "\n".join(lines[-n:])


_OWN_BASETEMP = []


def pytest_configure(config):
    """A base temporary directory of this session's own, instead of the shared
    /tmp/pytest-of-<user>: pytest makes that one 0700 again whenever any session starts,
    which would shut the builds of this session's daemons (running under app uids) out of
    their build directories. Removed at the end; --basetemp still wins."""
    if config.option.basetemp is None and not hasattr(config, "workerinput"):
        base = tempfile.mkdtemp(prefix="slipway-e2e-")
        config.option.basetemp = base
        _OWN_BASETEMP.append(base)


def _unmount_under(base):
    """Podman's overlay storage (container_kit) leaves its mounts under base, where rmtree
    cannot remove them: each is let go, the deepest first."""
    try:
        with open("/proc/self/mounts") as f:
            points = [line.split()[1].replace("\\040", " ") for line in f]
    except OSError:
        return
    for p in sorted((p for p in points if p.startswith(base + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", p], capture_output=True)


def pytest_unconfigure(config):
    for base in _OWN_BASETEMP:
        _unmount_under(base)
        shutil.rmtree(base, ignore_errors=True)


def traversable(path):
    """Lets other uids cross (never list) every directory above path, as /var/lib is: builds
    run under their app's uid and must reach their build directory in the data directory.
    pytest makes its temporary directories 0700."""
    if not path:
        return
    p = Path(path).resolve().parent
    while p != p.parent:
        mode = p.stat().st_mode
        if mode & 0o011 != 0o011:
            p.chmod((mode & 0o7777) | 0o011)
        p = p.parent


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
    """The shared Redis server (SLIPWAY_TEST_REDIS_URL, or a private one). Under pytest-xdist
    each worker has a private one: every daemon's worker reads the one deployment stream, and
    would take (and settle as unknown) the entries of another test's daemon running at the
    same time."""
    url = os.environ.get("SLIPWAY_TEST_REDIS_URL")
    if os.environ.get("PYTEST_XDIST_WORKER"):
        url = None
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
        traversable(full_env.get("SLIPWAY_DATA_DIR"))
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


# --------------------------------------------------------------------------- identity
#
# Helpers for the auth test modules (test_auth.py, test_users.py, test_tokens.py,
# test_totp.py, test_rbac.py). The `auth` fixture is an AuthKit: it starts daemons, makes
# principals, remembers every secret the test handled, and at teardown fails the test if
# any of them appears in a daemon's captured log.

API = "/api/v1"
WRONG_LOGIN_MESSAGE = "invalid email or password"


def totp_code(secret_b32, at=None, step=30, digits=6, counter=None):
    """RFC 6238 TOTP (HMAC-SHA1) for a base32 secret, at time `at` or for an explicit
    counter."""
    s = secret_b32.strip().replace(" ", "").upper()
    key = base64.b32decode(s + "=" * (-len(s) % 8))
    if counter is None:
        counter = int((time.time() if at is None else at) // step)
    mac = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    off = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[off:off + 4])[0] & 0x7FFFFFFF
    return str(value % (10 ** digits)).zfill(digits)


def totp_step(step=30):
    return int(time.time() // step)


def new_password():
    return "pw-" + _secrets.token_urlsafe(15)


def new_email(tag="user"):
    return f"{tag}-{uuid.uuid4().hex[:10]}@example.com"


def set_cookies(resp):
    """Every Set-Cookie header of a requests response, unmerged."""
    return list(resp.raw.headers.getlist("Set-Cookie"))


def parse_set_cookie(value):
    """'n=v; Path=/; HttpOnly' -> (name, value, {attr-lower: value-or-True})."""
    parts = [p.strip() for p in value.split(";")]
    name, _, val = parts[0].partition("=")
    attrs = {}
    for p in parts[1:]:
        if not p:
            continue
        k, eq, v = p.partition("=")
        attrs[k.strip().lower()] = v.strip() if eq else True
    return name.strip(), val.strip(), attrs


def error_of(resp, status, code=None):
    """Asserts resp is an error envelope with status (and code); returns the error object."""
    assert resp.status_code == status, f"expected {status}, got {resp.status_code}: {resp.text}"
    err = resp.json()["error"]
    if code is not None:
        assert err["code"] == code, err
    assert isinstance(err["message"], str) and err["message"], err
    assert isinstance(err.get("details", []), list), err
    return err


def detail_fields(resp):
    return [d.get("field") for d in resp.json()["error"].get("details") or []]


class SourceResponse:
    """A minimal requests-like response for requests sent from a chosen source address."""

    def __init__(self, status, headers, body):
        self.status_code = status
        self.headers = requests.structures.CaseInsensitiveDict(headers)
        self.content = body
        self.text = body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.content)


def request_from(d, source_ip, method, path, payload=None, headers=None, timeout=10, data=None):
    """One HTTP request to d from source address source_ip (e.g. 127.0.0.2), with a JSON payload
    or the raw bytes of data."""
    conn = http.client.HTTPConnection(d.host, d.port, timeout=timeout,
                                      source_address=(source_ip, 0))
    try:
        body = data
        hdrs = dict(headers or {})
        if payload is not None:
            body = json.dumps(payload).encode()
            hdrs.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        return SourceResponse(r.status, r.getheaders(), r.read())
    finally:
        conn.close()


class Principal:
    """Someone who calls the API with a bearer token (session, API token or access token)."""

    def __init__(self, kit, d, token, kind="session", email=None, password=None, user=None,
                 token_id=None, scopes=None):
        self.kit = kit
        self.d = d
        self.token = token
        self.kind = kind
        self.email = email
        self.password = password
        self.user = user
        self.token_id = token_id
        self.scopes = scopes
        kit.remember(token, password)

    @property
    def id(self):
        return self.user["id"] if self.user else None

    def on(self, d):
        """The same credentials against another daemon."""
        p = Principal(self.kit, d, self.token, self.kind, self.email, self.password, self.user,
                      self.token_id, self.scopes)
        return p

    def headers(self, extra=None):
        h = {"Authorization": f"Bearer {self.token}"}
        h.update(extra or {})
        return h

    def call(self, method, path, **kw):
        kw["headers"] = self.headers(kw.get("headers"))
        return self.kit.call(self.d, method, path, **kw)

    def get(self, path, **kw):
        return self.call("GET", path, **kw)

    def post(self, path, json=None, **kw):
        return self.call("POST", path, json=json, **kw)

    def patch(self, path, json=None, **kw):
        return self.call("PATCH", path, json=json, **kw)

    def delete(self, path, **kw):
        return self.call("DELETE", path, **kw)

    def __repr__(self):
        return f"<Principal {self.kind} {self.email or ''} {self.scopes or ''}>"


_SECRET_KEYS_OUT = ("token", "access_token", "secret", "client_secret")
_SECRET_KEYS_IN = ("password", "current", "new", "client_secret", "token")


class AuthKit:
    def __init__(self, start):
        self.start = start
        self.daemons = []
        self.secrets = set()
        self.conns = []

    # ----- daemons and database
    def daemon(self, **kw):
        """Starts a daemon and waits until /ready (migrations applied)."""
        d = self.start(**kw)
        self.daemons.append(d)
        if kw.get("wait", True):
            wait_for(lambda: d.get("/ready", timeout=2).status_code == 200, timeout=30,
                     message="slipwayd /ready")
            if int((kw.get("env") or {}).get("SLIPWAY_HTTP_WORKERS", "1")) > 1:
                # Each process migrates (or waits for the one that does) on its own: ready means
                # every one is, so ask until 20 new connections in a row, spread over the
                # processes by SO_REUSEPORT, all say so.
                wait_for(lambda: all(d.get("/ready", timeout=2).status_code == 200
                                     for _ in range(20)),
                         timeout=30, message="every slipwayd process /ready")
        return d

    def db(self, d):
        conn = psycopg.connect(d.database_url, autocommit=True)
        self.conns.append(conn)
        return conn

    def close(self):
        for c in self.conns:
            try:
                c.close()
            except Exception:  # noqa: BLE001
                pass

    # ----- secrets
    def remember(self, *values):
        for v in values:
            if isinstance(v, (list, tuple, set)):
                self.remember(*v)
            elif isinstance(v, str) and len(v) >= 8:
                self.secrets.add(v)

    def _remember_json(self, obj, keys):
        if isinstance(obj, dict):
            for k, v in obj.items():
                if k in keys and isinstance(v, str):
                    self.remember(v)
                elif k == "recovery_codes":
                    self.remember(v)
                else:
                    self._remember_json(v, keys)
        elif isinstance(obj, list):
            for v in obj:
                self._remember_json(v, keys)

    def leaked_in_logs(self):
        """[(secret, daemon url)] for every remembered secret found in a daemon's log."""
        out = []
        for d in self.daemons:
            text = d.log_text()
            for s in self.secrets:
                if s in text:
                    out.append((s[:6] + "...", d.url))
        return out

    def leaked_in_databases(self):
        """[(secret, table)] for every remembered secret found in plain text in any row of any
        table of the daemons' databases (secrets are stored sealed or as hashes)."""
        out = []
        if not self.secrets:
            return out
        for url in {d.database_url for d in self.daemons}:
            try:
                conn = psycopg.connect(url, autocommit=True, connect_timeout=5)
            except psycopg.Error:
                continue  # the database went with its test
            with conn:
                tables = [t for (t,) in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
                for t in tables:
                    text = conn.execute(
                        psycopg.sql.SQL("SELECT coalesce(string_agg(row_to_json(x)::text, ''), "
                                        "'') FROM {} x").format(psycopg.sql.Identifier(t))
                    ).fetchone()[0]
                    out += [(s[:6] + "...", t) for s in self.secrets if s in text]
        return out

    # ----- requests
    def call(self, d, method, path, **kw):
        if not path.startswith("/"):
            path = f"{API}/{path}"
        if kw.get("json") is None:
            kw.pop("json", None)
        else:
            self._remember_json(kw["json"], _SECRET_KEYS_IN)
        r = d.request(method, path, **kw)
        if r.headers.get("Content-Type", "").startswith("application/json") and r.content:
            try:
                self._remember_json(r.json(), _SECRET_KEYS_OUT)
            except ValueError:
                pass
        return r

    def anon(self, d, method, path, **kw):
        return self.call(d, method, path, **kw)

    def setup_owner(self, d, email=None, password=None, name="Owner"):
        email = email or new_email("owner")
        password = password or new_password()
        r = self.call(d, "POST", "auth/setup",
                      json={"email": email, "password": password, "name": name})
        assert r.status_code == 201, f"auth/setup: {r.status_code} {r.text}"
        body = r.json()
        return Principal(self, d, body["token"], email=email, password=password,
                         user=body["user"])

    def login(self, d, email, password, totp=None, **kw):
        self.remember(password)
        payload = {"email": email, "password": password}
        if totp is not None:
            payload["totp"] = totp
        return self.call(d, "POST", "auth/login", json=payload, **kw)

    def login_principal(self, d, email, password, totp=None):
        r = self.login(d, email, password, totp)
        assert r.status_code == 200, f"login {email}: {r.status_code} {r.text}"
        body = r.json()
        return Principal(self, d, body["token"], email=email, password=password,
                         user=body["user"])

    def make_user(self, by, role="member", email=None, password=None, name=None):
        """Creates a user through POST users as `by`, then logs them in."""
        email = email or new_email(role)
        password = password or new_password()
        payload = {"email": email, "password": password, "role": role}
        if name is not None:
            payload["name"] = name
        r = by.post("users", json=payload)
        assert r.status_code == 201, f"POST users ({role}): {r.status_code} {r.text}"
        return self.login_principal(by.d, email, password)

    def make_token(self, by, scopes, name=None, expires_in=None):
        payload = {"name": name or f"t-{uuid.uuid4().hex[:8]}", "scopes": list(scopes)}
        if expires_in is not None:
            payload["expires_in"] = expires_in
        r = by.post("tokens", json=payload)
        assert r.status_code == 201, f"POST tokens {scopes}: {r.status_code} {r.text}"
        body = r.json()
        return Principal(self, by.d, body["token"], kind="token", email=by.email, user=by.user,
                         token_id=body["id"], scopes=body["scopes"])

    def client_credentials(self, api_token):
        r = self.call(api_token.d, "POST", "auth/token",
                      data={"grant_type": "client_credentials", "client_id": api_token.token_id,
                            "client_secret": api_token.token})
        assert r.status_code == 200, f"auth/token: {r.status_code} {r.text}"
        body = r.json()
        return Principal(self, api_token.d, body["access_token"], kind="access",
                         email=api_token.email, user=api_token.user,
                         token_id=api_token.token_id, scopes=body["scope"].split())


@pytest.fixture
def auth(slipwayd, request):
    """AuthKit over the slipwayd factory. Teardown fails the test when any password, token,
    TOTP secret, recovery code, env value, hook or webhook secret the test handled appears in
    a daemon's log or in plain text anywhere in its database."""
    kit = AuthKit(slipwayd)
    yield kit
    kit.close()
    leaked = kit.leaked_in_logs()
    if leaked:
        pytest.fail(f"secrets found in slipwayd logs: {leaked}", pytrace=False)
    leaked = kit.leaked_in_databases()
    if leaked:
        pytest.fail(f"secrets stored in plain text: {leaked}", pytrace=False)


@pytest.fixture
def owner(auth):
    """A fresh daemon with its first user (the owner) set up: a Principal with .d."""
    d = auth.daemon()
    return auth.setup_owner(d)
