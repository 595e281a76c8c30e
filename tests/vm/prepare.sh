#!/bin/sh
# Gets everything the kernel-matrix VMs need: host packages, virtme-ng in a venv, and Debian's
# 5.10 / 6.1 / 6.12 kernels unpacked with usable modules. Idempotent: with everything in place
# it only checks and says so. See shared/KERNELS.md for why each step is done this way.
set -eu

# Outside the repo (a fresh clone reuses it) and not under /var/cache: the guest sees the host's
# /var only as an overlay, and modules there were invisible inside.
CACHE=${TCPTRACK_VM_CACHE:-/tmp/tcptrack-vm}
VNG_VERSION=1.42
HOST_PKGS="qemu-system-x86 kmod busybox-static python3-venv iproute2"
VERSIONS="5.10 6.1 6.12"

T0=$(date +%s)
say() { echo "prepare: [$(($(date +%s) - T0)) s] $*"; }
mkdir -p "$CACHE"

# --- Host packages (apt-get update only when one is missing) -----------------------------
missing=""
for p in $HOST_PKGS; do
    dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
    say "installing host packages:$missing"
    apt-get update -q
    # shellcheck disable=SC2086 # one word per package
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
fi

# --- virtme-ng in a venv, pinned ------------------------------------------------------------
# Debian's python3, not a pyenv shim: the venv must work for whoever runs run.sh.
if ! "$CACHE/venv/bin/vng" --version 2>/dev/null | grep -q "$VNG_VERSION"; then
    say "installing virtme-ng $VNG_VERSION into $CACHE/venv"
    /usr/bin/python3 -m venv "$CACHE/venv"
    "$CACHE/venv/bin/pip" install -q "virtme-ng==$VNG_VERSION"
fi

# --- Kernels ----------------------------------------------------------------------------------
# The apt name pattern of the generic -amd64 kernel (9p-capable, unlike -cloud) in each release.
pattern() {
    case $1 in
        5.10) echo '^linux-image-5\.10\.0-[0-9]+-amd64$' ;;          # bullseye, signed
        6.1) echo '^linux-image-6\.1\.0-[0-9]+-amd64-unsigned$' ;;    # bookworm
        6.12) echo '^linux-image-6\.12\.[0-9]+\+deb13-amd64-unsigned$' ;; # trixie
    esac
}

todo=""
for v in $VERSIONS; do [ -f "$CACHE/$v/ready" ] || todo="$todo $v"; done

if [ -n "$todo" ]; then
    # A private apt state: the machine's own sources, lists and cache stay untouched.
    A="$CACHE/apt"
    mkdir -p "$A/lists/partial" "$A/cache/archives/partial" "$A/debs"
    cat >"$A/sources.list" <<'EOF'
deb http://deb.debian.org/debian bullseye main
deb http://deb.debian.org/debian-security bullseye-security main
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
deb http://deb.debian.org/debian trixie main
deb http://deb.debian.org/debian trixie-updates main
deb http://deb.debian.org/debian-security trixie-security main
EOF
    apt_opts="-o Dir::Etc::SourceList=$A/sources.list -o Dir::Etc::SourceParts=/dev/null
              -o Dir::State::Lists=$A/lists -o Dir::Cache=$A/cache
              -o APT::Sandbox::User=root"
    say "refreshing the private package lists (bullseye, bookworm, trixie)"
    # shellcheck disable=SC2086
    apt-get $apt_opts update -q >"$A/update.log" 2>&1 || { cat "$A/update.log"; exit 1; }

    for v in $todo; do
        # shellcheck disable=SC2086
        pkg=$(apt-cache $apt_opts search --names-only "$(pattern "$v")" | cut -d' ' -f1 | sort -V | tail -n1)
        [ -n "$pkg" ] || { say "no package matches $(pattern "$v")"; exit 1; }
        say "$v: downloading $pkg"
        # shellcheck disable=SC2086
        (cd "$A/debs" && apt-get $apt_opts download -q "$pkg")
        # shellcheck disable=SC2012 # Debian's file names are plain
        deb=$(ls "$A/debs/${pkg}_"*.deb)
        say "$v: unpacking $(basename "$deb") ($(du -h "$deb" | cut -f1))"
        rm -rf "${CACHE:?}/$v" && mkdir -p "$CACHE/$v"
        dpkg -x "$deb" "$CACHE/$v"
        # trixie ships modules under usr/lib only; virtme-ng looks beside the image in lib/.
        [ -e "$CACHE/$v/lib" ] || ln -s usr/lib "$CACHE/$v/lib"
        # The package has no modules.dep: without it the guest cannot modprobe veth.
        kver=$(ls "$CACHE/$v/lib/modules")
        depmod -b "$CACHE/$v" "$kver"
        echo "$kver $(basename "$deb")" >"$CACHE/$v/ready"
        rm -f "$deb" # unpacked, and quick to download again
    done
else
    say "nothing to do: host packages, virtme-ng $VNG_VERSION and kernels are in $CACHE"
fi

for v in $VERSIONS; do say "ready: $v -> $(cat "$CACHE/$v/ready")"; done
