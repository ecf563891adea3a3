#!/usr/bin/env bash
# Create (or reuse) .venv, install the package, run the main job (training on the embedded default model).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
# no arguments: tomato salad with SmolLM2's learning rates layered over the reference config,
# the results run's budget and an early stop once greedy success holds (configs/quickstart.yaml)
[ $# -gt 0 ] || set -- --config configs/tomato_salad.yaml --config configs/smollm2.yaml --config configs/quickstart.yaml
exec .venv/bin/python -m twosome_jax.train "$@"
