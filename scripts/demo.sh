#!/usr/bin/env bash
# Command 1: set everything up, start the Amberflo emulator, generate the demo Segment warehouse
# (DuckDB), run the events DAG with `airflow dags test`, print what Amberflo received, then reconcile
# the warehouse against Amberflo's usage (DAG amberflo_reconciliation) and print its summary.
#   DEMO_EVENTS=20000  rows of Segment calls to generate (default 20000)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
bash scripts/setup.sh
PY="$REPO/.venv/bin/python"
DEMO="$REPO/.demo"
mkdir -p "$DEMO"
export PYTHONPATH="$REPO/plugins:$REPO"
export AIRFLOW_HOME="$DEMO/airflow"
export AIRFLOW__CORE__DAGS_FOLDER="$REPO/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$REPO/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AMBERFLO_SYNC_CONFIG="${AMBERFLO_SYNC_CONFIG:-$REPO/config/amberflo_sync.yaml}"

echo "==> Airflow metadata database ($AIRFLOW_HOME)"
"$PY" -m airflow db migrate > "$DEMO/airflow-migrate.log" 2>&1 || { tail -50 "$DEMO/airflow-migrate.log"; exit 1; }

echo "==> Generating the demo Segment warehouse ($DEMO/warehouse.duckdb)"
rm -f "$DEMO/warehouse.duckdb" "$DEMO/warehouse.duckdb.wal" "$DEMO/state.sqlite"
"$PY" -m amberflo_sync.demo.generate --url "duckdb:///$DEMO/warehouse.duckdb" --events "${DEMO_EVENTS:-20000}"

echo "==> Starting the Amberflo emulator"
API_KEY="demo-$("$PY" -c 'import secrets; print(secrets.token_hex(16))')"
rm -f "$DEMO/emulator.url"
"$PY" -m amberflo_sync.emulator --port 0 --api-key "$API_KEY" --ready-file "$DEMO/emulator.url" > "$DEMO/emulator.log" 2>&1 &
EMULATOR_PID=$!
trap 'kill $EMULATOR_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do [ -s "$DEMO/emulator.url" ] && break; sleep 0.1; done
AMBERFLO_URL="$(cat "$DEMO/emulator.url")"
echo "    listening on $AMBERFLO_URL"

export AIRFLOW_CONN_SEGMENT_WAREHOUSE="{\"conn_type\": \"generic\", \"extra\": {\"sqlalchemy_url\": \"duckdb:///$DEMO/warehouse.duckdb\"}}"
export AIRFLOW_CONN_AMBERFLO_DEFAULT="{\"conn_type\": \"amberflo\", \"host\": \"$AMBERFLO_URL\", \"password\": \"$API_KEY\"}"

: > "$DEMO/dags-test.log"
# customers first (identify calls, then Engage audiences), then their meters
for dag in segment_identifies_to_amberflo engage_audiences_to_amberflo segment_events_to_amberflo; do
  echo "==> airflow dags test $dag (log: $DEMO/dags-test.log)"
  if ! "$PY" -m airflow dags test "$dag" >> "$DEMO/dags-test.log" 2>&1; then
    tail -80 "$DEMO/dags-test.log"; echo "the $dag run failed (full log: $DEMO/dags-test.log)"; exit 1
  fi
done
echo "==> Task summaries"
grep -oE "[A-Za-z0-9_.]+: status=[a-z_]+ [^[]*|[0-9]+ streams: read=[^[]*" "$DEMO/dags-test.log" | sort -u | sed 's/^/    /' || true

"$PY" -m amberflo_sync.report --amberflo-url "$AMBERFLO_URL" --state-url "sqlite:///$DEMO/state.sqlite"

# Reconciliation: the demo's events are minutes to days old, so with the default 27-hour settle delay
# most of them would be `pending`. The emulator shows usage at once, so the demo reconciles every
# demo event time with settle_hours=0 — against real Amberflo keep the default.
RECON_START="$("$PY" -c 'import datetime as d; n=d.datetime.now(d.timezone.utc).replace(minute=0, second=0, microsecond=0); print((n - d.timedelta(days=10)).isoformat())')"
RECON_END="$("$PY" -c 'import datetime as d; n=d.datetime.now(d.timezone.utc).replace(minute=0, second=0, microsecond=0); print((n + d.timedelta(hours=4)).isoformat())')"
echo ""
echo "==> airflow dags test amberflo_reconciliation: event times [$RECON_START, $RECON_END), settle_hours=0"
echo "    (demo only: the emulator has no usage lag; real Amberflo needs 27 h, younger hours are reported pending)"
: > "$DEMO/reconciliation.log"
RECON_CONF="{\"start\": \"$RECON_START\", \"end\": \"$RECON_END\", \"settle_hours\": 0}"
if ! "$PY" -m airflow dags test amberflo_reconciliation --conf "$RECON_CONF" >> "$DEMO/reconciliation.log" 2>&1; then
  tail -60 "$DEMO/reconciliation.log"; echo "the reconciliation found drift or failed (full log: $DEMO/reconciliation.log)"; exit 1
fi
echo "==> Reconciliation summary (warehouse vs Amberflo usage, per meter × customer × hour)"
grep -oE "reconciliation [^:]+: cells=[^[]*" "$DEMO/reconciliation.log" | sed 's/ *$//' | sort -u | sed 's/^/    /' || true
grep -oE "reconciliation report files: [^ ]+" "$DEMO/reconciliation.log" | tail -1 | sed 's/reconciliation report files: /    chart: /' || true
