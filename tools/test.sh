#!/usr/bin/env bash
# The README's test command: setup (idempotent; with Open MPI for the multi-process tests,
# and as root a one-node Slurm cluster for the srun/sbatch tests), formatting check,
# clippy with warnings as errors, then the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
# The Slurm daemons this run's setup started (pid, name per line) are stopped at its end.
stop_started() {
  [ -f .slurm-started ] || return 0
  local pid name
  while read -r pid name; do kill "$pid" 2>/dev/null && echo "test: stopped $name ($pid)" >&2; done < .slurm-started
  rm -f .slurm-started
}
if [ "$(id -u)" = 0 ]; then
  trap stop_started EXIT
  bash tools/setup.sh --mpi --slurm
  # Open MPI and Slurm are installed by setup: their tests must then run, not skip.
  export RLAL_REQUIRE_MPI=1 RLAL_REQUIRE_SLURM=1
else
  bash tools/setup.sh --mpi
fi
if cargo fmt --version >/dev/null 2>&1; then
  cargo fmt --check || { echo "test: cargo fmt --check failed (run cargo fmt)" >&2; exit 1; }
else
  echo "test: rustfmt is not installed; skipping the formatting check" >&2
fi
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --all-targets -- -D warnings || { echo "test: cargo clippy found warnings" >&2; exit 1; }
else
  echo "test: clippy is not installed; skipping the lint check" >&2
fi
cargo test --all-targets 2>&1
