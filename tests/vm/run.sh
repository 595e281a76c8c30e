#!/bin/sh
# run.sh VERSION SCRIPT OUTDIR: boots Debian's kernel VERSION (5.10, 6.1 or 6.12, from
# prepare.sh) on the host's root file system and runs `sh SCRIPT OUTDIR` as root inside.
# OUTDIR is the only folder the guest can write to the host. Exits with the script's status.
#
# Time: the VM is bounded by what it is doing, not by one total. The kernel has
# TCPTRACK_VM_BOOT_TIMEOUT seconds (300) to boot and start the script; the script has 300 s to
# name its first step; then each step the script names in OUTDIR/step ("SECONDS NAME", the
# script's own bound for it, scaled to the emulated CPU's speed: see matrix.sh) has its
# SECONDS; once the script has written its status, the VM has 120 s to power off. A VM over
# one of these is cut, and this says where it was (the step, the check, how long it had run).
# TCPTRACK_VM_TIMEOUT, when set, also bounds the whole VM in seconds.
set -eu

[ $# -eq 3 ] || { echo "usage: $0 VERSION SCRIPT OUTDIR" >&2; exit 2; }
CACHE=${TCPTRACK_VM_CACHE:-/tmp/tcptrack-vm}
VERSION=$1
SCRIPT=$(realpath "$2") # the guest sees the host's files at the same paths
mkdir -p "$3"
OUT=$(realpath "$3")
BOOT_LIMIT=${TCPTRACK_VM_BOOT_TIMEOUT:-300}
FIRST_STEP_LIMIT=300
SHUTDOWN_LIMIT=120
TOTAL_LIMIT=${TCPTRACK_VM_TIMEOUT:-}

[ -f "$CACHE/$VERSION/ready" ] || { echo "run: no kernel $VERSION: run prepare.sh" >&2; exit 2; }
# vng calls virtme-run from PATH.
PATH="$CACHE/venv/bin:$PATH"
KVER=$(cut -d' ' -f1 "$CACHE/$VERSION/ready")
rm -f "$OUT/status" "$OUT/uptime-start" "$OUT/uptime-end" "$OUT/step" "$OUT/check"

# The guest writes its own status and uptimes into OUT: vng may not pass the status through.
GUEST="cut -d' ' -f1 /proc/uptime >$OUT/uptime-start; sh $SCRIPT $OUT; echo \$? >$OUT/status; \
cut -d' ' -f1 /proc/uptime >$OUT/uptime-end"

echo "run: booting $KVER (TCG, 2 CPUs, 2 GiB) for $SCRIPT, output in $OUT"
start=$(date +%s.%N)
# --disable-kvm: nested KVM dies here (emulation failure), so TCG.
# --force-9p: the root file system over 9p (no virtiofsd on this machine).
# The VM's console goes to OUT/console.log (--verbose: the kernel's log, useful on failure).
# setsid: vng and qemu in a process group of their own, which a cut signals whole.
setsid vng --run "$CACHE/$VERSION/boot/vmlinuz-$KVER" \
    --disable-kvm --force-9p --cpus 2 --memory 2G --verbose \
    --rwdir "$OUT" --exec "$GUEST" </dev/null >"$OUT/console.log" 2>&1 &
vm=$!

# The watchdog: once a second, what the VM is doing and how long it has been at it.
now() { date +%s; }
t0=$(now)
phase="boot" # boot, first step, step, shutdown
phase_at=$t0
seen_step=""
cut=""
while kill -0 "$vm" 2>/dev/null; do
    sleep 1
    t=$(now)
    if [ -f "$OUT/status" ]; then
        [ "$phase" = "shutdown" ] || { phase="shutdown"; phase_at=$t; }
        limit=$SHUTDOWN_LIMIT
        what="powering off after the script ended"
    elif [ -f "$OUT/step" ]; then
        step=$(cat "$OUT/step" 2>/dev/null || true)
        if [ -n "$step" ] && [ "$step" != "$seen_step" ]; then
            seen_step=$step
            phase="step"
            phase_at=$t
        fi
        limit=${seen_step%% *}
        what="step '${seen_step#* }' (check: $(cat "$OUT/check" 2>/dev/null || echo none yet))"
    elif [ -f "$OUT/uptime-start" ]; then
        [ "$phase" = "first step" ] || { phase="first step"; phase_at=$t; }
        limit=$FIRST_STEP_LIMIT
        what="the script's start, before its first step"
    else
        limit=$BOOT_LIMIT
        what="the boot"
    fi
    case $limit in '' | *[!0-9]*) limit=$FIRST_STEP_LIMIT ;; esac
    if [ $((t - phase_at)) -gt "$limit" ]; then
        cut="$what ran over its bound of $limit s (VM up $((t - t0)) s)"
    elif [ -n "$TOTAL_LIMIT" ] && [ $((t - t0)) -gt "$TOTAL_LIMIT" ]; then
        cut="the VM ran over TCPTRACK_VM_TIMEOUT=$TOTAL_LIMIT s, in $what"
    fi
    if [ -n "$cut" ]; then
        kill -TERM "-$vm" 2>/dev/null || true
        sleep 5
        kill -KILL "-$vm" 2>/dev/null || true
        break
    fi
done
vm_rc=0
wait "$vm" || vm_rc=$?
total=$(awk "BEGIN { printf \"%.1f\", $(date +%s.%N) - $start }")

if [ -n "$cut" ]; then
    echo "run: $KVER: cut after ${total}s: $cut" >&2
    echo "cut: $cut" >>"$OUT/report.txt"
fi
if [ ! -f "$OUT/status" ]; then
    echo "run: the script never finished (vng status $vm_rc); last console lines:" >&2
    tail -n 20 "$OUT/console.log" >&2
    exit 125
fi
status=$(cat "$OUT/status")
boot=$(cat "$OUT/uptime-start")
script=$(awk "BEGIN { printf \"%.1f\", $(cat "$OUT/uptime-end") - $boot }")
echo "run: $KVER: kernel up to script ${boot}s (guest uptime), script ${script}s," \
    "whole VM ${total}s (host clock, with qemu start and shutdown); script status $status"
exit "$status"
