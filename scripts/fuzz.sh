#!/usr/bin/env bash
# A long fuzz run of every parser: the suites' fuzz tests (`parser-fuzz`) with more mutants,
# every leading offset cut, and a new seed per round. CI runs the short default.
#
#   CASES=20000 DENSE=1000000 ROUNDS=4 SEED=1 scripts/fuzz.sh
#
# A failure prints the mutations and DISTR_FUZZ_SEED that replay it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/fetch-models.sh
export DISTR_MODELS_DIR="$PWD/.cache/models"
export DISTR_FUZZ_CASES="${CASES:-20000}" DISTR_FUZZ_DENSE="${DENSE:-1000000}"
seed="${SEED:-1}"
for round in $(seq "${ROUNDS:-1}"); do
    echo "round $round: DISTR_FUZZ_SEED=$seed, $DISTR_FUZZ_CASES random mutants per file"
    DISTR_FUZZ_SEED="$seed" cargo test --release --locked --no-default-features \
        -p distr-attn -p distr-llama -p distr-vit --test suite fuzz:: -- --nocapture
    seed=$((seed + 1))
done
