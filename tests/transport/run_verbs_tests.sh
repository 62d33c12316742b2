#!/usr/bin/env bash
# Run the tests labelled `verbs` of a build tree without ctest, for the
# soft-RoCE VM (which has no cmake):
#
#   tools/rxe_vm.sh run --share "$PWD" -- tests/transport/run_verbs_tests.sh build [REGEX]
#
# Reads the tests' commands, environment, labels and timeouts from the
# CTestTestfile.cmake files that CMake wrote, runs each verbs test (whose
# name matches REGEX, if given) under its timeout, prints its output and a
# count, and exits non-zero if any failed or if none was found.
set -uo pipefail

build=${1:?usage: run_verbs_tests.sh BUILD_DIR [REGEX]}
filter=${2:-}
[[ -d $build ]] || { echo "run_verbs_tests: no build tree '$build'" >&2; exit 2; }

declare -A cmd env tmo
names=()
# One CTestTestfile.cmake, then the subdirectories it names (as ctest does;
# walking the whole build tree over 9p is slow under emulation).
read_testfile() {
    local dir=$1 line name props labels
    [[ -f $dir/CTestTestfile.cmake ]] || return 0
    local subs=()
    while IFS= read -r line; do
        if [[ $line =~ ^add_test\(\[=\[([^]]+)\]=\]\ (.*)\)$ ]]; then
            cmd[${BASH_REMATCH[1]}]=${BASH_REMATCH[2]}
        elif [[ $line =~ ^subdirs\(\"([^\"]+)\"\)$ ]]; then
            subs+=("${BASH_REMATCH[1]}")
        elif [[ $line =~ ^set_tests_properties\(\[=\[([^]]+)\]=\]\ PROPERTIES\ (.*)$ ]]; then
            name=${BASH_REMATCH[1]} props=${BASH_REMATCH[2]} labels=
            [[ $props =~ LABELS\ \"([^\"]*)\" ]] && labels=${BASH_REMATCH[1]}
            [[ ";$labels;" == *";verbs;"* ]] || continue
            [[ -z $filter || $name =~ $filter ]] || continue
            names+=("$name")
            tmo[$name]=300
            [[ $props =~ TIMEOUT\ \"([0-9]+)\" ]] && tmo[$name]=${BASH_REMATCH[1]}
            env[$name]=
            [[ $props =~ ENVIRONMENT\ \"([^\"]*)\" ]] && env[$name]=${BASH_REMATCH[1]}
        fi
    done <"$dir/CTestTestfile.cmake"
    local s
    for s in "${subs[@]}"; do
        [[ $s == /* ]] || s=$dir/$s
        read_testfile "$s"
    done
}
read_testfile "$build"

if ((${#names[@]} == 0)); then
    echo "run_verbs_tests: no tests labelled verbs in $build${filter:+ matching '$filter'}" \
         "(built without libibverbs-dev?)" >&2
    exit 1
fi

# Split add_test's argument text into words without eval: CMake writes each
# argument double-quoted, escaping \, " and $ with a backslash (bare words
# and [=[bracket]=] arguments are taken as they are).
split_args() {
    local s=$1 i=0 n=${#1} ch word
    argv=()
    while ((i < n)); do
        ch=${s:i:1}
        if [[ $ch == [[:space:]] ]]; then
            i=$((i + 1))
        elif [[ $ch == '"' ]]; then
            word= i=$((i + 1))
            while ((i < n)) && [[ ${s:i:1} != '"' ]]; do
                [[ ${s:i:1} == '\' ]] && i=$((i + 1))
                word+=${s:i:1}
                i=$((i + 1))
            done
            argv+=("$word")
            i=$((i + 1))
        elif [[ ${s:i} =~ ^\[(=*)\[ ]]; then
            local close="]${BASH_REMATCH[1]}]" rest=${s:i+${#BASH_REMATCH[0]}}
            argv+=("${rest%%"$close"*}")
            rest=${rest#*"$close"}
            i=$((n - ${#rest}))
        else
            word=${s:i}
            word=${word%%[[:space:]]*}
            argv+=("$word")
            i=$((i + ${#word}))
        fi
    done
}

passed=0
failed=()
for name in "${names[@]}"; do
    split_args "${cmd[$name]}"
    IFS=';' read -r -a vars <<<"${env[$name]}"
    echo "=== $name (timeout ${tmo[$name]} s)"
    t0=$SECONDS
    env "${vars[@]}" timeout -k 5 "${tmo[$name]}" "${argv[@]}"
    rc=$?
    if ((rc == 0)); then
        passed=$((passed + 1))
        echo "--- $name: passed in $((SECONDS - t0)) s"
    else
        failed+=("$name")
        [[ $rc -eq 124 ]] && why="timed out" || why="exit $rc"
        echo "--- $name: FAILED ($why) after $((SECONDS - t0)) s"
    fi
done
echo "verbs tests: $passed passed, ${#failed[@]} failed, ${#names[@]} total"
((${#failed[@]} == 0)) || { echo "failed: ${failed[*]}"; exit 1; }
