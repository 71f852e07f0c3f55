#!/usr/bin/env bash
# install-deps.sh — installs the Debian 12 packages nabla needs, and only the
# ones that are missing: each is checked with `dpkg -s` first, so a second run
# costs a few milliseconds and touches no network.
#
#   meson ninja-build pkg-config gcc   the build
#   libc6-dev                          the C library's headers (gcc only recommends it)
#   libdnnl-dev                        oneDNN kernels (matmul, conv, ...)
#   libhwloc-dev                       thread pinning
#   libcriterion-dev                   the test suite
#   zlib1g-dev                         compressed checkpoints, gzipped IDX/CSV data files
#   dataset-fashion-mnist              the examples' data (/usr/share/datasets/fashion-mnist)
#
# Runs as root (apt-get directly) or through sudo when that is available.
# Extra package names given as arguments are installed too.
set -euo pipefail

pkgs=(meson ninja-build pkg-config gcc libc6-dev libdnnl-dev libhwloc-dev libcriterion-dev zlib1g-dev dataset-fashion-mnist "$@")

missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed'; then
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-deps: all ${#pkgs[@]} packages present"
    exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        sudo=(sudo)
    else
        echo "install-deps: missing ${missing[*]}; run as root or install sudo" >&2
        exit 1
    fi
fi

echo "install-deps: installing ${missing[*]}"
# Wait (up to 10 minutes) for another apt/dpkg run to let go of its lock
# instead of failing at once.
apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600)
"${apt[@]}" update
"${apt[@]}" install -y --no-install-recommends "${missing[@]}"
