#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the tests and for trying
# `srun vktrain train` without a real cluster: a private munged, slurmctld
# and slurmd (Debian's slurm-wlm and munge, `tools/setup.sh --test`), all
# their state, logs, pid files and config in one directory. Root only (slurmd
# starts tasks as the user who asked for them). No systemd and no cgroups:
# proctrack/linuxproc and task/none, which also work inside containers.
#
#   tools/slurm_local.sh start    start whatever is not running, then wait until
#                                 the node is idle (VKT_SLURM_TIMEOUT s, default 60);
#                                 on failure: which daemon and its log's tail
#   tools/slurm_local.sh stop     cancel this cluster's jobs and stop the daemons
#                                 whose pid files are in the directory (only those)
#   tools/slurm_local.sh status   each daemon and the node; exit 0 when all is up
#   tools/slurm_local.sh env      print 'export SLURM_CONF=...' (for eval)
#
# Then: export SLURM_CONF=$VKT_SLURM_DIR/slurm.conf; srun -n 2 PROGRAM.
# Settings (environment): VKT_SLURM_DIR (default ${TMPDIR:-/tmp}/vktrain-slurm),
# VKT_SLURM_PORT (slurmctld's port, default 6817; slurmd takes the next one),
# VKT_SLURM_CPUS (CPUs the node offers, default the cores but at least 2;
# more than the machine has is allowed: tasks then share cores).
# Exit codes: 0 ok; 1 a daemon failed (its log's tail on stderr); 2 usage;
# 3 status: not (all) up.
set -uo pipefail

DIR=${VKT_SLURM_DIR:-${TMPDIR:-/tmp}/vktrain-slurm}
PORT=${VKT_SLURM_PORT:-6817}
CPUS=${VKT_SLURM_CPUS:-$(nproc)}
((CPUS < 2)) && CPUS=2
TIMEOUT=${VKT_SLURM_TIMEOUT:-60}
NODE=$(hostname -s)
CONF=$DIR/slurm.conf
export SLURM_CONF=$CONF

die() { echo "slurm_local: $*" >&2; exit 1; }
usage() { sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }

# The pid in a daemon's pid file when that process is alive and is the
# daemon (the name check guards against a recycled pid); else nothing.
running_pid() { # running_pid NAME
    local pid
    pid=$(cat "$DIR/run/$1.pid" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$1"* ]] || return 1
    echo "$pid"
}

log_tail() { # log_tail NAME : the last lines of a daemon's log, indented
    echo "--- last lines of $DIR/log/$1.log:" >&2
    tail -n 20 "$DIR/log/$1.log" 2>/dev/null | sed 's/^/    /' >&2 || echo "    (no log)" >&2
}

write_config() {
    mkdir -p "$DIR"/{run,log,state,spool,munge} || die "cannot create $DIR"
    # munged insists that everyone may traverse to its socket.
    chmod 755 "$DIR" "$DIR/munge"
    : > "$DIR/plugstack.conf" # no SPANK plugins (not the system's list)
    cat > "$CONF.tmp" <<EOF
# Written by tools/slurm_local.sh: a one-node test cluster. Edits are lost.
ClusterName=vktrain
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
MailProg=/bin/true
PlugStackConfig=$DIR/plugstack.conf
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
InactiveLimit=0
KillWait=5
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS State=UNKNOWN
PartitionName=local Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
    mv "$CONF.tmp" "$CONF"
}

start_munged() {
    running_pid munged > /dev/null && return 0
    local key=$DIR/munge/munge.key
    if [[ ! -s $key ]]; then
        (umask 077 && head -c 1024 /dev/urandom > "$key") || die "cannot write $key"
    fi
    chmod 400 "$key"
    munged --socket="$DIR/munge/munge.socket" --key-file="$key" \
        --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log" \
        --seed-file="$DIR/munge/munged.seed" 2>> "$DIR/log/munged.log" ||
        { log_tail munged; die "munged did not start"; }
    munge -S "$DIR/munge/munge.socket" -n | unmunge -S "$DIR/munge/munge.socket" > /dev/null 2>&1 ||
        { log_tail munged; die "munged runs, but munge | unmunge fails"; }
}

# A port that something other than our daemon listens on is the usual
# reason a second cluster cannot start: say so before the daemon fails.
port_free() { # port_free NAME PORT
    running_pid "$1" > /dev/null && return 0
    if (exec 3<> "/dev/tcp/127.0.0.1/$2") 2> /dev/null; then
        die "port $2 (for $1) is in use, by another SLURM cluster? Stop it, or set VKT_SLURM_PORT"
    fi
}

# Start a SLURM daemon and wait (10 s) for its pid file: a bad config makes
# it exit at once, which we report with its log instead of a later timeout.
start_daemon() { # start_daemon NAME ARGS...
    local name=$1; shift
    running_pid "$name" > /dev/null && return 0
    rm -f "$DIR/run/$name.pid"
    "$name" -f "$CONF" "$@" >> "$DIR/log/$name.log" 2>&1 ||
        { log_tail "$name"; die "$name did not start"; }
    local t
    for ((t = 0; t < 100; t++)); do
        running_pid "$name" > /dev/null && return 0
        sleep 0.1
    done
    log_tail "$name"
    die "$name exited right after starting"
}

node_state() { sinfo -h -N -n "$NODE" -o %T 2>/dev/null | head -n 1; }

wait_idle() {
    local deadline=$((SECONDS + TIMEOUT)) state=""
    while ((SECONDS < deadline)); do
        state=$(node_state)
        case $state in
            idle | mixed | allocated) return 0 ;;
            *drain* | *fail*)
                sinfo -R >&2
                log_tail slurmd
                die "node $NODE is $state (reason above)" ;;
        esac
        for d in slurmctld slurmd; do
            running_pid "$d" > /dev/null || { log_tail "$d"; die "$d died while the node came up"; }
        done
        sleep 0.5
    done
    log_tail slurmctld
    log_tail slurmd
    die "node $NODE is '${state:-not listed}' after ${TIMEOUT}s, not idle" \
        "(sinfo with SLURM_CONF=$CONF)"
}

start() {
    [[ $(id -u) -eq 0 ]] || die "needs root (slurmd starts tasks as their user)"
    local tool
    for tool in munged slurmctld slurmd sinfo srun; do
        command -v "$tool" > /dev/null ||
            die "'$tool' not found: run tools/setup.sh --test (packages slurm-wlm, munge)"
    done
    # The config changes only while no SLURM daemon reads it.
    if ! running_pid slurmctld > /dev/null && ! running_pid slurmd > /dev/null; then
        write_config
    fi
    port_free slurmctld "$PORT"
    port_free slurmd $((PORT + 1))
    start_munged
    start_daemon slurmctld -c # -c: a fresh cluster, no jobs from an earlier one
    start_daemon slurmd
    wait_idle
    echo "slurm_local: node $NODE idle with $CPUS CPUs; export SLURM_CONF=$CONF"
}

# TERM to each named daemon at once, then up to 10 s for each, then KILL.
stop_pids() { # stop_pids NAME...
    local name pid t
    local -A pids=()
    for name; do
        pid=$(running_pid "$name") && kill "$pid" 2>/dev/null && pids[$name]=$pid
        rm -f "$DIR/run/$name.pid"
    done
    for name in "${!pids[@]}"; do
        pid=${pids[$name]}
        for ((t = 0; t < 100; t++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
        echo "slurm_local: stopped $name ($pid)"
    done
}

stop() {
    # Jobs first, so that no slurmstepd outlives its slurmd.
    if running_pid slurmctld > /dev/null && running_pid slurmd > /dev/null; then
        local jobs t
        mapfile -t jobs < <(squeue -h -o %i 2>/dev/null)
        if ((${#jobs[@]})); then
            scancel "${jobs[@]}" 2>/dev/null
            for ((t = 0; t < 100; t++)); do
                [[ -z $(squeue -h -o %i 2>/dev/null) ]] && break
                sleep 0.1
            done
        fi
    fi
    stop_pids slurmd slurmctld
    stop_pids munged # last: the SLURM daemons authenticate until they exit
}

status() {
    local d pid up=0 state
    for d in munged slurmctld slurmd; do
        if pid=$(running_pid "$d"); then
            echo "$d: running ($pid)"
        else
            echo "$d: not running"
            up=3
        fi
    done
    state=$(node_state)
    echo "node $NODE: ${state:-unknown} (SLURM_CONF=$CONF)"
    [[ $state == idle || $state == mixed || $state == allocated ]] || up=3
    return "$up"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    -h | --help) usage 0 ;;
    *) usage ;;
esac
