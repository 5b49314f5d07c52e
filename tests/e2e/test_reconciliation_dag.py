"""Real ``airflow dags test amberflo_reconciliation`` runs after real events DAG runs.

The generated warehouse's events end a day ago (relative to now), so with the default 27-hour settle
delay most cells are settled and the youngest are pending.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import orjson
import pytest
import requests

from amberflo_sync.demo.generate import generate_warehouse
from amberflo_sync.emulator import FaultConfig
from amberflo_sync.reconciliation.table import ReconciliationTable
from amberflo_sync.state import StateStore
from tests.warehouse import Warehouse

pytestmark = pytest.mark.airflow
NOW = dt.datetime.now(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)
INTERVAL = {"start": (NOW - dt.timedelta(days=12)).isoformat(), "end": NOW.isoformat()}


def synced_runner(tmp_path, airflow, emulator, faults=None):
    url = f"duckdb:///{tmp_path / 'demo.duckdb'}"
    generate_warehouse(url, events=1500, seed=3, now=NOW - dt.timedelta(days=1))
    runner = airflow(Warehouse(url), reconciliation={"reports_dir": str(tmp_path / "reports"),
                                                     "repair_recheck_seconds": 0})
    emulator.set_faults(faults)
    sync = runner.dags_test("segment_events_to_amberflo")
    emulator.set_faults(None)
    assert sync.succeeded, sync.output[-5000:]
    return runner


def latest_report(tmp_path: Path) -> dict:
    newest = max((tmp_path / "reports").glob("reconciliation_*.json"), key=lambda p: p.stat().st_mtime)
    assert newest.with_suffix(".html").read_text().startswith("<!doctype html>")
    return json.loads(newest.read_text())


def test_after_normal_syncs_every_settled_cell_matches(tmp_path, airflow, emulator):
    runner = synced_runner(tmp_path, airflow, emulator)
    result = runner.dags_test("amberflo_reconciliation", conf=INTERVAL)
    assert result.succeeded, result.output[-5000:]
    assert "reconciliation page: cells=" in result.output and "# Amberflo reconciliation" in result.output
    summary = latest_report(tmp_path)["summary"]
    counts = summary["status_counts"]
    assert counts["missing"] == counts["excess"] == 0 and counts["match"] > 100 and counts["pending"] > 0
    assert summary["api_calls"] == 1
    state = StateStore.from_url(runner.state_url)
    rows = ReconciliationTable(state.engine, state.schema).rows()
    assert len(rows) == summary["cells"] and {r["status"] for r in rows} == {"match", "pending"}

    refused = runner.dags_test("amberflo_reconciliation", conf={"start": "2025-01-01T00:00:00Z",
                                                                "end": "2025-01-02T00:00:00Z"})
    assert not refused.succeeded and "more than 60 days ago" in refused.output


def test_injected_drift_fails_the_task_names_the_records_and_repair_restores_match(tmp_path, airflow, emulator, api_key):
    runner = synced_runner(tmp_path, airflow, emulator, FaultConfig(rate_lose=0.01, rate_double=0.01, seed=4))
    settled_before = (NOW - dt.timedelta(hours=27)).timestamp() * 1000
    in_settled = lambda r: r["meterTimeInMillis"] // 3_600_000 * 3_600_000 + 3_600_000 <= settled_before  # noqa: E731
    drift = emulator.drift()
    lost = {r["uniqueId"] for r in drift["lost"] if in_settled(r)}
    doubled = {r["uniqueId"] for r in drift["doubled"] if in_settled(r)}
    victims = [r for r in emulator.records() if in_settled(r) and r["meterApiName"] == "screen"][:2]
    wrong = [{**r, "customerId": "someone_else"} for r in victims]  # sent for the wrong customer
    requests.post(f"{emulator.url}/ingest", data=orjson.dumps(wrong), headers={"X-API-KEY": api_key},
                  timeout=10).raise_for_status()
    assert lost and doubled

    found = runner.dags_test("amberflo_reconciliation", conf=INTERVAL)
    assert not found.succeeded
    assert "drifted cells (missing=" in found.output and "reconciliation.max_drifted_cells" in found.output
    report = latest_report(tmp_path)
    drills = report["drilldown"]
    assert {i for d in drills for i in d["missing_ids"]} == lost
    assert {i for d in drills for i in d["different_bytes_ids"]} == doubled
    assert {i for d in drills for i in d["unexpected_ids"]} == {r["uniqueId"] for r in wrong}
    assert {(d["customer"], d["status"]) for d in drills if d["unexpected_ids"]} == {("someone_else", "excess")}

    repaired = runner.dags_test("amberflo_reconciliation", conf={**INTERVAL, "repair": True})
    assert repaired.succeeded, repaired.output[-5000:]
    report = latest_report(tmp_path)
    assert report["summary"]["status_counts"]["missing"] == report["summary"]["status_counts"]["excess"] == 0
    assert set(report["repair"]["resent_ids"]) == lost
    assert set(report["repair"]["cancelled_ids"]) == doubled | {r["uniqueId"] for r in wrong}
    assert report["repair"]["foreign_ids"] == []
    again = runner.dags_test("amberflo_reconciliation", conf=INTERVAL)
    assert again.succeeded, again.output[-5000:]


def test_on_a_postgres_warehouse_every_settled_cell_matches(tmp_path, airflow, emulator, pg_url):
    import uuid

    import sqlalchemy as sa

    suffix = f"_r{uuid.uuid4().hex[:6]}"
    generate_warehouse(pg_url, events=1000, seed=5, now=NOW - dt.timedelta(days=1), schema_suffix=suffix)
    try:
        runner = airflow(Warehouse(pg_url), source_schemas=[f"prod{suffix}", f"ios_app{suffix}"],
                         reconciliation={"reports_dir": str(tmp_path / "reports")})
        sync = runner.dags_test("segment_events_to_amberflo")
        assert sync.succeeded, sync.output[-5000:]
        result = runner.dags_test("amberflo_reconciliation", conf=INTERVAL)
        assert result.succeeded, result.output[-5000:]
        counts = latest_report(tmp_path)["summary"]["status_counts"]
        assert counts["missing"] == counts["excess"] == 0 and counts["match"] > 50 and counts["pending"] > 0
    finally:
        engine = sa.create_engine(pg_url)
        with engine.begin() as conn:
            for schema in ("prod", "ios_app", "engage_default", "personas_legacy"):
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}{suffix}" CASCADE'))
        engine.dispose()
