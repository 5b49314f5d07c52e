#!/usr/bin/env bash
# Command 2: set up and run the whole test suite (unit, DuckDB + PostgreSQL, emulator over HTTP,
# real `airflow dags test` runs). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PYTHONPATH="$PWD/plugins:$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec .venv/bin/python -m pytest "$@"
