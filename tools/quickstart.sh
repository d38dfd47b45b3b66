#!/usr/bin/env bash
# The README's main command: on a fresh machine, install what rlal needs
# (tools/setup.sh), build it, and run the quickstart: import -> RLAL prune
# (joint training + agent search, surgery, fine-tuning, export, validation)
# of the small CNN on the offline MNIST 5k subset at 50% MACs (a few minutes
# on 2 CPU cores). Extra arguments go to `rlal prune` (e.g. --seed 1).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
cargo build --release --bin rlal
./target/release/rlal import graphs/mnist_cnn.onnx
start=$(date +%s)
./target/release/rlal prune --recipe recipes/quickstart.yaml "$@"
echo "quickstart finished in $(( $(date +%s) - start ))s"
echo "pruned model: runs/quickstart/pruned.onnx"
echo "report:       runs/quickstart/report.md (runs/quickstart/report.json, metrics.jsonl, best_policy.yaml)"
