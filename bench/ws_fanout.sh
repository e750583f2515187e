#!/usr/bin/env bash
# Live-stream fan-out: one build printing lines at a fixed rate to WATCHERS WebSocket
# watchers of its deployment stream, against a Node.js broadcast server on the `ws` package
# (bench/ws_fanout_node.js) fed by the same child, alternating, ROUNDS times each.
#
# The child is a small C program compiled here: it writes "t=<CLOCK_REALTIME ns> n=<i>" lines,
# one write(2) each, RATE lines a second for DURATION seconds. Builds run sandboxed (their own
# /tmp, only their checkout writable), so the binary is committed into the app's repository
# and runs from the checkout, and the bench talks to it over loopback TCP: it connects to a
# gate the bench holds open and starts on its "go" byte (sent once every watcher is
# connected), then sends its report (lines, seconds, max_late_ms) back on that connection.
# The Node server runs the same command from a checkout of the same repository. The watchers (bench/ws_watchers.c, one
# libuv loop) measure delivered lines per second across all watchers (delivered / time from
# the first line's write to the last receipt) and the write -> receipt latency. Lines a
# watcher was told it lagged past, or never got, are not delivered and are reported.
#
#   bench/ws_fanout.sh              WATCHERS=1000 RATE=200 DURATION=5 ROUNDS=3
#   SLIPWAYD=path/to/slipwayd bench/ws_fanout.sh   (default: a release build in build-bench/)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
# shellcheck source=contrib/lib.sh
source contrib/lib.sh

watchers=${WATCHERS:-1000}
rate=${RATE:-200}
seconds=${DURATION:-5}
rounds=${ROUNDS:-3}
count=$((rate * seconds))
bin=${SLIPWAYD:-$root/build-bench/slipwayd}

sw_ensure_packages "${SW_PACKAGES[@]}" "${SW_BENCH_PACKAGES[@]}" git
if [[ -z "${SLIPWAYD:-}" ]]; then
    # -O3 turns up maybe-uninitialized warnings in src/deploy/git.c that -Werror would stop on.
    [[ -f build-bench/build.ninja ]] ||
        meson setup build-bench -Dbuildtype=release >/dev/null
    meson compile -C build-bench >/dev/null
fi
[[ -x "$bin" ]] || sw_die "no slipwayd at $bin"

# Every watcher is a socket on each side, plus slipwayd's own.
need=$((watchers + 512))
hard=$(ulimit -Hn)
[[ "$hard" == unlimited || "$hard" -ge "$need" ]] || sw_die "ulimit -Hn $hard < $need"
ulimit -n "$need"

tmp=$(sw_mktemp_dir)
SW_SLIPWAYD_PID=
node_pid=
client_pid=
gate_pid=
# shellcheck disable=SC2317 # invoked by the trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [[ -n "$client_pid" ]] && sw_stop_pid "$client_pid" 5
    [[ -n "$node_pid" ]] && sw_stop_pid "$node_pid" 5
    [[ -n "$SW_SLIPWAYD_PID" ]] && sw_stop_pid "$SW_SLIPWAYD_PID" 20
    [[ -n "$gate_pid" ]] && sw_stop_pid "$gate_pid" 5
    sw_kill_left_in "$tmp" "http.server|emit $rate $count"
    sw_redis_stop "$tmp/redis" || true
    sw_pg_stop "$tmp/pg" || true
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -ra uv_flags <<<"$(pkg-config --cflags --libs libuv)"
cc -std=c11 -Wall -Wextra -Werror -O2 -o "$tmp/ws_watchers" bench/ws_watchers.c "${uv_flags[@]}"
cat >"$tmp/emit.c" <<'C'
/* emit RATE COUNT PORT: connects to the gate on 127.0.0.1:PORT and waits for its go byte, then
 * writes COUNT lines "t=<CLOCK_REALTIME ns> n=<i>", one write(2) each, the i-th due at
 * start + i/RATE, and sends the gate how long that took and how late it fell. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* The gate's connection once it said go; -1 when it never answered (2 minutes of retries). */
static int gate(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int tries = 0; tries < 6000; tries++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -1;
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            char c;
            ssize_t r;
            while ((r = read(fd, &c, 1)) < 0 && errno == EINTR)
                ;
            if (r == 1)
                return fd;
        }
        close(fd);
        usleep(20000);
    }
    return -1;
}

static uint64_t ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc != 4)
        return 2;
    uint64_t rate = strtoull(argv[1], NULL, 10), count = strtoull(argv[2], NULL, 10);
    int port = atoi(argv[3]);
    if (!rate || !count || port <= 0 || port > 65535)
        return 2;
    int fd = gate(port);
    if (fd < 0)
        return 1;
    uint64_t start = ns(CLOCK_MONOTONIC), late_max = 0;
    for (uint64_t i = 0; i < count; i++) {
        uint64_t due = start + i * 1000000000u / rate, now = ns(CLOCK_MONOTONIC);
        if (now < due) {
            struct timespec ts = {(time_t)(due / 1000000000u), (long)(due % 1000000000u)};
            while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
                ;
        } else if (now - due > late_max) {
            late_max = now - due;
        }
        char line[64];
        int n = snprintf(line, sizeof(line), "t=%llu n=%llu\n",
                         (unsigned long long)ns(CLOCK_REALTIME), (unsigned long long)i + 1);
        for (int off = 0; off < n;) {
            ssize_t w = write(1, line + off, (size_t)(n - off));
            if (w < 0 && errno != EINTR)
                return 1;
            off += w > 0 ? (int)w : 0;
        }
    }
    double took = (double)(ns(CLOCK_MONOTONIC) - start) / 1e9;
    char report[160];
    int n = snprintf(report, sizeof(report),
                     "{\"lines\":%llu,\"seconds\":%.3f,\"max_late_ms\":%.1f}\n",
                     (unsigned long long)count, took, (double)late_max / 1e6);
    for (int off = 0; off < n;) {
        ssize_t w = write(fd, report + off, (size_t)(n - off));
        if (w < 0 && errno != EINTR)
            break;
        off += w > 0 ? (int)w : 0;
    }
    close(fd);
    return 0;
}
C

# The gate: holds the child's connection until the go file exists (the gate is outside the
# sandbox; the file is the bench's signal to it), sends the go byte, and writes what the child
# sends back to REPORT (whole, by rename). One child at a time, for the whole bench.
cat >"$tmp/gate.py" <<'PY'
import os, socket, sys, time

go, report, port_file = sys.argv[1:4]
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(16)
with open(port_file + ".part", "w") as f:
    f.write(f"{s.getsockname()[1]}\n")
os.replace(port_file + ".part", port_file)
while True:
    conn, _ = s.accept()
    with conn:
        while not os.path.exists(go):
            time.sleep(0.005)
        data = b""
        try:
            conn.sendall(b"g")
            while chunk := conn.recv(4096):
                data += chunk
        except OSError:
            pass
    if data:
        with open(report + ".part", "wb") as f:
            f.write(data)
        os.replace(report + ".part", report)
    # A child that connects now belongs to the next round: it waits for the next go.
    while os.path.exists(go):
        time.sleep(0.005)
PY

sw_pg_start "$tmp/pg" "$(sw_free_port)" slipway -c fsync=off -c synchronous_commit=off
sw_redis_start "$tmp/redis" "$(sw_free_port)"

export GIT_CONFIG_NOSYSTEM=1 HOME=$tmp/git-home GIT_AUTHOR_NAME=bench \
    GIT_AUTHOR_EMAIL=bench@example.com GIT_COMMITTER_NAME=bench \
    GIT_COMMITTER_EMAIL=bench@example.com
mkdir -p "$HOME" "$tmp/work"
git init -q --bare "$tmp/app.git"
git -C "$tmp/app.git" symbolic-ref HEAD refs/heads/main
git -C "$tmp/work" init -q -b main
echo "bench" >"$tmp/work/index.html"
# The child, in the repository: the build runs it from its checkout, Node from this one.
cc -std=c11 -Wall -Wextra -Werror -O2 -o "$tmp/work/emit" "$tmp/emit.c"
git -C "$tmp/work" add -A
git -C "$tmp/work" commit -qm bench
git -C "$tmp/work" push -q "$tmp/app.git" HEAD:refs/heads/main

port=$(sw_free_port)
base=http://127.0.0.1:$port
lo=$((20000 + RANDOM % 30000))
SLIPWAY_LISTEN=127.0.0.1:$port \
    SLIPWAY_DATABASE_URL=$(sw_pg_url "$tmp/pg" slipway) \
    SLIPWAY_REDIS_URL=$(sw_redis_url "$tmp/redis") \
    SLIPWAY_DATA_DIR=$tmp/data \
    SLIPWAY_ALLOW_FILE_REPOS=true SLIPWAY_RATE_LIMIT=off SLIPWAY_LOG_LEVEL=warn \
    SLIPWAY_MAX_CONNECTIONS=$((watchers + 256)) \
    SLIPWAY_PORT_RANGE=$lo-$((lo + 63)) SLIPWAY_STOP_GRACE_MS=2000 \
    sw_slipwayd_start "$bin" "$tmp/slipwayd.log"
sw_wait_until 30 sw_http_ok "$base/ready" ||
    sw_die "slipwayd not ready: $(tail -n 20 "$tmp/slipwayd.log")"

# The child both servers run, from a checkout; it starts on the gate's go (once the go file
# exists) and reports to the gate, which writes emit.json.
go=$tmp/go
"$SW_PYTHON" "$tmp/gate.py" "$go" "$tmp/emit.json" "$tmp/gate.port" 2>"$tmp/gate.err" &
gate_pid=$!
sw_wait_until 10 test -s "$tmp/gate.port" || sw_die "gate did not start: $(cat "$tmp/gate.err")"
child="exec ./emit $rate $count $(cat "$tmp/gate.port")"

# api.py setup | trigger APP | wait DEPLOYMENT: the few API calls the bench needs.
cat >"$tmp/api.py" <<'PY'
import json, os, secrets, sys, time, urllib.request

base = os.environ["BASE"] + "/api/v1/"
state = os.environ["STATE"]


def call(method, path, body=None, token=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")


cmd = sys.argv[1]
if cmd == "setup":
    cred = {"email": f"bench-{secrets.token_hex(4)}@example.com",
            "password": "pw-" + secrets.token_urlsafe(18)}
    call("POST", "auth/setup", cred)
    token = call("POST", "auth/login", cred)["token"]
    project = call("POST", "projects", {"name": "bench"}, token)["id"]
    env_id = call("GET", f"projects/{project}/environments", None, token)["data"][0]["id"]
    app = call("POST", "apps", {
        "name": "bench-fanout", "environment_id": env_id, "repo_url": os.environ["REPO"],
        "branch": "main", "build_command": os.environ["CHILD"],
        "start_command": "exec python3 -m http.server $PORT --bind 127.0.0.1",
        "health_check_path": "/"}, token)["id"]
    with open(state, "w") as f:
        json.dump({"token": token, "app": app}, f)
    print(token)
else:
    with open(state) as f:
        st = json.load(f)
    if cmd == "trigger":
        print(call("POST", f"apps/{st['app']}/deployments", None, st["token"])["id"])
    elif cmd == "wait":
        t0 = time.monotonic()
        while time.monotonic() - t0 < 60:
            d = call("GET", f"deployments/{sys.argv[2]}", None, st["token"])
            if d["status"] in ("success", "failed", "cancelled", "rolled_back"):
                print(d["status"])
                break
            time.sleep(0.1)
        else:
            sys.exit("deployment not finished after 60 s")
PY
api() {
    BASE=$base STATE=$tmp/state.json REPO=file://$tmp/app.git CHILD=$child \
        "$SW_PYTHON" "$tmp/api.py" "$@"
}
token=$(api setup)

# cpu_s PID: its user + system CPU seconds so far; nothing once it is gone.
hz=$(getconf CLK_TCK)
cpu_s() {
    awk -v hz="$hz" '{printf "%.3f\n", ($14 + $15) / hz}' "/proc/$1/stat" 2>/dev/null || true
}

# watch NAME PORT PATH SERVER_PID: one round of the watchers; appends the summary (with the
# server's CPU seconds and the child's report) to $tmp/NAME.jsonl.
watch() {
    local name=$1 wport=$2 wpath=$3 spid=$4 out=$tmp/watchers.out t0 t1
    rm -f "$out" "$tmp/emit.json"
    "$tmp/ws_watchers" --port "$wport" --path "$wpath" --token "$token" \
        --conns "$watchers" --expect "$count" --idle-ms 3000 \
        --timeout-ms $(((seconds * 4 + 60) * 1000)) >"$out" 2>"$tmp/watchers.err" &
    client_pid=$!
    sw_wait_until 60 grep -q '"event":"ready"' "$out" ||
        sw_die "$name: watchers not connected: $(cat "$tmp/watchers.err")"
    t0=$(cpu_s "$spid")
    touch "$go"
    wait "$client_pid" || true
    client_pid=
    t1=$(cpu_s "$spid")
    # Node exits as its last client goes, often before that read: its exit line has the total.
    if [[ -z "$t1" && "$name" == node ]] &&
        sw_wait_until 10 grep -q '"event":"exit"' "$tmp/node.log"; then
        t1=$("$SW_PYTHON" -c 'import json, sys
for l in open(sys.argv[1]):
    if "\"exit\"" in l:
        print(json.loads(l)["cpu_us"] / 1e6)' "$tmp/node.log")
    fi
    sed 's/^/          /' "$tmp/watchers.err"
    grep -q '"event":"summary"' "$out" || sw_die "$name: no summary: $(cat "$tmp/watchers.err")"
    sw_wait_until 30 test -s "$tmp/emit.json" || true
    NAME=$name CPU0=${t0:-0} CPU1=${t1:-0} OUT=$out EMIT=$tmp/emit.json \
        JSONL=$tmp/$name.jsonl "$SW_PYTHON" - <<'PY'
import json, os
e = os.environ
s = [json.loads(l) for l in open(e["OUT"]) if '"summary"' in l][-1]
try:
    s["child"] = json.load(open(e["EMIT"]))
except (OSError, ValueError):
    s["child"] = {}
s["server_cpu_s"] = max(float(e["CPU1"]) - float(e["CPU0"]), 0.0)
with open(e["JSONL"], "a") as f:
    f.write(json.dumps(s) + "\n")
c = s["child"]
print(f"{e['NAME']:<9} {s['rate_per_s']:>12,.0f} msg/s  p50 {s['p50_ms']:8.2f} ms  "
      f"p99 {s['p99_ms']:8.2f} ms  max {s['max_ms']:8.1f} ms\n"
      f"          delivered {s['delivered']:,}/{s['expected']:,}, lagged-dropped "
      f"{s['dropped']:,} ({s['lagged_msgs']} notices), per watcher {s['per_conn_min']:,}-"
      f"{s['per_conn_max']:,}, out of order {s['out_of_order']}, ended {s['ended']}/"
      f"{s['upgraded']}, server CPU {s['server_cpu_s']:.1f} s, child took "
      f"{c.get('seconds', '?')} s (max {c.get('max_late_ms', '?')} ms late)")
PY
    rm -f "$go"
}

echo "fan-out: $watchers watchers, one child writing $rate lines/s for ${seconds}s" \
    "($count lines, $((count * watchers)) messages per round), $rounds rounds, $(nproc) CPUs"
for ((i = 1; i <= rounds; i++)); do
    echo "-- round $i"
    rm -f "$go"
    dep=$(api trigger)
    watch slipwayd "$port" "/api/v1/deployments/$dep/stream" "$SW_SLIPWAYD_PID"
    status=$(api wait "$dep")
    [[ "$status" == success ]] || sw_log "warning: deployment $dep ended $status"

    nport=$(sw_free_port)
    (cd "$tmp/work" && exec node "$root/bench/ws_fanout_node.js" "$nport" "$child") \
        >"$tmp/node.log" 2>&1 &
    node_pid=$!
    sw_wait_until 20 grep -q '"event":"listening"' "$tmp/node.log" ||
        sw_die "node server did not start: $(cat "$tmp/node.log")"
    watch node "$nport" / "$node_pid"
    sw_stop_pid "$node_pid" 10
    node_pid=
done

"$SW_PYTHON" - "$tmp/slipwayd.jsonl" "$tmp/node.jsonl" <<'PY'
import json, statistics, sys
runs = [[json.loads(l) for l in open(p)] for p in sys.argv[1:3]]
med = {}
for name, rs in zip(("slipwayd", "node"), runs):
    m = {k: statistics.median(r[k] for r in rs)
         for k in ("rate_per_s", "p50_ms", "p99_ms", "dropped", "delivered", "server_cpu_s")}
    med[name] = m
    print(f"median {name:<9} {m['rate_per_s']:>12,.0f} msg/s  p50 {m['p50_ms']:.2f} ms  "
          f"p99 {m['p99_ms']:.2f} ms  delivered {m['delivered']:,.0f}  "
          f"lagged-dropped {m['dropped']:,.0f}  server CPU {m['server_cpu_s']:.1f} s")
a, b = med["slipwayd"], med["node"]
print(f"ratio slipwayd/node delivered rate: {a['rate_per_s'] / b['rate_per_s']:.2f}x "
      f"(target >= 2x, goal 5x); p99 {a['p99_ms']:.2f} ms vs {b['p99_ms']:.2f} ms "
      f"({'lower' if a['p99_ms'] < b['p99_ms'] else 'NOT lower'})")
PY
