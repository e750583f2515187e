# shellcheck shell=bash
# Shared helpers for contrib/ and bench/ scripts: Debian packages, free ports, and private
# PostgreSQL / Redis servers. Source it; it defines functions and sets nothing else.
#
#   sw_ensure_packages [pkg...]          install what is missing (default: SW_PACKAGES)
#   sw_mktemp_dir                        make a temp dir the postgres user can reach
#   sw_free_port                         print a free loopback TCP port
#   sw_port_is_free PORT                 0 if nothing listens on PORT
#   sw_wait_until SECONDS CMD [ARG...]   poll CMD until it succeeds or the deadline passes
#   sw_pg_start DIR PORT [DB] [OPT...]   start PostgreSQL 15 with its files under DIR
#   sw_pg_url DIR [DB]                   print the libpq URI of that server (with its password)
#   sw_pg_stop DIR                       stop it (fast shutdown)
#   sw_redis_start DIR PORT [ARG...]     start redis-server on 127.0.0.1:PORT, files under DIR
#   sw_redis_url DIR [DB]                print redis://:PASSWORD@127.0.0.1:PORT/DB
#   sw_redis_stop DIR                    stop it
#   sw_kill_left_in DIR PATTERN          SIGKILL processes matching PATTERN whose cwd is in DIR

SW_PACKAGES=(curl meson ninja-build pkg-config gcc libuv1-dev node-llhttp libwslay-dev libpq-dev
    libhiredis-dev libgit2-dev libsodium-dev libssl-dev libjansson-dev libcmocka-dev
    python3-pytest python3-pytest-xdist python3-requests python3-websocket python3-psycopg python3-redis python3-jsonschema
    postgresql redis-server iproute2 openssh-server openssl bubblewrap caddy pebble nginx
    podman runc busybox-static docker-registry apache2-utils)
# shellcheck disable=SC2034 # used by bench/ scripts
SW_BENCH_PACKAGES=(wrk nginx-light nodejs node-ws)
SW_PG_BIN=${SW_PG_BIN:-/usr/lib/postgresql/15/bin}
SW_PYTHON=${SW_PYTHON:-/usr/bin/python3}

sw_log() {
    printf '==> %s\n' "$*" >&2
}

sw_die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

sw_ensure_packages() {
    local pkgs=("$@") missing=() p
    if ((${#pkgs[@]} == 0)); then
        pkgs=("${SW_PACKAGES[@]}")
    fi
    for p in "${pkgs[@]}"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    ((${#missing[@]} == 0)) && return 0
    local sudo=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null || sw_die "missing packages (${missing[*]}) and no sudo"
        sudo=(sudo)
    fi
    sw_log "installing ${missing[*]}"
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}

# A fresh temporary directory that the postgres user may traverse.
sw_mktemp_dir() {
    local d
    d=$(mktemp -d "${TMPDIR:-/tmp}/slipway.XXXXXX")
    chmod 0755 "$d"
    printf '%s\n' "$d"
}

sw_free_port() {
    "$SW_PYTHON" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# (ss's "state listening" after a filter is a parse error, whose empty output read as free.)
sw_port_is_free() {
    local out
    out=$(ss -Htln "( sport = :$1 )") || return 1
    [[ -z "$out" ]]
}

# Polls a condition at a short interval until it holds; fails after SECONDS.
sw_wait_until() {
    local seconds=$1
    shift
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            sw_log "timed out after ${seconds}s waiting for: $*"
            return 1
        fi
        sleep 0.1
    done
}

# Runs a command as the postgres user when we are root (PostgreSQL refuses to run as root).
sw_as_pg() {
    if ((EUID == 0)); then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# sw_pg_start DIR PORT [DB] [-c name=value ...]: initdb on first use (DIR/data), then start
# with the socket in DIR/sock and the log in DIR/postgresql.log. Creates DB (default slipway).
sw_pg_start() {
    local dir=$1 port=$2 db=${3-slipway} opts
    shift 2
    if (($# > 0)); then shift; fi
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    opts="-p $port -k $dir/sock -c listen_addresses=127.0.0.1 $*"
    # The postgres user must be able to reach DIR (mktemp makes 0700 directories).
    chmod 0755 "$dir"
    mkdir -p "$dir/sock"
    if ((EUID == 0)); then
        chown postgres:postgres "$dir" "$dir/sock"
    fi
    if ! sw_as_pg test -x "$dir"; then
        sw_die "the postgres user cannot reach $dir; use a directory under a world-searchable path"
    fi
    # Password authentication over TCP, the OS user over the socket; never trust: builds
    # and app instances on this host must not reach the database without the password.
    sw_password_file "$dir/password"
    if [[ ! -f "$dir/data/PG_VERSION" ]]; then
        sw_as_pg "$SW_PG_BIN/initdb" -D "$dir/data" --auth-local=peer \
            --auth-host=scram-sha-256 -U postgres -E UTF8 --locale=C.UTF-8 \
            >"$dir/initdb.log" 2>&1 ||
            sw_die "initdb failed: $(tail -n 20 "$dir/initdb.log")"
    fi
    # Also for a cluster an older run.sh made with trust.
    printf '%s\n' 'local all all peer' 'host all all 127.0.0.1/32 scram-sha-256' \
        'host all all ::1/128 scram-sha-256' >"$dir/data/pg_hba.conf"
    ((EUID == 0)) && chown postgres:postgres "$dir/data/pg_hba.conf"
    echo "$port" >"$dir/port"
    sw_as_pg "$SW_PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/postgresql.log" -o "$opts" \
        -w -t 60 start >/dev/null ||
        sw_die "PostgreSQL did not start: $(tail -n 20 "$dir/postgresql.log")"
    sw_wait_until 30 "$SW_PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" ||
        sw_die "PostgreSQL on port $port is not accepting connections"
    sw_as_pg "$SW_PG_BIN/psql" -h "$dir/sock" -p "$port" -U postgres -d postgres -qc \
        "ALTER ROLE postgres PASSWORD '$(cat "$dir/password")'" >/dev/null
    if [[ -n "$db" ]]; then
        local exists
        exists=$(sw_as_pg "$SW_PG_BIN/psql" -h "$dir/sock" -p "$port" -U postgres -d postgres \
            -Atqc "SELECT 1 FROM pg_database WHERE datname = '$db'")
        if [[ "$exists" != 1 ]]; then
            sw_as_pg "$SW_PG_BIN/createdb" -h "$dir/sock" -p "$port" -U postgres "$db"
        fi
    fi
}

sw_pg_url() {
    local dir=$1 db=${2:-slipway}
    printf 'postgresql://postgres:%s@127.0.0.1:%s/%s\n' "$(cat "$dir/password")" \
        "$(cat "$dir/port")" "$db"
}

sw_pg_stop() {
    local dir=$1
    [[ -f "$dir/data/postmaster.pid" ]] || return 0
    sw_as_pg "$SW_PG_BIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
}

# sw_redis_start DIR PORT [extra redis-server args]: no persistence unless the extra
# arguments ask for it.
sw_redis_start() {
    local dir=$1 port=$2
    shift 2
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    echo "$port" >"$dir/port"
    # The password goes in a 0600 file, never on a command line every process can read.
    sw_password_file "$dir/password"
    (
        umask 077
        printf 'requirepass %s\n' "$(cat "$dir/password")" >"$dir/redis.conf"
    )
    redis-server "$dir/redis.conf" --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
        --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --dir "$dir" \
        "$@" ||
        sw_die "redis-server did not start: $(tail -n 20 "$dir/redis.log" 2>/dev/null)"
    sw_wait_until 30 sw_redis_ping "$port" "$dir/password" ||
        sw_die "Redis on port $port does not answer: $(tail -n 20 "$dir/redis.log")"
}

# sw_redis_ping PORT PASSWORD_FILE
sw_redis_ping() {
    [[ "$(REDISCLI_AUTH=$(cat "$2") redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" == PONG ]]
}

# sw_password_file FILE: a random password (hex, so it needs no escaping in a URL) in a 0600
# file, made once.
sw_password_file() {
    [[ -s "$1" ]] && return 0
    (
        umask 077
        od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$1"
    )
}

sw_redis_url() {
    local dir=$1 db=${2:-0}
    printf 'redis://:%s@127.0.0.1:%s/%s\n' "$(cat "$dir/password")" "$(cat "$dir/port")" "$db"
}

sw_pid_gone() {
    ! kill -0 "$1" 2>/dev/null
}

sw_redis_stop() {
    local dir=$1 pid
    [[ -f "$dir/redis.pid" ]] || return 0
    pid=$(cat "$dir/redis.pid")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        sw_wait_until 20 sw_pid_gone "$pid" || kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/redis.pid"
}

# sw_stop_pid PID [SECONDS]: SIGTERM, then SIGKILL after the deadline; returns its status
# when it is our child.
sw_stop_pid() {
    local pid=$1 seconds=${2:-15}
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    if ! sw_wait_until "$seconds" sw_pid_gone "$pid"; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# True once the URL answers with any HTTP status.
sw_http_answers() {
    local code
    code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$1" 2>/dev/null) || true
    [[ -n "$code" && "$code" != 000 ]]
}

sw_http_ok() {
    curl -sf -o /dev/null -m 2 "$1"
}

# sw_slipwayd_start BINARY LOGFILE [ARG...]: starts slipwayd in the background with the
# caller's SLIPWAY_* environment; its pid is left in SW_SLIPWAYD_PID.
sw_slipwayd_start() {
    local bin=$1 log=$2
    shift 2
    "$bin" "$@" 2>>"$log" &
    # shellcheck disable=SC2034 # read by the caller
    SW_SLIPWAYD_PID=$!
}

# sw_kill_left_in DIR PATTERN: what a run left running in its own directories (instances and
# builds outlive slipwayd by design); only processes whose cwd is below DIR are touched.
sw_kill_left_in() {
    local dir=$1 pattern=$2 pid
    for pid in $(pgrep -f "$pattern" 2>/dev/null || true); do
        if [[ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" == "$dir"/* ]]; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
}
