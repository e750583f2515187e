#!/usr/bin/env bash
# Requests per second for GET /health: slipwayd (one HTTP worker, rate limit off) against
# nginx with one worker returning the same JSON body, alternating, ROUNDS times each.
#
#   bench/http.sh                 DURATION=10 ROUNDS=3 CONNECTIONS=64 THREADS=2
#   SLIPWAYD=build/slipwayd bench/http.sh
#   TLS=1 bench/http.sh           both over https with one throwaway certificate (bench/tls.sh)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
# shellcheck source=contrib/lib.sh
source contrib/lib.sh

duration=${DURATION:-10}
rounds=${ROUNDS:-3}
connections=${CONNECTIONS:-64}
threads=${THREADS:-2}
bin=${SLIPWAYD:-$root/build/slipwayd}
tls=${TLS:-0}

sw_ensure_packages "${SW_PACKAGES[@]}" "${SW_BENCH_PACKAGES[@]}"
if [[ -z "${SLIPWAYD:-}" ]]; then
    [[ -f build/build.ninja ]] || meson setup build -Dbuildtype=release
    meson compile -C build >/dev/null
fi
[[ -x "$bin" ]] || sw_die "no slipwayd at $bin"

tmp=$(sw_mktemp_dir)
nginx_pid=
SW_SLIPWAYD_PID=
# shellcheck disable=SC2317 # invoked by the trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [[ -n "$SW_SLIPWAYD_PID" ]] && sw_stop_pid "$SW_SLIPWAYD_PID" 20
    [[ -n "$nginx_pid" ]] && sw_stop_pid "$nginx_pid" 10
    sw_redis_stop "$tmp/redis" || true
    sw_pg_stop "$tmp/pg" || true
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

scheme=http ng_ssl='' ng_tls=''
if [[ "$tls" == 1 ]]; then
    # One certificate for both servers, and the same client (wrk) for both.
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
        -keyout "$tmp/tls.key" -out "$tmp/tls.pem" 2>/dev/null
    scheme=https
    export SLIPWAY_TLS_CERT_FILE=$tmp/tls.pem SLIPWAY_TLS_KEY_FILE=$tmp/tls.key
    ng_ssl=' ssl'
    ng_tls="ssl_certificate $tmp/tls.pem; ssl_certificate_key $tmp/tls.key; ssl_protocols TLSv1.2 TLSv1.3;"
    export CURL_CA_BUNDLE=$tmp/tls.pem # sw_http_ok trusts it
fi

sw_pg_start "$tmp/pg" "$(sw_free_port)" slipway -c fsync=off -c synchronous_commit=off
sw_redis_start "$tmp/redis" "$(sw_free_port)"

sw_port=$(sw_free_port)
SLIPWAY_LISTEN=127.0.0.1:$sw_port \
    SLIPWAY_DATABASE_URL=$(sw_pg_url "$tmp/pg" slipway) \
    SLIPWAY_REDIS_URL=$(sw_redis_url "$tmp/redis") \
    SLIPWAY_DATA_DIR=$tmp/data \
    SLIPWAY_HTTP_WORKERS=1 SLIPWAY_RATE_LIMIT=off SLIPWAY_LOG_LEVEL=warn \
    sw_slipwayd_start "$bin" "$tmp/slipwayd.log"
sw_url=$scheme://127.0.0.1:$sw_port/health
sw_wait_until 30 sw_http_ok "$scheme://127.0.0.1:$sw_port/ready" ||
    sw_die "slipwayd not ready: $(tail -n 20 "$tmp/slipwayd.log")"
sw_wait_until 30 sw_http_ok "$sw_url" ||
    sw_die "slipwayd /health not ok: $(curl -s "$sw_url")"
body=$(curl -sf "$sw_url")
[[ "$body" != *"'"* ]] || sw_die "health body has a quote: $body"

ng_port=$(sw_free_port)
mkdir -p "$tmp/nginx"
cat >"$tmp/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 100000000;
    client_body_temp_path $tmp/nginx/body;
    proxy_temp_path $tmp/nginx/proxy;
    fastcgi_temp_path $tmp/nginx/fastcgi;
    uwsgi_temp_path $tmp/nginx/uwsgi;
    scgi_temp_path $tmp/nginx/scgi;
    server {
        listen 127.0.0.1:$ng_port$ng_ssl;
        $ng_tls
        location /health { default_type application/json; return 200 '$body'; }
    }
}
CONF
nginx -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" 2>>"$tmp/nginx/error.log" &
nginx_pid=$!
ng_url=$scheme://127.0.0.1:$ng_port/health
sw_wait_until 20 sw_http_ok "$ng_url" || sw_die "nginx did not start: $(cat "$tmp/nginx/error.log")"

# bench NAME URL: one wrk run; prints requests/s and appends it to $tmp/NAME.rps.
bench() {
    local name=$1 url=$2 out rps non2xx p99
    out=$(wrk -t "$threads" -c "$connections" -d "${duration}s" --latency "$url")
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    printf '%-9s %12s req/s  p99 %8s%s\n' "$name" "$rps" "${p99:-?}" \
        "${non2xx:+  (non-2xx: $non2xx)}"
    echo "$rps" >>"$tmp/$name.rps"
}

median() {
    sort -g "$1" | awk '{v[NR] = $1} END {
        if (NR % 2) printf "%.2f\n", v[(NR + 1) / 2];
        else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

echo "GET /health over $scheme, wrk -t$threads -c$connections -d${duration}s, $rounds rounds, $(nproc) CPUs"
echo "body: $body"
for ((i = 1; i <= rounds; i++)); do
    echo "-- round $i"
    bench slipwayd "$sw_url"
    bench nginx "$ng_url"
done

sw_med=$(median "$tmp/slipwayd.rps")
ng_med=$(median "$tmp/nginx.rps")
echo "median slipwayd: $sw_med req/s"
echo "median nginx:    $ng_med req/s"
awk -v a="$sw_med" -v b="$ng_med" 'BEGIN { printf "ratio slipwayd/nginx: %.3f\n", a / b }'
