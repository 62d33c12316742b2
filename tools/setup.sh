#!/usr/bin/env bash
# Install what vktrain needs from Debian's packages. Idempotent: installs
# only what is missing, and says what. Works as root on a fresh Debian 12.
#
#   tools/setup.sh          build and run (the demo): compiler, CMake, Ninja,
#                           Vulkan loader and headers, lavapipe, glslang,
#                           spirv-tools, the small C libraries and the demo's
#                           data (Fashion-MNIST, the King James Bible)
#   tools/setup.sh --test   also what only the tests and benchmarks need:
#                           validation layers, cmocka, Gloo, verbs, OpenBLAS,
#                           openssh (the launcher's ssh test), clang +
#                           libFuzzer (tools/fuzz.sh), SLURM, munge and Open
#                           MPI (the srun and mpirun tests, label slurm)
# Then writes data/kjv.txt (the Bible as plain text) once, for the demo.
set -euo pipefail

base=(
    gcc libc6-dev make cmake ninja-build pkg-config
    libvulkan-dev mesa-vulkan-drivers glslang-tools spirv-tools
    libjansson-dev libxxhash-dev libsodium-dev zlib1g-dev
    dataset-fashion-mnist bible-kjv
)
testing=(
    g++ vulkan-validationlayers libcmocka-dev
    libgloo-dev libibverbs-dev rdma-core
    libopenblas-dev iproute2 procps
    openssh-server openssh-client
    clang-14 libclang-rt-14-dev
    slurm-wlm munge openmpi-bin
)

want=("${base[@]}")
case "${1:-}" in
    "") ;;
    --test) want+=("${testing[@]}") ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup.sh: unknown option '$1' (use --test or nothing)" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [[ "$status" == "install ok installed" ]] || missing+=("$p")
done

install_missing() {
    if ((${#missing[@]} == 0)); then
        echo "setup: all ${#want[@]} packages present"
        return
    fi
    if [[ $(id -u) -ne 0 ]]; then
        echo "setup: missing packages: ${missing[*]}" >&2
        echo "setup: run as root (or: sudo apt-get install ${missing[*]})" >&2
        exit 1
    fi
    echo "setup: installing ${#missing[@]} package(s): ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    local log
    log=$(mktemp /tmp/vktrain-setup.XXXXXX.log)
    if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
            > "$log" 2>&1; then
        tail -n 30 "$log" >&2
        echo "setup: apt-get failed (full log: $log)" >&2
        exit 1
    fi
    rm -f "$log"
    echo "setup: done"
}

# The demo's text corpus: bible-kjv's whole text, one verse a line
# ("Ge1:1 In the beginning ..."), about 4.4 MB. Written once; -l0 turns off
# line wrapping so the output does not depend on the terminal's width.
prepare_kjv() {
    local root kjv
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    kjv=$root/data/kjv.txt
    [[ -s "$kjv" ]] && return
    mkdir -p "$root/data"
    if ! bible -f -l0 'gen1:1-rev22:21' > "$kjv.tmp"; then
        rm -f "$kjv.tmp"
        echo "setup: 'bible' (package bible-kjv) failed to print the text; data/kjv.txt not written" >&2
        exit 1
    fi
    mv "$kjv.tmp" "$kjv"
    echo "setup: wrote data/kjv.txt ($(stat -c %s "$kjv") bytes)"
}

install_missing
prepare_kjv
