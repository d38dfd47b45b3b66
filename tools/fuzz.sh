#!/usr/bin/env bash
# Mutation fuzzing at scale: N model cases (recipes: 2N, datasets: N/5,
# checkpoints: N/40) of tests/fuzz/ in release, with the seed from RLAL_FUZZ_SEED (default 15).
#   tools/fuzz.sh 100000                 # every fuzz target
#   tools/fuzz.sh 100000 fuzz_models     # one target (fuzz_models, fuzz_recipes,
#                                        # fuzz_datasets, fuzz_checkpoints)
# Failing cases are written to target/fuzz-failures/ for replay. rlal itself is
# built with overflow checks (as in the debug profile, where arithmetic overflow
# panics), its dependencies as in any release build.
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:?usage: tools/fuzz.sh N [TEST_NAME]}"
shift
export RLAL_FUZZ_CASES="$n"
start=$(date +%s)
cargo test --release --config 'profile.release.package.rlal.overflow-checks=true' --test fuzz -- --nocapture --test-threads 1 "$@"
echo "fuzz: $n cases, seed ${RLAL_FUZZ_SEED:-15}, $(( $(date +%s) - start )) s"
