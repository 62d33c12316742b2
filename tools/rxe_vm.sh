#!/usr/bin/env bash
# Run a command inside a small Debian bookworm VM whose stock kernel has
# soft-RoCE (rdma_rxe), so that verbs code is tested for real on machines
# without RDMA hardware or kernel RDMA support.
#
#   tools/rxe_vm.sh deps     install the host tools (qemu, debootstrap, cpio, xz); root
#   tools/rxe_vm.sh build    build the guest once into the cache; root; a no-op
#                            while the cached guest matches this script's recipe
#   tools/rxe_vm.sh run [--share DIR]... [--cwd DIR] [-e VAR=VAL]... [--timeout S] -- CMD...
#                            boot the guest, mount each DIR over 9p at the same
#                            path (default: $PWD), create veth0/veth1 with rxe0/rxe1
#                            on them, run CMD as root in --cwd (default $PWD) and
#                            exit with its code
#   tools/rxe_vm.sh shell [--share DIR]...   the same guest with an interactive shell
#
# The guest's root file system is an initramfs (no disk image, no boot
# loader): the kernel unpacks it into RAM and runs our /init, which mounts a
# per-run control folder over 9p and runs the job script the host wrote
# there. Nothing a run does persists, so runs can overlap.
#
# Exit codes of run: CMD's own code; 124 the VM ran past the timeout; 125 the
# VM or its rxe setup failed before CMD ran (console tail on stderr); 126
# --cwd is not inside a share; 2 usage. The runner's own failures print a
# line starting "rxe_vm: runner failure:"; a CMD that itself exits 124-126
# gets "rxe_vm: the command itself exited with N". Every run ends with one
# line on stderr that says whose code it is:
#   rxe_vm: accel=A exit=N from=command|runner wall=Ns
#
# Settings (environment): VKT_RXE_CACHE (default
# ${XDG_CACHE_HOME:-~/.cache}/vktrain-rxe), VKT_RXE_MIRROR (default: the
# host apt's URI for bookworm main), VKT_RXE_TIMEOUT (900 s), VKT_RXE_MEM
# (1024 MiB), VKT_RXE_SMP (2), VKT_RXE_ACCEL (auto|tcg|kvm).
set -uo pipefail

SUITE=bookworm
CACHE=${VKT_RXE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vktrain-rxe}
HOST_DEPS=(qemu-system-x86 debootstrap cpio xz-utils curl debian-archive-keyring)
# Guest packages: the verbs stack, the tools the job script uses, and the
# runtime libraries of our test binaries (check with ldd when tests change).
GUEST_PKGS=(
    kmod iproute2 procps
    libibverbs1 ibverbs-providers ibverbs-utils librdmacm1
    libcmocka0 libsodium23 libxxhash0 libjansson4 zlib1g libgloo0 libstdc++6
)
# Kernel modules kept in the guest (with their dependencies); the rest of the
# kernel's 300+ MB of modules is dropped to keep the initramfs small.
GUEST_MODS=(virtio_pci 9pnet_virtio 9p veth rdma_rxe ib_uverbs rdma_ucm crc32_generic)
RXE_EXIT_TIMEOUT=124
RXE_EXIT_INFRA=125

die() { echo "rxe_vm: runner failure: $*" >&2; exit "$RXE_EXIT_INFRA"; }
usage() { sed -n '2,32p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }
need_root() {
    [[ $(id -u) -eq 0 ]] || die "'$1' needs root (debootstrap/apt-get): run 'sudo $0 $1'"
}

# The guest's /init, baked into the initramfs. Kept generic: everything
# that can change per run lives in the job script in the control share.
guest_init() {
    cat <<'EOF'
#!/bin/sh
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
for d in /dev/shm /tmp /run; do mount -t tmpfs tmpfs "$d"; done
# Loading modules takes seconds under emulation: load the RDMA stack on
# the second vCPU while the 9p stack loads (the job script checks it).
modprobe -qa veth crc32_generic rdma_rxe ib_uverbs &
rdma_load=$!
modprobe -q virtio_pci 2>/dev/null
modprobe -q 9pnet_virtio && modprobe -q 9p || echo "rxe_vm(guest): cannot load 9p modules"
mkdir -p /vkt-ctl
if mount -t 9p -o trans=virtio,version=9p2000.L vktctl /vkt-ctl; then
    wait $rdma_load
    /bin/bash /vkt-ctl/job.sh
else
    echo "rxe_vm(guest): cannot mount the control share"
fi
sync
echo o > /proc/sysrq-trigger
sleep 30
EOF
}

# Everything that decides the guest's content; its hash is the cache stamp.
# Bump the number when cmd_build's steps change.
recipe() {
    echo "recipe 5 suite=$SUITE"
    echo "pkgs=${GUEST_PKGS[*]}"
    echo "mods=${GUEST_MODS[*]}"
    guest_init
}
recipe_stamp() { recipe | sha256sum | cut -d' ' -f1; }

host_mirror() {
    if [[ -n ${VKT_RXE_MIRROR:-} ]]; then echo "$VKT_RXE_MIRROR"; return; fi
    local line
    line=$(apt-get indextargets --format '$(SITE) $(RELEASE) $(COMPONENT) $(TARGET_OF)' \
           2>/dev/null | awk -v s="$SUITE" '$2 == s && $3 == "main" && $4 == "deb" {print $1; exit}')
    [[ -n $line ]] || die "no apt source for '$SUITE main' on this host; set VKT_RXE_MIRROR=http://<mirror>/debian"
    echo "$line"
}

cmd_deps() {
    local missing=() p
    for p in "${HOST_DEPS[@]}"; do
        [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == "install ok installed" ]] \
            || missing+=("$p")
    done
    if ((${#missing[@]} == 0)); then echo "rxe_vm: host tools present"; return 0; fi
    need_root deps
    echo "rxe_vm: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        || die "apt-get could not install ${missing[*]}"
}

guest_current() {
    [[ -f $CACHE/stamp && -f $CACHE/vmlinuz && -f $CACHE/root.cpio ]] &&
        [[ $(cat "$CACHE/stamp") == "$(recipe_stamp)" ]]
}

cmd_build() {
    if guest_current; then echo "rxe_vm: guest is current ($CACHE)"; return 0; fi
    need_root build
    local t
    for t in debootstrap cpio chroot; do
        command -v "$t" >/dev/null || die "'$t' is missing: run 'sudo $0 deps'"
    done
    mkdir -p "$CACHE" || die "cannot create $CACHE"
    # One build at a time; a second caller waits and then finds it current.
    exec 9>"$CACHE/.lock"
    flock 9 || die "cannot lock $CACHE/.lock"
    if guest_current; then echo "rxe_vm: guest is current ($CACHE)"; return 0; fi

    local mirror t0=$SECONDS
    mirror=$(host_mirror) || exit "$RXE_EXIT_INFRA"
    curl -fsS -o /dev/null --max-time 20 "$mirror/dists/$SUITE/Release" \
        || die "cannot reach the mirror $mirror (network? proxy?); set VKT_RXE_MIRROR"
    local proxy
    proxy=$(apt-config shell p Acquire::http::Proxy 2>/dev/null | sed -n "s/^p='\(.*\)'$/\1/p")
    [[ -n $proxy ]] && export http_proxy=$proxy

    local work=$CACHE/build.$$ root
    root=$work/root
    rm -rf "$work"; mkdir -p "$root"
    local log=$work/build.log
    inroot() { chroot "$root" env PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
    # On failure keep the log where the message says it is.
    trap 'cp "$log" "$CACHE/build-failed.log" 2>/dev/null; rm -rf "$work"' EXIT
    echo "rxe_vm: building the $SUITE guest from $mirror (log on failure: $CACHE/build-failed.log)"
    local pkgs
    pkgs=$(IFS=,; echo "${GUEST_PKGS[*]}")
    if ! debootstrap --variant=minbase --include="$pkgs" "$SUITE" "$root" "$mirror" >"$log" 2>&1; then
        tail -n 25 "$log" >&2
        die "debootstrap failed (log: $CACHE/build-failed.log)"
    fi

    # The kernel: unpack the package instead of installing it, so that no
    # initramfs-tools run and no generic initrd is built (we make our own).
    local kpkg
    kpkg=$(inroot sh -c "echo 'deb $mirror $SUITE main' > /etc/apt/sources.list &&
           apt-get -qq update >/dev/null &&
           apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)/\1/p' | head -n1")
    [[ -n $kpkg ]] || die "cannot resolve linux-image-amd64 in the guest (log: $CACHE/build-failed.log)"
    (cd "$root/tmp" && inroot sh -c "cd /tmp && apt-get -qq download $kpkg") >>"$log" 2>&1 \
        || die "cannot download $kpkg"
    # Unpack beside the guest's files, not over them: tar would replace the
    # merged-/usr symlinks (/lib -> usr/lib) with plain directories.
    local kdir=$root/tmp/kernel
    mkdir -p "$kdir" && dpkg-deb -x "$root"/tmp/"$kpkg"_*.deb "$kdir" || die "cannot unpack $kpkg"
    local kver=${kpkg#linux-image-}
    [[ -d $kdir/lib/modules/$kver && -f $kdir/boot/vmlinuz-$kver ]] \
        || die "$kpkg has no modules or vmlinuz for $kver"
    inroot depmod -b /tmp/kernel "$kver" >>"$log" 2>&1 || die "depmod of the kernel package failed"

    # Keep only the modules we load, with their dependencies.
    local keep m mods=$root/usr/lib/modules/$kver
    keep=$(inroot modprobe -a -d /tmp/kernel -S "$kver" --show-depends "${GUEST_MODS[@]}" 2>>"$log" |
           awk '$1 == "insmod" {print $2}') || die "module dependencies failed (log: $CACHE/build-failed.log)"
    [[ -n $keep ]] || die "none of ${GUEST_MODS[*]} found as modules in $kver"
    mkdir -p "$mods"
    cp "$kdir/lib/modules/$kver"/modules.{order,builtin,builtin.modinfo} "$mods/" || die "no module lists"
    while read -r m; do
        local rel=${m#/tmp/kernel/lib/modules/$kver/}
        mkdir -p "$mods/$(dirname "$rel")" && cp "$root$m" "$mods/$rel" || die "cannot copy $m"
    done <<<"$keep"
    inroot depmod "$kver" >>"$log" 2>&1 || die "depmod failed"
    cp "$kdir/boot/vmlinuz-$kver" "$work/vmlinuz" || die "no vmlinuz"
    # Under TCG the kernel's own xz decompression costs ~4 s per boot: keep
    # the uncompressed ELF too, which QEMU boots directly (PVH entry point).
    local off
    off=$(LC_ALL=C grep -obUaP '\xFD7zXZ\x00' "$work/vmlinuz" | head -n1 | cut -d: -f1)
    if [[ -n $off ]] && xz -dcq --single-stream >"$work/vmlinux" < <(tail -c +$((off + 1)) "$work/vmlinuz") &&
        [[ $(head -c4 "$work/vmlinux" | od -An -tx1 | tr -d ' ') == 7f454c46 ]]; then
        echo "kernel: uncompressed vmlinux kept" >>"$log"
    else
        rm -f "$work/vmlinux"
    fi
    echo "modules: $(wc -l <<<"$keep") kept" >>"$log"

    rm -rf "$root"/boot/* "$root"/tmp/* "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* \
           "$root"/usr/share/doc "$root"/usr/share/man "$root"/usr/share/info "$root"/usr/share/locale \
           "$root"/usr/lib/x86_64-linux-gnu/gconv "$root"/usr/bin/perl* "$root"/usr/lib/x86_64-linux-gnu/perl-base
    guest_init >"$root/init" && chmod 755 "$root/init"
    (cd "$root" && find . -print0 | cpio --null -o -H newc --quiet) >"$work/root.cpio" \
        || die "cpio failed"

    rm -f "$CACHE/vmlinux"
    [[ ! -f $work/vmlinux ]] || mv "$work/vmlinux" "$CACHE/vmlinux" || die "cannot write $CACHE/vmlinux"
    mv "$work/vmlinuz" "$CACHE/vmlinuz" && mv "$work/root.cpio" "$CACHE/root.cpio" \
        && echo "$kver" >"$CACHE/kernel-version" && recipe_stamp >"$CACHE/stamp" \
        || die "cannot write the guest into $CACHE"
    rm -rf "$CACHE/build-failed.log" "$work"; trap - EXIT
    echo "rxe_vm: guest built in $((SECONDS - t0)) s: kernel $kver," \
         "initramfs $(du -m "$CACHE/root.cpio" | cut -f1) MB ($CACHE)"
}

pick_accel() {
    local a=${VKT_RXE_ACCEL:-auto}
    if [[ $a == auto ]]; then
        # Nested KVM without vmx/svm hangs the guest: require both.
        if [[ -r /dev/kvm && -w /dev/kvm ]] && grep -qwE 'vmx|svm' /proc/cpuinfo; then
            a=kvm
        else
            a=tcg
        fi
    fi
    echo "$a"
}

# job_script MODE CWD ENV... : the per-run script the guest's /init runs.
job_script() {
    local mode=$1 cwd=$2; shift 2
    cat <<'EOF'
set -u
infra() {
    echo "rxe_vm(guest): $*; kernel log tail:" >&2
    dmesg | tail -n 15 >&2
    echo runner 125 >/vkt-ctl/exit; exit 125
}
stty -F /dev/console -onlcr 2>/dev/null
# devtmpfs has no /dev/fd links; bash's <(...) and /dev/stdout need them.
ln -sfn /proc/self/fd /dev/fd
for i in 0:stdin 1:stdout 2:stderr; do ln -sfn "/proc/self/fd/${i%%:*}" "/dev/${i#*:}"; done
# /init has loaded these already. rdma_ucm (for librdmacm) is in the guest
# but costs ~1 s to load: modprobe it when needed.
modprobe -qa veth crc32_generic rdma_rxe ib_uverbs || infra "modprobe of the RDMA modules failed"
EOF
    local line tag path
    # One "TAG PATH" per line; the path keeps its leading/trailing blanks.
    while IFS= read -r line; do
        tag=${line%% *} path=${line#* }
        printf 'mkdir -p %q && mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 %q %q || infra %q\n' \
            "$path" "$tag" "$path" "cannot mount share $path"
    done <"$CTL/shares"
    cat <<'EOF'
# rxe0 on veth0, rxe1 on veth1, in one network namespace. Their only GID
# (index 0) is the veth's link-local IPv6 address, usable at once as DAD is
# off. No IPv4 addresses on purpose: traffic between two local IPv4
# addresses takes the loopback device, and a QP addressed by such a GID
# fails to reach RTR (ETIMEDOUT), measured here.
ip link set lo up
sysctl -qw net.ipv6.conf.default.accept_dad=0 net.ipv6.conf.all.accept_dad=0
ip link add veth0 type veth peer name veth1 || infra "cannot create the veth pair"
ip link set veth0 up && ip link set veth1 up || infra "cannot bring veth up"
rdma link add rxe0 type rxe netdev veth0 || infra "rdma link add rxe0 failed"
rdma link add rxe1 type rxe netdev veth1 || infra "rdma link add rxe1 failed"
for i in $(seq 100); do
    grep -q ACTIVE /sys/class/infiniband/rxe0/ports/1/state 2>/dev/null &&
        grep -q ACTIVE /sys/class/infiniband/rxe1/ports/1/state 2>/dev/null && break
    sleep 0.1
done
for d in rxe0 rxe1; do
    grep -q ACTIVE /sys/class/infiniband/$d/ports/1/state || infra "$d's port did not become ACTIVE"
done
EOF
    # the path appears only %q-quoted, never inside another pair of quotes
    printf 'cd %q || { echo %q >&2; echo runner 126 >/vkt-ctl/exit; exit 126; }\n' "$cwd" \
        "rxe_vm(guest): runner failure: --cwd $cwd is not in a share"
    local kv
    for kv in "$@"; do printf 'export %q\n' "$kv"; done
    if [[ $mode == shell ]]; then
        echo 'echo "rxe_vm: guest shell (exit to power off)"; setsid -c bash -i </dev/ttyS0 >/dev/ttyS0 2>&1; echo command 0 >/vkt-ctl/exit'
    else
        printf '%q ' "${CMD[@]}"; echo '</dev/null'
        echo 'echo command $? >/vkt-ctl/exit'
    fi
}

cmd_run() {
    local mode=$1; shift
    local shares=() envs=() cwd=$PWD timeout=${VKT_RXE_TIMEOUT:-900} s
    CMD=()
    while (($#)); do
        case $1 in
            --share) [[ $# -ge 2 ]] || usage
                s=$(realpath -e "$2") || die "no such folder to share: $2"
                shares+=("$s"); shift 2 ;;
            --cwd) [[ $# -ge 2 ]] || usage; cwd=$(realpath -m "$2"); shift 2 ;;
            -e) [[ $# -ge 2 && $2 == *=* ]] || usage; envs+=("$2"); shift 2 ;;
            --timeout) [[ $# -ge 2 ]] || usage; timeout=$2; shift 2 ;;
            --) shift; CMD=("$@"); break ;;
            *) echo "rxe_vm: unknown option '$1'" >&2; usage ;;
        esac
    done
    [[ $mode == shell || ${#CMD[@]} -gt 0 ]] || { echo "rxe_vm: run needs '-- CMD...'" >&2; usage; }
    ((${#shares[@]})) || shares=("$(realpath "$PWD")")
    # Wait for a build in progress (it holds the lock exclusively); a build
    # started later waits for the runs.
    if [[ -r $CACHE/.lock ]]; then exec 8<"$CACHE/.lock" && flock -s 8; fi
    guest_current || die "no current guest in $CACHE: run 'sudo $0 deps && sudo $0 build'"
    command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 is missing: run 'sudo $0 deps'"

    CTL=$(mktemp -d "${TMPDIR:-/tmp}/vktrain-rxe.XXXXXX") || die "mktemp failed"
    trap 'rm -rf "$CTL"' EXIT
    local qargs=() i=0
    for s in "${shares[@]}"; do
        case $s in
            /|/usr|/usr/*|/etc|/etc/*|/bin|/sbin|/lib|/lib/*|/proc*|/sys*|/dev*)
                die "cannot share system folder $s" ;;
            *,*) die "share paths cannot contain commas: '$s'" ;;
            *$'\n'*) die "share paths cannot contain newlines" ;;
        esac
        echo "s$i $s" >>"$CTL/shares"
        qargs+=(-virtfs "local,path=$s,mount_tag=s$i,security_model=none,id=s$i")
        i=$((i + 1))
    done
    job_script "$mode" "$cwd" "${envs[@]}" >"$CTL/job.sh"
    qargs+=(-virtfs "local,path=$CTL,mount_tag=vktctl,security_model=none,id=vktctl")

    local kernel=$CACHE/vmlinux
    [[ -f $kernel && ${VKT_RXE_KERNEL:-} != vmlinuz ]] || kernel=$CACHE/vmlinuz
    local accel cpu
    accel=$(pick_accel)
    if [[ $accel == kvm ]]; then cpu=host; else cpu=max; fi
    local qemu=(qemu-system-x86_64 -nodefaults -no-user-config -no-reboot -display none
        -accel "$accel" -cpu "$cpu" -m "${VKT_RXE_MEM:-1024}" -smp "${VKT_RXE_SMP:-2}"
        -kernel "$kernel" -initrd "$CACHE/root.cpio"
        -append "console=ttyS0 quiet loglevel=3 panic=-1 mitigations=off cryptomgr.notests"
        "${qargs[@]}")
    local t0 rc qrc from=runner
    t0=$(date +%s%N)
    if [[ $mode == shell ]]; then
        "${qemu[@]}" -serial mon:stdio
        qrc=$?
    else
        # The kernel's own power-off lines are not the command's output.
        timeout -k 10 "$timeout" "${qemu[@]}" -serial stdio </dev/null | tee "$CTL/console.log" |
            grep --line-buffered -avE '^\[ *[0-9]+\.[0-9]+\] (sysrq: Power Off|reboot: Power down)'
        qrc=${PIPESTATUS[0]}
    fi
    local who code
    [[ -s $CTL/exit ]] && read -r who code <"$CTL/exit"
    if [[ $qrc -eq 124 || $qrc -eq 137 ]]; then
        rc=$RXE_EXIT_TIMEOUT
        echo "rxe_vm: runner failure: the VM ran past the timeout of ${timeout} s (VKT_RXE_TIMEOUT)" >&2
    elif [[ ${who:-} == command && ${code:-} =~ ^[0-9]+$ ]]; then
        rc=$code from=command
        ((rc < 124 || rc > 126)) ||
            echo "rxe_vm: the command itself exited with $rc (not a runner failure)" >&2
    elif [[ ${who:-} == runner && ${code:-} =~ ^[0-9]+$ ]]; then
        rc=$code
    else
        rc=$RXE_EXIT_INFRA
        echo "rxe_vm: runner failure: the VM stopped (qemu exit $qrc) before the command reported an exit code; console tail:" >&2
        tail -n 20 "$CTL/console.log" >&2 2>/dev/null
    fi
    local ms=$((($(date +%s%N) - t0) / 1000000))
    printf 'rxe_vm: accel=%s exit=%s from=%s wall=%d.%ds\n' "$accel" "$rc" "$from" $((ms / 1000)) \
        $((ms % 1000 / 100)) >&2
    exit "$rc"
}

case ${1:-} in
    deps) cmd_deps ;;
    build) cmd_build ;;
    run) shift; cmd_run run "$@" ;;
    shell) shift; cmd_run shell "$@" ;;
    -h|--help|help) usage 0 ;;
    *) usage ;;
esac
