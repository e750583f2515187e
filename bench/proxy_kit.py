"""Python side of the edge-proxy benches (bench/proxy_*.sh): the API as the owner, the hello
example in a local bare repository, and requests at Caddy's HTTP listener with a Host.
Standard library only; settings come from the environment bench/proxy_lib.sh exports."""

import http.client
import json
import os
import random
import secrets
import shutil
import socket
import statistics
import struct
import subprocess
import time
import urllib.request
from pathlib import Path

CADDY_PORT = int(os.environ["CADDY_HTTP_PORT"])
CADDY_ADMIN = os.environ["CADDY_ADMIN"]


class Api:
    """The owner of a fresh slipwayd (random credentials, never printed)."""

    def __init__(self, base=None):
        self.base = (base or os.environ["BASE"]) + "/api/v1/"
        self.token = None
        cred = {"email": f"bench-{secrets.token_hex(4)}@example.com",
                "password": "pw-" + secrets.token_urlsafe(18)}
        self.call("POST", "auth/setup", cred)
        self.token = self.call("POST", "auth/login", cred)["token"]

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", "Bearer " + self.token)
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read() or b"null")

    def environment(self, name="bench"):
        project = self.call("POST", "projects", {"name": name})["id"]
        return self.call("GET", f"projects/{project}/environments")["data"][0]["id"]

    def hello_app(self, env_id, name, repo_url, **fields):
        """An app of the hello example's repository; fields override its commands."""
        body = {"name": name, "environment_id": env_id, "repo_url": repo_url, "branch": "main",
                "build_command": "sh build.sh", "start_command": "exec python3 server.py",
                "health_check_path": "/health"}
        body.update(fields)
        return self.call("POST", "apps", body)["id"]

    def deploy(self, app_id, timeout=120):
        """Triggers a deployment and polls it every 10 ms until it ends; raises unless success."""
        t0 = time.monotonic()
        dep = self.call("POST", f"apps/{app_id}/deployments")
        while dep["status"] not in ("success", "failed", "cancelled"):
            if time.monotonic() - t0 > timeout:
                raise SystemExit(f"deployment not done after {timeout}s: {dep}")
            time.sleep(0.01)
            dep = self.call("GET", f"deployments/{dep['id']}")
        if dep["status"] != "success":
            tail = self.call("GET", f"apps/{app_id}/logs?lines=20")
            raise SystemExit(f"deployment {dep['status']}: {dep.get('error_message')}\n"
                             f"the app's last lines: {json.dumps(tail)[:3000]}")
        return dep


def hello_repo(extra=None):
    """A bare repository with the hello example (contrib/examples/hello) and the extra files
    ({name: text}); its file:// URL."""
    tmp = Path(os.environ["TMP"])
    env = dict(os.environ, GIT_CONFIG_NOSYSTEM="1", HOME=str(tmp / "git-home"),
               GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@example.com",
               GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@example.com")
    work, bare = tmp / "hello-work", tmp / "hello.git"
    if bare.exists():  # an earlier setting of the same run made it
        return "file://" + str(bare)
    (tmp / "git-home").mkdir(exist_ok=True)
    work.mkdir()

    def git(*args, cwd=work):
        subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)

    git("init", "-q", "--bare", str(bare), cwd=tmp)
    git("symbolic-ref", "HEAD", "refs/heads/main", cwd=bare)
    git("init", "-q", "-b", "main")
    for name in ("build.sh", "server.py"):
        shutil.copy(Path(os.environ["HELLO_DIR"]) / name, work / name)
    for name, text in (extra or {}).items():
        (work / name).write_text(text)
    git("add", "-A")
    git("commit", "-qm", "hello")
    git("push", "-q", str(bare), "HEAD:refs/heads/main")
    return "file://" + str(bare)


class Through:
    """One keep-alive connection to Caddy's HTTP listener (or another port), asking for one
    host."""

    def __init__(self, host, timeout=5, port=CADDY_PORT):
        self.host, self.timeout, self.port = host, timeout, port
        self.conn = None

    def get(self, path="/"):
        """(status, Slipway-Release or None); (0, None) when the connection failed."""
        for _ in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                                       timeout=self.timeout)
            try:
                self.conn.request("GET", path, headers={"Host": self.host})
                r = self.conn.getresponse()
                r.read()
                return r.status, r.getheader("Slipway-Release")
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
        return 0, None


def sql(text):
    """Runs text with psql as postgres on the bench's database; its unaligned output."""
    psql = ["runuser", "-u", "postgres", "--", *os.environ["PSQL"].split()]
    return subprocess.run(psql + ["-c", text], check=True, capture_output=True,
                          text=True).stdout.strip()


def insert_routed_apps(n, endpoint, prefix="app"):
    """n apps, each with the domain <prefix>-<i>.scale.test, its endpoints [endpoint] and a
    made-up active release, written in one transaction (one NOTIFY) into the project that
    exists (the owner's only one) and its first environment."""
    sql(f"""BEGIN;
WITH e AS (SELECT id, project_id FROM environments ORDER BY created_at LIMIT 1),
a AS (INSERT INTO apps (project_id, environment_id, name, active_deployment_id, endpoints)
    SELECT e.project_id, e.id, '{prefix}-' || i, gen_random_uuid(), ARRAY['{endpoint}']
    FROM e, generate_series(0, {n - 1}) i RETURNING id, name)
INSERT INTO domains (app_id, hostname) SELECT id, name || '.scale.test' FROM a;
COMMIT;""")


def caddy_config():
    with urllib.request.urlopen(CADDY_ADMIN + "/config/", timeout=30) as r:
        return json.loads(r.read() or b"null")


def caddy_routes():
    """The @ids of the routes of Slipway's server in Caddy."""
    srv = ((caddy_config() or {}).get("apps", {}).get("http", {}).get("servers", {})
           .get("slipway", {}))
    return [r.get("@id") for r in srv.get("routes", [])]


def srv_target(host):
    """The first SRV target slipwayd's DNS responder answers for host's upstreams (what Caddy
    asks), or None; "edge...." while no app serves host."""
    ip, port = os.environ["PB_DNS"].rsplit(":", 1)
    q = struct.pack(">HHHHHH", random.randrange(65536), 0x0100, 1, 0, 0, 0)
    for label in f"{host}.host.slipway".split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack(">HH", 33, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.sendto(q, (ip, int(port)))
        a = s.recv(1232)
    if struct.unpack(">H", a[6:8])[0] == 0:
        return None
    at = len(q) + 12 + 6  # the first record: name pointer, type, class, TTL, length; then SRV
    labels = []
    while a[at]:
        labels.append(a[at + 1:at + 1 + a[at]].decode())
        at += 1 + a[at]
    return ".".join(labels)


def pct(values, p):
    """The p-th percentile by nearest rank."""
    v = sorted(values)
    return v[min(len(v) - 1, max(0, round(p / 100 * len(v)) - 1))]


def summary(name, values, unit="ms"):
    return (f"{name}: median {statistics.median(values):.1f} {unit}, p99 {pct(values, 99):.1f} "
            f"{unit}, min {min(values):.1f}, max {max(values):.1f} (n={len(values)})")
