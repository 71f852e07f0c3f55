#!/usr/bin/env bash
# run-main.sh — the main job: installs what is missing (with Debian's
# dataset-fashion-mnist), configures and builds nabla in ./build (release),
# and trains the 784-512-256-10 MLP on Fashion-MNIST for 5 epochs with a
# progress bar per epoch and the test accuracy after each
# (examples/fashion_mnist_mlp; extra arguments go to it, e.g. --epochs 1).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$NB_ROOT"

./scripts/install-deps.sh dataset-fashion-mnist
nb_setup build keep
ninja -C build
./build/examples/hello_grad
exec ./build/examples/fashion_mnist_mlp "$@"
