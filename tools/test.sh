#!/usr/bin/env bash
# The whole test suite, as CI runs it: install what is missing, build with
# warnings as errors, run the ctest label groups one after another (unit,
# integration, slow: the long-compiling kernel variants), then the unit
# tests again under ASan + UBSan, 15 s of libFuzzer on each parser
# (tools/fuzz.sh), then the verbs tests in a soft-RoCE VM
# (tools/rxe_vm.sh). Prints each group's wall time and a total; exits
# non-zero if anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
failed=()
declare -a summary

step() { # step NAME COMMAND... : run, time, record
    local name=$1; shift
    local t0=$(date +%s)
    echo
    echo "=== $name"
    if "$@"; then
        summary+=("$(printf '%-28s %5ss  ok' "$name" $(( $(date +%s) - t0 )))")
    else
        summary+=("$(printf '%-28s %5ss  FAILED' "$name" $(( $(date +%s) - t0 )))")
        failed+=("$name")
    fi
}

ctest_label() { # ctest_label BUILD_DIR LABEL
    ctest --test-dir "$1" -L "^$2\$" --output-on-failure -j2 --timeout 600
}

step "setup --test" tools/setup.sh --test || true
if ((${#failed[@]})); then echo "setup failed; cannot build" >&2; exit 1; fi

step "configure+build" bash -c \
    'cmake --preset default -DVKT_WERROR=ON -DVKT_BUILD_TESTS=ON >/dev/null &&
     cmake --build --preset default'
if ((${#failed[@]} == 0)); then
    for label in unit integration slow faults slurm; do
        step "ctest -L $label" ctest_label build "$label"
    done
fi

step "asan configure+build" bash -c \
    'cmake --preset asan -DVKT_WERROR=ON -DVKT_BUILD_TESTS=ON >/dev/null &&
     cmake --build --preset asan'
if [[ ! " ${failed[*]} " =~ " asan configure+build " ]]; then
    step "asan ctest -L unit" ctest_label build-asan unit
fi

# libFuzzer + ASan/UBSan on every parser, 15 s each (tools/fuzz.sh).
step "fuzz smoke" tools/fuzz.sh all 15

# Verbs (RDMA) tests run inside a soft-RoCE VM (tools/rxe_vm.sh), which is
# built on first use; if it cannot be built, this step fails and says so.
verbs_vm() {
    if ! { tools/rxe_vm.sh deps && tools/rxe_vm.sh build; }; then
        echo "verbs (VM): cannot build the soft-RoCE guest (see above): the verbs tests did NOT run" >&2
        return 1
    fi
    tools/rxe_vm.sh run --share "$PWD" -- tests/transport/run_verbs_tests.sh build
}
if [[ ! " ${failed[*]} " =~ " configure+build " ]]; then
    step "verbs (VM)" verbs_vm
fi

echo
echo "=== summary"
printf '%s\n' "${summary[@]}"
printf '%-28s %5ss\n' "total" $(( $(date +%s) - start ))
if ((${#failed[@]})); then
    echo "FAILED: ${failed[*]}"
    exit 1
fi
echo "all passed"
