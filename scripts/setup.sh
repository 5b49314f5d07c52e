#!/usr/bin/env bash
# Create .venv and install the pinned dependencies (idempotent; re-installs when the pins change),
# then the project itself as an Airflow provider (editable: the DAGs keep importing the code in
# plugins/, and Airflow's provider manager finds the `amberflo` connection type).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=".venv/.requirements.sha256"
# the optional warehouse providers CI tests (others: requirements-<warehouse>.txt, see README)
extras=(requirements-snowflake.txt requirements-postgres.txt requirements-ui.txt)
want="$(cat requirements.txt constraints.txt pyproject.toml "${extras[@]}" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ] || ! .venv/bin/python -c "import importlib.metadata as m; m.version('segment-amberflo-sync')" 2>/dev/null; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r requirements.txt "${extras[@]/#/-r}" -c constraints.txt
  # --no-deps: the exact versions are the pins above; pyproject.toml only states lower bounds.
  .venv/bin/python -m pip install --quiet --no-deps -e .
  echo "$want" > "$stamp"
fi
