#!/usr/bin/env bash
# The main job, from a bare machine: install what is missing (lean profile),
# build, and run vktrain on the default device: the device listing, a GPU
# kernel self-check, the dispatch benchmark, and a real (single-process)
# training run of an MLP through the C API. Distributed training comes with
# the engine and the launcher.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== 1/5 setup"
tools/setup.sh
echo "== 2/5 build (CMake preset 'default')"
cmake --preset default -DVKT_BUILD_TESTS=OFF > /dev/null
cmake --build --preset default | tail -n 1
vkt=build/vktrain
echo "== 3/5 devices"
"$vkt" info
echo "== 4/5 self-check and overhead on the default device"
"$vkt" selftest
"$vkt" bench dispatch --reps 101
echo "== 5/5 training an MLP on a synthetic task (examples/train_mlp.c)"
build/examples/train_mlp 300
echo "demo: done"
