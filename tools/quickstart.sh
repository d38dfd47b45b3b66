#!/usr/bin/env bash
# The README's main command: on a fresh machine, install what rlal needs
# (tools/setup.sh), build it, and run the main job on the embedded default.
# Today the main job is the import/analysis of the reference ResNet-56;
# it grows into import -> prune -> export -> validation as the pipeline lands.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
cargo build --release --bin rlal
./target/release/rlal import graphs/resnet56_cifar_bn.onnx "$@"
