#!/usr/bin/env bash
# Fuzz the parsers with libFuzzer + ASan + UBSan (tests/fuzz/fuzz_*.c).
#
#   tools/fuzz.sh [TARGET|all] [SECONDS]     (defaults: all, 15)
#
# Configures and builds the fuzz build (build-fuzz, or $VKT_FUZZ_BUILD) with
# clang (-DVKT_FUZZ=ON; only the parsers' sources are compiled), then runs
# each target for SECONDS over a copy of its seed corpus
# (tests/fuzz/corpus/TARGET: the committed corpus is never written to).
# Prints each target's executions and result. Exits non-zero when any target
# crashes (a sanitizer report, a failed invariant, a leak, a timeout), naming
# the saved crashing input; reproduce with `build-fuzz/fuzz/fuzz_TARGET FILE`.
# Targets: config safetensors ckpt data_idx data_tokens frame store.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
targets=(config safetensors ckpt data_idx data_tokens frame store)
which=${1:-all}
secs=${2:-15}
build=${VKT_FUZZ_BUILD:-build-fuzz}

case "$which" in
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    all) ;;
    *) if [[ ! " ${targets[*]} " =~ " $which " ]]; then
           echo "fuzz.sh: unknown target '$which' (one of: ${targets[*]}, all)" >&2
           exit 2
       fi
       targets=("$which") ;;
esac
if [[ ! "$secs" =~ ^[1-9][0-9]*$ ]]; then
    echo "fuzz.sh: SECONDS must be a positive whole number, not '$secs'" >&2
    exit 2
fi

cc=$(command -v clang-14 || command -v clang || true)
if [[ -z "$cc" ]]; then
    echo "fuzz.sh: clang not found; install clang-14 and libclang-rt-14-dev" \
         "(tools/setup.sh --test does)" >&2
    exit 1
fi
t0=$(date +%s)
blog=$(mktemp /tmp/vkt-fuzz-build.XXXXXX.log)
if ! { cmake -S . -B "$build" -G Ninja -DCMAKE_C_COMPILER="$cc" -DVKT_FUZZ=ON \
             -DVKT_BUILD_TESTS=OFF -DVKT_WERROR=ON &&
       cmake --build "$build" --target vkt_fuzz; } > "$blog" 2>&1; then
    tail -n 60 "$blog" >&2
    echo "fuzz.sh: building the fuzz targets in $build failed (full log: $blog)" >&2
    exit 1
fi
rm -f "$blog"
echo "fuzz.sh: built in $(( $(date +%s) - t0 ))s"

# Scratch files of the file-reading targets: in memory when possible.
scratch=$(mktemp -d "$( [[ -w /dev/shm ]] && echo /dev/shm || echo /tmp )/vkt-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
crashdir=$(cd "$build" && pwd)/fuzz-crashes
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

failed=()
for t in "${targets[@]}"; do
    work=$scratch/$t
    mkdir -p "$work/corpus" "$work/tmp"
    cp "tests/fuzz/corpus/$t"/* "$work/corpus/"
    log=$work/log
    TMPDIR=$work/tmp "$build/fuzz/fuzz_$t" "$work/corpus" -max_total_time="$secs" \
        -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$work/" > "$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)
    crash=$(find "$work" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' \
            -o -name 'timeout-*' -o -name 'oom-*' \) | head -n1)
    if ((rc == 0)) && [[ -z "$crash" ]]; then
        printf 'fuzz %-12s ok     %10s execs  %7s exec/s  %ss, corpus %s -> %s files\n' \
            "$t" "${execs:-?}" "${rate:-?}" "$secs" "$(ls "tests/fuzz/corpus/$t" | wc -l)" \
            "$(ls "$work/corpus" | wc -l)"
        continue
    fi
    failed+=("$t")
    tail -n 40 "$log" >&2
    if [[ -n "$crash" ]]; then
        mkdir -p "$crashdir"
        saved=$crashdir/${t}-$(basename "$crash")
        cp "$crash" "$saved"
        printf 'fuzz %-12s CRASH  after %s execs; input saved as %s\n' "$t" "${execs:-?}" \
            "$saved" >&2
        echo "  reproduce: $build/fuzz/fuzz_$t $saved" >&2
    else
        printf 'fuzz %-12s FAILED (exit %d, no crashing input saved; log above)\n' "$t" \
            "$rc" >&2
    fi
done
echo "fuzz.sh: total $(( $(date +%s) - t0 ))s"
if ((${#failed[@]})); then
    echo "fuzz.sh: crashed: ${failed[*]}" >&2
    exit 1
fi
