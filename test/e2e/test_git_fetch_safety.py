"""Fetches a git server cannot hold, and addresses a repository URL cannot reach (issue 12,
items 3 and 6, and the port check).

A stalled server here is a socket on loopback that accepts and never says a word: an https
fetch then waits in the TLS handshake. It must end with the clone timeout or a cancel within a
fraction of a second, and hold no threadpool thread that password hashing (logins) needs.
Without SLIPWAY_ALLOW_FILE_REPOS a fetch refuses loopback, link-local and (without
SLIPWAY_GIT_ALLOW_PRIVATE) private addresses, before anything is sent, with a message that is
the same whether or not something listens there.
"""

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from deploy_kit import *  # noqa: F401,F403 - fixtures and helpers

CLONE_TIMEOUT_MS = 2000
POLICY = "which fetches may not reach"


class StalledServer:
    """Accepts TCP connections on 127.0.0.1 and never answers; counts them."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def url(self, scheme="https", name="app"):
        user = "git@" if scheme == "ssh" else ""
        return f"{scheme}://{user}127.0.0.1:{self.port}/org/{name}.git"

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes accept()
        except OSError:
            pass
        self.sock.close()
        self.thread.join(timeout=5)
        for c in self.conns:
            c.close()


@pytest.fixture
def stalled():
    s = StalledServer()
    yield s
    s.close()


def closed_port():
    """A loopback port nothing listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def daemon_with(auth, **env):
    """A daemon of its own; LeakSanitizer told about libgit2 1.5's own small leaks in an ssh
    connect (lsan_libgit2_ssh.supp, full stacks to see them by), harmless without one."""
    supp = Path(__file__).with_name("lsan_libgit2_ssh.supp")
    asan = os.environ.get("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:halt_on_error=1")
    env.setdefault("LSAN_OPTIONS", f"suppressions={supp}:print_suppressions=0")
    env.setdefault("ASAN_OPTIONS", f"{asan}:fast_unwind_on_malloc=0")
    d = auth.daemon(env=make_deploy_env(**env))
    return auth.setup_owner(d), Res(auth, d), d


def repo_app(res, who, url):
    p = res.project(who)
    env = res.production(who, p["id"])
    return res.app(who, env["id"], repo_url=url, build_command="true", start_command="true")


def fetch_error(deps, who, res, url, timeout=30):
    app = repo_app(res, who, url)
    dep, history = deps.deploy(app["id"], timeout=timeout)
    assert dep["status"] == "failed", (dep, history)
    return dep["error_message"]


# --------------------------------------------------------------------------- stalled servers


def test_stalled_clone_ends_with_the_timeout(auth, stalled):
    root, res, _ = daemon_with(auth, SLIPWAY_CLONE_TIMEOUT_MS=CLONE_TIMEOUT_MS)
    deps = Deployments(root)
    app = repo_app(res, root, stalled.url())
    dep = deps.trigger(app["id"])
    wait_for(lambda: stalled.conns, timeout=10, message="the fetch to connect")
    t0 = time.monotonic()
    done, history = deps.wait_terminal(dep["id"], timeout=30)
    waited = time.monotonic() - t0
    assert done["status"] == "failed", (done, history)
    assert done["error_message"] == "clone timed out after 2 s", done
    started, finished = parse_ts(done["started_at"]), parse_ts(done["finished_at"])
    took = (finished - started).total_seconds()
    assert took < CLONE_TIMEOUT_MS / 1000 + 3, f"the clone ended after {took:.2f}s"
    assert waited < CLONE_TIMEOUT_MS / 1000 + 3, f"failed {waited:.2f}s after connecting"


@pytest.mark.parametrize("scheme", ["https", "ssh"])
def test_cancel_ends_a_stalled_clone(auth, stalled, scheme):
    root, res, _ = daemon_with(auth, SLIPWAY_CLONE_TIMEOUT_MS=600000)
    deps = Deployments(root)
    app = repo_app(res, root, stalled.url(scheme))
    dep = deps.trigger(app["id"])
    wait_for(lambda: stalled.conns, timeout=10, message="the fetch to connect")
    t0 = time.monotonic()
    r = deps.cancel(dep["id"])
    assert r.status_code == 202, r.text
    done, history = deps.wait_terminal(dep["id"], timeout=10)
    elapsed = time.monotonic() - t0
    assert done["status"] == "cancelled", (done, history)
    assert elapsed < 2.0, f"cancelled after {elapsed:.2f}s"


def test_logins_answer_while_stalled_clones_fill_the_worker(auth, stalled):
    """Both deployment slots stalled, and the threadpool no bigger than the slots: a fetch on
    the threadpool would leave argon2 no thread at all."""
    root, res, d = daemon_with(auth, SLIPWAY_CLONE_TIMEOUT_MS=600000,
                               SLIPWAY_WORKER_CONCURRENCY=2, UV_THREADPOOL_SIZE=2)
    deps = Deployments(root)
    # Two repositories: fetches of one take turns on its mirror.
    ids = [deps.trigger(repo_app(res, root, stalled.url(name=f"app{i}"))["id"])["id"]
           for i in range(2)]
    wait_for(lambda: len(stalled.conns) >= 2, timeout=10, message="both fetches to connect")
    for dep_id in ids:
        assert deps.get(dep_id)["status"] == "building"

    for _ in range(3):
        t0 = time.monotonic()
        r = auth.login(d, root.email, root.password, timeout=10)
        elapsed = time.monotonic() - t0
        assert r.status_code == 200, r.text
        assert elapsed < 2.0, f"login took {elapsed:.2f}s"

    for dep_id in ids:
        assert deps.get(dep_id)["status"] == "building"  # still stalled: the test saw them so
        assert deps.cancel(dep_id).status_code == 202
    for dep_id in ids:
        done, history = deps.wait_terminal(dep_id, timeout=5)
        assert done["status"] == "cancelled", (done, history)


# --------------------------------------------------------------------------- addresses


def test_local_and_private_addresses_are_refused_alike(auth, stalled):
    root, res, _ = daemon_with(auth, SLIPWAY_ALLOW_FILE_REPOS="false",
                               SLIPWAY_CLONE_TIMEOUT_MS=CLONE_TIMEOUT_MS)
    deps = Deployments(root)
    shut = closed_port()

    # Something listens on one port and nothing on the other: the answers cannot tell.
    for scheme in ("https", "ssh"):
        listening = fetch_error(deps, root, res, stalled.url(scheme))
        closed = fetch_error(deps, root, res,
                             stalled.url(scheme).replace(f":{stalled.port}/", f":{shut}/"))
        assert listening == closed, (listening, closed)
        assert listening.startswith("clone failed:") and POLICY in listening, listening
        assert "loopback" in listening and str(stalled.port) not in listening, listening
    assert stalled.conns == [], "a refused fetch connected anyway"

    metadata = fetch_error(deps, root, res, "https://169.254.169.254/latest/meta-data.git")
    assert POLICY in metadata and "link-local" in metadata, metadata
    private = fetch_error(deps, root, res, "https://10.20.30.40/org/app.git")
    assert POLICY in private and "SLIPWAY_GIT_ALLOW_PRIVATE" in private, private
    named = fetch_error(deps, root, res, f"https://localhost:{stalled.port}/org/app.git")
    assert named == listening, (named, listening)
    assert stalled.conns == []


def test_private_addresses_with_the_setting(auth):
    root, res, _ = daemon_with(auth, SLIPWAY_ALLOW_FILE_REPOS="false",
                               SLIPWAY_GIT_ALLOW_PRIVATE="true",
                               SLIPWAY_CLONE_TIMEOUT_MS=CLONE_TIMEOUT_MS)
    deps = Deployments(root)
    # Unroutable or unanswered here: the fetch is tried, and fails on the network instead.
    private = fetch_error(deps, root, res, "https://10.255.255.1/org/app.git")
    assert POLICY not in private, private
    loopback = fetch_error(deps, root, res, f"https://127.0.0.1:{closed_port()}/org/app.git")
    assert POLICY in loopback and "loopback" in loopback, loopback


# --------------------------------------------------------------------------- ports


@pytest.mark.parametrize("url", [
    "https://git.example.com:99999/org/app.git",
    "https://git.example.com:-1/org/app.git",
    "https://git.example.com:0/org/app.git",
    "https://git.example.com:/org/app.git",
    "https://git.example.com:65536/org/app.git",
    "https://git.example.com:8x/org/app.git",
    "ssh://git@git.example.com:99999/org/app.git",
    "ssh://git@git.example.com:0/org/app.git",
    "https://[::1]:99999/org/app.git",
])
def test_repo_url_port_out_of_range(droot, dres, url):
    p = dres.project(droot)
    env = dres.production(droot, p["id"])
    r = droot.post("apps", json={"name": uid("app"), "environment_id": env["id"],
                                 "repo_url": url})
    err = assert_invalid(r, "repo_url")
    assert "port" in str(err), err
    app = dres.app(droot, env["id"])
    r = droot.patch(f"apps/{app['id']}", json={"repo_url": url})
    assert_invalid(r, "repo_url")


def test_repo_url_ports_in_range(droot, dres):
    p = dres.project(droot)
    env = dres.production(droot, p["id"])
    app = dres.app(droot, env["id"])
    for url in ("https://git.example.com:1/org/app.git",
                "https://git.example.com:65535/org/app.git",
                "ssh://git@git.example.com:2222/org/app.git",
                "https://[2001:db8::1]:8443/org/app.git"):
        r = droot.patch(f"apps/{app['id']}", json={"repo_url": url})
        assert r.status_code == 200 and r.json()["repo_url"] == url, r.text
