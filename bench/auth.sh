#!/usr/bin/env bash
# Identity costs, against a throwaway PostgreSQL, Redis and slipwayd (one HTTP worker, API
# rate limit off):
#   1. requests/s of authenticated GET /api/v1/auth/me (Authorization: Bearer, a session
#      token) against unauthenticated GET /health, alternating, ROUNDS times each; medians
#      and their ratio (target >= 0.8: verification is cached, not a query per request);
#   2. /health p99 latency with no logins, then while LOGIN_CLIENTS clients log in with the
#      correct password in a loop (target within 2x: argon2id stays off the loop).
#
#   bench/auth.sh                 DURATION=10 ROUNDS=3 CONNECTIONS=64 THREADS=2 LOGIN_CLIENTS=20
#   SLIPWAYD=build/slipwayd bench/auth.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
# shellcheck source=contrib/lib.sh
source contrib/lib.sh

duration=${DURATION:-10}
rounds=${ROUNDS:-3}
connections=${CONNECTIONS:-64}
threads=${THREADS:-2}
login_clients=${LOGIN_CLIENTS:-20}
bin=${SLIPWAYD:-$root/build/slipwayd}

sw_ensure_packages "${SW_PACKAGES[@]}" "${SW_BENCH_PACKAGES[@]}"
if [[ -z "${SLIPWAYD:-}" ]]; then
    [[ -f build/build.ninja ]] || meson setup build -Dbuildtype=release
    meson compile -C build >/dev/null
fi
[[ -x "$bin" ]] || sw_die "no slipwayd at $bin"

tmp=$(sw_mktemp_dir)
SW_SLIPWAYD_PID=
login_pid=
# shellcheck disable=SC2317 # invoked by the trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [[ -n "$login_pid" ]] && sw_stop_pid "$login_pid" 10
    [[ -n "$SW_SLIPWAYD_PID" ]] && sw_stop_pid "$SW_SLIPWAYD_PID" 20
    sw_redis_stop "$tmp/redis" || true
    sw_pg_stop "$tmp/pg" || true
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

sw_pg_start "$tmp/pg" "$(sw_free_port)" slipway -c fsync=off -c synchronous_commit=off
sw_redis_start "$tmp/redis" "$(sw_free_port)"

port=$(sw_free_port)
base=http://127.0.0.1:$port
SLIPWAY_LISTEN=127.0.0.1:$port \
    SLIPWAY_DATABASE_URL=$(sw_pg_url "$tmp/pg" slipway) \
    SLIPWAY_REDIS_URL=$(sw_redis_url "$tmp/redis") \
    SLIPWAY_DATA_DIR=$tmp/data \
    SLIPWAY_HTTP_WORKERS=1 SLIPWAY_RATE_LIMIT=off SLIPWAY_LOG_LEVEL=warn \
    sw_slipwayd_start "$bin" "$tmp/slipwayd.log"
sw_wait_until 30 sw_http_ok "$base/ready" ||
    sw_die "slipwayd not ready: $(tail -n 20 "$tmp/slipwayd.log")"
sw_wait_until 30 sw_http_ok "$base/health" ||
    sw_die "slipwayd /health not ok: $(curl -s "$base/health")"

# The owner: random credentials, never printed.
email=bench-$RANDOM$RANDOM@example.com
password=$("$SW_PYTHON" -c 'import secrets; print("pw-" + secrets.token_urlsafe(18))')
login_json=$(printf '{"email":"%s","password":"%s"}' "$email" "$password")
printf '%s' "$login_json" >"$tmp/login.json"
json_field() {
    "$SW_PYTHON" -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}
curl -sf -H 'Content-Type: application/json' --data-binary @"$tmp/login.json" \
    "$base/api/v1/auth/setup" >/dev/null || sw_die "auth/setup failed"
token=$(curl -sf -H 'Content-Type: application/json' --data-binary @"$tmp/login.json" \
    "$base/api/v1/auth/login" | json_field token) || sw_die "auth/login failed"
[[ "$token" == sws_* ]] || sw_die "login answered no session token"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" \
    "$base/api/v1/auth/me")
[[ "$code" == 200 ]] || sw_die "GET auth/me with the session token answered $code"

# run NAME URL [wrk args...]: one wrk run; prints req/s and p99, appends them to $tmp/NAME.*
run() {
    local name=$1 url=$2 out rps non2xx p99
    shift 2
    out=$(wrk -t "$threads" -c "$connections" -d "${duration}s" --latency "$@" "$url")
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    printf '%-14s %12s req/s  p99 %8s%s\n' "$name" "$rps" "${p99:-?}" \
        "${non2xx:+  (non-2xx: $non2xx)}"
    [[ -z "$non2xx" ]] || sw_die "$name: $non2xx non-2xx answers"
    echo "$rps" >>"$tmp/$name.rps"
    to_ms "$p99" >>"$tmp/$name.p99"
}

# wrk prints latencies as 812.00us, 1.20ms or 1.01s.
to_ms() {
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f\n", v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f\n", v }
        else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f\n", v * 1000 }
        else print "nan" }'
}

median() {
    sort -g "$1" | awk '{v[NR] = $1} END {
        if (NR % 2) printf "%.3f\n", v[(NR + 1) / 2];
        else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

echo "== 1. GET /api/v1/auth/me (bearer) vs GET /health"
echo "wrk -t$threads -c$connections -d${duration}s, $rounds rounds, $(nproc) CPUs"
for ((i = 1; i <= rounds; i++)); do
    echo "-- round $i"
    run me "$base/api/v1/auth/me" -H "Authorization: Bearer $token"
    run health "$base/health"
done
me_med=$(median "$tmp/me.rps")
health_med=$(median "$tmp/health.rps")
echo "median auth/me: $me_med req/s"
echo "median /health: $health_med req/s"
awk -v a="$me_med" -v b="$health_med" \
    'BEGIN { printf "ratio auth/me / health: %.3f (target >= 0.8)\n", a / b }'

login_ok() {
    [[ "$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
        --data-binary @"$tmp/login.json" "$base/api/v1/auth/login")" == 200 ]]
}

echo
echo "== 2. /health p99 with no logins vs while $login_clients clients log in continuously"
# The login load: LOGIN_CLIENTS threads, each a keep-alive connection posting the correct
# credentials in a loop (correct logins are not rate limited). Counts answers by status.
cat >"$tmp/logins.py" <<'PY'
import http.client, json, sys, threading, time
port, clients, body_path, stop_path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
body = open(body_path, "rb").read()
counts, lock = {}, threading.Lock()
def client():
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while True:
        try:
            open(stop_path).close()
            break
        except OSError:
            pass
        try:
            conn.request("POST", "/api/v1/auth/login", body=body,
                         headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            status = r.status
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            status = "error"
        with lock:
            counts[status] = counts.get(status, 0) + 1
threads = [threading.Thread(target=client) for _ in range(clients)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(counts))
PY
for ((i = 1; i <= rounds; i++)); do
    echo "-- round $i"
    run idle "$base/health"
    rm -f "$tmp/stop"
    "$SW_PYTHON" "$tmp/logins.py" "$port" "$login_clients" "$tmp/login.json" "$tmp/stop" \
        >"$tmp/logins.out" &
    login_pid=$!
    sw_wait_until 10 login_ok || sw_die "login did not answer 200 under load"
    run logins "$base/health"
    touch "$tmp/stop"
    wait "$login_pid" || true
    login_pid=
    echo "   logins during the run: $(cat "$tmp/logins.out")"
done
idle_p99=$(median "$tmp/idle.p99")
busy_p99=$(median "$tmp/logins.p99")
echo "median /health p99, no logins:    $idle_p99 ms"
echo "median /health p99, with logins:  $busy_p99 ms"
awk -v a="$busy_p99" -v b="$idle_p99" \
    'BEGIN { printf "p99 ratio with/without logins: %.2f (target <= 2)\n", a / b }'
