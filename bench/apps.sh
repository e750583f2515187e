#!/usr/bin/env bash
# One indexed read through the whole stack against PostgreSQL alone, same clients, same run:
# authenticated GET /api/v1/apps/<id> (Authorization: Bearer, a session token) on slipwayd
# (one HTTP worker, API rate limit off, 4 PostgreSQL connections, the read cache as
# READ_CACHE says) against `pgbench -S -M prepared` on a pgbench database of the same
# PostgreSQL server, alternating, ROUNDS times each. Prints the medians, their ratio (target
# >= 0.7; the goal beyond is >= 1.0), slipwayd's p99 latency and its read cache counters.
#
#   bench/apps.sh                 DURATION=10 ROUNDS=3 CLIENTS=16 THREADS=2 POOL=4 READ_CACHE=on
#   SLIPWAYD=build/slipwayd bench/apps.sh
#   READ_CACHE=off bench/apps.sh  every request reads PostgreSQL
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
# shellcheck source=contrib/lib.sh
source contrib/lib.sh

duration=${DURATION:-10}
rounds=${ROUNDS:-3}
clients=${CLIENTS:-16}
threads=${THREADS:-2}
pool=${POOL:-4}
read_cache=${READ_CACHE:-on}
bin=${SLIPWAYD:-$root/build/slipwayd}

sw_ensure_packages "${SW_PACKAGES[@]}" "${SW_BENCH_PACKAGES[@]}"
if [[ -z "${SLIPWAYD:-}" ]]; then
    [[ -f build/build.ninja ]] || meson setup build -Dbuildtype=release
    meson compile -C build >/dev/null
fi
[[ -x "$bin" ]] || sw_die "no slipwayd at $bin"
command -v pgbench >/dev/null || sw_die "pgbench not found (postgresql-contrib / postgresql)"

tmp=$(sw_mktemp_dir)
SW_SLIPWAYD_PID=
# shellcheck disable=SC2317 # invoked by the trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [[ -n "$SW_SLIPWAYD_PID" ]] && sw_stop_pid "$SW_SLIPWAYD_PID" 20
    sw_redis_stop "$tmp/redis" || true
    sw_pg_stop "$tmp/pg" || true
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pg_port=$(sw_free_port)
sw_pg_start "$tmp/pg" "$pg_port" slipway -c fsync=off -c synchronous_commit=off \
    -c max_connections=200
sw_redis_start "$tmp/redis" "$(sw_free_port)"

# The pgbench side: its own database on the same server, scale 1, prepared SELECT-only.
# The stack wants passwords (contrib/lib.sh); pgbench reads it from the environment.
PGPASSWORD=$(cat "$tmp/pg/password")
export PGPASSWORD
pgb=(-h 127.0.0.1 -p "$pg_port" -U postgres)
sw_as_pg "$SW_PG_BIN/createdb" -h "$tmp/pg/sock" -p "$pg_port" -U postgres pgbench
pgbench "${pgb[@]}" -i -s 1 -q pgbench >"$tmp/pgbench-init.log" 2>&1 ||
    sw_die "pgbench -i failed: $(tail -n 20 "$tmp/pgbench-init.log")"

port=$(sw_free_port)
base=http://127.0.0.1:$port
SLIPWAY_LISTEN=127.0.0.1:$port \
    SLIPWAY_DATABASE_URL=$(sw_pg_url "$tmp/pg" slipway) \
    SLIPWAY_REDIS_URL=$(sw_redis_url "$tmp/redis") \
    SLIPWAY_DATA_DIR=$tmp/data \
    SLIPWAY_HTTP_WORKERS=1 SLIPWAY_RATE_LIMIT=off SLIPWAY_PG_POOL_SIZE=$pool \
    SLIPWAY_READ_CACHE=$read_cache \
    SLIPWAY_LOG_LEVEL=warn \
    sw_slipwayd_start "$bin" "$tmp/slipwayd.log"
sw_wait_until 30 sw_http_ok "$base/ready" ||
    sw_die "slipwayd not ready: $(tail -n 20 "$tmp/slipwayd.log")"

# The owner (random credentials, never printed), a project and an app.
json_field() {
    "$SW_PYTHON" -c 'import json, sys
v = json.load(sys.stdin)
for k in sys.argv[1:]:
    v = v[int(k)] if isinstance(v, list) else v[k]
print(v)' "$@"
}
email=bench-$RANDOM$RANDOM@example.com
password=$("$SW_PYTHON" -c 'import secrets; print("pw-" + secrets.token_urlsafe(18))')
printf '{"email":"%s","password":"%s"}' "$email" "$password" >"$tmp/login.json"
curl -sf -H 'Content-Type: application/json' --data-binary @"$tmp/login.json" \
    "$base/api/v1/auth/setup" >/dev/null || sw_die "auth/setup failed"
token=$(curl -sf -H 'Content-Type: application/json' --data-binary @"$tmp/login.json" \
    "$base/api/v1/auth/login" | json_field token) || sw_die "auth/login failed"
[[ "$token" == sws_* ]] || sw_die "login answered no session token"
printf 'Authorization: Bearer %s\n' "$token" >"$tmp/auth.header"
api() {
    local method=$1 path=$2
    shift 2
    curl -sf -X "$method" -H @"$tmp/auth.header" -H 'Content-Type: application/json' "$@" \
        "$base/api/v1/$path"
}
project=$(api POST projects --data-binary '{"name":"bench"}' | json_field id) ||
    sw_die "POST projects failed"
env_id=$(api GET "projects/$project/environments" | json_field data 0 id) ||
    sw_die "GET environments failed"
printf '{"name":"bench-app","environment_id":"%s","repo_url":"https://git.example.com/a/b.git"}' \
    "$env_id" >"$tmp/app.json"
app=$(api POST apps --data-binary @"$tmp/app.json" | json_field id) || sw_die "POST apps failed"
url=$base/api/v1/apps/$app
api GET "apps/$app" >/dev/null || sw_die "GET apps/$app failed"

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

run_slipwayd() {
    local out rps non2xx p99
    out=$(wrk -t "$threads" -c "$clients" -d "${duration}s" --latency \
        -H "$(cat "$tmp/auth.header")" "$url")
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    printf '%-9s %12s req/s  p99 %8s%s\n' slipwayd "$rps" "${p99:-?}" \
        "${non2xx:+  (non-2xx: $non2xx)}"
    [[ -z "$non2xx" ]] || sw_die "slipwayd: $non2xx non-2xx answers"
    echo "$rps" >>"$tmp/slipwayd.rps"
    to_ms "$p99" >>"$tmp/slipwayd.p99"
}

run_pgbench() {
    local out tps
    out=$(pgbench "${pgb[@]}" -n -S -M prepared -c "$clients" -j "$threads" -T "$duration" \
        pgbench 2>&1) || sw_die "pgbench failed: $out"
    tps=$(awk '/^tps = / && /without initial connection time/ {print $3}' <<<"$out")
    [[ -n "$tps" ]] || tps=$(awk '/^tps = / {v = $3} END {print v}' <<<"$out")
    printf '%-9s %12s tps\n' pgbench "$tps"
    echo "$tps" >>"$tmp/pgbench.tps"
}

echo "GET /api/v1/apps/:id (bearer) vs pgbench -S -M prepared"
echo "$clients clients, $threads threads, ${duration}s, $rounds rounds, pool $pool," \
    "read cache $read_cache, $(nproc) CPUs"
for ((i = 1; i <= rounds; i++)); do
    echo "-- round $i"
    run_slipwayd
    run_pgbench
done

sw_med=$(median "$tmp/slipwayd.rps")
pg_med=$(median "$tmp/pgbench.tps")
p99_med=$(median "$tmp/slipwayd.p99")
echo "median slipwayd: $sw_med req/s"
echo "median pgbench:  $pg_med tps"
awk -v a="$sw_med" -v b="$pg_med" \
    'BEGIN { printf "ratio slipwayd/pgbench: %.3f (target >= 0.7)\n", a / b }'
echo "slipwayd p99 (median of rounds): ${p99_med} ms"
# What answered: the read cache's counters over the whole run.
curl -sf "$base/metrics" | awk '/^slipway_read_cache_(hits|misses|invalidations)_total / {
    printf "%s %s\n", $1, $2 }'
