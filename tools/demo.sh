#!/usr/bin/env bash
# The main job, from a bare machine: install what is missing (lean profile:
# no test-only packages), build, check the default device, then train the
# Fashion-MNIST classifier with 2 ranks started by `vktrain launch`
# (examples/fashion_mnist.json: AdamW with a cosine schedule, ZeRO-1;
# evaluated on the test set after each epoch; stops at 88% test accuracy
# or after 8 epochs) and end with the line "test accuracy: NN.N%".
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== 1/4 setup"
tools/setup.sh
echo "== 2/4 build (CMake preset 'default')"
cmake --preset default -DVKT_BUILD_TESTS=OFF > /dev/null
cmake --build --preset default | tail -n 1
vkt=build/vktrain
echo "== 3/4 devices and a kernel self-check on the default device"
"$vkt" info
"$vkt" selftest
echo "== 4/4 Fashion-MNIST: an MLP trained by 2 ranks"
# vktrain launch starts the ranks with RANK, WORLD_SIZE, MASTER_ADDR/PORT and a
# fresh job secret, prefixes their output, and stops all if one fails.
log=$(mktemp /tmp/vktrain-demo.XXXXXX.log)
trap 'rm -f "$log"' EXIT
"$vkt" launch -n 2 -- "$vkt" train --model mlp --hidden 256 --config examples/fashion_mnist.json \
    --epochs 8 --target-accuracy 88 | tee "$log"
acc=$(sed -n 's/.*test accuracy: \([0-9.]*\)%.*/\1/p' "$log" | tail -n 1)
echo
echo "test accuracy: ${acc:-none}%"
awk -v a="${acc:-0}" 'BEGIN { exit !(a >= 88.0) }' ||
    { echo "demo: below the 88% target" >&2; exit 1; }
