#!/usr/bin/env bash
# The five Crafter arms of docs/RESULTS.md at one budget, one after another, 3 seeds each:
#
#   bash scripts/crafter_arms.sh STEPS_PER_STAGE [ROOT] [SFT_MAX_PAIRS]
#
# (a) ppo and (b) random_subgoals train 5 x STEPS_PER_STAGE env steps per seed in one stretch, with
# the RLAdapter runs' rollout (20 envs x 200 steps, configs/crafter_rladapter.yaml); the RLAdapter
# arms run 5 stages of STEPS_PER_STAGE: (c) decision_only (no adapter LM, an empty analysis),
# (d) frozen_adapter (the adapter LM without SFT) and (e) full (SFT after every stage on at most
# SFT_MAX_PAIRS of the stage's pairs, default 128). Run directories are ROOT/<arm> (default
# runs/crafter_arms_<5 x STEPS_PER_STAGE>); an arm whose directory exists is resumed, so a killed
# invocation continues where it stopped when given the same arguments. Then
#   .venv/bin/python scripts/crafter_results.py --name crafter_arms --command "bash scripts/crafter_arms.sh STEPS_PER_STAGE" \
#       ppo=ROOT/ppo random_subgoals=ROOT/random_subgoals decision_only=ROOT/decision_only \
#       frozen_adapter=ROOT/frozen_adapter full=ROOT/full
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $# -lt 1 || ! "$1" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: bash scripts/crafter_arms.sh STEPS_PER_STAGE [ROOT] [SFT_MAX_PAIRS] (STEPS_PER_STAGE: a positive integer, got '${1:-}')" >&2
    exit 2
fi
STAGE=$1
TOTAL=$((5 * STAGE))
ROOT=${2:-runs/crafter_arms_$TOTAL}
PAIRS=${3:-128}
PY=.venv/bin/python
SEEDS=(--num-seeds 3 --seed 1)
LAYOUT=(--set num_envs=20 --set num_steps=200)
RLADAPTER=(--config configs/crafter_rladapter.yaml --set stages=5 --total-timesteps "$STAGE" --set "sft_max_pairs=$PAIRS")

arm() {  # arm NAME ARGS...: train ROOT/NAME, or resume it
    local name=$1; shift
    local dir=$ROOT/$name
    if [[ -f $dir/config.yaml ]]; then
        echo "== $name: resuming $dir" >&2
        "$PY" -m twosome_jax.train --no-progress --resume "$dir"
    else
        echo "== $name: $dir" >&2
        "$PY" -m twosome_jax.train --no-progress "$@" "${SEEDS[@]}" --run-dir "$dir"
    fi
}

arm ppo --config configs/crafter_ppo.yaml --total-timesteps "$TOTAL" "${LAYOUT[@]}"
arm random_subgoals --config configs/crafter_random_subgoals.yaml --total-timesteps "$TOTAL" "${LAYOUT[@]}"
arm decision_only "${RLADAPTER[@]}" --set adapter=none --set adapter_sft=false
arm frozen_adapter "${RLADAPTER[@]}" --set adapter_sft=false
arm full "${RLADAPTER[@]}"
