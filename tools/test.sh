#!/usr/bin/env bash
# The README's test command: setup (idempotent), then the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
cargo test --all-targets 2>&1
