#!/usr/bin/env bash
# CUDA checks and GPU benchmarks of rlal in one pass, for a lent GPU machine
# that has PyTorch (and the onnxruntime wheel) installed but no Rust toolchain:
# the release binary is built here and carried (stripped, gzipped).
#
#   here:   tools/gpu_check.sh --pack            # writes .gpu/rlal.gz (ignored by git)
#   there:  OUT=/some/dir tools/gpu_check.sh     # runs everything, logs to $OUT
#
# Steps (each with its own time limit, so one failure leaves the others' figures):
#   1. environment: GPU, PyTorch, libtorch's CUDA backend seen by rlal
#   2. training step, rlal vs PyTorch eager on the same GPU: ResNet-20/56 and
#      MobileNetV2 (CIFAR size, batch 128), fp32, bf16 autocast, channels-last + bf16
#   3. correctness on CUDA: rlal train (fp32, bf16, fp16, channels-last) of ResNet-20
#      on the MNIST 5k subset, then the trained ONNX through rlal's tch engine on
#      CUDA and ONNX Runtime (CPU) on the test split: same accuracy (+-1 image)
#   4. search cost on CUDA (rlal bench search, quickstart recipe, libtorch engines)
#   5. the README's main job on CUDA (rlal prune --recipe recipes/quickstart.yaml)
#   6. search cost at the paper's CIFAR-10 setting (recipes/resnet56_cifar10.yaml:
#      ResNet-56, 45,000 training + 5,000 reward images, P = 10) on CIFAR-10-shaped
#      random data (timing only; written there by numpy, nothing is downloaded); on
#      CUDA `agent.overlap: auto` also times the agent updates beside training (`beside`)
# Results: $OUT/gpu.log (everything), $OUT/results.jsonl (one JSON object per
# measurement), $OUT/prune_report.json, $OUT/prune_metrics.jsonl.
# Env: STEPS=50 WARMUP=10 (bench train), MODELS, CONFIGS="fp32 bf16 bf16-cl",
#      PARITY="fp32 bf16 fp16 fp32-cl", ENGINES="auto pruned masked ort" (bench search),
#      SKIP="3 5" (step numbers to skip), ORDER="1 6 4 5" (steps in this order),
#      DEVICE=cpu (dry run of this script on a machine without a GPU), PYTHON.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--pack" ]; then
  cargo build --release --bin rlal
  mkdir -p .gpu
  grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
  strip -o .gpu/rlal target/release/rlal && gzip -f .gpu/rlal
  ls -la .gpu
  exit 0
fi

OUT=${OUT:-/tmp/rlal-gpu}
mkdir -p "$OUT"
log=$OUT/gpu.log
res=$OUT/results.jsonl
: > "$res"
exec > >(tee -a "$log") 2>&1
steps=${STEPS:-50}
warmup=${WARMUP:-10}
models=${MODELS:-resnet20_cifar resnet56_cifar mobilenetv2_cifar}
skip=" ${SKIP:-} "
py=${PYTHON:-python3}
dev=${DEVICE:-cuda}   # DEVICE=cpu: a dry run of the script itself
work=$(mktemp -d)

# The carried binary, else a local build.
if [ -f .gpu/rlal.gz ]; then
  gunzip -c .gpu/rlal.gz > "$work/rlal" && chmod +x "$work/rlal"
  bin=$work/rlal
else
  bin=${RLAL_BIN:-target/release/rlal}
fi
# libtorch and libonnxruntime from this machine's Python wheels (same torch 2.11.0).
tl=$("$py" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH=$tl${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
if [ -z "${ORT_DYLIB_PATH:-}" ]; then
  ORT_DYLIB_PATH=$("$py" -c 'import glob, os, onnxruntime as o; print(sorted(glob.glob(os.path.join(os.path.dirname(o.__file__), "capi", "libonnxruntime.so*")))[-1])' 2>/dev/null) && export ORT_DYLIB_PATH
fi

step() { # step N description -- function (its commands carry their own time limits)
  local n=$1 what=$2; shift 3
  if [[ $skip == *" $n "* ]]; then echo "== step $n skipped: $what"; return 0; fi
  echo "== step $n: $what ($(date -u +%H:%M:%S))"
  "$@"; local rc=$?
  echo "== step $n rc=$rc ($(date -u +%H:%M:%S))"
}
jl() { # append a JSON file's object to results.jsonl with a tag
  "$py" - "$1" "$2" >> "$res" <<'EOF'
import json, sys
try:
    d = json.load(open(sys.argv[2]))
except Exception as e:
    d = {"error": f"{sys.argv[2]}: {e}"}
d["tag"] = sys.argv[1]
print(json.dumps(d))
EOF
}

env_check() {
  nvidia-smi -L || true
  "$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")'
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"; echo "ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-}"
  "$bin" --version
  "$bin" bench train --model graphs/resnet20_cifar.onnx --device $dev --steps 3 --warmup 1 --json > "$work/probe.json" && jl probe "$work/probe.json"
}

bench_train() {
  for m in $models; do
    for cfg in ${CONFIGS:-fp32 bf16 bf16-cl}; do
      set -- ${cfg/-/ }
      local prec=$1 cl=${2:-} flags=(--batch 128 --steps "$steps" --warmup "$warmup" --device $dev --precision "$1" --json)
      [ -n "$cl" ] && flags+=(--channels-last)
      local tag="train $m $prec${cl:+ cl}"
      local reps="1 2"; [ "$prec" = fp32 ] || reps=1
      for r in $reps; do  # fp32: alternate the engines twice; report the best
        timeout 120 "$bin" bench train --model "graphs/$m.onnx" "${flags[@]}" > "$work/r.json" 2> "$work/r.err" || tail -3 "$work/r.err"
        jl "rlal $tag" "$work/r.json"
        timeout 120 "$py" tools/bench_train_torch.py --model "graphs/$m.onnx" "${flags[@]}" > "$work/t.json" 2> "$work/t.err" || tail -3 "$work/t.err"
        jl "torch $tag" "$work/t.json"
      done
    done
  done
  "$py" - "$res" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in rows:
    if r.get("tag", "").split(" ")[1:2] == ["train"] and "images_per_s" in r:
        eng, _, *cfg = r["tag"].split(" ")
        k = " ".join(cfg)
        by.setdefault(k, {}).setdefault(eng, []).append(r["images_per_s"])
print("| model, precision | rlal img/s | PyTorch img/s | ratio (best/best) |")
print("|---|---:|---:|---:|")
for k, v in by.items():
    a, b = max(v.get("rlal", [0])), max(v.get("torch", [0]))
    print(f"| {k} | {a:.0f} | {b:.0f} | {a / b if b else float('nan'):.2f} |")
EOF
}

train_parity() {
  for cfg in ${PARITY:-fp32 bf16 fp16 fp32-cl}; do
    set -- ${cfg/-/ }
    local prec=$1 cl=${2:-} name=$1${2:+_cl}
    local flags=(--recipe recipes/train_resnet20_mnist.yaml --device $dev --precision "$prec" --epochs 3 -o "$work/$name.onnx" --metrics "$work/$name.jsonl" --checkpoint-dir "$work/ck_$name")
    [ -n "$cl" ] && flags+=(--channels-last)
    echo "-- rlal train ${flags[*]}"
    timeout 150 "$bin" train "${flags[@]}" 2> "$work/train.err" | tail -3 || true
    tr '\r' '\n' < "$work/train.err" | grep -v '^epoch .*/[0-9]* loss' | tail -4
    [ -f "$work/$name.onnx" ] || { echo "no model written for $name"; continue; }
    timeout 60 "$bin" eval "$work/$name.onnx" --data data/mnist5k --engine tch --device $dev --mean 0.1307 --std 0.3081 --json > "$work/e1.json" && jl "eval tch-cuda $name" "$work/e1.json"
    timeout 60 "$bin" eval "$work/$name.onnx" --data data/mnist5k --engine ort --mean 0.1307 --std 0.3081 --json > "$work/e2.json" && jl "eval ort-cpu $name" "$work/e2.json"
    "$py" - "$work/e1.json" "$work/e2.json" "$name" <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
d = abs(a["correct"] - b["correct"])
print(f"PARITY {sys.argv[3]}: {a['engine']} {a['accuracy']:.4f} vs {b['engine']} {b['accuracy']:.4f}: {'OK' if d <= 1 else 'MISMATCH'} ({d} images)")
EOF
  done
}

bench_search() {
  sed -e 's/^  threads: .*/  threads: 2/' -e "s/^training:\$/training:\n  device: $dev/" recipes/quickstart.yaml > "$work/q.yaml"
  for eng in ${ENGINES:-auto pruned masked ort}; do
    timeout 150 "$bin" bench search --recipe "$work/q.yaml" --engine "$eng" --json > "$work/s.json" 2> "$work/s.err" || tail -3 "$work/s.err"
    jl "search $dev $eng" "$work/s.json"
    "$py" -c 'import json,sys; d=json.load(open(sys.argv[1])); print({k: v for k, v in d.items() if not isinstance(v, (dict, list))})' "$work/s.json" || true
  done
}

prune_quickstart() {
  local t0=$SECONDS
  timeout 240 "$bin" prune --recipe recipes/quickstart.yaml --device $dev --run-dir "$work/qs" --quiet 2>&1 | tail -25
  echo "prune wall: $((SECONDS - t0)) s"
  cp "$work/qs/report.json" "$OUT/prune_report.json" 2>/dev/null
  cp "$work/qs/metrics.jsonl" "$OUT/prune_metrics.jsonl" 2>/dev/null
}

search_paper() {
  "$py" - "$work/cifar" <<'EOF'
import os, sys
import numpy as np
d = sys.argv[1]
os.makedirs(d, exist_ok=True)
rng = np.random.default_rng(0)
for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
    rec = np.empty((10000, 3073), np.uint8)
    rec[:, 0] = rng.integers(0, 10, 10000)
    rec[:, 1:] = rng.integers(0, 256, (10000, 3072))
    rec.tofile(os.path.join(d, name))
EOF
  for eng in ${ENGINES:-auto pruned masked ort}; do
    timeout 240 "$bin" bench search --recipe recipes/resnet56_cifar10.yaml --data "$work/cifar" --engine "$eng" --paper-subset 0.1 --json > "$work/s.json" 2> "$work/s.err" || tail -3 "$work/s.err"
    jl "search-paper $dev $eng" "$work/s.json"
    "$py" -c 'import json,sys; d=json.load(open(sys.argv[1])); print({k: v for k, v in d.items() if not isinstance(v, (dict, list))}, d.get("episode_ms"), d.get("beside"))' "$work/s.json" || true
  done
}

for n in ${ORDER:-1 2 3 4 5 6}; do
  case $n in
    1) step 1 "environment" -- env_check ;;
    2) step 2 "training step on CUDA, rlal vs PyTorch" -- bench_train ;;
    3) step 3 "train on CUDA (fp32/bf16/fp16/channels-last), tch-cuda vs ORT accuracy" -- train_parity ;;
    4) step 4 "search cost on CUDA (quickstart recipe)" -- bench_search ;;
    5) step 5 "quickstart prune on CUDA" -- prune_quickstart ;;
    6) step 6 "search cost at the paper's CIFAR-10 setting (ResNet-56, random data)" -- search_paper ;;
  esac
done
echo "== done ($(date -u +%H:%M:%S))"
