#!/usr/bin/env bash
# Service warehouse-seed of docker-compose.yaml, a one-shot job the Celery workers wait for:
#   1. fill the demo Segment warehouse (service warehouse) with `python -m amberflo_sync.demo.generate`
#      — once: it runs on every `docker compose up`, and regenerating would re-time every event, so
#      that Amberflo would bill the regenerated rows again. DEMO_RESEED=1 regenerates anyway
#      (docs/deployment.md, "Starting over");
#   2. create the sync state tables where the config ($AMBERFLO_SYNC_CONFIG) keeps them, before the
#      first tasks of several DAGs would all create them at once on two workers.
#
# DEMO_WAREHOUSE_URL is always the demo warehouse, never the segment_warehouse connection: this job
# must not write into a real warehouse that the connection may point at.
set -euo pipefail

url="${DEMO_WAREHOUSE_URL:?DEMO_WAREHOUSE_URL is not set}"

if [ "${DEMO_RESEED:-0}" != "1" ] && python - "$url" <<'PY'
import sys

import sqlalchemy as sa

engine = sa.create_engine(sys.argv[1])
with engine.connect() as conn:
    tables = conn.execute(
        sa.text("SELECT count(*) FROM information_schema.tables WHERE table_schema IN ('prod', 'ios_app')")
    ).scalar_one()
engine.dispose()
sys.exit(0 if tables else 1)
PY
then
  echo "warehouse-seed: the demo warehouse already has data; kept (DEMO_RESEED=1 regenerates it)"
else
  echo "warehouse-seed: generating ${DEMO_EVENTS:-20000} Segment calls"
  python -m amberflo_sync.demo.generate --url "$url" --events "${DEMO_EVENTS:-20000}"
fi

python - "$url" <<'PY'
import sys

import sqlalchemy as sa

from amberflo_sync.config import load_config
from amberflo_sync.state import StateStore

config = load_config()  # $AMBERFLO_SYNC_CONFIG
if config.state.url:
    state = StateStore.from_url(config.state.url, schema=config.state.schema)
else:  # state.url null: the state lives in the warehouse
    state = StateStore(sa.create_engine(sys.argv[1]), schema=config.state.schema)
state.create()
print(f"warehouse-seed: state tables ready (schema {config.state.schema})")
PY
