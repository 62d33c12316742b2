#!/usr/bin/env bash
# Run an example as 2 real ranks (a file store in a fresh directory, a fresh
# job secret) from the committed fixtures, then compare its final weights
# with PyTorch's (tests/examples/fixtures/make_example_fixtures.py made them).
#   run_example_2ranks.sh EXAMPLE COMPARE FIXTURES EXPECTED TOLERANCE [ARGS...]
# EXAMPLE gets --init FIXTURES/init.safetensors --data FIXTURES/data.safetensors
# --out OUT --store file:DIR plus ARGS; COMPARE (st_compare) gets
# FIXTURES/EXPECTED OUT TOLERANCE.
set -uo pipefail
bin=$1 compare=$2 fix=$3 expected=$4 tol=$5
shift 5
export VKT_JOB_SECRET="test-$$-$RANDOM"
export WORLD_SIZE=2 VKT_COMM_TIMEOUT_S=60
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
args=(--init "$fix/init.safetensors" --data "$fix/data.safetensors" --out "$dir/out.safetensors"
      --store "file:$dir/store" "$@")
RANK=1 "$bin" "${args[@]}" > "$dir/rank1.log" 2>&1 &
r1=$!
RANK=0 "$bin" "${args[@]}"
s0=$?
wait "$r1"
s1=$?
if ((s1 != 0)); then echo "rank 1 failed ($s1):"; cat "$dir/rank1.log"; fi
((s0 == 0 && s1 == 0)) || exit 1
"$compare" "$fix/$expected" "$dir/out.safetensors" "$tol"
