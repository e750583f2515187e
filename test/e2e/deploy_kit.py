"""Helpers and fixtures for the deployment e2e tests (issue 5, DESIGN.md §5 and §7).

Import everything into a test module with `from deploy_kit import *`; that brings these
fixtures (and resources_kit's response_log, which fails the module if an env var value the
module stored shows up in any response body):

  deploy_env   dict: the environment every deployment test daemon gets (file:// repos,
               no rate limits, a range of free ports for app instances, short timeouts)
  ddaemon      a daemon started with deploy_env
  droot        its owner (a conftest Principal)
  dres         resources_kit.Res on that daemon (projects, apps, env vars, members)
  hello_repo   HelloRepo: a bare git repository holding contrib/examples/hello, committed
  stray_instances  autouse: after the daemons stop, kills (and warns about) any process
               still running in the test's build directories

Helpers: HelloRepo, hello_app (an app of the example, deployable as is), Deployments (deploy,
get, wait_terminal with the status history it saw, logs), fetch (GET on an app instance),
refused (nothing listens on an endpoint), procs_matching / wait_gone (processes whose
command line holds a string), parse_ts, free_port_range, make_deploy_env.
"""

import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
import warnings
from datetime import datetime
from pathlib import Path

import pytest
import requests

from conftest import API, REPO, error_of, wait_for
from resources_kit import SECRET_VALUES, Res, assert_invalid, response_log, secret_value, uid

__all__ = [
    "API", "DEP_KEYS", "HELLO_DIR", "TERMINAL", "STAGE_ORDER", "STATUS_ORDER", "Deployments",
    "HelloRepo", "HoldListener", "Res", "SECRET_VALUES", "assert_invalid", "deploy_env",
    "ddaemon", "dres",
    "droot", "error_of", "fetch", "free_port_range", "hello_app", "hello_repo",
    "make_deploy_env", "parse_ts", "procs_matching", "procs_under", "refused", "response_log",
    "secret_value", "stray_instances", "uid", "wait_for", "wait_gone",
]

HELLO_DIR = REPO / "contrib" / "examples" / "hello"
HELLO_FILES = ("build.sh", "server.py", "README.md")

TERMINAL = ("success", "failed", "cancelled")
STATUS_ORDER = ("pending", "building", "deploying", "success")
STAGE_ORDER = ("queued", "cloning_repo", "building_image", "starting_new", "health_check",
               "switching_traffic", "stopping_old", "completed")

DEP_KEYS = {"id", "app_id", "project_id", "deployment_number", "status", "stage", "progress",
            "ref", "commit_sha", "commit_hash", "commit_message", "error_message",
            "rolled_back_from", "is_active", "node_id", "created_at", "started_at",
            "finished_at", "duration", "queue_position"}

# The build command the tests use: the example's build with the committed VERSION file as
# the version, so each commit answers with a version the test chose.
BUILD = 'HELLO_VERSION="$(cat VERSION)" sh build.sh'
START = "exec python3 server.py"


# --------------------------------------------------------------------------- ports


def free_port_range(n=24, host="127.0.0.1", tries=200):
    """(lo, hi): n consecutive ports that are all free now, picked at random so parallel
    runs rarely collide."""
    for _ in range(tries):
        lo = random.randrange(20000, 60000 - n)
        ok = True
        for p in range(lo, lo + n):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind((host, p))
                except OSError:
                    ok = False
                    break
        if ok:
            return lo, lo + n - 1
    raise RuntimeError(f"no {n} consecutive free ports found")


def make_deploy_env(**extra):
    lo, hi = free_port_range()
    env = {
        "SLIPWAY_ALLOW_FILE_REPOS": "true",
        "SLIPWAY_RATE_LIMIT": "off",
        "SLIPWAY_PORT_RANGE": f"{lo}-{hi}",
        "SLIPWAY_STOP_GRACE_MS": "2000",
    }
    env.update({k: str(v) for k, v in extra.items()})
    return env


# --------------------------------------------------------------------------- git


class HelloRepo:
    """A bare repository (the app's repo_url) fed from a work clone with the git CLI."""

    def __init__(self, root, branch="main", version="v1"):
        self.root = Path(root)
        self.branch = branch
        self.bare = self.root / "hello.git"
        self.work = self.root / "hello-work"
        self.home = self.root / "git-home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "Slipway Test",
            "GIT_AUTHOR_EMAIL": "test@example.com",
            "GIT_COMMITTER_NAME": "Slipway Test",
            "GIT_COMMITTER_EMAIL": "test@example.com",
            "LC_ALL": "C",
        }
        self.git("init", "-q", "--bare", str(self.bare), cwd=self.root)
        self.git("symbolic-ref", "HEAD", f"refs/heads/{branch}", cwd=self.bare)
        self.git("init", "-q", str(self.work), cwd=self.root)
        self.git("checkout", "-q", "-b", branch)
        self.git("remote", "add", "origin", str(self.bare))
        for name in HELLO_FILES:
            shutil.copy(HELLO_DIR / name, self.work / name)
        self.commit({"VERSION": version + "\n"}, f"hello {version}")

    @property
    def url(self):
        return "file://" + str(self.bare)

    def git(self, *args, cwd=None):
        r = subprocess.run(["git", *args], cwd=cwd or self.work, env=self.env,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"git {' '.join(args)}: {r.stderr}"
        return r.stdout.strip()

    def commit(self, files=None, message="change", branch=None):
        """Writes files ({path: text}) in the work tree, commits, pushes; returns the sha."""
        branch = branch or self.branch
        if branch != self.git("symbolic-ref", "--short", "HEAD"):
            exists = self.git("branch", "--list", branch)
            self.git("checkout", "-q", *(() if exists else ("-b",)), branch)
        for path, text in (files or {}).items():
            p = self.work / path
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        self.git("push", "-q", "origin", f"HEAD:refs/heads/{branch}")
        sha = self.git("rev-parse", "HEAD")
        if branch != self.branch:
            self.git("checkout", "-q", self.branch)
        return sha

    def version(self, version, message=None):
        """A commit that changes the version the app answers with; returns the sha."""
        return self.commit({"VERSION": version + "\n"}, message or f"hello {version}")

    def head(self, branch=None):
        return self.git("rev-parse", f"refs/heads/{branch or self.branch}", cwd=self.bare)


# --------------------------------------------------------------------------- fixtures


def procs_under(root):
    """[(pid, cmdline)] of live processes whose working directory is under root."""
    out = []
    root = str(root)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
            raw = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if cwd.startswith(root + "/"):
            out.append((int(entry), raw.replace(b"\0", b" ").decode(errors="replace")))
    return out


@pytest.fixture(autouse=True)
def stray_instances(tmp_path):
    """Autouse, so it is torn down after the slipwayd fixture has stopped the daemons: any
    build or app process still running in this test's build directories is killed, so no
    test leaves servers behind, and reported as a warning (what a stopped slipwayd leaves
    running is not in the contract)."""
    yield
    left = procs_under(tmp_path)
    for pid, _ in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if left:
        warnings.warn(f"processes left running after slipwayd stopped: {left}")


@pytest.fixture
def deploy_env():
    return make_deploy_env()


@pytest.fixture
def ddaemon(auth, deploy_env):
    return auth.daemon(env=deploy_env)


@pytest.fixture
def droot(auth, ddaemon):
    return auth.setup_owner(ddaemon)


@pytest.fixture
def dres(auth, ddaemon):
    return Res(auth, ddaemon)


@pytest.fixture
def hello_repo(tmp_path):
    return HelloRepo(tmp_path / f"repo-{uuid.uuid4().hex[:6]}")


def hello_app(res, who, repo, env_id=None, **fields):
    """An app of the hello example (in a fresh project unless env_id is given)."""
    if env_id is None:
        p = res.project(who)
        env_id = res.production(who, p["id"])["id"]
    body = {"repo_url": repo.url, "branch": repo.branch, "build_command": BUILD,
            "start_command": START, "health_check_path": "/health"}
    body.update(fields)
    return res.app(who, env_id, **body)


# --------------------------------------------------------------------------- holding a build


class HoldListener:
    """A loopback listener that accepts (and drops) connections until closed."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.close()

    def build_wait(self):
        """Shell that waits while the listener accepts (a build's /tmp is its own, so a
        file the test holds cannot be seen from there)."""
        return (f"while python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", "
                f"{self.port}), 1)' 2>/dev/null; do sleep 0.1; done")

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(timeout=5)


# --------------------------------------------------------------------------- deployments


def parse_ts(value):
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class Deployments:
    """The deployment API as one principal sees it."""

    def __init__(self, who):
        self.who = who

    def trigger(self, app_id, expect=202, **body):
        r = self.who.post(f"apps/{app_id}/deployments", json=body if body else None)
        assert r.status_code == expect, f"POST deployments: {r.status_code} {r.text}"
        return r.json()

    def get(self, dep_id):
        r = self.who.get(f"deployments/{dep_id}")
        assert r.status_code == 200, f"GET deployments/{dep_id}: {r.status_code} {r.text}"
        return r.json()

    def cancel(self, dep_id):
        return self.who.post(f"deployments/{dep_id}/cancel")

    def wait_terminal(self, dep_id, timeout=60.0, interval=0.05):
        """Polls until the deployment ends; returns (deployment, history) where history is
        every distinct (status, stage) seen, in order."""
        deadline = time.monotonic() + timeout
        history = []
        while True:
            dep = self.get(dep_id)
            seen = (dep["status"], dep["stage"])
            if not history or history[-1] != seen:
                history.append(seen)
            if dep["status"] in TERMINAL:
                return dep, history
            if time.monotonic() >= deadline:
                raise AssertionError(f"deployment {dep_id} not ended after {timeout}s: "
                                     f"{dep} (seen {history}); last log lines: "
                                     f"{self.tail(dep_id)}")
            time.sleep(interval)

    def wait_status(self, dep_id, statuses, timeout=30.0):
        return wait_for(lambda: (d := self.get(dep_id))["status"] in statuses and d,
                        timeout=timeout, message=f"deployment {dep_id} status in {statuses}")

    def deploy(self, app_id, timeout=60.0, **body):
        """Triggers and waits; returns (deployment, history)."""
        dep = self.trigger(app_id, **body)
        return self.wait_terminal(dep["id"], timeout=timeout)

    def logs(self, dep_id, expect=200, **params):
        r = self.who.get(f"deployments/{dep_id}/logs", params=params)
        assert r.status_code == expect, f"GET logs {params}: {r.status_code} {r.text}"
        return r.json()

    def tail(self, dep_id, n=20):
        """The last n stored lines as text, for failure messages."""
        try:
            r = self.who.get(f"deployments/{dep_id}/logs", params={"lines": n})
            return [f"{ln['seq']} {ln['stream']}: {ln['line']}" for ln in r.json()["data"]]
        except Exception as exc:  # noqa: BLE001 - only decorates a failure
            return f"(logs unavailable: {exc!r})"

    def all_logs(self, dep_id, page=1000):
        """Every stored line, paging with since_seq from the start."""
        out = []
        since = 0
        for _ in range(10000):
            body = self.logs(dep_id, since_seq=since, lines=page)
            if not body["data"]:
                return out
            out.extend(body["data"])
            since = body["data"][-1]["seq"]
        raise AssertionError("logs never ended")


# --------------------------------------------------------------------------- instances


def fetch(endpoint, path="/", timeout=2.0):
    """(status, text) of GET http://<endpoint><path>."""
    r = requests.get(f"http://{endpoint}{path}", timeout=timeout)
    return r.status_code, r.text.strip()


def refused(endpoint):
    """True when nothing accepts connections on endpoint (host:port)."""
    host, _, port = endpoint.rpartition(":")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect((host, int(port)))
        except (ConnectionRefusedError, socket.timeout, OSError):
            return True
    return False


def procs_matching(needle):
    """[(pid, cmdline)] of live processes whose command line contains needle."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            raw = Path(f"/proc/{entry}/cmdline").read_bytes()
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # a zombie has been killed already; it only waits for its parent to reap it
        if stat.rpartition(")")[2].split()[0] == "Z":
            continue
        cmd = raw.replace(b"\0", b" ").decode(errors="replace").strip()
        if needle in cmd:
            out.append((int(entry), cmd))
    return out


def wait_gone(needle, timeout=5.0):
    """Waits until no live process has needle in its command line."""
    return wait_for(lambda: not procs_matching(needle), timeout=timeout,
                    message=f"no process matching {needle!r} (left: {procs_matching(needle)})")
