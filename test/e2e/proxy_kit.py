"""Real edge proxies for the routing tests (issue 14, DESIGN.md §13): a private Caddy (its
admin API, HTTP and HTTPS listeners on free loopback ports, its own XDG directories) and a
private Pebble ACME server that issues real certificates at once
(PEBBLE_VA_ALWAYS_VALID=1). Both are started by the test and stopped at its end."""

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import free_port, parse_metrics, wait_for

__all__ = ["Caddy", "Pebble", "caddy", "pebble", "proxy_env", "have_caddy", "have_pebble",
           "Nginx", "nginx", "nginx_env", "have_nginx", "proxy_serves", "proxy_repairs",
           "ReleaseWatch"]

have_caddy = shutil.which("caddy") is not None
have_pebble = shutil.which("pebble") is not None


class Caddy:
    def __init__(self, root, unix=False):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.unix = self.root / "admin.sock" if unix else None
        self.admin_port = free_port()
        self.http_port = free_port()
        self.https_port = free_port()
        self.proc = None
        self.log_path = self.root / "caddy.log"

    @property
    def admin(self):
        """SLIPWAY_CADDY_ADMIN for this Caddy."""
        return f"unix://{self.unix}" if self.unix else f"http://127.0.0.1:{self.admin_port}"

    @property
    def admin_listen(self):
        return f"unix/{self.unix}" if self.unix else f"127.0.0.1:{self.admin_port}"

    def start(self):
        """Starts Caddy with nothing but its admin API: everything else is Slipway's."""
        cfg = self.root / "caddy.json"
        cfg.write_text(json.dumps({"admin": {"listen": self.admin_listen}}))
        env = dict(os.environ, HOME=str(self.root), XDG_DATA_HOME=str(self.root / "data"),
                   XDG_CONFIG_HOME=str(self.root / "config"))
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(["caddy", "run", "--config", str(cfg)], env=env,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=self.root)
        wait_for(lambda: self.config() is not None or None, timeout=20,
                 message="Caddy's admin API")
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self._log.close()
        self.proc = None

    def restart(self):
        """A Caddy started again from its file: its routes are gone (no --resume)."""
        self.stop()
        return self.start()

    def config(self):
        """Caddy's whole config (None when it is empty), or raises when it does not answer."""
        if self.unix:
            out = subprocess.run(["curl", "-sf", "--max-time", "5", "--unix-socket",
                                  str(self.unix), "-H", "Host;", "http://localhost/config/"],
                                 capture_output=True, text=True, check=True).stdout
            return json.loads(out)
        r = requests.get(self.admin + "/config/", timeout=5)
        r.raise_for_status()
        return r.json()

    def routes(self):
        cfg = self.config() or {}
        srv = cfg.get("apps", {}).get("http", {}).get("servers", {}).get("slipway", {})
        return srv.get("routes", [])

    def route_ids(self):
        return [r.get("@id") for r in self.routes()]

    def get(self, host, path="/", timeout=5, **kw):
        """A request at Caddy's HTTP listener for host."""
        return requests.get(f"http://127.0.0.1:{self.http_port}{path}",
                            headers={"Host": host}, timeout=timeout, **kw)

    def log_tail(self, n=40):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


class Pebble:
    """Pebble on loopback with its own listener certificate (which Caddy trusts for the ACME
    API); issued certificates chain to the root at its management port's /roots/0."""

    def __init__(self, root, http_port, tls_port, always_valid=True, dnsserver=None):
        self.always_valid = always_valid
        self.dnsserver = dnsserver  # where Pebble looks names up when it validates
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.mgmt_port = free_port()
        self.http_port = http_port
        self.tls_port = tls_port
        self.proc = None
        self.cert = self.root / "pebble.pem"
        self.key = self.root / "pebble.key"

    @property
    def directory(self):
        return f"https://127.0.0.1:{self.port}/dir"

    def start(self):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj",
                        "/CN=pebble", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                        "-keyout", str(self.key), "-out", str(self.cert)],
                       check=True, capture_output=True)
        cfg = self.root / "pebble.json"
        cfg.write_text(json.dumps({"pebble": {
            "listenAddress": f"127.0.0.1:{self.port}",
            "managementListenAddress": f"127.0.0.1:{self.mgmt_port}",
            "certificate": str(self.cert), "privateKey": str(self.key),
            "httpPort": self.http_port, "tlsPort": self.tls_port,
            "ocspResponderURL": "", "externalAccountBindingRequired": False}}))
        env = dict(os.environ, PEBBLE_VA_ALWAYS_VALID="1" if self.always_valid else "0",
                   PEBBLE_VA_NOSLEEP="1", PEBBLE_WFE_NONCEREJECT="0", PEBBLE_AUTHZREUSE="100")
        self._log = open(self.root / "pebble.log", "ab")
        argv = ["pebble", "-config", str(cfg)]
        if self.dnsserver:
            argv += ["-dnsserver", self.dnsserver]
        self.proc = subprocess.Popen(argv, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_for(lambda: requests.get(self.directory, verify=str(self.cert), timeout=2).ok,
                 timeout=20, message="Pebble's directory")
        return self

    def root_pem(self, path):
        """Writes the root that issued certificates chain to into path."""
        r = requests.get(f"https://127.0.0.1:{self.mgmt_port}/roots/0", verify=str(self.cert),
                         timeout=5)
        r.raise_for_status()
        Path(path).write_text(r.text)
        return path

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        if self.proc:
            self._log.close()
        self.proc = None


@pytest.fixture
def caddy(tmp_path):
    if not have_caddy:
        pytest.fail("caddy is not installed (contrib/test.sh installs it)")
    c = Caddy(tmp_path / "caddy").start()
    yield c
    c.stop()


@pytest.fixture
def pebble(tmp_path, caddy):
    if not have_pebble:
        pytest.fail("pebble is not installed (contrib/test.sh installs it)")
    p = Pebble(tmp_path / "pebble", caddy.http_port, caddy.https_port).start()
    yield p
    p.stop()


def proxy_env(caddy, https=False, **extra):
    """The daemon settings that drive caddy; the reconciler and drain are quick for tests."""
    env = {
        "SLIPWAY_PROXY": "caddy",
        "SLIPWAY_CADDY_ADMIN": caddy.admin,
        "SLIPWAY_PROXY_HTTP": f"127.0.0.1:{caddy.http_port}",
        "SLIPWAY_PROXY_HTTPS": f"127.0.0.1:{caddy.https_port}" if https else "",
        "SLIPWAY_PROXY_DNS": f"127.0.0.1:{free_port()}",
        "SLIPWAY_PROXY_RECONCILE_MS": "500",
        "SLIPWAY_PROXY_REFRESH_MS": "50",
        "SLIPWAY_DRAIN_MS": "300",
    }
    env.update({k: str(v) for k, v in extra.items()})
    return env


# ---- nginx (SLIPWAY_PROXY=nginx) ----

have_nginx = shutil.which("nginx") is not None or os.path.exists("/usr/sbin/nginx")


class Nginx:
    """A private nginx: its own main config, pid file, logs and temp paths under root, an http
    block that includes the file Slipway renders, and (through that file) only free loopback
    ports. The master runs as root, as a packaged nginx does; workers as root too, so they
    can reach the temp paths under the test's directory."""

    def __init__(self, root):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        for d in ("client", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.root / "temp" / d).mkdir(parents=True, exist_ok=True)
        self.http_port = free_port()
        self.conf = self.root / "nginx.conf"
        self.include = self.root / "conf.d" / "slipway.conf"
        self.include.parent.mkdir(exist_ok=True)
        self.pid_file = self.root / "nginx.pid"
        self.error_log = self.root / "error.log"
        self.binary = shutil.which("nginx") or "/usr/sbin/nginx"
        self.write_conf()

    def write_conf(self, extra_http=""):
        """The main config; extra_http lands inside the http block (a test breaks it there)."""
        t = self.root / "temp"
        self.conf.write_text(f"""
user root;
worker_processes 1;
daemon on;
pid {self.pid_file};
error_log {self.error_log} info;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {t}/client;
    proxy_temp_path {t}/proxy;
    fastcgi_temp_path {t}/fastcgi;
    uwsgi_temp_path {t}/uwsgi;
    scgi_temp_path {t}/scgi;
    {extra_http}
    include {self.include};
}}
""")

    def nginx(self, *args, check=True):
        return subprocess.run([self.binary, "-c", str(self.conf), *args], capture_output=True,
                              text=True, check=check, timeout=30)

    def start(self):
        """Starts nginx with a placeholder include: nothing listens until Slipway renders."""
        if not self.include.exists():
            self.include.write_text("# until slipwayd renders this\n")
        self.nginx()
        wait_for(lambda: self.pid() is not None, timeout=10, message="nginx's pid file")
        return self

    def pid(self):
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def reload(self):
        return self.nginx("-s", "reload", check=False)

    def stop(self):
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGQUIT)  # graceful, like nginx -s quit
        try:
            wait_for(lambda: self.pid() is None, timeout=10, message="nginx stopped")
        except AssertionError:
            os.kill(pid, signal.SIGKILL)

    def get(self, host, path="/", timeout=5, **kw):
        """A request at nginx's HTTP listener for host."""
        return requests.get(f"http://127.0.0.1:{self.http_port}{path}",
                            headers={"Host": host}, timeout=timeout, **kw)

    def log_tail(self, n=40):
        try:
            return "\n".join(self.error_log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


@pytest.fixture
def nginx(tmp_path):
    if not have_nginx:
        pytest.fail("nginx is not installed (contrib/test.sh installs it)")
    n = Nginx(tmp_path / "nginx").start()
    yield n
    n.stop()


def nginx_env(nginx, **extra):
    """The daemon settings that drive this nginx; the reconciler and drain are quick."""
    env = {
        "SLIPWAY_PROXY": "nginx",
        "SLIPWAY_NGINX": nginx.binary,
        "SLIPWAY_NGINX_CONF": str(nginx.conf),
        "SLIPWAY_NGINX_INCLUDE": str(nginx.include),
        "SLIPWAY_PROXY_HTTP": f"127.0.0.1:{nginx.http_port}",
        "SLIPWAY_PROXY_HTTPS": "",
        "SLIPWAY_PROXY_RECONCILE_MS": "500",
        "SLIPWAY_DRAIN_MS": "300",
    }
    env.update({k: str(v) for k, v in extra.items()})
    return env


def proxy_serves(proxy, host, want_body=None, want_release=None):
    """Whether proxy (a Caddy or an Nginx) answers host with 200, the body and the release."""
    try:
        r = proxy.get(host)
    except requests.RequestException:
        return False
    if r.status_code != 200:
        return False
    if want_body is not None and r.text.strip() != want_body:
        return False
    return want_release is None or r.headers.get("Slipway-Release") == want_release


def proxy_repairs(daemon):
    """slipway_proxy_repairs_total from the daemon's /metrics."""
    return sum(v for name, _, v in parse_metrics(daemon.get("/metrics").text)
               if name == "slipway_proxy_repairs_total")


class ReleaseWatch:
    """A client sending GETs to url with Host host, one after another, from a thread while
    releases switch: what failed, and (when, Slipway-Release) of what answered. As a context
    manager it runs for the with-block. session: e.g. one that retries a reset connection."""

    def __init__(self, url, host, session=None):
        self.url, self.host = url, host
        self.session = session or requests.Session()
        self.seen, self.failures = [], []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            try:
                r = self.session.get(self.url, headers={"Host": self.host}, timeout=5)
                if r.status_code != 200:
                    self.failures.append((r.status_code, r.text[:100]))
                else:
                    self.seen.append((time.monotonic(), r.headers.get("Slipway-Release")))
            except requests.RequestException as exc:
                self.failures.append(repr(exc))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(20)

    def latest_is(self, release):
        return bool(self.seen) and self.seen[-1][1] == release

    def check(self, successes, min_seen=20):
        """No request failed, and never an older release once a newer one reported success:
        an answer may come from the release that last succeeded before it, or from one about
        to succeed. successes: [(monotonic time of success, deployment id)], the first at 0."""
        assert not self.failures, self.failures[:5]
        assert len(self.seen) > min_seen, len(self.seen)
        for ts, rel in self.seen:
            current = [d for at, d in successes if at < ts][-1]
            allowed = {current} | {d for at, d in successes if at >= ts}
            assert rel in allowed, (ts, rel, current)
