#!/usr/bin/env bash
# Create (or reuse) .venv, install the package with the dev extra, run the whole test suite on
# PYTEST_WORKERS xdist workers (default 2, one per core of the CI machine), a file at a time: a
# file's module fixtures (trained runs shared by its tests) are then built once.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
exec .venv/bin/python -m pytest -q -n "${PYTEST_WORKERS:-2}" --dist loadfile "$@"
