#!/usr/bin/env bash
# The main job, from a bare machine: install what is missing (lean profile),
# build, and run vktrain on the default device: the device listing, a GPU
# kernel self-check, the dispatch benchmark, a single-process training run
# through the model API, then a real 2-rank data-parallel training run
# through the engine (examples/train_ddp.c with examples/ds_config.json:
# bf16, ZeRO-1, gradient accumulation), started by `vktrain launch`.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== 1/6 setup"
tools/setup.sh
echo "== 2/6 build (CMake preset 'default')"
cmake --preset default -DVKT_BUILD_TESTS=OFF > /dev/null
cmake --build --preset default | tail -n 1
vkt=build/vktrain
echo "== 3/6 devices"
"$vkt" info
echo "== 4/6 self-check and overhead on the default device"
"$vkt" selftest
"$vkt" bench dispatch --reps 101
echo "== 5/6 training an MLP in one process (examples/train_mlp.c)"
build/examples/train_mlp 300
echo "== 6/6 training with 2 ranks: DDP + ZeRO-1 in bf16 (examples/train_ddp.c)"
# vktrain launch starts the ranks with RANK, WORLD_SIZE, MASTER_ADDR/PORT and a
# fresh job secret, prefixes their output, and stops all if one fails.
"$vkt" launch -n 2 build/examples/train_ddp examples/ds_config.json 200
echo "demo: done"
