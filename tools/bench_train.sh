#!/usr/bin/env bash
# Training-step throughput: rlal's libtorch executor (`rlal bench train`, release
# build) against PyTorch eager (`tools/bench_train_torch.py`) on the same
# architectures, batch, thread count, warm-up and steps; prints a markdown table.
#
# Usage: tools/bench_train.sh [threads]        (default 2)
# Env:   BATCH=128 STEPS=20 WARMUP=3 REPEATS=1 MODELS="resnet20_cifar resnet56_cifar mobilenetv2_cifar"
#        CHANNELS_LAST=1 (both engines in channels-last layout)
#        PYTHON=<python with torch>  (default: .venv/bin/python if it can import torch,
#        else .venv-ref/bin/python; both hold the same torch 2.11.0 libtorch_cpu.so)
# With REPEATS > 1 the two engines alternate (rlal, PyTorch, rlal, ...) so that
# background load hits both alike; the table shows the best repeat of each.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
batch=${BATCH:-128}
steps=${STEPS:-20}
warmup=${WARMUP:-3}
repeats=${REPEATS:-1}
models=${MODELS:-resnet20_cifar resnet56_cifar mobilenetv2_cifar}

py=${PYTHON:-}
if [ -z "$py" ]; then
  for cand in .venv/bin/python .venv-ref/bin/python; do
    if [ -x "$cand" ] && "$cand" -c 'import torch' 2>/dev/null; then py=$cand; break; fi
  done
fi
[ -n "$py" ] || { echo "error: no python with an importable torch (.venv, .venv-ref); set PYTHON=" >&2; exit 2; }

cargo build --release --bin rlal >&2
bin=target/release/rlal
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

common=(--batch "$batch" --steps "$steps" --warmup "$warmup" --threads "$threads" --json)
if [ -n "${CHANNELS_LAST:-}" ]; then common+=(--channels-last); fi
for m in $models; do
  for r in $(seq 1 "$repeats"); do
    echo "+ $bin bench train --model graphs/$m.onnx ${common[*]} --device cpu" >&2
    "$bin" bench train --model "graphs/$m.onnx" "${common[@]}" --device cpu > "$tmp/$m.rlal.$r.json"
    echo "+ $py tools/bench_train_torch.py --model graphs/$m.onnx ${common[*]}" >&2
    "$py" tools/bench_train_torch.py --model "graphs/$m.onnx" "${common[@]}" > "$tmp/$m.torch.$r.json"
  done
done

"$py" - "$tmp" "$threads" "$batch" "$steps" "$warmup" "$repeats" $models <<'EOF'
import glob, json, os, sys
tmp, threads, batch, steps, warmup, repeats, *models = sys.argv[1:]
def runs(m, eng):
    return [json.load(open(p)) for p in sorted(glob.glob(os.path.join(tmp, f"{m}.{eng}.*.json")))]
cl = runs(models[0], "rlal")[0].get("channels_last")
print(f"batch {batch}, {threads} threads, median of {steps} steps after {warmup} warm-up"
      + (", channels-last" if cl else "")
      + (f", best of {repeats} alternating repeats" if int(repeats) > 1 else ""))
print()
print("| model | rlal img/s | PyTorch img/s | ratio rlal/PyTorch | rlal ms/step | PyTorch ms/step |")
print("|---|---:|---:|---:|---:|---:|")
for m in models:
    r = max(runs(m, "rlal"), key=lambda j: j["images_per_s"])
    t = max(runs(m, "torch"), key=lambda j: j["images_per_s"])
    print(f"| {m} | {r['images_per_s']:.1f} | {t['images_per_s']:.1f} | {r['images_per_s'] / t['images_per_s']:.2f} "
          f"| {r['median_ms']:.0f} | {t['median_ms']:.0f} |")
EOF
