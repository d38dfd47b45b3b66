#!/usr/bin/env bash
# Models from TensorFlow: Keras models exported by tf2onnx (NHWC inputs) through
# rlal, as a TensorFlow user would run them. Makes its own venv (.venv-tf, PyPI
# only, not part of tools/setup.sh's default), exports the models with
# tools/keras_models.py (a small CIFAR-style ResNet written with keras.layers,
# MobileNetV2 and EfficientNetB0 from keras.applications with random weights) and
# MNIST 5k as 32x32 RGB PNGs, then runs on them:
#   1. rlal import (EfficientNetB0 refused with its unbound inputs named, then
#      imported with them bound by --bind);
#   2. rlal export --uniform 0.5 (validated in ONNX Runtime and tract) of each;
#   3. for the small ResNet: rlal train (recipes/train_resnet20_mnist.yaml: the
#      quickstart's training settings, 6 epochs), rlal eval, rlal prune with
#      recipes/quickstart.yaml and rlal eval of the pruned model;
#   4. with --compare N: rlal prune of the small ResNet as NHWC (tf2onnx's export)
#      and as NCHW (the same Keras model and weights behind a Permute: its convs read
#      the NCHW input) for seeds 0..N-1, and the test accuracies side by side.
# Every pruned model is checked to keep the original's interface (input name, shape,
# outputs, one graph input). Any failure stops the script (exit 1).
#
#   bash tools/keras_models.sh                        steps 1-3
#   bash tools/keras_models.sh --train-epochs 4 --compare 2 -- --epochs 4 \
#        --warmup-epochs 1 --buffer-epochs 1 --agent-epochs 3 --finetune-epochs 1
#                          steps 1-4, rlal train for 4 epochs (default: the recipe's
#                          6); arguments after -- go to every rlal prune
#   bash tools/keras_models.sh --skip-train --compare 2 -- ...   steps 1, 2 and 4
#   bash tools/keras_models.sh --setup-only           make the venv, run nothing
#
# RLAL picks the binary (default target/debug/rlal; build it first), OUT the folder
# of the exported models and data (default runs/keras); runs go to runs/keras_*.
# .venv-tf holds tensorflow-cpu 2.21.0, tf2onnx 1.17.0, keras 3.15.1, onnx 1.23.2,
# protobuf 7.36.2 and numpy 2.4.6 (about 1 GB; a first install takes a few minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

TF_VERSION=2.21.0
TF2ONNX_VERSION=1.17.0
KERAS_VERSION=3.15.1
ONNX_VERSION=1.23.2
PROTOBUF_VERSION=7.36.2
NUMPY_VERSION=2.4.6

VENV=$ROOT/.venv-tf
TAG=keras
# shellcheck source=tools/venv.sh
. tools/venv.sh

make_venv "$VENV"
if py_has "$VENV" tensorflow-cpu "$TF_VERSION" && py_has "$VENV" tf2onnx "$TF2ONNX_VERSION" \
   && py_has "$VENV" keras "$KERAS_VERSION" && py_has "$VENV" onnx "$ONNX_VERSION"; then
  say "tensorflow-cpu $TF_VERSION, tf2onnx $TF2ONNX_VERSION, keras $KERAS_VERSION, onnx $ONNX_VERSION: present"
else
  say "installing tensorflow-cpu $TF_VERSION, tf2onnx $TF2ONNX_VERSION, keras $KERAS_VERSION, onnx $ONNX_VERSION"
  pip_retry "$VENV" "tensorflow-cpu==$TF_VERSION" "tf2onnx==$TF2ONNX_VERSION" "keras==$KERAS_VERSION" \
    "onnx==$ONNX_VERSION" "protobuf==$PROTOBUF_VERSION" "numpy==$NUMPY_VERSION"
fi

COMPARE=0
TRAIN=1
TRAIN_ARGS=()
while [ $# -gt 0 ]; do
  case $1 in
    --setup-only) exit 0 ;;
    --compare) COMPARE=$2; shift 2 ;;
    --skip-train) TRAIN=0; shift ;;
    --train-epochs) TRAIN_ARGS=(--epochs "$2"); shift 2 ;;
    --) shift; break ;;
    *) echo "keras_models: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
PRUNE_ARGS=("$@")

RLAL=${RLAL:-target/debug/rlal}
OUT=${OUT:-runs/keras}
[ -x "$RLAL" ] || { echo "keras_models: no $RLAL: build rlal first (cargo build)" >&2; exit 1; }
PY=$VENV/bin/python
DATA=$OUT/mnist_rgb32
fail() { echo "keras_models: $*" >&2; exit 1; }
step() { printf '\n== %s\n' "$*"; }
run() { echo "\$ $*"; "$@"; }

step "export the Keras models with tf2onnx (opset 17) and MNIST 5k as 32x32 RGB PNGs"
"$PY" tools/keras_models.py --out "$OUT" > "$OUT.models.log" 2>&1 \
  || { tail -20 "$OUT.models.log" >&2; fail "tools/keras_models.py failed (log: $OUT.models.log)"; }
# The values tf2onnx left as graph inputs of EfficientNetB0, as --bind arguments,
# and their names.
BINDS=()
UNBOUND=()
while IFS=$'\t' read -r name values; do
  BINDS+=(--bind "$name=$values")
  UNBOUND+=("$name")
done < <("$PY" -c 'import json, sys
for u in json.load(open(sys.argv[1]))["efficientnetb0"]["unbound"]:
    print(u["name"], ",".join(repr(v) for v in u["values"]), sep="\t")' "$OUT/models.json")
[ ${#UNBOUND[@]} -gt 0 ] || fail "EfficientNetB0 came out of tf2onnx without unbound inputs: nothing to bind"

step "rlal import"
for m in resnet_keras_nhwc mobilenetv2_keras; do run "$RLAL" import "$OUT/$m.onnx"; done
EFF=$OUT/efficientnetb0_keras.onnx
if "$RLAL" import "$EFF" 2> "$OUT/efficientnet_refused.txt"; then
  fail "$EFF imported without its graph inputs bound"
fi
for name in "${UNBOUND[@]}"; do
  grep -qF "'$name'" "$OUT/efficientnet_refused.txt" || fail "the refusal does not name $name"
done
echo "\$ $RLAL import $EFF"; head -1 "$OUT/efficientnet_refused.txt"
run "$RLAL" import "$EFF" "${BINDS[@]}"

step "rlal export --uniform 0.5 (validated in ONNX Runtime and tract)"
for m in resnet_keras_nhwc mobilenetv2_keras efficientnetb0_keras; do
  extra=()
  [ "$m" = efficientnetb0_keras ] && extra=("${BINDS[@]}")
  run "$RLAL" export "$OUT/${m}_uniform50.onnx" --model "$OUT/$m.onnx" --uniform 0.5 \
    --threads 2 "${extra[@]}"
  "$PY" tools/keras_models.py --check "$OUT/$m.onnx" "$OUT/${m}_uniform50.onnx"
done

RESNET=$OUT/resnet_keras_nhwc.onnx
# prune_resnet LAYOUT NAME ARGS...: recipes/quickstart.yaml on the small ResNet in
# LAYOUT with the RGB digits; checks the pruned model's interface.
prune_resnet() {
  local model=$OUT/resnet_keras_$1.onnx run=runs/keras_$2; shift 2
  run "$RLAL" prune "$model" --recipe recipes/quickstart.yaml --data "$DATA" --run-dir "$run" \
    "$@" "${PRUNE_ARGS[@]}"
  "$PY" tools/keras_models.py --check "$model" "$run/pruned.onnx"
}
accuracy() { "$PY" -c 'import json, sys; print(f"{json.load(open(sys.argv[1]))["accuracy"]:.4f}")' "$1/report.json"; }

if [ "$TRAIN" = 1 ]; then
  step "the small ResNet (NHWC): rlal train, rlal eval, rlal prune (quickstart recipe), rlal eval"
  run "$RLAL" train "$RESNET" --recipe recipes/train_resnet20_mnist.yaml --data "$DATA" \
    -o "$OUT/resnet_keras_trained.onnx" "${TRAIN_ARGS[@]}"
  "$PY" tools/keras_models.py --check "$RESNET" "$OUT/resnet_keras_trained.onnx"
  run "$RLAL" eval "$OUT/resnet_keras_trained.onnx" --data "$DATA"
  prune_resnet nhwc resnet_nhwc
  run "$RLAL" eval runs/keras_resnet_nhwc/pruned.onnx --data "$DATA"
fi

if [ "$COMPARE" -gt 0 ]; then
  step "NHWC vs NCHW: the same Keras ResNet pruned by rlal, seeds 0..$((COMPARE - 1))"
  rows=()
  for ((seed = 0; seed < COMPARE; seed++)); do
    for layout in nhwc nchw; do
      prune_resnet "$layout" "cmp_${layout}_s$seed" --seed "$seed" -q
    done
    rows+=("$seed $(accuracy "runs/keras_cmp_nhwc_s$seed") $(accuracy "runs/keras_cmp_nchw_s$seed")")
  done
  printf '\nseed  NHWC acc  NCHW acc\n'
  printf '%s\n' "${rows[@]}" | awk '{printf "%4s  %8s  %8s\n", $1, $2, $3}'
fi
