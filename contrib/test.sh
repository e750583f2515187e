#!/usr/bin/env bash
# Builds slipwayd and runs every suite: cmocka unit tests, fuzz-corpus replays, and the
# pytest e2e suite against throwaway PostgreSQL and Redis. Ends with one line
# "N passed, N failed, N skipped" and exits non-zero on any failure.
#
#   contrib/test.sh [--sanitize] [--unit-only] [-- extra pytest arguments]
#   SLIPWAY_SANITIZE=1 contrib/test.sh     same as --sanitize (ASan + UBSan, build-asan/)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
# shellcheck source=contrib/lib.sh
source contrib/lib.sh

sanitize=${SLIPWAY_SANITIZE:-0}
unit_only=0
pytest_extra=()
while (($# > 0)); do
    case $1 in
    --sanitize) sanitize=1 ;;
    --unit-only) unit_only=1 ;;
    --)
        shift
        pytest_extra=("$@")
        break
        ;;
    -h | --help)
        sed -n '2,8p' "$0"
        exit 0
        ;;
    *) sw_die "unknown argument: $1" ;;
    esac
    shift
done

passed=0 failed=0 skipped=0
summary() {
    local line="$passed passed, $failed failed"
    ((skipped > 0)) && line+=", $skipped skipped"
    printf '%s\n' "$line"
}

# node and its ws package: test_tls.py checks wss:// with a second client
sw_ensure_packages "${SW_PACKAGES[@]}" nodejs node-ws
# npm installs the OpenAPI linter test_openapi.py runs. Debian's npm package conflicts with
# a nodejs that bundles its own npm, so it is installed only where no npm is found.
command -v npm >/dev/null || sw_ensure_packages npm

builddir=build
setup_opts=(-Dbuildtype=debugoptimized -Dtests=true)
if [[ "$sanitize" == 1 ]]; then
    builddir=build-asan
    setup_opts+=(-Dsanitize=true)
    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:halt_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
    export LSAN_OPTIONS=${LSAN_OPTIONS:-}
fi

sw_log "building in $builddir"
if [[ ! -f "$builddir/build.ninja" ]]; then
    if ! meson setup "$builddir" "${setup_opts[@]}"; then
        failed=1
        summary
        exit 1
    fi
fi
if ! meson compile -C "$builddir"; then
    sw_log "build failed"
    failed=1
    summary
    exit 1
fi

if meson introspect --buildoptions "$builddir" 2>/dev/null |
    "$SW_PYTHON" -c 'import json, sys
sys.exit(0 if any(o["name"] == "tests" and o["value"] is False for o in json.load(sys.stdin)) else 1)'; then
    sw_log "WARNING: $builddir is configured with -Dtests=false: unit tests will not run"
    sw_log "         (meson configure $builddir -Dtests=true to enable them)"
fi

tmp=$(sw_mktemp_dir)
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    sw_redis_stop "$tmp/redis" || true
    sw_pg_stop "$tmp/pg" || true
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

sw_log "starting throwaway PostgreSQL and Redis in $tmp"
sw_pg_start "$tmp/pg" "$(sw_free_port)" slipway \
    -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300
sw_redis_start "$tmp/redis" "$(sw_free_port)"
SLIPWAY_TEST_DATABASE_URL=$(sw_pg_url "$tmp/pg" slipway)
SLIPWAY_TEST_REDIS_URL=$(sw_redis_url "$tmp/redis")
export SLIPWAY_TEST_DATABASE_URL SLIPWAY_TEST_REDIS_URL

# count_meson LOGFILE RC: adds meson test's summary to the totals.
count_meson() {
    local log=$1 rc=$2 ok xfail fail xpass skip tmo
    ok=$(awk '/^Ok:/ {print $2}' "$log" | tail -n1)
    xfail=$(awk '/^Expected Fail:/ {print $3}' "$log" | tail -n1)
    fail=$(awk '/^Fail:/ {print $2}' "$log" | tail -n1)
    xpass=$(awk '/^Unexpected Pass:/ {print $3}' "$log" | tail -n1)
    skip=$(awk '/^Skipped:/ {print $2}' "$log" | tail -n1)
    tmo=$(awk '/^Timeout:/ {print $2}' "$log" | tail -n1)
    passed=$((passed + ${ok:-0} + ${xfail:-0}))
    failed=$((failed + ${fail:-0} + ${xpass:-0} + ${tmo:-0}))
    skipped=$((skipped + ${skip:-0}))
    # A non-zero exit without counted failures (setup error, no summary) still fails.
    if ((rc != 0)) && ((${fail:-0} + ${xpass:-0} + ${tmo:-0} == 0)); then
        failed=$((failed + 1))
    fi
}

run_meson_suite() {
    local suite=$1 rc=0
    sw_log "meson test --suite $suite"
    meson test -C "$builddir" --suite "$suite" --print-errorlogs --num-processes "$(nproc)" \
        2>&1 | tee "$tmp/meson-$suite.log" || rc=$?
    if grep -Eq '^No (suitable )?tests defined' "$tmp/meson-$suite.log"; then
        return 0
    fi
    count_meson "$tmp/meson-$suite.log" "$rc"
}

run_meson_suite unit
run_meson_suite fuzz

if [[ "$unit_only" == 0 ]]; then
    sw_log "e2e: pytest test/e2e"
    rc=0
    # Two workers (pytest-xdist), each with its own Redis; SLIPWAY_E2E_WORKERS=0 runs serially.
    workers=${SLIPWAY_E2E_WORKERS:-2}
    SLIPWAYD="$root/$builddir/slipwayd" timeout -k 30 1500 \
        "$SW_PYTHON" -m pytest test/e2e -q -rfEs -p no:cacheprovider -n "$workers" \
        --junitxml="$tmp/e2e.xml" "${pytest_extra[@]}" || rc=$?
    if ((rc == 5)); then
        sw_log "e2e: no tests collected"
    elif [[ -f "$tmp/e2e.xml" ]]; then
        read -r p f s < <("$SW_PYTHON" - "$tmp/e2e.xml" <<'EOF'
import sys
import xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
t = sum(int(s.get("tests", 0)) for s in suites)
f = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
k = sum(int(s.get("skipped", 0)) for s in suites)
print(max(t - f - k, 0), f, k)
EOF
        )
        passed=$((passed + p))
        failed=$((failed + f))
        skipped=$((skipped + s))
        if ((rc != 0 && f == 0)); then
            failed=$((failed + 1))
        fi
    elif ((rc != 0)); then
        sw_log "e2e: pytest exited $rc without a report"
        failed=$((failed + 1))
    fi
fi

summary
((failed == 0))
