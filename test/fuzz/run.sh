#!/usr/bin/env bash
# Fuzzes one target, then folds what it found back into the committed corpus, minimized.
#   test/fuzz/run.sh NAME [SECONDS] [RUNS]     (defaults: 1800 s, 10,000,000 executions)
# Needs a clang build with fuzzing: CC=clang meson setup build-fuzz -Dfuzz=true
# Crashes, leaks and timeouts are kept going past (-fork=1 -ignore_*) and land in
# $FUZZ_WORK/artifacts/NAME-*; each one fixed goes into corpus/NAME/ as regression input.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
name=${1:?usage: run.sh NAME [SECONDS] [RUNS]}
seconds=${2:-1800}
runs=${3:-10000000}
bin=${FUZZ_BUILD:-../../build-fuzz}/test/fuzz/fuzz_$name
work=${FUZZ_WORK:-/tmp/slipway-fuzz}
mkdir -p "$work/$name" "$work/artifacts"
dict=()
[[ -f $name.dict ]] && dict=(-dict="$name.dict")
"$bin" -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 -timeout=10 \
    -max_total_time="$seconds" -runs="$runs" "${dict[@]}" \
    -artifact_prefix="$work/artifacts/$name-" "$work/$name" "corpus/$name"
# Minimize: keep the inputs that add coverage, from the committed corpus first.
mkdir -p "$work/$name.min"
"$bin" -merge=1 "$work/$name.min" "corpus/$name" "$work/$name"
echo "minimized corpus in $work/$name.min ($(ls "$work/$name.min" | wc -l) files)"
