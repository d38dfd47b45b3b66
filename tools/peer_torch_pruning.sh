#!/usr/bin/env bash
# Torch-Pruning beside rlal: one command that makes its own venv (.venv-tp, PyPI
# only, not part of tools/setup.sh's default) and runs tools/peer_torch_pruning.py
# with the arguments given. Idempotent: a second call only runs the script.
#
#   bash tools/peer_torch_pruning.sh --model graphs/resnet20_mnist.onnx \
#        --data data/fashion-mnist --mean 0.2860 --std 0.3530 --macs-ratio 0.3 \
#        --start scratch --epochs 18 --finetune-epochs 4 -o runs/tp/pruned.onnx
#   bash tools/peer_torch_pruning.sh --help        (every flag)
#   bash tools/peer_torch_pruning.sh --setup-only  (make the venv, run nothing)
#
# .venv-tp holds torch 2.11.0 (the PyPI wheel, ~3 GB with its CUDA libraries; the
# CPU is enough), torch-pruning 1.6.1, onnx 1.20.1, onnxruntime 1.32.0 (checks the
# loaded model against the file) and numpy. Set PYTHON to pick
# the interpreter that creates it (CPython >= 3.10).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

TORCH_VERSION=2.11.0
TP_VERSION=1.6.1
ONNX_VERSION=1.20.1
ORT_VERSION=1.32.0
NUMPY_VERSION=2.2.6
CUDA_RT=nvidia-cuda-runtime==13.0.96
CUDA_CUPTI=nvidia-cuda-cupti==13.0.85

VENV=$ROOT/.venv-tp
TAG=peer-tp
# shellcheck source=tools/venv.sh
. tools/venv.sh

torch_imports() { "$VENV/bin/python" -c 'import torch' 2>/dev/null; }

make_venv "$VENV"
if ! py_has "$VENV" torch "$TORCH_VERSION" || ! torch_imports; then
  say "installing torch $TORCH_VERSION (PyPI wheel, ~3 GB with its CUDA libraries)"
  if ! pip_retry "$VENV" "torch==$TORCH_VERSION"; then
    # The fallback tools/setup.sh --ref uses: torch without its pinned CUDA set.
    say "full torch install failed; falling back to --no-deps torch + its pure dependencies"
    pip_retry "$VENV" --no-deps "torch==$TORCH_VERSION" "$CUDA_RT" "$CUDA_CUPTI"
    pip_retry "$VENV" filelock typing-extensions sympy networkx jinja2 fsspec
  fi
  torch_imports || { echo "peer_torch_pruning: 'import torch' fails in $VENV" >&2; exit 1; }
fi
if py_has "$VENV" torch-pruning "$TP_VERSION" && py_has "$VENV" onnx "$ONNX_VERSION" \
   && py_has "$VENV" onnxruntime "$ORT_VERSION" && py_has "$VENV" numpy "$NUMPY_VERSION"; then
  say "torch $TORCH_VERSION, torch-pruning $TP_VERSION, onnx $ONNX_VERSION, onnxruntime $ORT_VERSION: present"
else
  say "installing torch-pruning $TP_VERSION, onnx $ONNX_VERSION, onnxruntime $ORT_VERSION, numpy $NUMPY_VERSION"
  # --no-deps: torch-pruning needs only torch and numpy, both pinned here.
  pip_retry "$VENV" "numpy==$NUMPY_VERSION" "onnx==$ONNX_VERSION" "onnxruntime==$ORT_VERSION"
  pip_retry "$VENV" --no-deps "torch-pruning==$TP_VERSION"
fi

[ "${1:-}" = "--setup-only" ] && exit 0
exec "$VENV/bin/python" tools/peer_torch_pruning.py "$@"
