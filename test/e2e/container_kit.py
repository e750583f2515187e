"""Helpers and fixtures for the container runtime e2e tests (issue 15, DESIGN.md §12).

Podman here runs with a private configuration (host network, runc, no default ulimits) and a
private storage under the pytest run's base temp directory, shared by the xdist workers of
one run and by no one else. Images are made offline: a root filesystem of the static busybox
is `podman import`-ed once per run (under a file lock), and app repositories build FROM it.

  podman_store  session: PodmanStore (its env for slipwayd and the CLI, .run(...) the CLI)
  cenv          the env of a daemon that runs container apps (own node name, own ports)
  cdaemon, croot, cres   a daemon started with cenv, its owner, resources_kit.Res on it
  container_repo         a git repository holding a Dockerfile app (busybox httpd)
  registries    (with credentials, open, env): two loopback docker-registry servers and the
                registries.conf (env) that lets podman reach them over plain http
"""

import fcntl
import os
import secrets
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import requests

from conftest import free_port, wait_for
from deploy_kit import Deployments, HelloRepo, Res, make_deploy_env

__all__ = ["BASE_IMAGE", "PodmanStore", "Registry", "cdaemon", "cenv", "container_repo", "cres",
           "croot", "deployed_app", "dockerfile_app", "podman_store", "push_web_image", "registries",
           "DOCKERFILE"]

BASE_IMAGE = "localhost/slipway-test-base:1"
BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "httpd", "dd", "cat", "echo", "sleep", "wc", "ls", "true", "false")

# The app: serves /www; at start writes its runtime env var there; the build proves it got
# its build-time secret by storing only the secret's length.
DOCKERFILE = """FROM {base}
COPY VERSION /www/index.html
RUN --mount=type=secret,id=BUILD_TOKEN cat /run/secrets/BUILD_TOKEN | wc -c > /www/tokenlen
CMD ["/bin/sh", "-c", "echo \\"$GREETING\\" > /www/greeting; echo serving on $PORT; \\
exec httpd -f -vv -p $PORT -h /www"]
"""


class PodmanStore:
    def __init__(self, root):
        self.root = Path(root)
        self.conf = self.root / "containers.conf"
        self.storage = self.root / "storage.conf"

    @property
    def env(self):
        return {"CONTAINERS_CONF": str(self.conf), "CONTAINERS_STORAGE_CONF": str(self.storage)}

    def run(self, *args, check=True, timeout=120):
        env = dict(os.environ, **self.env)
        r = subprocess.run(["podman", *args], env=env, capture_output=True, text=True,
                           timeout=timeout)
        if check:
            assert r.returncode == 0, f"podman {' '.join(args)}: {r.stderr}"
        return r

    def containers(self, node):
        """[(id, running "true"/"false", app id)] of the containers of a node
        (SLIPWAY_NODE_NAME's worker 0)."""
        ids = self.run("ps", "-a", "-q", "--no-trunc", "--filter",
                       f"label=slipway.node={node}-0").stdout.split()
        if not ids:
            return []
        out = self.run("inspect", "--format",
                       '{{.Id}} {{.State.Running}} {{index .Config.Labels "slipway.app"}}', *ids,
                       check=False).stdout
        return [line.split() for line in out.splitlines() if line.strip()]

    def remove_node(self, node):
        ids = [c[0] for c in self.containers(node)]
        if ids:
            self.run("rm", "-f", "-t", "0", *ids, check=False)


def _make_base(store):
    rootfs = store.root / "rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "www").mkdir()
    (rootfs / "tmp").mkdir()
    shutil.copy(BUSYBOX, rootfs / "bin" / "busybox")
    for a in APPLETS:
        os.symlink("busybox", rootfs / "bin" / a)
    tar = store.root / "rootfs.tar"
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tar), "."], check=True)
    store.run("import", "--change", 'CMD ["/bin/sh"]', str(tar), BASE_IMAGE)


@pytest.fixture(scope="session")
def podman_store(tmp_path_factory):
    if not shutil.which("podman") or not Path(BUSYBOX).exists():
        pytest.fail("podman and busybox-static are needed (contrib/test.sh installs them)")
    # The base temp directory's parent is one per pytest run, shared by its xdist workers.
    root = tmp_path_factory.getbasetemp().parent / "podman"
    root.mkdir(exist_ok=True)
    store = PodmanStore(root)
    with open(root / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "ready").exists():
            store.conf.write_text('[containers]\ndefault_ulimits = []\nnetns = "host"\n'
                                  '[engine]\nruntime = "runc"\n')
            store.storage.write_text(f'[storage]\ndriver = "overlay"\n'
                                     f'graphroot = "{root}/graph"\nrunroot = "{root}/run"\n')
            _make_base(store)
            (root / "ready").write_text("ok\n")
    return store


@pytest.fixture
def cenv(podman_store):
    env = make_deploy_env(SLIPWAY_CONTAINER_CLI="podman", SLIPWAY_CONTAINER_NETWORK="host",
                          SLIPWAY_NODE_NAME=f"node-{uuid.uuid4().hex[:10]}",
SLIPWAY_HEALTH_TIMEOUT_MS="8000", SLIPWAY_DRAIN_MS="200",
                          # a killed node's app leases lapse soon: its relaunch waits for them
                          SLIPWAY_LEASE_TTL_MS="3000")
    env.update(podman_store.env)
    yield env
    podman_store.remove_node(env["SLIPWAY_NODE_NAME"])


@pytest.fixture
def cdaemon(auth, cenv):
    return auth.daemon(env=cenv)


@pytest.fixture
def croot(auth, cdaemon):
    return auth.setup_owner(cdaemon)


@pytest.fixture
def cres(auth, cdaemon):
    return Res(auth, cdaemon)


@pytest.fixture
def container_repo(tmp_path, podman_store):
    repo = HelloRepo(tmp_path / f"crepo-{uuid.uuid4().hex[:6]}")
    repo.commit({"Dockerfile": DOCKERFILE.format(base=BASE_IMAGE)}, "a Dockerfile")
    return repo


def deployed_app(res, who, repo, **fields):
    """(app, Deployments, its first deployment): a Dockerfile app with its BUILD_TOKEN,
    deployed successfully."""
    app = dockerfile_app(res, who, repo, **fields)
    res.set_env(who, app["id"], "BUILD_TOKEN", build_time=True, runtime=False)
    deps = Deployments(who)
    dep, _ = deps.deploy(app["id"], timeout=90)
    assert dep["status"] == "success", deps.tail(dep["id"], 40)
    return app, deps, dep


def dockerfile_app(res, who, repo, **fields):
    p = res.project(who)
    env_id = res.production(who, p["id"])["id"]
    body = {"repo_url": repo.url, "branch": repo.branch, "runtime": "container",
            "health_check_path": "/index.html"}
    body.update(fields)
    return res.app(who, env_id, **body)


# --------------------------------------------------------------------------- registries


class Registry:
    """Debian's docker-registry on a free loopback port, its storage in a temp directory,
    with htpasswd credentials (user, password) or open to anyone."""

    def __init__(self, root, port, auth):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.host = f"127.0.0.1:{port}"
        self.user = self.password = None
        cfg = ["version: 0.1", "log:", "  level: error", "storage:", "  filesystem:",
               f"    rootdirectory: {self.root}/data", "http:", f"  addr: {self.host}"]
        if auth:
            self.user = "deployer"
            self.password = secrets.token_hex(12)
            subprocess.run(["htpasswd", "-Bbc", str(self.root / "htpasswd"), self.user,
                            self.password], check=True, capture_output=True)
            cfg += ["auth:", "  htpasswd:", "    realm: slipway-test",
                    f"    path: {self.root}/htpasswd"]
        (self.root / "config.yml").write_text("\n".join(cfg) + "\n")
        self.log = open(self.root / "registry.log", "ab")
        self.proc = subprocess.Popen(["docker-registry", "serve", str(self.root / "config.yml")],
                                     stdout=self.log, stderr=subprocess.STDOUT)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"docker-registry exited: "
                                     f"{(self.root / 'registry.log').read_text()}")
            try:
                return requests.get(f"http://{self.host}/v2/", timeout=1).status_code in (200, 401)
            except requests.RequestException:
                return False

        wait_for(up, timeout=20, message="the registry to answer")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture
def registries(tmp_path, podman_store):
    """(with credentials, open), and a registries.conf that lets podman use both over plain
    http; its path is in podman_store-style env under CONTAINERS_REGISTRIES_CONF."""
    regs = []
    try:
        for auth in (True, False):
            regs.append(Registry(tmp_path / f"registry-{len(regs)}", free_port(), auth))
        conf = tmp_path / "registries.conf"
        conf.write_text("".join(f'[[registry]]\nlocation = "{r.host}"\ninsecure = true\n\n'
                                for r in regs))
        yield regs[0], regs[1], {"CONTAINERS_REGISTRIES_CONF": str(conf)}
    finally:
        for r in regs:
            r.stop()


def push_web_image(store, registry, name, text, env):
    """An image answering text at /index.html, pushed to registry as name, and removed from
    the local storage so a deploy has to pull it. Returns the reference."""
    ctx = store.root / f"ctx-{uuid.uuid4().hex[:8]}"
    ctx.mkdir()
    (ctx / "index.html").write_text(text + "\n")
    (ctx / "Containerfile").write_text(
        f"FROM {BASE_IMAGE}\nCOPY index.html /www/index.html\n"
        'CMD ["/bin/sh", "-c", "exec httpd -f -vv -p $PORT -h /www"]\n')
    ref = f"{registry.host}/{name}"
    store.run("build", "-t", ref, str(ctx))
    creds = ["--creds", f"{registry.user}:{registry.password}"] if registry.user else []
    full = dict(os.environ, **store.env, **env)
    r = subprocess.run(["podman", "push", *creds, ref], env=full, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    store.run("rmi", ref)
    shutil.rmtree(ctx, ignore_errors=True)
    return ref
