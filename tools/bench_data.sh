#!/usr/bin/env bash
# rlal's loader against torchvision's DataLoader on the same generated JPEG folder,
# the same transforms, batch and cores; prints a markdown table.
#   tools/bench_data.sh [IMAGES] [WORKERS] [PIPELINE]   (defaults: 1200, 0,1,2, train)
# Needs the release binary and the reference venv (tools/setup.sh --ref).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1200}
W=${2:-0,1,2}
P=${3:-train}
DIR=${DIR:-runs/bench-data}
BIN=${BIN:-target/release/rlal}
OUT=$(mktemp)
"$BIN" bench data --dir "$DIR" --generate "$N" --workers "$W" --pipeline "$P" --json >"$OUT"
if [ -x .venv-ref/bin/python ]; then
  .venv-ref/bin/python tools/bench_data_torch.py --dir "$DIR" --workers "$W" --pipeline "$P" >>"$OUT"
else
  echo "bench_data: no .venv-ref (tools/setup.sh --ref): torchvision not measured" >&2
fi
python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {}
for r in rows:
    by.setdefault(r["workers"], {})[r["engine"]] = r["images_per_s"]
print("| workers | rlal img/s | torchvision img/s | ratio |")
print("|---:|---:|---:|---:|")
for w in sorted(by):
    a, b = by[w].get("rlal"), by[w].get("torchvision")
    ratio = f"{a / b:.2f}" if a and b else "-"
    fmt = lambda v: f"{v:.0f}" if v else "-"
    print(f"| {w} | {fmt(a)} | {fmt(b)} | {ratio} |")
PY
rm -f "$OUT"
