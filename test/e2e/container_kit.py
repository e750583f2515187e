"""Helpers and fixtures for the container runtime e2e tests (issue 15, DESIGN.md §12).

Podman here runs with a private configuration (host network, runc, no default ulimits) and a
private storage under the pytest run's base temp directory, shared by the xdist workers of
one run and by no one else. Images are made offline: a root filesystem of the static busybox
is `podman import`-ed once per run (under a file lock), and app repositories build FROM it.

  podman_store  session: PodmanStore (its env for slipwayd and the CLI, .run(...) the CLI)
  cenv          the env of a daemon that runs container apps (own node name, own ports)
  cdaemon, croot, cres   a daemon started with cenv, its owner, resources_kit.Res on it
  container_repo         a git repository holding a Dockerfile app (busybox httpd)
"""

import fcntl
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from deploy_kit import HelloRepo, Res, make_deploy_env

__all__ = ["BASE_IMAGE", "PodmanStore", "cdaemon", "cenv", "container_repo", "cres", "croot",
           "dockerfile_app", "podman_store", "DOCKERFILE"]

BASE_IMAGE = "localhost/slipway-test-base:1"
BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "httpd", "dd", "cat", "echo", "sleep", "wc", "ls", "true", "false")

# The app: serves /www; at start writes its runtime env var there; the build proves it got
# its build-time secret by storing only the secret's length.
DOCKERFILE = """FROM {base}
COPY VERSION /www/index.html
RUN --mount=type=secret,id=BUILD_TOKEN cat /run/secrets/BUILD_TOKEN | wc -c > /www/tokenlen
CMD ["/bin/sh", "-c", "echo \\"$GREETING\\" > /www/greeting; echo serving on $PORT; \\
exec httpd -f -v -p $PORT -h /www"]
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
                          SLIPWAY_HEALTH_TIMEOUT_MS="20000", SLIPWAY_DRAIN_MS="200")
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


def dockerfile_app(res, who, repo, **fields):
    p = res.project(who)
    env_id = res.production(who, p["id"])["id"]
    body = {"repo_url": repo.url, "branch": repo.branch, "runtime": "container",
            "health_check_path": "/index.html"}
    body.update(fields)
    return res.app(who, env_id, **body)
