"""A real distributed run: Airflow with CeleryExecutor, two workers, PostgreSQL metadata, Redis broker.

Starts api-server, scheduler, dag-processor and two Celery workers as processes, triggers the events
DAG on a warehouse whose windows split into several slices, and checks that both workers ran slices
and that the emulator holds every record exactly once (same records as a single-process run). Skips
with a reason where Redis or PostgreSQL is unreachable; CI (AMBERFLO_SYNC_REQUIRE_SERVICES=1) must run it.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest
import sqlalchemy as sa

from amberflo_sync.demo.generate import generate_warehouse
from amberflo_sync.ledger import Ledger
from amberflo_sync.state import StateStore
from tests.conftest import PG_URL, require_service
from tests.distributed.cluster import CeleryCluster

pytestmark = pytest.mark.airflow


@pytest.fixture
def services():
    require_service("PostgreSQL", "127.0.0.1", 5432)
    require_service("Redis", "127.0.0.1", 6379)


def test_celery_workers_share_the_slices_and_bill_every_record_once(services, tmp_path, emulator, api_key):
    suffix = f"_c{uuid.uuid4().hex[:6]}"
    now = dt.datetime(2026, 11, 28, 12, tzinfo=dt.timezone.utc)
    generate_warehouse(PG_URL, events=4000, seed=5, now=now, schema_suffix=suffix)
    state_schema = f"state{suffix}"
    config = tmp_path / "amberflo_sync.yaml"
    config.write_text(json.dumps({
        "source_schemas": [f"prod{suffix}", f"ios_app{suffix}"],
        "state": {"url": PG_URL, "schema": state_schema},
        "fan_out": {"slice_rows": 400, "max_slices": 8},
        "customers": {"wait_minutes": 0},
        "progress_every_seconds": 0,
    }))
    cluster = CeleryCluster(tmp_path, {
        "AMBERFLO_SYNC_CONFIG": str(config),
        "AIRFLOW_CONN_SEGMENT_WAREHOUSE": json.dumps({"conn_type": "generic", "extra": {"sqlalchemy_url": PG_URL}}),
        "AIRFLOW_CONN_AMBERFLO_DEFAULT": json.dumps({"conn_type": "amberflo", "host": emulator.url, "password": api_key}),
        "AMBERFLO_SYNC_TASK_RETRIES": "1",
    })
    engine = sa.create_engine(PG_URL)
    try:
        cluster.start()
        cluster.wait_for_dag("segment_events_to_amberflo")
        # unpausing schedules the latest interval; the manual run queues behind it (max_active_runs=1)
        cluster.trigger("segment_events_to_amberflo")
        states = cluster.wait_for_all_runs("segment_events_to_amberflo", timeout=900)
        assert set(states.values()) == {"success"}, (
            f"{states}" + cluster.tail("scheduler") + cluster.tail("worker1") + cluster.tail("worker2"))

        store = StateStore(engine, schema=state_schema)
        with engine.connect() as conn:
            slice_rows = [dict(r) for r in conn.execute(sa.text(
                f"SELECT plan_id, stream, worker, status FROM {store.table('slices')}")).mappings()]
        per_plan_stream: dict[tuple[str, str], int] = {}
        for r in slice_rows:
            key = (r["plan_id"], r["stream"])
            per_plan_stream[key] = per_plan_stream.get(key, 0) + 1
        workers = {str(r["worker"]).split(":")[0] for r in slice_rows if r["worker"]}
        assert max(per_plan_stream.values()) > 1, "big windows should have split into slices"
        assert workers == {"worker1", "worker2"}, f"slices ran on {workers}"
        assert all(r["status"] == "success" for r in slice_rows)

        # every billable id reached Amberflo exactly once, or is in rejected_rows
        billed = [r["uniqueId"] for r in emulator.records()]
        assert len(billed) == len(set(billed))
        with engine.connect() as conn:
            tables = conn.execute(sa.text(
                "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema IN (:a, :b) "
                "AND table_name NOT IN ('tracks', 'identifies', 'users', 'groups', 'aliases', 'accounts')"),
                {"a": f"prod{suffix}", "b": f"ios_app{suffix}"}).fetchall()
            ids = set()
            for schema, table in tables:
                ids |= {r[0] for r in conn.execute(sa.text(f'SELECT DISTINCT id FROM "{schema}"."{table}"'))}
        rejected = {r["row_id"] for r in Ledger(store).rejected_rows()}
        assert set(billed) == ids - rejected
        assert emulator.stats()["distinct"] == len(billed)
    finally:
        cluster.stop()
        with engine.begin() as conn:
            for schema in (f"prod{suffix}", f"ios_app{suffix}", f"engage_default{suffix}", f"personas_legacy{suffix}",
                           state_schema):
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()
