#!/usr/bin/env bash
# Deployment latency and build-log throughput on a throwaway PostgreSQL and Redis:
# - trigger -> success for a trivial app (no build; `python3 -m http.server` as the release,
#   health check "/"), COUNT times one after another, measured by polling
#   GET deployments/:id every 10 ms; prints median and p95 (target: median < 500 ms);
# - a build printing LINES lines as fast as it can (`seq 1 $LINES`): lines stored per second
#   (lines / (finished_at - started_at)) and the time until the last line was readable.
#
#   bench/deploy.sh                 COUNT=20 LINES=200000
#   SLIPWAYD=build/slipwayd bench/deploy.sh
#   SLIPWAY_BWRAP=off bench/deploy.sh    without the bubblewrap layer (the anchor for its cost)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
# shellcheck source=contrib/lib.sh
source contrib/lib.sh

count=${COUNT:-20}
lines=${LINES:-200000}
bin=${SLIPWAYD:-$root/build/slipwayd}

sw_ensure_packages "${SW_PACKAGES[@]}" git
if [[ -z "${SLIPWAYD:-}" ]]; then
    [[ -f build/build.ninja ]] || meson setup build -Dbuildtype=release
    meson compile -C build >/dev/null
fi
[[ -x "$bin" ]] || sw_die "no slipwayd at $bin"

tmp=$(sw_mktemp_dir)
SW_SLIPWAYD_PID=
# shellcheck disable=SC2317 # invoked by the trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [[ -n "$SW_SLIPWAYD_PID" ]] && sw_stop_pid "$SW_SLIPWAYD_PID" 20
    # anything a deployment left running in its build directories
    sw_kill_left_in "$tmp" "http.server"
    sw_redis_stop "$tmp/redis" || true
    sw_pg_stop "$tmp/pg" || true
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Builds and instances run under app uids, which must cross into the data directory.
chmod 0711 "$tmp"
sw_pg_start "$tmp/pg" "$(sw_free_port)" slipway -c fsync=off -c synchronous_commit=off
sw_redis_start "$tmp/redis" "$(sw_free_port)"

# The app's repository: a bare repo with one commit (the app needs no files of its own).
export GIT_CONFIG_NOSYSTEM=1 HOME=$tmp/git-home GIT_AUTHOR_NAME=bench \
    GIT_AUTHOR_EMAIL=bench@example.com GIT_COMMITTER_NAME=bench \
    GIT_COMMITTER_EMAIL=bench@example.com
mkdir -p "$HOME" "$tmp/work"
git init -q --bare "$tmp/app.git"
git -C "$tmp/app.git" symbolic-ref HEAD refs/heads/main
git -C "$tmp/work" init -q -b main
echo "bench" >"$tmp/work/index.html"
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
    SLIPWAY_PORT_RANGE=$lo-$((lo + 63)) SLIPWAY_STOP_GRACE_MS=2000 \
    SLIPWAY_BUILD_LOG_MAX_BYTES=$((256 << 20)) \
    sw_slipwayd_start "$bin" "$tmp/slipwayd.log"
sw_wait_until 30 sw_http_ok "$base/ready" ||
    sw_die "slipwayd not ready: $(tail -n 20 "$tmp/slipwayd.log")"

echo "deployments: $count sequential trigger -> success, then a build of $lines lines; $(nproc) CPUs"
BASE=$base REPO=file://$tmp/app.git COUNT=$count LINES=$lines "$SW_PYTHON" - <<'PY'
import json, os, secrets, statistics, time, urllib.request
from datetime import datetime

base = os.environ["BASE"] + "/api/v1/"
token = None


def call(method, path, body=None):
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
project = call("POST", "projects", {"name": "bench"})["id"]
env_id = call("GET", f"projects/{project}/environments")["data"][0]["id"]


def app(name, build):
    return call("POST", "apps", {
        "name": name, "environment_id": env_id, "repo_url": os.environ["REPO"],
        "branch": "main", "build_command": build,
        "start_command": "exec python3 -m http.server $PORT --bind 127.0.0.1",
        "health_check_path": "/"})["id"]


def run(app_id, timeout=120):
    t0 = time.monotonic()
    dep = call("POST", f"apps/{app_id}/deployments")
    while dep["status"] not in ("success", "failed", "cancelled"):
        if time.monotonic() - t0 > timeout:
            raise SystemExit(f"deployment not done after {timeout}s: {dep}")
        time.sleep(0.01)
        dep = call("GET", f"deployments/{dep['id']}")
    took = time.monotonic() - t0
    if dep["status"] != "success":
        raise SystemExit(f"deployment {dep['status']}: {dep['error_message']}")
    return dep, took


trivial = app("bench-trivial", "")
times = []
for i in range(int(os.environ["COUNT"])):
    _, took = run(trivial)
    times.append(took * 1000)
    print(f"  #{i + 1:<3} {took * 1000:8.1f} ms")
times.sort()
p95 = times[min(len(times) - 1, max(0, round(0.95 * len(times)) - 1))]
med = statistics.median(times)
print(f"trigger -> success: median {med:.1f} ms, p95 {p95:.1f} ms, "
      f"min {times[0]:.1f} ms, max {times[-1]:.1f} ms (target: median < 500 ms)")

n = int(os.environ["LINES"])
big = app("bench-logs", f"seq 1 {n}")
dep, took = run(big)
t_end = time.monotonic()
while True:
    tail = call("GET", f"deployments/{dep['id']}/logs?lines=1000")["data"]
    if any(ln["line"] == str(n) for ln in tail):
        break
    if time.monotonic() - t_end > 60:
        raise SystemExit("last build line never stored")
    time.sleep(0.01)
lag = time.monotonic() - t_end
span = (datetime.fromisoformat(dep["finished_at"]) -
        datetime.fromisoformat(dep["started_at"])).total_seconds()
print(f"build log: {n} lines; deployment {span:.2f}s started -> finished "
      f"({n / span:,.0f} lines/s by the deployment's own times); trigger -> success "
      f"{took:.2f}s; last line readable {lag:.2f}s after success "
      f"({n / (took + lag):,.0f} lines/s trigger -> last line stored)")
PY
