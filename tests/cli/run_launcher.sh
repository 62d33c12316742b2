#!/usr/bin/env bash
# Two ranks started by a real launcher find each other through the
# variables it sets, with no help from vktrain launch:
#   srun    on the one-node SLURM cluster of tools/slurm_local.sh (started
#           here when not running, and then stopped at exit)
#   mpirun  Open MPI's, on this host
# First env_rank (what vkt_dist_env_detect read in each rank, and an
# all-reduce over the comm it builds); with srun also an sbatch job whose
# script must not pass for a rank and that runs mpirun inside; with mpirun
# also MASTER_ADDR/MASTER_PORT passed with -x. Then `vktrain train` on
# Fashion-MNIST for 20 updates: exit 0, rank 0's summary for 2 ranks, and 20
# metrics lines from each rank. Each step has a time limit and says what failed.
#   run_launcher.sh srun|mpirun VKTRAIN ENV_RANK SOURCE_DIR
set -uo pipefail
mode=$1 vkt=$2 env_rank=$3 src=$4
data=/usr/share/datasets/fashion-mnist
steps=20
fail() { echo "run_launcher($mode): FAIL: $*" >&2; exit 1; }
exited() { # exited RC LIMIT : "exited RC", and why when timeout(1) stopped it
    echo "exited $1$( (($1 == 124)) && echo " (still running after $2 s, stopped)")"
}

dir=$(mktemp -d /tmp/vkt-launcher.XXXXXX)
started=0
cleanup() {
    ((started)) && "$src/tools/slurm_local.sh" stop > /dev/null
    rm -rf "$dir"
}
trap cleanup EXIT

# Only the launcher under test may tell the ranks who they are.
unset RANK WORLD_SIZE LOCAL_RANK LOCAL_WORLD_SIZE MASTER_ADDR MASTER_PORT
for v in $(compgen -e | grep -E '^(SLURM_|OMPI_|PMIX_)'); do unset "$v"; done
VKT_JOB_SECRET=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
export VKT_JOB_SECRET
[[ -s $data/train-images-idx3-ubyte.gz ]] ||
    fail "no Fashion-MNIST in $data: run tools/setup.sh (package dataset-fashion-mnist)"

case $mode in
    srun)
        command -v srun > /dev/null || fail "srun not found: run tools/setup.sh --test (slurm-wlm)"
        # One cluster per machine: another build's test waits here for it.
        slurm_dir=${VKT_SLURM_DIR:-${TMPDIR:-/tmp}/vktrain-slurm}
        exec 9> "$slurm_dir.lock"
        flock -w 45 9 || fail "another test held $slurm_dir.lock for 45 s"
        if ! "$src/tools/slurm_local.sh" status > /dev/null; then
            started=1
            VKT_SLURM_TIMEOUT=30 "$src/tools/slurm_local.sh" start ||
                fail "tools/slurm_local.sh start failed (above)"
        fi
        eval "$("$src/tools/slurm_local.sh" env)"
        launch=(srun -n 2 --time=2 --kill-on-bad-exit=1)
        master_host=$(hostname -s) source=slurm
        ;;
    mpirun)
        command -v mpirun > /dev/null ||
            fail "mpirun not found: run tools/setup.sh --test (openmpi-bin)"
        launch=(mpirun -n 2 --allow-run-as-root --oversubscribe -x VKT_JOB_SECRET)
        master_host=127.0.0.1 source=mpirun
        ;;
    *) fail "mode '$mode': want srun or mpirun" ;;
esac
echo "run_launcher($mode): ${launch[*]}"

# 1. What each rank detected, and one all-reduce over the comm.
# Each rank writes its own file: a launcher may interleave the ranks' output.
run_env_rank() { # run_env_rank LOG [LAUNCHER OPTIONS...]
    local log=$1 rc
    shift
    rm -f "$dir"/rank.*
    timeout 30 "${launch[@]}" "$@" sh -c 'exec "$0" > "$1/rank.$$"' "$env_rank" "$dir" \
        > "$dir/launcher.log" 2>&1
    rc=$?
    cat "$dir"/rank.* > "$log" 2> /dev/null
    cat "$dir/launcher.log" "$log"
    return "$rc"
}
run_env_rank "$dir/env.log"
rc=$?
((rc == 0)) || fail "env_rank under ${launch[0]} $(exited $rc 30)"
for r in 0 1; do
    line=$(grep -a "env_rank source=.* rank=$r " "$dir/env.log") ||
        fail "rank $r printed no env_rank line"
    want="source=$source rank=$r world=2 local=$r/2 master=$master_host:"
    [[ $line == *"$want"* && $line == *" sum=3" ]] ||
        fail "rank $r: '$line' lacks '$want' or sum=3 (1 + 2)"
done
if [[ $mode == srun ]]; then
    # srun's default port: 20000 + job id % 20000, the same in both ranks.
    port=$(sed -n 's/.* master=[^:]*:\([0-9]*\).*/\1/p' "$dir/env.log" | sort -u)
    [[ $port =~ ^[0-9]+$ ]] && ((port >= 20000 && port < 40000)) ||
        fail "master ports '$port': want one port, 20000..39999, in both ranks"

    # A batch job (sbatch -n 2): its script has SLURM_PROCID=0 and
    # SLURM_NTASKS=2 but is no rank (env_rank must refuse, not wait for a
    # partner), and mpirun inside it hands both ranks that SLURM_PROCID=0
    # too (Open MPI's own variables must win).
    command -v mpirun > /dev/null ||
        fail "mpirun not found: run tools/setup.sh --test (openmpi-bin)"
    cat > "$dir/batch.sh" <<EOF
#!/bin/sh
"$env_rank" detect > "$dir/direct.log" 2>&1
rm -f "$dir"/rank.*
mpirun -n 2 --allow-run-as-root --oversubscribe \\
    sh -c 'exec "\$0" > "\$1/rank.\$\$"' "$env_rank" "$dir"
echo \$? > "$dir/batch.rc"
EOF
    # Polled here: sbatch --wait checks the job only every few seconds.
    sbatch -n 2 -t 2 -o "$dir/batch.out" "$dir/batch.sh" > "$dir/sbatch.log" 2>&1 ||
        { cat "$dir/sbatch.log"; fail "sbatch refused the batch job"; }
    for ((t = 0; t < 600; t++)); do
        [[ -s $dir/batch.rc ]] && break
        sleep 0.1
    done
    cat "$dir/batch.out" "$dir/direct.log" "$dir"/rank.* 2> /dev/null
    rc=$(cat "$dir/batch.rc" 2> /dev/null)
    [[ $rc == 0 ]] ||
        fail "the batch job (mpirun inside sbatch -n 2) ${rc:+exited $rc}${rc:-did not end in 60 s}"
    grep -q "SLURM_STEP_ID is not" "$dir/direct.log" ||
        fail "the batch script itself was not refused as a rank"
    for r in 0 1; do
        grep -q "source=mpirun rank=$r world=2 local=$r/2 master=127.0.0.1:.* sum=3" \
            "$dir"/rank.* || fail "mpirun in a batch job: no rank $r from Open MPI's variables"
    done
fi
if [[ $mode == mpirun ]]; then
    # Across hosts Open MPI names no master: MASTER_ADDR/MASTER_PORT passed with -x win.
    port=$((30000 + RANDOM % 9000))
    MASTER_ADDR=127.0.0.1 MASTER_PORT=$port run_env_rank "$dir/env2.log" -x MASTER_ADDR \
        -x MASTER_PORT || fail "env_rank with -x MASTER_ADDR -x MASTER_PORT failed"
    [[ $(grep -ac "master=127.0.0.1:$port sum=3" "$dir/env2.log") == 2 ]] ||
        fail "-x MASTER_ADDR/MASTER_PORT: not 2 ranks at 127.0.0.1:$port with sum=3"
fi

# 2. A short real training run. Usually about 10 s; the first run in a build
# tree compiles the pipelines with validation on (over a minute when busy).
timeout 240 "${launch[@]}" "$vkt" train --model mlp --data "$data" --hidden 32 --batch 16 \
    --steps "$steps" --metrics "$dir/metrics-{rank}.jsonl" > "$dir/train.log" 2>&1
rc=$?
tr '\r' '\n' < "$dir/train.log" | grep -av 'step [0-9]*/[0-9]*  epoch'
((rc == 0)) || fail "vktrain train under ${launch[0]} $(exited $rc 240)"
grep -aq "^vktrain train: mlp, .* on 2 ranks " "$dir/train.log" ||
    fail "rank 0 did not report 2 ranks at the start"
grep -aq "^done: $steps updates .* 2 ranks," "$dir/train.log" ||
    fail "no 'done: $steps updates ... 2 ranks' summary from rank 0"
grep -aq "^test accuracy: " "$dir/train.log" || fail "no 'test accuracy:' line"
for r in 0 1; do
    m=$dir/metrics-$r.jsonl
    n=$(grep -c "\"rank\":$r,\"loss\"" "$m" 2>/dev/null)
    [[ $n == "$steps" ]] || fail "rank $r wrote ${n:-no} update lines to $m, want $steps"
done
echo "run_launcher($mode): ok, 2 ranks, $steps updates, ${SECONDS}s"
