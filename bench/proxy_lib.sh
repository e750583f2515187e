# shellcheck shell=bash
# Shared set-up of the edge-proxy benches (bench/proxy_*.sh, issue 14): a throwaway
# PostgreSQL and Redis, a private Caddy with nothing but its admin API (its own XDG
# directories, as test/e2e/proxy_kit.py starts it) and slipwayd driving that Caddy. Source it
# after contrib/lib.sh; it sets tmp, root and bin and installs the cleanup trap.
#
#   pb_init                      temp dir, cleanup trap, PostgreSQL and Redis
#   pb_caddy_start               Caddy on CADDY_ADMIN / CADDY_HTTP (ports chosen once)
#   pb_caddy_stop
#   pb_nginx_start               a private nginx, including the file slipwayd renders; it
#   pb_nginx_stop                listens (once rendered) on CADDY_HTTP_PORT, the port benches ask
#   pb_slipwayd_start [VAR=v...] slipwayd with SLIPWAY_PROXY=caddy; extra settings override
#   pb_python SCRIPT_ARGS...     the bench's Python with bench/ on its path (proxy_kit.py)

root=$(pwd)
bin=${SLIPWAYD:-$root/build/slipwayd}
PB_CADDY_PID=
SW_SLIPWAYD_PID=
PB_NGINX_PID=

pb_init() {
    sw_ensure_packages "${SW_PACKAGES[@]}" git "$@"
    if [[ -z "${SLIPWAYD:-}" ]]; then
        [[ -f build/build.ninja ]] || meson setup build -Dbuildtype=release
        meson compile -C build >/dev/null
    fi
    [[ -x "$bin" ]] || sw_die "no slipwayd at $bin"
    command -v caddy >/dev/null || sw_die "caddy not found"
    tmp=$(sw_mktemp_dir)
    trap pb_cleanup EXIT
    trap 'exit 130' INT TERM
    # Builds and instances run under app uids, which must cross into the data directory.
    chmod 0711 "$tmp"
    sw_pg_start "$tmp/pg" "$(sw_free_port)" slipway -c fsync=off -c synchronous_commit=off \
        -c max_connections=200
    sw_redis_start "$tmp/redis" "$(sw_free_port)"
    CADDY_ADMIN_PORT=$(sw_free_port)
    CADDY_HTTP_PORT=$(sw_free_port)
    CADDY_ADMIN=http://127.0.0.1:$CADDY_ADMIN_PORT
    export CADDY_ADMIN CADDY_HTTP_PORT
}

# shellcheck disable=SC2317 # invoked by the trap
pb_cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [[ -n "$SW_SLIPWAYD_PID" ]] && sw_stop_pid "$SW_SLIPWAYD_PID" 20
    pb_caddy_stop
    pb_nginx_stop
    # instances and helpers a run left behind in its directories
    sw_kill_left_in "$tmp" "server.py|http.server"
    sw_redis_stop "$tmp/redis" || true
    sw_pg_stop "$tmp/pg" || true
    rm -rf "$tmp"
    exit "$rc"
}

pb_caddy_answers() {
    curl -sf -o /dev/null -m 2 "$CADDY_ADMIN/config/"
}

pb_caddy_start() {
    local dir=$tmp/caddy
    mkdir -p "$dir"
    printf '{"admin":{"listen":"127.0.0.1:%s"}}\n' "$CADDY_ADMIN_PORT" >"$dir/caddy.json"
    (cd "$dir" && HOME=$dir XDG_DATA_HOME=$dir/data XDG_CONFIG_HOME=$dir/config \
        exec caddy run --config "$dir/caddy.json" </dev/null >>"$dir/caddy.log" 2>&1) &
    PB_CADDY_PID=$!
    sw_wait_until 20 pb_caddy_answers || sw_die "Caddy's admin API: $(tail -n 20 "$dir/caddy.log")"
}

pb_caddy_stop() {
    [[ -n "$PB_CADDY_PID" ]] && sw_stop_pid "$PB_CADDY_PID" 10
    PB_CADDY_PID=
}

pb_nginx_start() {
    local dir=$tmp/nginx d
    for d in client proxy fastcgi uwsgi scgi; do mkdir -p "$dir/temp/$d"; done
    mkdir -p "$dir/conf.d"
    echo "# until slipwayd renders this" >"$dir/conf.d/slipway.conf"
    cat >"$dir/nginx.conf" <<EOF
user root;
worker_processes 1;
daemon on;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $dir/temp/client;
    proxy_temp_path $dir/temp/proxy;
    fastcgi_temp_path $dir/temp/fastcgi;
    uwsgi_temp_path $dir/temp/uwsgi;
    scgi_temp_path $dir/temp/scgi;
    include $dir/conf.d/slipway.conf;
}
EOF
    PB_NGINX_CONF=$dir/nginx.conf
    PB_NGINX_INCLUDE=$dir/conf.d/slipway.conf
    nginx -c "$PB_NGINX_CONF" || sw_die "nginx did not start: $(tail -n 20 "$dir/error.log")"
    sw_wait_until 10 test -s "$dir/nginx.pid" || sw_die "nginx wrote no pid file"
    PB_NGINX_PID=$(cat "$dir/nginx.pid")
}

pb_nginx_stop() {
    [[ -n "$PB_NGINX_PID" ]] && sw_stop_pid "$PB_NGINX_PID" 10
    PB_NGINX_PID=
}

pb_slipwayd_start() {
    local port lo
    port=$(sw_free_port)
    lo=$((20000 + RANDOM % 30000))
    BASE=http://127.0.0.1:$port
    PB_DNS=127.0.0.1:$(sw_free_port) # slipwayd's DNS responder (UDP) and edge (TCP)
    export BASE PB_DNS
    env SLIPWAY_LISTEN="127.0.0.1:$port" \
        SLIPWAY_DATABASE_URL="$(sw_pg_url "$tmp/pg" slipway)" \
        SLIPWAY_REDIS_URL="$(sw_redis_url "$tmp/redis")" \
        SLIPWAY_DATA_DIR="$tmp/data" \
        SLIPWAY_ALLOW_FILE_REPOS=true SLIPWAY_RATE_LIMIT=off SLIPWAY_LOG_LEVEL=warn \
        SLIPWAY_PORT_RANGE="$lo-$((lo + 63))" SLIPWAY_STOP_GRACE_MS=2000 \
        SLIPWAY_PROXY=caddy SLIPWAY_CADDY_ADMIN="$CADDY_ADMIN" \
        SLIPWAY_PROXY_HTTP="127.0.0.1:$CADDY_HTTP_PORT" SLIPWAY_PROXY_HTTPS= \
        SLIPWAY_PROXY_DNS="$PB_DNS" SLIPWAY_DRAIN_MS=300 \
        "$@" "$bin" 2>>"$tmp/slipwayd.log" &
    SW_SLIPWAYD_PID=$!
    sw_wait_until 30 sw_http_ok "$BASE/ready" ||
        sw_die "slipwayd not ready: $(tail -n 20 "$tmp/slipwayd.log")"
}

pb_python() {
    PSQL="$SW_PG_BIN/psql -h $tmp/pg/sock -p $(cat "$tmp/pg/port") -U postgres -d slipway -qAt" \
        PYTHONPATH=$root/bench HELLO_DIR=$root/contrib/examples/hello TMP=$tmp "$SW_PYTHON" "$@"
}
