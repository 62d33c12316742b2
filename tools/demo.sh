#!/usr/bin/env bash
# The main job, from a bare machine: install what is missing (lean profile),
# build, and run vktrain on the default device. Until training lands this is
# the device listing, a GPU kernel self-check and the dispatch benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== 1/4 setup"
tools/setup.sh
echo "== 2/4 build (CMake preset 'default')"
cmake --preset default -DVKT_BUILD_TESTS=OFF > /dev/null
cmake --build --preset default | tail -n 1
vkt=build/vktrain
echo "== 3/4 devices"
"$vkt" info
echo "== 4/4 self-check and overhead on the default device"
"$vkt" selftest
"$vkt" bench dispatch --reps 101
echo "demo: done"
