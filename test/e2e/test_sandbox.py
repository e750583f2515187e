"""Tenant isolation (issue 12, items 1 and 2): a member's build and app instance try to reach
the daemon and the other tenants — the master key, the data directory, another app's build,
the daemon's /proc, its descriptors, Redis and PostgreSQL — and every attempt fails. Also who
may deploy with the process runtime (SLIPWAY_PROCESS_RUNTIME).

The attacks print one `LEAK <what>` line for anything that worked, and `<WHAT> <result>` lines
the test reads; each test first checks that what it attacks exists, so it cannot pass by
attacking nothing."""

import os
import stat
import tempfile
import urllib.parse
from pathlib import Path

import pytest

from deploy_kit import *  # noqa: F401,F403 - fixtures and helpers

UID_LO, UID_HI = 300000, 399999


def lines_of(deps, dep_id):
    return [ln["line"] for ln in deps.all_logs(dep_id)]


def value_after(lines, key):
    for ln in lines:
        if ln.startswith(key + " "):
            return ln[len(key) + 1:]
    raise AssertionError(f"no {key} line in {lines}")


# Prints argv[1] and the descriptors its parent (the shell) holds, in order.
FDS = ("import os, sys; print(sys.argv[1], *sorted(int(f) for f in "
       "os.listdir(\"/proc/%d/fd\" % os.getppid())))")


def attack_script(data_dir, other_build, daemon_pid, redis_port, pg_port):
    """Shell that tries everything a tenant should not be able to do, from its build."""
    data = str(data_dir)
    return "\n".join([
        'echo "UID $(id -u) GID $(id -g) GROUPS $(id -G)"',
        'echo "NNP $(awk \'/^NoNewPrivs/ {print $2}\' /proc/self/status)"',
        # the shell's own descriptors, listed by a child it starts with no redirection (a
        # command substitution or a redirection would add one of the shell's own)
        f"python3 -c '{FDS}' FDS",
        # Redis's protocol to every descriptor the daemon might have left open
        "for i in $(seq 3 63); do ( printf 'PING\\r\\nSET sw_fd_attack 1\\r\\n' >&$i ) "
        "2>/dev/null && echo \"LEAK fd $i\"; done",
        f"cat {data}/master.key >/dev/null 2>&1 && echo 'LEAK master.key'",
        f"echo \"DATA $(ls -a {data} 2>&1 | tr '\\n' ' ')\"",
        f"ls {data}/repos >/dev/null 2>&1 && echo 'LEAK repos'",
        f"cat {data}/worker.state >/dev/null 2>&1 && echo 'LEAK worker.state'",
        f"cat {other_build}/server.py >/dev/null 2>&1 && echo 'LEAK other build'",
        f"ls {other_build} >/dev/null 2>&1 && echo 'LEAK other build listing'",
        f"tr '\\0' '\\n' < /proc/{daemon_pid}/environ 2>/dev/null | grep -q SLIPWAY_ "
        "&& echo 'LEAK daemon environ'",
        f"ls /proc/{daemon_pid}/fd >/dev/null 2>&1 && echo 'LEAK daemon fds'",
        # the backends, without their passwords
        "python3 - <<'EOF'\n"
        "import socket\n"
        f"s = socket.create_connection(('127.0.0.1', {redis_port}), 3)\n"
        "s.sendall(b'SET sw_net_attack 1\\r\\n')\n"
        "print('REDIS', s.recv(200).decode(errors='replace').strip())\n"
        "EOF",
        f"PGPASSWORD= PGCONNECT_TIMEOUT=3 psql -w -h 127.0.0.1 -p {pg_port} -U postgres "
        "-d postgres -Atc 'select 42' >/dev/null 2>&1 && echo 'LEAK postgres'",
        "echo PG done",
        "touch ./mine && echo 'OWN writable'",
        "touch /tmp/x && echo \"TMP $(ls -a /tmp | tr '\\n' ' ')\"",
        "sh build.sh",
    ])


def port_of(url):
    return urllib.parse.urlsplit(url).port


@pytest.fixture
def two_tenants(auth, ddaemon, droot, dres, tmp_path):
    a = dres.user(droot, "member")
    b = dres.user(droot, "member")
    repo_a = HelloRepo(tmp_path / "repo-a")
    repo_b = HelloRepo(tmp_path / "repo-b")
    return a, b, repo_a, repo_b


def test_a_build_cannot_reach_the_daemon_or_another_tenant(ddaemon, droot, dres, two_tenants,
                                                        redis_server, pg):
    a, b, repo_a, repo_b = two_tenants
    data = Path(ddaemon.env["SLIPWAY_DATA_DIR"])

    # B deploys first: its build directory and its instance are what A goes after.
    app_b = hello_app(dres, b, repo_b)
    deps_b = Deployments(b)
    done_b, _ = deps_b.deploy(app_b["id"])
    assert done_b["status"] == "success", deps_b.tail(done_b["id"])
    other_build = data / "builds" / app_b["id"] / done_b["id"]
    assert (other_build / "server.py").is_file()
    assert (data / "master.key").is_file()
    assert (data / "worker.state").is_file()

    host_marker = Path(tempfile.mkstemp(prefix="sw-host-", dir="/tmp")[1])
    script = attack_script(data, other_build, ddaemon.pid, port_of(redis_server.url()),
                           port_of(pg.url()))
    app_a = hello_app(dres, a, repo_a, build_command=script)
    deps_a = Deployments(a)
    done_a, _ = deps_a.deploy(app_a["id"])
    out = lines_of(deps_a, done_a["id"])
    assert done_a["status"] == "success", out

    leaks = [ln for ln in out if ln.startswith("LEAK")]
    assert leaks == [], out

    uid_a = int(value_after(out, "UID").split()[0])
    assert UID_LO <= uid_a <= UID_HI, out
    assert value_after(out, "UID") == f"{uid_a} GID {uid_a} GROUPS {uid_a}", out
    assert value_after(out, "NNP") == "1", out
    assert value_after(out, "FDS").split() == ["0", "1", "2"], out
    listing = value_after(out, "DATA")
    for name in ("master.key", "repos", "worker.state", "worker.lock"):
        assert name not in listing, out
    assert "NOAUTH" in value_after(out, "REDIS"), out
    assert "OWN writable" in out, out
    # a private /tmp: none of the host's files (only the path down to its own directory,
    # when the data directory is under /tmp, as here)
    tmp = value_after(out, "TMP").split()
    assert "x" in tmp and host_marker.name not in tmp, out
    assert not Path("/tmp/x").exists() or Path("/tmp/x").stat().st_uid != uid_a

    # B's build directory belongs to a uid of its own, A's to A's.
    st_a = (data / "builds" / app_a["id"] / done_a["id"]).stat()
    st_b = other_build.stat()
    assert st_a.st_uid == uid_a and st_b.st_uid != uid_a, (st_a, st_b)
    assert UID_LO <= st_b.st_uid <= UID_HI
    for st in (st_a, st_b):
        assert stat.S_IMODE(st.st_mode) == 0o700, oct(st.st_mode)
    assert stat.S_IMODE((data / "master.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(data.stat().st_mode) == 0o711

    import redis as redis_lib
    rc = redis_lib.Redis.from_url(redis_server.url())
    assert not rc.exists("sw_fd_attack") and not rc.exists("sw_net_attack")
    assert ddaemon.alive()
    host_marker.unlink()


def test_an_instance_runs_as_its_app_and_sees_only_itself(ddaemon, droot, dres, hello_repo):
    """The instance, not just the build: its uid, its descriptors, its view of processes."""
    start = (f"python3 -c '{FDS}' FDS; echo \"UID $(id -u)\"; "
             'echo "PIDS $(ls /proc | grep -c \'^[0-9]\')"; exec python3 server.py')
    app = hello_app(dres, droot, hello_repo, start_command=start)
    deps = Deployments(droot)
    done, _ = deps.deploy(app["id"])
    assert done["status"] == "success", deps.tail(done["id"])

    def runtime():
        r = droot.get(f"apps/{app['id']}/logs", params={"lines": 100})
        return [ln["line"] for ln in r.json()["data"]]

    lines = wait_for(lambda: (ls := runtime()) and any(x.startswith("PIDS") for x in ls) and ls,
                     message="the instance's first lines")
    assert UID_LO <= int(value_after(lines, "UID")) <= UID_HI, lines
    assert value_after(lines, "FDS").split() == ["0", "1", "2"], lines
    # its own pid namespace: bwrap's init, the shell, ls and grep at most
    assert int(value_after(lines, "PIDS")) <= 8, lines
    endpoint = droot.get(f"apps/{app['id']}").json()["endpoints"][0]
    assert fetch(endpoint, "/health")[0] == 200


def test_apps_keep_their_own_uid_across_deployments(ddaemon, droot, dres, tmp_path):
    script = 'echo "UID $(id -u)"; sh build.sh'
    uids = []
    deps = Deployments(droot)
    for name in ("one", "two"):
        repo = HelloRepo(tmp_path / f"repo-{name}")
        app = hello_app(dres, droot, repo, build_command=script)
        first, _ = deps.deploy(app["id"])
        second, _ = deps.deploy(app["id"])
        assert first["status"] == second["status"] == "success", (
            first["error_message"], second["error_message"], deps.tail(second["id"]))
        u1 = value_after(lines_of(deps, first["id"]), "UID")
        u2 = value_after(lines_of(deps, second["id"]), "UID")
        assert u1 == u2, (u1, u2)
        uids.append(u1)
    assert uids[0] != uids[1], uids


@pytest.fixture
def policy_daemon(auth, request):
    return auth.daemon(env=make_deploy_env(SLIPWAY_PROCESS_RUNTIME=request.param))


@pytest.mark.parametrize("policy_daemon", ["admins"], indirect=True)
def test_process_runtime_admins_refuses_members(auth, policy_daemon, tmp_path):
    root = auth.setup_owner(policy_daemon)
    res = Res(auth, policy_daemon)
    member = res.user(root, "member")
    deps_m = Deployments(member)
    app_m = hello_app(res, member, HelloRepo(tmp_path / "repo-m"))
    done, _ = deps_m.deploy(app_m["id"])
    assert done["status"] == "failed", done
    assert "SLIPWAY_PROCESS_RUNTIME=admins" in done["error_message"], done
    # nothing of the member's ran: no build directory
    data = Path(policy_daemon.env["SLIPWAY_DATA_DIR"])
    assert not (data / "builds" / app_m["id"]).exists()

    deps_o = Deployments(root)
    app_o = hello_app(res, root, HelloRepo(tmp_path / "repo-o"))
    ok, _ = deps_o.deploy(app_o["id"])
    assert ok["status"] == "success", deps_o.tail(ok["id"])


@pytest.mark.parametrize("policy_daemon", ["off"], indirect=True)
def test_process_runtime_off_refuses_everyone(auth, policy_daemon, tmp_path):
    root = auth.setup_owner(policy_daemon)
    res = Res(auth, policy_daemon)
    deps = Deployments(root)
    app = hello_app(res, root, HelloRepo(tmp_path / "repo"))
    done, _ = deps.deploy(app["id"])
    assert done["status"] == "failed", done
    assert "SLIPWAY_PROCESS_RUNTIME=off" in done["error_message"], done


def test_the_start_says_what_is_isolated(ddaemon):
    said = ("isolation: each app's builds and instances run under its own uid, in user, pid, "
            "ipc and mount namespaces (bwrap)")
    # the worker starts once the migrations have run
    wait_for(lambda: said in ddaemon.log_text(), message="the isolation line")
    text = ddaemon.log_text()
    # the test stacks have passwords: no warning about open backends
    assert "without a password" not in text and "has no password" not in text


def test_a_backend_without_a_password_is_named_at_start(slipwayd, redis_server):
    parts = urllib.parse.urlsplit(redis_server.url())
    # the server still wants the password: the daemon starts, warns, and cannot use Redis
    bare = urllib.parse.urlunsplit(parts._replace(netloc=f"127.0.0.1:{parts.port}"))
    d = slipwayd(env={"SLIPWAY_REDIS_URL": bare, "SLIPWAY_ROLE": "api"}, wait=False)
    wait_for(lambda: "SLIPWAY_REDIS_URL has no password" in d.log_text(),
             message="the warning about Redis without a password")
    assert parts.password and parts.password not in d.log_text()


def test_without_root_the_start_says_builds_are_not_isolated(pg, redis_server, tmp_path):
    """slipwayd as an ordinary user can switch no uid: it says so at start, in the words an
    operator needs, and only admins may then deploy (SLIPWAY_PROCESS_RUNTIME's auto)."""
    import pwd
    import signal
    import subprocess
    from conftest import create_database, drop_database, free_port, slipwayd_binary, traversable

    nobody = pwd.getpwnam("nobody")
    data = tmp_path / "data-nobody"
    data.mkdir()
    traversable(data)
    os.chown(data, nobody.pw_uid, nobody.pw_gid)
    log = tmp_path / "nobody.log"
    db = create_database(pg)
    env = {"PATH": os.environ["PATH"], "SLIPWAY_DATA_DIR": str(data),
           "SLIPWAY_DATABASE_URL": db, "SLIPWAY_REDIS_URL": redis_server.url(),
           "SLIPWAY_LISTEN": f"127.0.0.1:{free_port()}", "SLIPWAY_ALLOW_FILE_REPOS": "true",
           "ASAN_OPTIONS": "detect_leaks=0"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(["setpriv", f"--reuid={nobody.pw_uid}",
                                 f"--regid={nobody.pw_gid}", "--clear-groups",
                                 str(slipwayd_binary())],
                                env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        said = "isolation: slipwayd has neither root nor CAP_SETUID and CAP_SETGID"
        wait_for(lambda: said in log.read_text(errors="replace"), timeout=30,
                 message="the isolation warning")
        text = log.read_text(errors="replace")
        line = next(ln for ln in text.splitlines() if said in ln)
        assert '"process_runtime":"admins"' in line, line
        assert "master key" in line, line
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        drop_database(db)


def test_a_build_from_before_uids_is_handed_over_on_release(ddaemon, droot, dres, hello_repo):
    """A build directory an older slipwayd left (root's, 0755) is the app's again when the app
    is restarted from it, and the restarted instance serves."""
    app = hello_app(dres, droot, hello_repo)
    deps = Deployments(droot)
    done, _ = deps.deploy(app["id"])
    assert done["status"] == "success", deps.tail(done["id"])
    build = Path(ddaemon.env["SLIPWAY_DATA_DIR"]) / "builds" / app["id"] / done["id"]
    uid = build.stat().st_uid
    assert UID_LO <= uid <= UID_HI
    for p in [build, *build.rglob("*")]:
        os.lchown(p, 0, 0)
    build.chmod(0o755)

    r = droot.post(f"apps/{app['id']}/restart")
    assert r.status_code == 202, r.text
    again, _ = deps.wait_terminal(r.json()["id"])
    assert again["status"] == "success", deps.tail(again["id"])
    st = build.stat()
    assert st.st_uid == uid and stat.S_IMODE(st.st_mode) == 0o700, (st.st_uid, oct(st.st_mode))
    assert (build / "server.py").stat().st_uid == uid
    endpoint = droot.get(f"apps/{app['id']}").json()["endpoints"][0]
    assert fetch(endpoint, "/health")[0] == 200


def test_a_deleted_apps_uid_is_never_given_again(ddaemon, droot, dres, tmp_path):
    """A process or a file the deleted app left behind must never belong to a new app."""
    script = 'echo "UID $(id -u)"; sh build.sh'
    deps = Deployments(droot)
    old = hello_app(dres, droot, HelloRepo(tmp_path / "repo-old"), build_command=script)
    done, _ = deps.deploy(old["id"])
    assert done["status"] == "success", deps.tail(done["id"])
    old_uid = value_after(lines_of(deps, done["id"]), "UID")
    assert droot.delete(f"apps/{old['id']}").status_code == 204

    new = hello_app(dres, droot, HelloRepo(tmp_path / "repo-new"), build_command=script)
    again, _ = deps.deploy(new["id"])
    assert again["status"] == "success", deps.tail(again["id"])
    new_uid = value_after(lines_of(deps, again["id"]), "UID")
    assert UID_LO <= int(new_uid) <= UID_HI and new_uid != old_uid, (old_uid, new_uid)
