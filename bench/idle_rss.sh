#!/usr/bin/env bash
# Resident memory of an idle slipwayd (after /ready and its first health checks).
#
#   bench/idle_rss.sh              SLIPWAYD=path/to/slipwayd to measure another build
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
# shellcheck source=contrib/lib.sh
source contrib/lib.sh

bin=${SLIPWAYD:-$root/build/slipwayd}
sw_ensure_packages "${SW_PACKAGES[@]}"
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
    sw_redis_stop "$tmp/redis" || true
    sw_pg_stop "$tmp/pg" || true
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

sw_pg_start "$tmp/pg" "$(sw_free_port)" slipway -c fsync=off
sw_redis_start "$tmp/redis" "$(sw_free_port)"

port=$(sw_free_port)
SLIPWAY_LISTEN=127.0.0.1:$port \
    SLIPWAY_DATABASE_URL=$(sw_pg_url "$tmp/pg" slipway) \
    SLIPWAY_REDIS_URL=$(sw_redis_url "$tmp/redis") \
    SLIPWAY_DATA_DIR=$tmp/data \
    SLIPWAY_HTTP_WORKERS=1 SLIPWAY_LOG_LEVEL=warn \
    sw_slipwayd_start "$bin" "$tmp/slipwayd.log"
base=http://127.0.0.1:$port

sw_wait_until 30 sw_http_ok "$base/ready" ||
    sw_die "slipwayd not ready: $(tail -n 20 "$tmp/slipwayd.log")"

# Health checks have run once both backends report up.
checks_settled() {
    local m
    m=$(curl -sf -m 2 "$base/metrics") || return 1
    grep -Eq '^slipway_redis_up(\{[^}]*\})? 1' <<<"$m" && sw_http_ok "$base/health"
}
sw_wait_until 30 checks_settled || sw_log "warning: health checks did not settle"

rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$SW_SLIPWAYD_PID/status")
hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$SW_SLIPWAYD_PID/status")
threads=$(awk '/^Threads:/ {print $2}' "/proc/$SW_SLIPWAYD_PID/status")
awk -v r="$rss" -v h="$hwm" -v t="$threads" 'BEGIN {
    printf "idle VmRSS: %d kB (%.1f MB)\n", r, r / 1024
    printf "peak VmHWM: %d kB (%.1f MB), threads: %d\n", h, h / 1024, t }'
