#!/usr/bin/env bash
# run-tests.sh — the test job: installs what is missing, builds ./build from
# scratch and runs the whole Criterion suite. Extra arguments go to
# `meson setup` (e.g. -Dbuildtype=debug).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$NB_ROOT"

./scripts/install-deps.sh
nb_setup build wipe "$@"
ninja -C build
meson test -C build --num-processes 2 --print-errorlogs
