#!/usr/bin/env bash
# The README's test command: setup (idempotent; with Open MPI for the multi-process tests),
# formatting check, clippy with warnings as errors, then the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh --mpi
# Open MPI is installed by setup (as root): the multi-process tests must then run, not skip.
if [ "$(id -u)" = 0 ]; then export RLAL_REQUIRE_MPI=1; fi
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
