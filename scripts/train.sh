#!/usr/bin/env bash
# Create (or reuse) .venv, install the package, run the main job (training on the embedded default model).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
exec .venv/bin/python -m twosome_jax.train "$@"
