#!/bin/sh
# run.sh VERSION SCRIPT OUTDIR: boots Debian's kernel VERSION (5.10, 6.1 or 6.12, from
# prepare.sh) on the host's root file system and runs `sh SCRIPT OUTDIR` as root inside.
# OUTDIR is the only folder the guest can write to the host. Exits with the script's status.
set -eu

[ $# -eq 3 ] || { echo "usage: $0 VERSION SCRIPT OUTDIR" >&2; exit 2; }
CACHE=${TCPTRACK_VM_CACHE:-/tmp/tcptrack-vm}
VERSION=$1
SCRIPT=$(realpath "$2") # the guest sees the host's files at the same paths
mkdir -p "$3"
OUT=$(realpath "$3")

[ -f "$CACHE/$VERSION/ready" ] || { echo "run: no kernel $VERSION: run prepare.sh" >&2; exit 2; }
# vng calls virtme-run from PATH.
PATH="$CACHE/venv/bin:$PATH"
KVER=$(cut -d' ' -f1 "$CACHE/$VERSION/ready")
rm -f "$OUT/status" "$OUT/uptime-start" "$OUT/uptime-end"

# The guest writes its own status and uptimes into OUT: vng may not pass the status through.
GUEST="cut -d' ' -f1 /proc/uptime >$OUT/uptime-start; sh $SCRIPT $OUT; echo \$? >$OUT/status; \
cut -d' ' -f1 /proc/uptime >$OUT/uptime-end"

echo "run: booting $KVER (TCG, 2 CPUs, 2 GiB) for $SCRIPT, output in $OUT"
start=$(date +%s.%N)
# The time bound (300 s by default) kills vng and qemu with it: timeout signals its process group.
# --disable-kvm: nested KVM dies here (emulation failure), so TCG.
# --force-9p: the root file system over 9p (no virtiofsd on this machine).
# The VM's console goes to OUT/console.log (--verbose: the kernel's log, useful on failure).
vm_rc=0
timeout "${TCPTRACK_VM_TIMEOUT:-300}" vng --run "$CACHE/$VERSION/boot/vmlinuz-$KVER" \
    --disable-kvm --force-9p --cpus 2 --memory 2G --verbose \
    --rwdir "$OUT" --exec "$GUEST" </dev/null >"$OUT/console.log" 2>&1 || vm_rc=$?
total=$(awk "BEGIN { printf \"%.1f\", $(date +%s.%N) - $start }")

if [ ! -f "$OUT/status" ]; then
    echo "run: the script never finished (vng/timeout status $vm_rc); last console lines:" >&2
    tail -n 20 "$OUT/console.log" >&2
    exit 125
fi
status=$(cat "$OUT/status")
boot=$(cat "$OUT/uptime-start")
script=$(awk "BEGIN { printf \"%.1f\", $(cat "$OUT/uptime-end") - $boot }")
echo "run: $KVER: kernel up to script ${boot}s (guest uptime), script ${script}s," \
    "whole VM ${total}s (host clock, with qemu start and shutdown); script status $status"
exit "$status"
