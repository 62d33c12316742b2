#!/usr/bin/env bash
# The language-model workload: a byte-level GPT trained on the King James
# Bible (data/kjv.txt, made by tools/setup.sh from Debian's bible-kjv) by 2
# ranks with ZeRO-2 in bf16. Passes when its validation loss ends clearly
# below (by 0.1 nats) that of the bigram model counted on the same split in
# the same run, and when `vktrain sample` generates text from the checkpoint.
#   run_kjv.sh VKTRAIN KJV_TEXT [steps]
set -euo pipefail
vkt=$1 text=$2 steps=${3:-500}
if [[ ! -s $text ]]; then
    echo "run_kjv: $text is missing or empty: run tools/setup.sh (it prepares the KJV text)" >&2
    exit 1
fi
dir=$(mktemp -d /tmp/vkt-kjv.XXXXXX)
trap 'rm -rf "$dir"' EXIT
"$vkt" launch -n 2 -- "$vkt" train --model gpt --data "$text" --layers 2 --heads 4 --width 64 \
    --context 32 --batch 16 --dtype bf16 --zero 2 --lr 3e-3 --steps "$steps" \
    --eval-every "$steps" --eval-batches 40 --ckpt-dir "$dir/run" | tee "$dir/log"
val=$(sed -n 's/.*final train loss [0-9.]*, validation loss \([0-9.]*\).*/\1/p' "$dir/log")
big=$(sed -n 's/.*bigram baseline.*validation loss \([0-9.]*\) ->.*/\1/p' "$dir/log")
echo "run_kjv: model validation loss ${val:-?}, bigram ${big:-?}"
awk -v v="${val:-99}" -v b="${big:-0}" 'BEGIN { exit !(b > 1 && v < b - 0.1) }' ||
    { echo "run_kjv: the model is not clearly better than the bigram baseline" >&2; exit 1; }
"$vkt" sample "$dir/run" --prompt "And God said" --tokens 80 --seed 3 | tee "$dir/sample"
[[ $(wc -c < "$dir/sample") -ge 90 ]] || { echo "run_kjv: sample too short" >&2; exit 1; }
