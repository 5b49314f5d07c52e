"""A manual run is not held hostage by a scheduled run waiting for customers (issue 16), through the
real scheduler (LocalExecutor, api-server, dag-processor on a fresh PostgreSQL metadata database).

The identify DAG stays paused and ``customers.wait_for_paused`` makes the scheduled events run wait
for it; a dry run triggered by hand meanwhile must reach ``running`` within 60 s and succeed, while
the scheduled run is still waiting.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from amberflo_sync.demo.generate import generate_warehouse
from tests.conftest import require_service
from tests.distributed.cluster import LocalCluster

pytestmark = pytest.mark.airflow

DAG_ID = "segment_events_to_amberflo"


def test_a_manual_dry_run_starts_while_a_scheduled_run_waits_for_customers(tmp_path, emulator, api_key):
    require_service("PostgreSQL", "127.0.0.1", 5432)
    warehouse = tmp_path / "warehouse.duckdb"
    generate_warehouse(f"duckdb:///{warehouse}", events=300, seed=2)
    config = tmp_path / "amberflo_sync.yaml"
    config.write_text(json.dumps({
        "source_schemas": ["prod"],
        "state": {"url": f"sqlite:///{tmp_path / 'state.sqlite'}"},
        "customers": {"wait_minutes": 600, "wait_for_paused": True},
        "dry_run_dir": str(tmp_path / "dry_run"),
    }))
    cluster = LocalCluster(tmp_path, {
        "AMBERFLO_SYNC_CONFIG": str(config),
        "AIRFLOW_CONN_SEGMENT_WAREHOUSE": json.dumps(
            {"conn_type": "generic", "extra": {"sqlalchemy_url": f"duckdb:///{warehouse}"}}),
        "AIRFLOW_CONN_AMBERFLO_DEFAULT": json.dumps({"conn_type": "amberflo", "host": emulator.url, "password": api_key}),
    })
    try:
        cluster.start()
        cluster.wait_for_dag(DAG_ID)
        cluster._run(["dags", "unpause", DAG_ID])  # the scheduler creates the latest hour's scheduled run
        deadline = time.monotonic() + 120
        scheduled = []
        while time.monotonic() < deadline and not scheduled:
            scheduled = [r for r in cluster.runs(DAG_ID) if str(r["run_id"]).startswith("scheduled__")
                         and r.get("state") == "running"]
            time.sleep(2)
        assert scheduled, f"no scheduled run started: {cluster.runs(DAG_ID)}" + cluster.tail("scheduler")
        run_id = f"manual__dry_{uuid.uuid4().hex[:6]}"
        cluster._run(["dags", "trigger", DAG_ID, "--run-id", run_id, "--conf", json.dumps({"dry_run": True})])
        triggered = time.monotonic()
        state = None
        while time.monotonic() - triggered < 60:
            state = next((r.get("state") for r in cluster.runs(DAG_ID) if r["run_id"] == run_id), None)
            if state in ("running", "success"):
                break
            time.sleep(1)
        assert state in ("running", "success"), f"the manual run is {state} after 60 s" + cluster.tail("scheduler")
        assert cluster.wait_for_run(DAG_ID, run_id, timeout=300) == "success", cluster.tail("scheduler")
        waiting = next(r for r in cluster.runs(DAG_ID) if r["run_id"] == scheduled[0]["run_id"])
        assert waiting["state"] == "running"  # still waiting for customers: nothing of it was undone
        assert emulator.stats()["requests"] == 0  # the dry run sent nothing, the waiting run nothing yet
    finally:
        cluster.stop()
