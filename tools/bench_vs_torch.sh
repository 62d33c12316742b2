#!/usr/bin/env bash
# End-to-end training throughput of vktrain against PyTorch DDP (gloo, CPU),
# both with 2 ranks on this machine, measured in the same run:
#   - the Fashion-MNIST MLP 784-1024-1024-10, batch 256 per rank (samples/s);
#   - the GPT with 4 layers, 4 heads, width 256, context 128, batch 16 per
#     rank (tokens/s).
# vktrain's figure is the rate of its last progress interval (after warm-up,
# before the final evaluation); PyTorch's is measured the same way (steps
# after the warm-up ones, random data). Needs /usr/bin/python3 with
# python3-torch and a built tree (build/ unless BUILD is set).
#
#   tools/bench_vs_torch.sh [mlp|gpt|all] [steps]
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-all}
steps=${2:-30}
vkt=${BUILD:-build}/vktrain
[[ -x $vkt ]] || { echo "bench_vs_torch: $vkt not built (cmake --build --preset default)" >&2; exit 1; }
/usr/bin/python3 -c 'import torch' 2>/dev/null ||
    { echo "bench_vs_torch: /usr/bin/python3 lacks torch (apt-get install python3-torch)" >&2; exit 1; }
isa=$(grep -q avx512f /proc/cpuinfo && echo "AVX-512" || (grep -q avx2 /proc/cpuinfo && echo "AVX2, no AVX-512" || echo "no AVX2"))
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
echo "host: $cpu ($isa), $(nproc) cores; $(date -u +%FT%TZ)"
port=$((29000 + RANDOM % 1000))

# The rate of vktrain's last progress line: "... NNN samples/s ..." or tokens/s.
vkt_rate() { sed -n 's/.*  \([0-9.]*\) \(samples\|tokens\)\/s  elapsed.*/\1/p' | tail -n 1; }

run_one() { # run_one KIND UNIT VKT_ARGS...
    local kind=$1 unit=$2; shift 2
    local log; log=$(mktemp)
    "$vkt" launch -n 2 --port "$port" -- "$vkt" train "$@" --steps "$steps" \
        --print-every $((steps / 3)) > "$log" 2>&1 || { cat "$log" >&2; exit 1; }
    local ours; ours=$(vkt_rate < "$log")
    rm -f "$log"
    local torch_line; torch_line=$(/usr/bin/python3 tools/bench/torch_ddp.py "$kind" \
        "$((steps * 2 / 3))" 3 $((port + 1)) 2>/dev/null | grep '^torch')
    local theirs; theirs=$(awk '{print $3}' <<< "$torch_line")
    printf '%-4s vktrain %10.1f %s   pytorch %10.1f %s   ratio %.2fx\n' "$kind" "$ours" "$unit" \
        "$theirs" "$unit" "$(awk -v a="$ours" -v b="$theirs" 'BEGIN{print a/b}')"
    port=$((port + 2))
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [[ $which == all || $which == mlp ]]; then
    run_one mlp samples/s --model mlp --hidden 1024,1024 --batch 256
fi
if [[ $which == all || $which == gpt ]]; then
    [[ -s data/kjv.txt ]] || { echo "bench_vs_torch: data/kjv.txt missing (tools/setup.sh makes it)" >&2; exit 1; }
    run_one gpt tokens/s --model gpt --layers 4 --heads 4 --width 256 --context 128 --batch 16 \
        --eval-batches 1
fi
