#!/usr/bin/env bash
# Runs Slipway for development on this machine: installs what is missing, builds, starts a
# private PostgreSQL, Redis and Caddy under ./.slipway/ and slipwayd in the foreground on
# 127.0.0.1:8080 (SLIPWAY_LISTEN overrides; any SLIPWAY_* variable is passed through).
# Caddy serves every app at http://<app>.<project>.localhost:8081/ (no root ports needed).
# Ctrl-C stops slipwayd, Caddy, Redis and PostgreSQL. PostgreSQL data persists between runs;
# Redis holds only queues and fan-out and starts empty.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
# shellcheck source=contrib/lib.sh
source contrib/lib.sh

state=$root/.slipway
builddir=${SLIPWAY_BUILD_DIR:-build}

sw_ensure_packages "${SW_PACKAGES[@]}"

if [[ ! -f "$builddir/build.ninja" ]]; then
    meson setup "$builddir" -Dbuildtype=release
fi
meson compile -C "$builddir"

mkdir -p "$state"
chmod 0755 "$state"
# The postgres user must be able to reach $state through every parent directory.
if ((EUID == 0)) && ! runuser -u postgres -- test -x "$state"; then
    sw_die "the postgres user cannot reach $state (a parent directory is not searchable)"
fi

# choose_port FILE DEFAULT: the port used last time, else DEFAULT, else any free port.
choose_port() {
    local file=$1 default=$2 p
    if [[ -f "$file" ]]; then
        p=$(cat "$file")
        if sw_port_is_free "$p"; then
            echo "$p"
            return
        fi
    fi
    if sw_port_is_free "$default"; then
        echo "$default"
    else
        sw_free_port
    fi
}

slipwayd_pid= caddy_pid=
# shellcheck disable=SC2317 # invoked by the trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n "$slipwayd_pid" ]]; then
        sw_log "stopping slipwayd"
        sw_stop_pid "$slipwayd_pid" 20
    fi
    if [[ -n "$caddy_pid" ]]; then
        sw_stop_pid "$caddy_pid" 10
    fi
    sw_log "stopping Caddy, Redis and PostgreSQL"
    sw_redis_stop "$state/redis" || true
    sw_pg_stop "$state/pg" || true
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A PostgreSQL left running by a killed earlier run is stopped and started afresh.
sw_pg_stop "$state/pg"
sw_redis_stop "$state/redis"

pg_port=$(choose_port "$state/pg/port" 54329)
redis_port=$(choose_port "$state/redis/port" 63799)
sw_log "PostgreSQL on 127.0.0.1:$pg_port (data in $state/pg)"
sw_pg_start "$state/pg" "$pg_port" slipway
sw_log "Redis on 127.0.0.1:$redis_port"
sw_redis_start "$state/redis" "$redis_port"

# Caddy with nothing but its admin API: slipwayd writes the rest (routes, listeners).
mkdir -p "$state/caddy"
caddy_admin=$(choose_port "$state/caddy/admin_port" 2019)
caddy_http=$(choose_port "$state/caddy/http_port" 8081)
echo "$caddy_admin" >"$state/caddy/admin_port"
echo "$caddy_http" >"$state/caddy/http_port"
printf '{"admin":{"listen":"127.0.0.1:%s"}}\n' "$caddy_admin" >"$state/caddy/caddy.json"
sw_log "Caddy on 127.0.0.1:$caddy_http (admin API on :$caddy_admin)"
HOME=$state/caddy XDG_DATA_HOME=$state/caddy/data XDG_CONFIG_HOME=$state/caddy/config \
    caddy run --config "$state/caddy/caddy.json" >"$state/caddy/caddy.log" 2>&1 &
caddy_pid=$!
sw_wait_until 20 sw_http_answers "http://127.0.0.1:$caddy_admin/config/" ||
    sw_die "Caddy did not start (see $state/caddy/caddy.log)"

export SLIPWAY_PROXY=${SLIPWAY_PROXY:-caddy}
export SLIPWAY_CADDY_ADMIN=${SLIPWAY_CADDY_ADMIN:-http://127.0.0.1:$caddy_admin}
export SLIPWAY_PROXY_HTTP=${SLIPWAY_PROXY_HTTP:-127.0.0.1:$caddy_http}
export SLIPWAY_PROXY_HTTPS=${SLIPWAY_PROXY_HTTPS:-}
export SLIPWAY_PROXY_DNS=${SLIPWAY_PROXY_DNS:-127.0.0.1:$(sw_free_port)}
export SLIPWAY_APPS_DOMAIN=${SLIPWAY_APPS_DOMAIN:-localhost}
export SLIPWAY_DATABASE_URL=${SLIPWAY_DATABASE_URL:-$(sw_pg_url "$state/pg" slipway)}
export SLIPWAY_REDIS_URL=${SLIPWAY_REDIS_URL:-$(sw_redis_url "$state/redis")}
export SLIPWAY_DATA_DIR=${SLIPWAY_DATA_DIR:-$state/data}
export SLIPWAY_LISTEN=${SLIPWAY_LISTEN:-127.0.0.1:8080}
mkdir -p "$SLIPWAY_DATA_DIR"

first=${SLIPWAY_LISTEN%%,*}
if [[ "$first" == :* || "$first" == 0.0.0.0:* ]]; then
    first=127.0.0.1:${first##*:}
elif [[ "$first" == "[::]:"* ]]; then
    first="[::1]:${first##*:}"
fi

"$builddir/slipwayd" &
slipwayd_pid=$!

if sw_wait_until 30 sw_http_answers "http://$first/health"; then
    cat >&2 <<EOF

Slipway is running on http://$first  (PostgreSQL :$pg_port, Redis :$redis_port)
Apps answer through Caddy at http://<app>.<project>.$SLIPWAY_APPS_DOMAIN:$caddy_http/
  curl http://$first/health
  curl http://$first/ready
  curl http://$first/metrics
  curl http://$first/api/v1/openapi.json
State lives in $state. Press Ctrl-C to stop slipwayd, Caddy, Redis and PostgreSQL.

EOF
fi

rc=0
wait "$slipwayd_pid" || rc=$?
# Ctrl-C lands here through the trap; otherwise slipwayd exited on its own.
slipwayd_pid=
exit "$rc"
