#!/usr/bin/env bash
# Run examples/train_ddp as 2 real ranks (a file store in a fresh directory,
# a fresh job secret) and require both to succeed: the loss must halve and
# the replicas must be identical (train_ddp checks both).
#   run_ddp.sh TRAIN_DDP CONFIG UPDATES
set -uo pipefail
bin=$1 cfg=$2 updates=$3
export VKT_JOB_SECRET="test-$$-$RANDOM"
export WORLD_SIZE=2 VKT_COMM_TIMEOUT_S=60
dir=$(mktemp -d)
log=$dir/rank1.log
RANK=1 "$bin" "$cfg" "$updates" "file:$dir/store" > "$log" 2>&1 &
r1=$!
RANK=0 "$bin" "$cfg" "$updates" "file:$dir/store"
s0=$?
wait "$r1"
s1=$?
if ((s1 != 0)); then echo "rank 1 failed ($s1):"; cat "$log"; fi
rm -rf "$dir"
((s0 == 0 && s1 == 0))
