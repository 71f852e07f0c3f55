#!/usr/bin/env bash
# run-main.sh — the main job: installs what is missing, configures and builds
# nabla in ./build, and runs the first example (examples/hello_grad), which
# prints the gradient of x^2 + 2x at x = 1: tensor(4.)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$NB_ROOT"

./scripts/install-deps.sh
nb_setup build keep
ninja -C build
./build/examples/hello_grad
