#!/usr/bin/env bash
# Benchmark of `rlal import` on a ResNet-50-size ONNX (the structure-only
# torchvision ResNet-50 in graphs/imagenet, decompressed: ~102 MB):
# wall time (median of 5 warm runs) and peak RSS, against the file size.
# Usage: tools/bench_import.sh [path/to/rlal]   (default: target/release/rlal)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/rlal}
[ -x "$bin" ] || cargo build --release --bin rlal
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
zcat graphs/imagenet/resnet50.onnx.gz > "$tmp/resnet50.onnx"
size=$(stat -c %s "$tmp/resnet50.onnx")
"$bin" import "$tmp/resnet50.onnx" > /dev/null   # warm the page cache
for i in 1 2 3 4 5; do
  /usr/bin/time -f "%e %M" "$bin" import "$tmp/resnet50.onnx" 2>&1 >/dev/null | tail -n1
done | sort -n | awk -v size="$size" 'NR==3 { printf "import resnet50.onnx (%.1f MB): median %.2f s, peak RSS %.1f MB (%.2fx file size)\n", size/1e6, $1, $2/1024, $2*1024/size }'
