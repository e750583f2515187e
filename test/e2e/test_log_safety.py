"""Output that is not UTF-8, and output without end (issue 12, items 5 and 7).

A line is made valid UTF-8 before it is stored or sent: each invalid byte sequence becomes
U+FFFD (as Python's errors="replace" does it), a NUL becomes U+2400, and nothing is lost.
A deployment stores at most SLIPWAY_BUILD_LOG_MAX_BYTES of output, says where it cut, and
streams every line live all the same.

Each test builds its bytes itself, commits them into the app's repository, and computes from
the same bytes the lines slipwayd must have stored.
"""

import random
import re
import subprocess
import uuid

import pytest

from deploy_kit import *  # noqa: F401,F403 - fixtures and helpers
from deploy_kit import BUILD, START
from test_live import Collector, ws_connect, ws_messages
from test_runtime_logs import app_logs, wait_line

NUL_SHOWN = "\u2400"
LINE_COST = 64  # what a stored line costs beside its text (SW_LOGCAP_LINE_COST)


def noisy_bytes(seed, size):
    """Random bytes with a NUL, a \\xff, an overlong form, a surrogate and a truncated
    character among them: all reproducible from the seed."""
    rnd = random.Random(seed)
    fixed = (b"nul:\x00:end\nff:\xff:end\noverlong:\xc0\xaf:end\nsurrogate:\xed\xa0\x80:end\n"
             b"cut:\xe2\x82\ncrlf\r\nvalid:\xc3\xbc\xe2\x82\xac\xf0\x9f\x9a\x80\n")
    return fixed + rnd.randbytes(size) + b"\n"


def expected_lines(data):
    """The lines slipwayd delivers from data: split at '\\n', one '\\r' before it dropped,
    each made valid UTF-8 the way the daemon documents."""
    assert data.endswith(b"\n")
    out = []
    for raw in data.split(b"\n")[:-1]:
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        assert len(raw) <= 16384, "a line the daemon would split: pick another seed"
        out.append(raw.decode("utf-8", errors="replace").replace("\x00", NUL_SHOWN))
    return out


def commit_bytes(repo, name, data, message=None):
    """Commits data as name, with message (bytes, any) as the commit message byte for byte:
    the commit object is written by hand, since `git commit` would re-encode bytes that are
    not UTF-8 as Latin-1."""
    (repo.work / name).write_bytes(data)
    repo.git("add", "-A")
    repo.git("commit", "-q", "-m", f"add {name}")
    if message is not None:
        who = "Slipway Test <test@example.com> 1700000000 +0000"
        raw = (f"tree {repo.git('rev-parse', 'HEAD^{tree}')}\n"
               f"parent {repo.git('rev-parse', 'HEAD^')}\n"
               f"author {who}\ncommitter {who}\n\n").encode() + message
        r = subprocess.run(["git", "hash-object", "-t", "commit", "-w", "--stdin"], input=raw,
                           cwd=repo.work, env=repo.env, capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr
        repo.git("update-ref", "HEAD", r.stdout.decode().strip())
    repo.git("push", "-q", "origin", f"HEAD:refs/heads/{repo.branch}")


def between(lines, begin, end):
    """The lines after the one equal to begin and before the one equal to end."""
    i = lines.index(begin)
    j = lines.index(end, i + 1)
    return lines[i + 1:j]


def deploy_watched(droot, dres, hello_repo, build):
    """Deploys an app with this build while a WebSocket watcher reads its stream from the
    start; returns (deployments, the successful deployment, the watcher)."""
    app = hello_app(dres, droot, hello_repo, build_command=build)
    deps = Deployments(droot)
    dep = deps.trigger(app["id"])
    live = Collector(ws_connect(droot, f"deployments/{dep['id']}/stream"))
    live.start()
    done, _ = deps.wait_terminal(dep["id"], timeout=120)
    assert done["status"] == "success", (done, deps.tail(done["id"]))
    return deps, done, live


def test_build_output_that_is_not_utf8_is_stored_and_streamed_whole(droot, dres, hello_repo):
    data = noisy_bytes(seed=1201, size=200_000)
    want = expected_lines(data)
    assert any(NUL_SHOWN in ln for ln in want) and any("\ufffd" in ln for ln in want)
    commit_bytes(hello_repo, "noise.bin", data, message=b"caf\xe9 \xed\xa0\x80 noise\n")
    tag = uuid.uuid4().hex[:8]
    begin, end = f"BEGIN-{tag}", f"END-{tag}"
    build = f"sleep 1; echo {begin}; cat noise.bin; echo {end}; " + BUILD
    deps, done, live = deploy_watched(droot, dres, hello_repo, build)
    # A commit message in Latin-1 (and a surrogate) is stored too, made valid.
    assert done["commit_message"].strip() == "caf\ufffd \ufffd\ufffd\ufffd noise", done
    stored = deps.all_logs(done["id"])
    assert [ln["seq"] for ln in stored] == list(range(1, len(stored) + 1))
    assert between([ln["line"] for ln in stored], begin, end) == want
    assert all(ln["stream"] == "stdout" for ln in stored if ln["line"] in want)

    # The watcher that came early: every frame valid UTF-8 (websocket-client refuses one
    # that is not), every line once, the same as stored.
    live.join(60)
    assert not live.is_alive() and live.error is None, live.error
    got = [(m["data"]["seq"], m["data"]["line"]) for m in live.msgs if m["type"] == "log"]
    assert got == [(ln["seq"], ln["line"]) for ln in stored]
    # And one that comes after the end replays the same from the database.
    ws = ws_connect(droot, f"deployments/{done['id']}/stream")
    late = ws_messages(ws)
    ws.close()
    assert [(m["data"]["seq"], m["data"]["line"]) for m in late if m["type"] == "log"] == got


def test_runtime_output_that_is_not_utf8_is_kept_whole(droot, dres, hello_repo):
    data = noisy_bytes(seed=1202, size=100_000)
    want = expected_lines(data)
    commit_bytes(hello_repo, "noise.bin", data)
    tag = uuid.uuid4().hex[:8]
    begin, end = f"BEGIN-{tag}", f"END-{tag}"
    start = f"echo {begin}; cat noise.bin; echo {end}; {START}"
    app = hello_app(dres, droot, hello_repo, start_command=start)
    deps = Deployments(droot)
    done, _ = deps.deploy(app["id"], timeout=120)
    assert done["status"] == "success", (done, deps.tail(done["id"]))

    data_lines = wait_line(droot, app["id"], end)
    mine = [ln for ln in data_lines if ln["instance"].startswith(done["id"][:8])]
    assert between([ln["line"] for ln in mine], begin, end) == want

    # A watcher of the app's output gets the same lines as its history, in valid frames.
    ws = ws_connect(droot, f"apps/{app['id']}/logs/stream?lines=1000")
    msgs = []
    while not any(m["type"] == "log" and m["data"]["line"] == end for m in msgs):
        msgs.extend(ws_messages(ws, until_end=False, limit=1))
    ws.close()
    lines = [m["data"]["line"] for m in msgs if m["type"] == "log"
             and m["data"]["instance"].startswith(done["id"][:8])]
    assert between(lines, begin, end) == want
    assert app_logs(droot, app["id"], lines=1)["data"]  # the store still answers


CAP = 64 * 1024


@pytest.fixture
def capped_env():
    return make_deploy_env(SLIPWAY_BUILD_LOG_MAX_BYTES=CAP)


def test_output_past_the_cap_streams_but_is_not_stored(auth, capped_env, hello_repo):
    d = auth.daemon(env=capped_env)
    droot = auth.setup_owner(d)
    dres = Res(auth, d)
    n, pad = 2000, "x" * 90
    last = f"LAST-{uuid.uuid4().hex[:8]}"
    # The app's build, then 2000 lines of 100 bytes (three times the cap), then the last one.
    build = (BUILD + f"; sleep 1; i=1; while [ $i -le {n} ]; do "
             f"printf 'out-%05d-%s\\n' $i {pad}; i=$((i+1)); done; echo {last}")
    printed = [f"out-{i:05d}-{pad}" for i in range(1, n + 1)] + [last]
    deps, done, live = deploy_watched(droot, dres, hello_repo, build)
    stored = deps.all_logs(done["id"])
    assert [ln["seq"] for ln in stored] == list(range(1, len(stored) + 1)), "gap in stored seqs"
    output = [ln["line"] for ln in stored if ln["stream"] != "system"]
    first = output.index(printed[0])  # what the app's build.sh printed comes before
    kept = len(output) - first
    # A prefix of what was printed, as much as fits under the cap and not a line more.
    assert output[first:] == printed[:kept]
    cost = sum(len(s.encode()) + LINE_COST for s in output)
    assert cost <= CAP < cost + len(printed[kept].encode()) + LINE_COST, (cost, kept)
    system = [ln["line"] for ln in stored if ln["stream"] == "system"]
    [cut] = [s for s in system if s.startswith("output cut here")]
    assert f"SLIPWAY_BUILD_LOG_MAX_BYTES ({CAP})" in cut, cut
    # The cut line stands where the output stops.
    at = next(i for i, ln in enumerate(stored) if ln["line"] == cut)
    assert stored[at - 1]["line"] == output[-1]
    [summary] = [s for s in system if s.startswith("not stored")]
    m = re.search(r"(\d+) lines, (\d+) bytes", summary)
    assert m, summary
    skipped = printed[kept:]
    assert int(m.group(1)) == len(skipped)
    assert int(m.group(2)) == sum(len(s.encode()) for s in skipped)
    assert system.index(summary) < len(system) - 1  # before "deployment success"
    assert system[-1].startswith("deployment success"), system[-3:]

    # The live watcher saw every line, the last one too; those past the cut have no number.
    live.join(60)
    assert not live.is_alive() and live.error is None, live.error
    assert not [m for m in live.msgs if m["type"] == "lagged"]
    seen = [m["data"] for m in live.msgs if m["type"] == "log"]
    assert [d["line"] for d in seen if d["stream"] != "system"] == output[:first] + printed
    assert all(d["seq"] is None for d in seen if d["line"] in skipped)
    assert [(d["seq"], d["line"]) for d in seen if d["seq"] is not None] == \
        [(ln["seq"], ln["line"]) for ln in stored]
