#!/usr/bin/env bash
# install-deps.sh — installs the Debian 12 packages nabla needs, and only the
# ones that are missing: each is checked with `dpkg -s` first, so a second run
# costs a few milliseconds and touches no network.
#
#   meson ninja-build pkg-config gcc   the build
#   libdnnl-dev                        oneDNN kernels (matmul, conv, ...)
#   libhwloc-dev                       thread pinning
#   libcriterion-dev                   the test suite
#   zlib1g-dev                         compressed checkpoints
#
# Runs as root (apt-get directly) or through sudo when that is available.
# Extra package names given as arguments are installed too.
set -euo pipefail

pkgs=(meson ninja-build pkg-config gcc libdnnl-dev libhwloc-dev libcriterion-dev zlib1g-dev "$@")

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
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
