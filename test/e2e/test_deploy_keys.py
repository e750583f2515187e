"""Deploy keys and known hosts (issue 7 item 2): a real OpenSSH sshd on a loopback port serves
the example repository over ssh://root@127.0.0.1:<port>/...; the app's deploy key, made by
slipwayd, is what lets the worker in, and the host key is trusted on first use, then held to.

sshd runs as root with everything in the test's temporary directory: its own host key, the
authorized_keys file, no PAM, no passwords. It needs /run/sshd (its privilege separation
directory), which the test creates if missing.
"""

import base64
import ctypes
import ctypes.util
import os
import random
import re
import shutil
import socket
import subprocess
import types
from pathlib import Path

import pytest

from conftest import free_port
from deploy_kit import *  # noqa: F401,F403 - fixtures and helpers

SSHD = "/usr/sbin/sshd"
PRIVATE_MARKERS = ("OPENSSH PRIVATE KEY", "b3BlbnNzaC1rZXktdjE")  # header; "openssh-key-v1"

pytestmark = pytest.mark.skipif(
    not os.path.exists(SSHD) or shutil.which("ssh-keygen") is None or os.geteuid() != 0,
    reason="needs openssh-server (sshd), ssh-keygen, and root to run sshd")


def keygen(path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)],
                   check=True, capture_output=True, timeout=30)
    return Path(str(path) + ".pub").read_text().strip()


def fingerprint(pub_line, tmp):
    """SHA256:... of an OpenSSH public key line, as ssh-keygen prints it."""
    f = tmp / f"fp-{os.urandom(4).hex()}.pub"
    f.write_text(pub_line + "\n")
    out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(f)], check=True,
                         capture_output=True, text=True, timeout=30).stdout
    return out.split()[1]


@pytest.fixture
def ssh_agent(tmp_path):
    """An ssh-agent holding a key of its own; yields that key's public line. The daemons get
    its socket in SSH_AUTH_SOCK, as an operator's shell would hand it on: (pub, sock)."""
    sock = tmp_path / "agent.sock"
    proc = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: sock.exists(), timeout=10, message="ssh-agent's socket")
        pub = keygen(tmp_path / "agent_key")
        subprocess.run(["ssh-add", str(tmp_path / "agent_key")], check=True, capture_output=True,
                       timeout=30, env={**os.environ, "SSH_AUTH_SOCK": str(sock)})
        yield types.SimpleNamespace(pub=pub, sock=str(sock))
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def deploy_env(ssh_agent):
    """The deployment daemons' env, with LeakSanitizer told about libgit2 1.5's own small
    leaks per ssh connection (see lsan_libgit2_ssh.supp); harmless without a sanitizer. An
    ssh-agent with a key the test's sshd may accept is in reach, to show it is never used."""
    supp = Path(__file__).with_name("lsan_libgit2_ssh.supp")
    # Full stacks, so the suppressions can see the libgit2 function the leak came through.
    asan = os.environ.get("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:halt_on_error=1")
    return make_deploy_env(LSAN_OPTIONS=f"suppressions={supp}:print_suppressions=0",
                           ASAN_OPTIONS=f"{asan}:fast_unwind_on_malloc=0",
                           SSH_AUTH_SOCK=ssh_agent.sock)


class Sshd:
    """sshd -D on 127.0.0.1:port with a config, host key and authorized_keys in root."""

    def __init__(self, root, addr="127.0.0.1", port=None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.addr = addr
        self.port = port or free_port()
        self.authorized = self.root / "authorized_keys"
        self.authorized.write_text("")
        self.proc = None
        self.log = self.root / "sshd.log"

    def host_key(self, name):
        """A new ed25519 host key; returns its public line."""
        return keygen(self.root / name)

    def start(self, host_key_name):
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        cfg = self.root / "sshd_config"
        cfg.write_text("\n".join([
            f"Port {self.port}",
            f"ListenAddress {self.addr}",
            f"HostKey {self.root / host_key_name}",
            f"PidFile {self.root / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.authorized}",
            "StrictModes no",
            "UsePAM no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "PermitRootLogin prohibit-password",
            "LogLevel VERBOSE",
            "",
        ]))
        check = subprocess.run([SSHD, "-t", "-f", str(cfg)], capture_output=True, text=True,
                               timeout=30)
        assert check.returncode == 0, f"sshd -t: {check.stderr}"
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(cfg)],
                                     stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)

        def listening():
            assert self.proc.poll() is None, f"sshd exited: {self.log.read_text()[-2000:]}"
            with socket.socket() as s:
                return s.connect_ex((self.addr, self.port)) == 0

        wait_for(listening, timeout=10, message="sshd listening")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None

    def authorize(self, *pub_lines):
        self.authorized.write_text("".join(line + "\n" for line in pub_lines))

    def url(self, path):
        return f"ssh://root@127.0.0.1:{self.port}{path}"


@pytest.fixture
def sshd(tmp_path):
    s = Sshd(tmp_path / "sshd")
    yield s
    s.stop()


def open_sealed(data_dir, sealed, ad):
    """The secret box, opened with libsodium through ctypes: the test reads what the daemon
    stored, to prove the sealed private key is the key and that it never leaks."""
    lib = ctypes.CDLL(ctypes.util.find_library("sodium") or "libsodium.so.23")
    assert lib.sodium_init() >= 0
    key = bytes.fromhex((Path(data_dir) / "master.key").read_text().strip())
    assert sealed.startswith("v1.")
    raw = base64.urlsafe_b64decode(sealed[3:] + "=" * (-len(sealed[3:]) % 4))
    nonce, box = raw[:24], raw[24:]
    out = ctypes.create_string_buffer(len(box))
    out_len = ctypes.c_ulonglong(0)
    adb = ad.encode()
    rc = lib.crypto_aead_xchacha20poly1305_ietf_decrypt(
        out, ctypes.byref(out_len), None, box, ctypes.c_ulonglong(len(box)), adb,
        ctypes.c_ulonglong(len(adb)), nonce, key)
    assert rc == 0, "sealed deploy key does not open with the app id as associated data"
    return out.raw[:out_len.value].decode()


def ssh_app(dres, droot, hello_repo, sshd):
    return hello_app(dres, droot, hello_repo, repo_url=sshd.url(str(hello_repo.bare)))


def assert_no_private_key(records, auth, private_key):
    lines = [ln for ln in private_key.splitlines() if ln and not ln.startswith("-----")]
    auth.remember(*lines)
    for rec in records:
        body = rec.body.decode(errors="replace") if isinstance(rec.body, bytes) else rec.body
        for m in PRIVATE_MARKERS:
            assert m not in body, f"{rec.method} {rec.path} answered private key material"
        for ln in lines:
            assert ln not in body, f"{rec.method} {rec.path} answered private key material"
    for d in auth.daemons:
        text = d.log_text()
        for m in PRIVATE_MARKERS:
            assert m not in text, "private key material in the daemon log"


def test_deploy_key_over_ssh(auth, ddaemon, droot, dres, hello_repo, sshd, ssh_agent, response_log,
                             tmp_path):
    start = len(response_log)
    host_pub = sshd.host_key("host_a")
    sshd.start("host_a")
    app = ssh_app(dres, droot, hello_repo, sshd)
    deps = Deployments(droot)

    r = droot.get(f"apps/{app['id']}/deploy-key")
    error_of(r, 404, "RESOURCE_NOT_FOUND")

    # No key yet: nothing is offered (never slipwayd's own agent or keys) and the message says
    # what to do. The host key was offered all the same, and is trusted from this first use on.
    sshd.authorize(ssh_agent.pub)  # the key slipwayd's own agent holds: it must not be used
    dep, _ = deps.deploy(app["id"])
    assert dep["status"] == "failed", dep
    assert "clone failed" in dep["error_message"], dep
    assert "authentication failed: the repository wants an ssh key and the app has no deploy " \
        "key" in dep["error_message"], dep
    lines = [ln["line"] for ln in deps.all_logs(dep["id"])]
    assert any("trusted the host key of 127.0.0.1:%d on first use" % sshd.port in ln
               for ln in lines), lines

    r = droot.post(f"apps/{app['id']}/deploy-key")
    assert r.status_code == 201, r.text
    key = r.json()
    assert set(key) == {"public_key", "fingerprint", "created_at", "known_hosts"}, key
    assert re.fullmatch(r"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI[A-Za-z0-9+/]{43} slipway-"
                        + re.escape(app["name"]), key["public_key"]), key
    assert key["fingerprint"] == fingerprint(key["public_key"], tmp_path), key
    assert droot.get(f"apps/{app['id']}/deploy-key").json()["public_key"] == key["public_key"]

    # What is stored: sealed, and it is the private half of that public key.
    sealed = dres.db.execute("SELECT private_sealed FROM app_deploy_keys WHERE app_id = %s",
                             (app["id"],)).fetchone()[0]
    assert not any(m in sealed for m in PRIVATE_MARKERS)
    private = open_sealed(ddaemon.env["SLIPWAY_DATA_DIR"], sealed, f"app_deploy_key:{app['id']}")
    assert private.startswith("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    kf = tmp_path / "recovered"
    kf.write_text(private)
    kf.chmod(0o600)
    derived = subprocess.run(["ssh-keygen", "-y", "-f", str(kf)], check=True,
                             capture_output=True, text=True, timeout=30).stdout.strip()
    kf.unlink()
    assert derived == key["public_key"]

    sshd.authorize(key["public_key"])
    dep, history = deps.deploy(app["id"])
    assert dep["status"] == "success", (dep, history, deps.tail(dep["id"]))
    assert dep["commit_hash"] == hello_repo.head()
    lines = [ln["line"] for ln in deps.all_logs(dep["id"])]
    assert any("with the app's deploy key" in ln for ln in lines), lines
    assert not any("trusted the host key" in ln for ln in lines), lines

    # The host key, trusted on first use and shown.
    host_fp = fingerprint(host_pub, tmp_path)
    hosts = wait_for(lambda: droot.get(f"apps/{app['id']}/deploy-key").json()["known_hosts"],
                     timeout=10, message="known host recorded")
    assert [(h["host"], h["key_type"], h["sha256"], h["source"]) for h in hosts] == [
        (f"127.0.0.1:{sshd.port}", "ssh-ed25519", host_fp, "first_use")], hosts
    # Nothing written out for libgit2 is left behind.
    assert not list(Path(ddaemon.env["SLIPWAY_DATA_DIR"]).glob(".slipway-key-*"))

    # A second deployment fetches again over the same key and host key.
    hello_repo.version("v2")
    dep, _ = deps.deploy(app["id"])
    assert dep["status"] == "success" and dep["commit_hash"] == hello_repo.head(), dep

    # Regenerated and not yet authorised: the fetch fails and says why.
    r = droot.post(f"apps/{app['id']}/deploy-key")
    assert r.status_code == 201, r.text
    new_key = r.json()
    assert new_key["public_key"] != key["public_key"]
    assert new_key["known_hosts"] == hosts
    dep, _ = deps.deploy(app["id"])
    assert dep["status"] == "failed", dep
    assert "authentication failed: the server refused the app's deploy key: add its public " \
        "half to the repository's deploy keys" in dep["error_message"], dep
    sshd.authorize(new_key["public_key"])
    dep, _ = deps.deploy(app["id"])
    assert dep["status"] == "success", (dep, deps.tail(dep["id"]))

    # A different host key on the same host and port: refused, naming both.
    other_pub = sshd.host_key("host_b")
    sshd.stop()
    sshd.start("host_b")
    other_fp = fingerprint(other_pub, tmp_path)
    dep, _ = deps.deploy(app["id"])
    assert dep["status"] == "failed", dep
    want = (f"host key for 127.0.0.1:{sshd.port} changed: recorded {host_fp}, "
            f"offered {other_fp}")
    assert want in dep["error_message"], dep

    # The user trusts the new key (a known_hosts line, as ssh-keyscan prints it).
    parts = other_pub.split()
    r = droot.call("PUT", f"apps/{app['id']}/known-hosts",
                   json={"known_hosts": [f"[127.0.0.1]:{sshd.port} {parts[0]} {parts[1]}"]})
    assert r.status_code == 200, r.text
    assert [(h["host"], h["sha256"], h["source"]) for h in r.json()["known_hosts"]] == [
        (f"127.0.0.1:{sshd.port}", other_fp, "user")], r.json()
    dep, _ = deps.deploy(app["id"])
    assert dep["status"] == "success", (dep, deps.tail(dep["id"]))

    new_sealed = dres.db.execute("SELECT private_sealed FROM app_deploy_keys WHERE app_id = %s",
                                 (app["id"],)).fetchone()[0]
    new_private = open_sealed(ddaemon.env["SLIPWAY_DATA_DIR"], new_sealed,
                              f"app_deploy_key:{app['id']}")
    assert_no_private_key(response_log[start:], auth, private)
    assert_no_private_key(response_log[start:], auth, new_private)
    audit = dres.db.execute("SELECT action FROM audit_log WHERE resource_id = %s ORDER BY at",
                            (app["id"],)).fetchall()
    assert [a for (a,) in audit].count("app.deploy_key") == 2, audit
    assert ("app.known_hosts",) in audit, audit


def loopback_with_port_22_free():
    """A random 127.x.y.z whose port 22 is free, or None: git's scp-like form has no port."""
    for _ in range(20):
        addr = "127.%d.%d.%d" % (random.randrange(1, 255), random.randrange(0, 256),
                                 random.randrange(1, 255))
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((addr, 22))
                return addr
            except OSError:
                continue
    return None


def test_scp_like_url_over_ssh(droot, dres, hello_repo, tmp_path):
    """root@host:/path, git's scp-like form (port 22 implied), fetches with the deploy key; the
    host key is recorded under the bare host."""
    addr = loopback_with_port_22_free()
    if addr is None:
        pytest.skip("no loopback address with port 22 free")
    s = Sshd(tmp_path / "sshd22", addr=addr, port=22)
    s.host_key("host")
    s.start("host")
    try:
        app = hello_app(dres, droot, hello_repo, repo_url=f"root@{addr}:{hello_repo.bare}")
        r = droot.post(f"apps/{app['id']}/deploy-key")
        assert r.status_code == 201, r.text
        s.authorize(r.json()["public_key"])
        deps = Deployments(droot)
        dep, _ = deps.deploy(app["id"])
        assert dep["status"] == "success", (dep, deps.tail(dep["id"]))
        assert dep["commit_hash"] == hello_repo.head()
        hosts = droot.get(f"apps/{app['id']}/deploy-key").json()["known_hosts"]
        assert [(h["host"], h["source"]) for h in hosts] == [(addr, "first_use")], hosts
    finally:
        s.stop()


def test_known_hosts_put_validation(droot, dres, hello_repo):
    p = dres.project(droot)
    env = dres.production(droot, p["id"])
    app = dres.app(droot, env["id"])
    fp = "SHA256:" + base64.b64encode(os.urandom(32)).decode().rstrip("=")
    good = {"host": "Git.Example.com:22", "sha256": fp}
    r = droot.call("PUT", f"apps/{app['id']}/known-hosts", json={"known_hosts": [good]})
    assert r.status_code == 200, r.text
    [h] = r.json()["known_hosts"]
    assert (h["host"], h["sha256"], h["key_type"], h["source"]) == (
        "git.example.com", fp, None, "user")
    assert droot.get(f"apps/{app['id']}/known-hosts").json()["known_hosts"] == [h]

    bad = [
        {"known_hosts": "x"},
        {"known_hosts": [{"host": "a", "sha256": "MD5:aa"}]},
        {"known_hosts": [{"host": "a b", "sha256": fp}]},
        {"known_hosts": [{"host": "a", "sha256": fp, "extra": 1}]},
        {"known_hosts": ["|1|abc|def ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGFh"]},
        {"known_hosts": ["host ssh-ed25519 !!!"]},
        {"known_hosts": ["host ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]},
        {"known_hosts": [7]},
        {"known_hosts": [good] * 101},
        {"other": []},
    ]
    for body in bad:
        r = droot.call("PUT", f"apps/{app['id']}/known-hosts", json=body)
        assert r.status_code == 400, (body, r.text)
    # Unchanged by the refusals; an empty list clears.
    assert droot.get(f"apps/{app['id']}/known-hosts").json()["known_hosts"] == [h]
    r = droot.call("PUT", f"apps/{app['id']}/known-hosts", json={"known_hosts": []})
    assert r.status_code == 200 and r.json()["known_hosts"] == []


def test_deploy_key_roles(auth, droot, dres):
    p = dres.project(droot)
    env = dres.production(droot, p["id"])
    app = dres.app(droot, env["id"])
    viewer = dres.user(droot)
    dres.member(droot, p["id"], viewer, "viewer")
    dev = dres.user(droot)
    dres.member(droot, p["id"], dev, "developer")
    outsider = dres.user(droot)

    error_of(viewer.post(f"apps/{app['id']}/deploy-key"), 403, "INSUFFICIENT_ROLE")
    error_of(outsider.post(f"apps/{app['id']}/deploy-key"), 404, "RESOURCE_NOT_FOUND")
    r = dev.post(f"apps/{app['id']}/deploy-key")
    assert r.status_code == 201, r.text
    assert viewer.get(f"apps/{app['id']}/deploy-key").json()["public_key"] == r.json()[
        "public_key"]
    error_of(outsider.get(f"apps/{app['id']}/deploy-key"), 404)
    error_of(viewer.call("PUT", f"apps/{app['id']}/known-hosts", json={"known_hosts": []}), 403)
    # Deleting the app takes its key along.
    assert droot.delete(f"apps/{app['id']}").status_code == 204
    n = dres.db.execute("SELECT count(*) FROM app_deploy_keys WHERE app_id = %s",
                        (app["id"],)).fetchone()[0]
    assert n == 0
