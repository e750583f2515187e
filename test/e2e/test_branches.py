"""GET apps/:id/branches (issue 16, section 2): the branches of an app's repository and their
head commits, read from the git host with the app's credentials and the deploy fetch's rules.

Repositories are real: bare repositories fed with the git CLI (file://), and a real OpenSSH
sshd on loopback for the deploy-key case (test_deploy_keys' Sshd). A stalled host is a
loopback socket that accepts and never answers (test_git_fetch_safety's StalledServer).
"""

import os
import threading
import time
from pathlib import Path

import pytest

from deploy_kit import *  # noqa: F401,F403 - fixtures and helpers
from test_deploy_keys import SSHD, Sshd, assert_no_private_key, fingerprint, open_sealed
from test_git_fetch_safety import StalledServer, closed_port

TIMEOUT_MS = 1500


def branches_env(**extra):
    """A deployment daemon's env, LeakSanitizer told about libgit2 1.5's own small leaks in an
    ssh connect (lsan_libgit2_ssh.supp; full stacks to see them by)."""
    supp = Path(__file__).with_name("lsan_libgit2_ssh.supp")
    asan = os.environ.get("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:halt_on_error=1")
    return make_deploy_env(LSAN_OPTIONS=f"suppressions={supp}:print_suppressions=0",
                           ASAN_OPTIONS=f"{asan}:fast_unwind_on_malloc=0", **extra)


@pytest.fixture
def deploy_env():
    """No cache, so what a test pushes is what the next request lists; a short deadline."""
    return branches_env(SLIPWAY_BRANCHES_CACHE_MS=0, SLIPWAY_BRANCHES_TIMEOUT_MS=TIMEOUT_MS)


@pytest.fixture
def stalled():
    s = StalledServer()
    yield s
    s.close()


def branches(who, app_id, expect=200, **params):
    r = who.get(f"apps/{app_id}/branches", params=params)
    assert r.status_code == expect, r.text
    return r.json()


def listed(body):
    return [(b["name"], b["commit"], b["default"]) for b in body["data"]]


def repo_app(res, who, url, **fields):
    p = res.project(who)
    env = res.production(who, p["id"])
    return res.app(who, env["id"], repo_url=url, **fields)


def test_branches_with_their_head_commits(droot, dres, hello_repo):
    app = hello_app(dres, droot, hello_repo)
    body = branches(droot, app["id"])
    assert listed(body) == [("main", hello_repo.head(), True)], body
    assert body["default_branch"] == "main" and body["app_branch"] == "main", body
    assert body["truncated"] is False and body["fetched_at"], body
    assert body["pagination"] == {"page": 1, "limit": 20, "total": 1, "pages": 1,
                                  "has_next": False, "has_prev": False}, body

    # New branches pushed, and main moved on: each listed with its own head, sorted by name.
    heads = {"main": hello_repo.version("v2")}
    for name in ("zeta", "feature/login", "alpha", "Upper"):
        heads[name] = hello_repo.commit({"BRANCH": name}, f"on {name}", branch=name)
    assert len(set(heads.values())) == len(heads)
    want = [(n, heads[n], n == "main") for n in sorted(heads)]
    assert listed(branches(droot, app["id"], limit=100)) == want

    # The list envelope: pages, offset, order.
    page1 = branches(droot, app["id"], limit=2)
    page3 = branches(droot, app["id"], limit=2, page=3)
    assert listed(page1) == want[:2] and listed(page3) == want[4:], (page1, page3)
    assert page1["pagination"] == {"page": 1, "limit": 2, "total": 5, "pages": 3,
                                   "has_next": True, "has_prev": False}, page1
    assert page3["pagination"]["has_next"] is False and page3["pagination"]["has_prev"]
    assert listed(branches(droot, app["id"], limit=2, offset=2)) == want[2:4]
    assert listed(branches(droot, app["id"], sort="name:desc")) == want[::-1]
    for bad in ({"sort": "commit"}, {"limit": 101}, {"page": 0}, {"page": 2, "offset": 2}):
        error_of(droot.get(f"apps/{app['id']}/branches", params=bad), 400, "VALIDATION_ERROR")

    # The remote's HEAD is its default, whatever branch the app deploys.
    hello_repo.git("symbolic-ref", "HEAD", "refs/heads/zeta", cwd=hello_repo.bare)
    r = droot.patch(f"apps/{app['id']}", json={"branch": "alpha"})
    assert r.status_code == 200, r.text
    body = branches(droot, app["id"], limit=100)
    assert body["default_branch"] == "zeta" and body["app_branch"] == "alpha", body
    assert [b["name"] for b in body["data"] if b["default"]] == ["zeta"], body

    # A branch deleted on the remote is gone from the next listing.
    hello_repo.git("branch", "-D", "Upper", cwd=hello_repo.bare)
    assert "Upper" not in [b["name"] for b in branches(droot, app["id"])["data"]]


def test_apps_without_a_repository_and_other_tenants(auth, droot, dres, hello_repo):
    p = dres.project(droot)
    env = dres.production(droot, p["id"])
    image = dres.app(droot, env["id"], runtime="container", image="registry.test/web:1")
    err = error_of(droot.get(f"apps/{image['id']}/branches"), 409, "RESOURCE_CONFLICT")
    assert "runs an image" in err["message"], err
    bare = dres.app(droot, env["id"])
    err = error_of(droot.get(f"apps/{bare['id']}/branches"), 409, "RESOURCE_CONFLICT")
    assert "no repo_url" in err["message"], err

    app = hello_app(dres, droot, hello_repo, env_id=env["id"])
    stranger = dres.user(droot)
    error_of(stranger.get(f"apps/{app['id']}/branches"), 404, "RESOURCE_NOT_FOUND")
    viewer = dres.user(droot)
    dres.member(droot, p["id"], viewer, "viewer")
    assert listed(branches(viewer, app["id"])) == [("main", hello_repo.head(), True)]
    error_of(droot.get("apps/00000000-0000-4000-8000-000000000000/branches"), 404,
             "RESOURCE_NOT_FOUND")


def test_failures_are_told_apart_and_name_no_secret(auth, droot, dres, tmp_path):
    missing = repo_app(dres, droot, "file://" + str(tmp_path / "nothing-here.git"))
    err = error_of(droot.get(f"apps/{missing['id']}/branches"), 502, "GIT_REPOSITORY_NOT_FOUND")
    assert err["message"].startswith("could not list the repository's branches:"), err

    token = "ghp_" + uid("secret").replace("-", "")
    auth.remember(token)
    port = closed_port()
    down = repo_app(dres, droot, f"https://127.0.0.1:{port}/org/app.git", git_token=token)
    err = error_of(droot.get(f"apps/{down['id']}/branches"), 502, "GIT_UNREACHABLE")
    assert "cannot connect to the repository's host" in err["message"], err
    assert token not in str(err), err


def test_address_rule_of_fetches_applies(auth):
    d = auth.daemon(env=branches_env(SLIPWAY_ALLOW_FILE_REPOS="false",
                                        SLIPWAY_BRANCHES_CACHE_MS=0))
    root, res = auth.setup_owner(d), Res(auth, d)
    app = repo_app(res, root, f"https://127.0.0.1:{closed_port()}/org/app.git")
    err = error_of(root.get(f"apps/{app['id']}/branches"), 502, "GIT_ADDRESS_REFUSED")
    assert "loopback address, which fetches may not reach" in err["message"], err


def test_a_stalled_host_times_out_without_holding_the_loop(droot, dres, stalled):
    app = repo_app(dres, droot, stalled.url())
    answers = []

    def ask():
        t0 = time.monotonic()
        r = droot.get(f"apps/{app['id']}/branches", timeout=30)
        answers.append((r, time.monotonic() - t0))

    # Two clients at once: one listing, one connection to the host.
    threads = [threading.Thread(target=ask) for _ in range(2)]
    for t in threads:
        t.start()
    wait_for(lambda: stalled.conns, timeout=10, message="the listing to connect")
    t0 = time.monotonic()
    r = droot.get("auth/me", timeout=5)
    assert r.status_code == 200 and time.monotonic() - t0 < 1.0, "the loop was held"
    for t in threads:
        t.join(timeout=30)
    assert len(answers) == 2
    for r, took in answers:
        err = error_of(r, 504, "GIT_TIMEOUT")
        assert "did not answer within 1.5 s" in err["message"], err
        assert took < TIMEOUT_MS / 1000 + 3, f"answered after {took:.2f}s"
    assert len(stalled.conns) == 1, "the two requests did not share one listing"


def test_answers_are_cached_for_a_while(auth, hello_repo):
    d = auth.daemon(env=branches_env(SLIPWAY_BRANCHES_CACHE_MS=4000))
    root, res = auth.setup_owner(d), Res(auth, d)
    app = hello_app(res, root, hello_repo)
    first = branches(root, app["id"])
    old = hello_repo.head()
    new = hello_repo.version("v2")
    again = branches(root, app["id"])
    # Within the cache's time the host is not asked again: the same reading, the old head.
    assert again["fetched_at"] == first["fetched_at"], (first, again)
    assert listed(again) == [("main", old, True)], again
    fresh = wait_for(lambda: (b := branches(root, app["id"]))["fetched_at"] != first["fetched_at"]
                     and b, timeout=15, message="the cached listing to expire")
    assert listed(fresh) == [("main", new, True)], fresh
    # Another app on the same repository has its own credentials and its own reading.
    other = hello_app(res, root, hello_repo)
    assert listed(branches(root, other["id"])) == [("main", new, True)]


@pytest.mark.skipif(not os.path.exists(SSHD) or os.geteuid() != 0,
                    reason="needs openssh-server (sshd) and root to run sshd")
def test_private_repository_over_ssh_with_the_deploy_key(auth, hello_repo, tmp_path,
                                                         response_log):
    # An ssh handshake on a loaded machine can outlast the other tests' 1.5 s deadline (CI
    # saw it): the deadline is not what this test is about.
    ddaemon = auth.daemon(env=branches_env(SLIPWAY_BRANCHES_CACHE_MS=0,
                                           SLIPWAY_BRANCHES_TIMEOUT_MS=20000))
    droot, dres = auth.setup_owner(ddaemon), Res(auth, ddaemon)
    start = len(response_log)
    sshd = Sshd(tmp_path / "sshd")
    try:
        host_pub = sshd.host_key("host_a")
        sshd.start("host_a")
        app = hello_app(dres, droot, hello_repo, repo_url=sshd.url(str(hello_repo.bare)))
        feature = hello_repo.commit({"F": "1"}, "feature", branch="feature")

        err = error_of(droot.get(f"apps/{app['id']}/branches"), 502, "GIT_AUTH_FAILED")
        assert "the app has no deploy key" in err["message"], err

        key = droot.post(f"apps/{app['id']}/deploy-key").json()
        err = error_of(droot.get(f"apps/{app['id']}/branches"), 502, "GIT_AUTH_FAILED")
        assert "the server refused the app's deploy key" in err["message"], err

        sshd.authorize(key["public_key"])
        body = branches(droot, app["id"])
        assert listed(body) == [("feature", feature, False), ("main", hello_repo.head(), True)]
        # The host key was trusted on first use, as a deployment's fetch would have.
        hosts = droot.get(f"apps/{app['id']}/known-hosts").json()["known_hosts"]
        assert [(h["host"], h["sha256"], h["source"]) for h in hosts] == [
            (f"127.0.0.1:{sshd.port}", fingerprint(host_pub, tmp_path), "first_use")], hosts
        assert not list(Path(ddaemon.env["SLIPWAY_DATA_DIR"]).glob(".slipway-key-*"))

        # Another host key on that host and port: refused, naming both.
        sshd.stop()
        sshd.host_key("host_b")
        sshd.start("host_b")
        err = error_of(droot.get(f"apps/{app['id']}/branches"), 502, "GIT_HOST_KEY_MISMATCH")
        assert f"host key for 127.0.0.1:{sshd.port} changed" in err["message"], err
    finally:
        sshd.stop()
    sealed = dres.db.execute("SELECT private_sealed FROM app_deploy_keys WHERE app_id = %s",
                             (app["id"],)).fetchone()[0]
    private = open_sealed(ddaemon.env["SLIPWAY_DATA_DIR"], sealed, f"app_deploy_key:{app['id']}")
    assert_no_private_key(response_log[start:], auth, private)
