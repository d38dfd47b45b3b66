#!/usr/bin/env bash
# The README's main command: on a fresh machine, install what rlal needs
# (tools/setup.sh), build it, and run the quickstart: import -> RLAL prune
# (joint training + agent search, surgery, fine-tuning, export, validation)
# of ResNet-20 on the offline MNIST 5k subset at 50% MACs (a few minutes
# on 2 CPU cores). Extra arguments go to `rlal prune` (e.g. --seed 1).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
cargo build --release --bin rlal
./target/release/rlal import graphs/resnet20_mnist.onnx
start=$(date +%s)
./target/release/rlal prune --recipe recipes/quickstart.yaml "$@"
echo "quickstart search + fine-tuning finished in $(( $(date +%s) - start ))s"
# Export the run's final model and re-validate it in ONNX Runtime (and tract).
./target/release/rlal export runs/quickstart/resnet20_mnist_pruned.onnx --run runs/quickstart --threads 2
echo "pruned model: runs/quickstart/resnet20_mnist_pruned.onnx"
echo "report:       runs/quickstart/report.md (report.json, metrics.jsonl, best_policy.yaml, rewards.svg, accuracy.svg, layers.svg)"
