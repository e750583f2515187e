#!/usr/bin/env bash
# Memory per idle WebSocket watcher: slipwayd's VmRSS before and after WATCHERS idle
# connections to `GET /api/v1/apps/:id/logs/stream?lines=0` of an app that is not running
# (bench/ws_watchers.c in idle mode, one libuv loop), (after - before) / WATCHERS, ROUNDS
# times, each on a fresh slipwayd (memory freed by one round would flatter the next).
# Target: <= 16 KiB per watcher (goal 8 KiB).
#
#   bench/ws_idle.sh                WATCHERS=10000 ROUNDS=3
#   SLIPWAYD=path/to/slipwayd bench/ws_idle.sh    (default: a release build in build-bench/)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
# shellcheck source=contrib/lib.sh
source contrib/lib.sh

watchers=${WATCHERS:-10000}
rounds=${ROUNDS:-3}
bin=${SLIPWAYD:-$root/build-bench/slipwayd}

sw_ensure_packages "${SW_PACKAGES[@]}"
if [[ -z "${SLIPWAYD:-}" ]]; then
    # -O3 turns up maybe-uninitialized warnings in src/deploy/git.c that -Werror would stop on.
    [[ -f build-bench/build.ninja ]] ||
        meson setup build-bench -Dbuildtype=release >/dev/null
    meson compile -C build-bench >/dev/null
fi
[[ -x "$bin" ]] || sw_die "no slipwayd at $bin"

# One socket per watcher on each side (both processes inherit this limit), and spare ports.
need=$((watchers + 512))
hard=$(ulimit -Hn)
[[ "$hard" == unlimited || "$hard" -ge "$need" ]] || sw_die "ulimit -Hn $hard < $need"
ulimit -n "$need"
read -r plo phi </proc/sys/net/ipv4/ip_local_port_range
((phi - plo > watchers + 1000)) || sw_die "ip_local_port_range $plo-$phi too small"

tmp=$(sw_mktemp_dir)
SW_SLIPWAYD_PID=
client_pid=
# shellcheck disable=SC2317 # invoked by the trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [[ -n "$client_pid" ]] && sw_stop_pid "$client_pid" 10
    [[ -n "$SW_SLIPWAYD_PID" ]] && sw_stop_pid "$SW_SLIPWAYD_PID" 20
    sw_redis_stop "$tmp/redis" || true
    sw_pg_stop "$tmp/pg" || true
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -ra uv_flags <<<"$(pkg-config --cflags --libs libuv)"
cc -std=c11 -Wall -Wextra -Werror -O2 -o "$tmp/ws_watchers" bench/ws_watchers.c "${uv_flags[@]}"

sw_pg_start "$tmp/pg" "$(sw_free_port)" slipway -c fsync=off -c synchronous_commit=off
sw_redis_start "$tmp/redis" "$(sw_free_port)"

port=$(sw_free_port)
base=http://127.0.0.1:$port
start_slipwayd() {
    SLIPWAY_LISTEN=127.0.0.1:$port \
        SLIPWAY_DATABASE_URL=$(sw_pg_url "$tmp/pg" slipway) \
        SLIPWAY_REDIS_URL=$(sw_redis_url "$tmp/redis") \
        SLIPWAY_DATA_DIR=$tmp/data \
        SLIPWAY_ALLOW_FILE_REPOS=true SLIPWAY_RATE_LIMIT=off SLIPWAY_LOG_LEVEL=warn \
        SLIPWAY_MAX_CONNECTIONS=$((watchers + 256)) \
        sw_slipwayd_start "$bin" "$tmp/slipwayd.log"
    sw_wait_until 30 sw_http_ok "$base/ready" ||
        sw_die "slipwayd not ready: $(tail -n 20 "$tmp/slipwayd.log")"
}
start_slipwayd

# An app that is never deployed: its stream has no history and no live lines.
read -r token app < <(BASE=$base "$SW_PYTHON" - <<'PY'
import json, os, secrets, urllib.request

base = os.environ["BASE"] + "/api/v1/"


def call(method, path, body=None, token=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")


cred = {"email": f"bench-{secrets.token_hex(4)}@example.com",
        "password": "pw-" + secrets.token_urlsafe(18)}
call("POST", "auth/setup", cred)
token = call("POST", "auth/login", cred)["token"]
project = call("POST", "projects", {"name": "bench"}, token)["id"]
env_id = call("GET", f"projects/{project}/environments", None, token)["data"][0]["id"]
app = call("POST", "apps", {
    "name": "bench-idle", "environment_id": env_id, "repo_url": "file:///nonexistent.git",
    "branch": "main", "start_command": "true"}, token)["id"]
print(token, app)
PY
)

rss_kb() {
    awk '/^VmRSS:/ {print $2}' "/proc/$SW_SLIPWAYD_PID/status"
}

# The RSS once it has not moved by more than 64 kB for a second (at most 10 s).
settled_rss() {
    local prev cur i
    prev=$(rss_kb)
    for ((i = 0; i < 20; i++)); do
        sleep 0.5
        cur=$(rss_kb)
        if ((cur - prev < 64 && prev - cur < 64)) && ((i % 2 == 1)); then
            break
        fi
        prev=$cur
    done
    echo "$cur"
}

open_conns() {
    curl -sf "$base/metrics" | awk '/^slipway_ws_connections(\{[^}]*\})? / {v = $2} END {print v}'
}

# A few watchers first, so what any first stream allocates once (the hub's topic tables,
# query plans, the app lookup in the read cache) is not charged to the 10,000.
warm_up() {
    "$tmp/ws_watchers" --mode idle --port "$port" --token "$token" --conns 10 --hold-ms 500 \
        --path "/api/v1/apps/$app/logs/stream?lines=0" >/dev/null 2>"$tmp/warm.err" ||
        sw_die "warm-up watchers failed: $(cat "$tmp/warm.err")"
}

echo "idle watchers: $watchers WebSocket connections to apps/:id/logs/stream?lines=0," \
    "$rounds rounds, $(nproc) CPUs"
for ((i = 1; i <= rounds; i++)); do
    if ((i > 1)); then
        sw_stop_pid "$SW_SLIPWAYD_PID" 20
        start_slipwayd
    fi
    warm_up
    sw_wait_until 30 test "$(open_conns)" = 0 || sw_log "warning: watchers still open"
    before=$(settled_rss)
    out=$tmp/idle.out
    "$tmp/ws_watchers" --mode idle --port "$port" --token "$token" --conns "$watchers" \
        --concurrency 256 --hold-ms 120000 --timeout-ms 180000 \
        --path "/api/v1/apps/$app/logs/stream?lines=0" >"$out" 2>"$tmp/idle.err" &
    client_pid=$!
    sw_wait_until 120 grep -q '"event":"ready"' "$out" ||
        sw_die "watchers not connected: $(cat "$tmp/idle.err")"
    after=$(settled_rss)
    open=$(open_conns)
    hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$SW_SLIPWAYD_PID/status")
    kill -TERM "$client_pid"
    wait "$client_pid" || true
    client_pid=
    upgraded=$("$SW_PYTHON" -c 'import json, sys
print(json.loads([l for l in open(sys.argv[1]) if "ready" in l][0])["upgraded"])' "$out")
    awk -v b="$before" -v a="$after" -v n="$upgraded" -v o="${open:-?}" -v h="$hwm" \
        -v i="$i" 'BEGIN {
        printf "round %d: %d watchers upgraded (%s open per /metrics): VmRSS %d kB -> %d kB, " \
            "+%d kB = %.2f KiB per watcher (VmHWM %d kB)\n", i, n, o, b, a, a - b,
            (a - b) / n, h }' | tee -a "$tmp/rounds.txt"
    ((upgraded == watchers)) || sw_log "warning: only $upgraded of $watchers upgraded"
done
sed -n 's/.* = \([0-9.]*\) KiB per watcher.*/\1/p' "$tmp/rounds.txt" | sort -g |
    awk '{v[NR] = $1} END {
        m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "median: %.2f KiB per idle watcher (target <= 16 KiB, goal 8 KiB)\n", m }'
