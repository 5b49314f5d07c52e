"""Backfills by event time and fan-out of big windows, through real ``airflow dags test`` runs."""

from __future__ import annotations

import pytest

from amberflo_sync.ledger import Ledger
from amberflo_sync.state import StateStore
from tests.e2e.test_events_dag import EXPECTED, build_small_warehouse

pytestmark = pytest.mark.airflow


def test_big_windows_are_split_into_slices_and_watermarks_cover_them(duckdb_warehouse, airflow, emulator):
    build_small_warehouse(duckdb_warehouse)
    runner = airflow(duckdb_warehouse, fan_out={"slice_rows": 1, "max_slices": 8})
    result = runner.dags_test("segment_events_to_amberflo")
    assert result.succeeded, result.output[-5000:]
    assert sorted(emulator.records(), key=lambda r: r["uniqueId"]) == EXPECTED
    assert "4 streams: read=7 sent=6 duplicates=0 rejected=1 skipped=0 slices=7 succeeded=7" in result.output
    state = Ledger(StateStore.from_url(runner.state_url))
    [run] = [r for r in state.runs() if r["stream"] == "prod.api_calls"]
    assert run["rows_read"] == 3 and '"slices":3' in run["details"] and '"slices_succeeded":3' in run["details"]
    slice_rows = [r for r in state.slices(run["plan_id"]) if r["stream"] == "prod.api_calls"]
    assert len(slice_rows) == 3 and sum(r["rows_read"] for r in slice_rows) == 3
    assert str(state.watermark("prod.api_calls").value).startswith("2026-11-20 10:30:02")
    again = runner.dags_test("segment_events_to_amberflo")
    assert again.succeeded and emulator.stats()["distinct"] == len(EXPECTED)


def test_backfill_resends_the_interval_by_event_time_and_bills_nothing_twice(duckdb_warehouse, airflow, emulator):
    build_small_warehouse(duckdb_warehouse)
    runner = airflow(duckdb_warehouse)
    assert runner.dags_test("segment_events_to_amberflo").succeeded
    state = Ledger(StateStore.from_url(runner.state_url))
    marks = {k: state.watermark(k).value for k in ("prod.pages", "prod.api_calls")}
    before = emulator.stats()
    # events at 10:00:00 and 10:00:01 of 2026-11-20: the interval (09:59:59.5, 10:00:00.5] holds the first of each
    result = runner.dags_test("segment_events_to_amberflo",
                              conf={"start": "2026-11-20T09:59:59.500Z", "end": "2026-11-20T10:00:00.500Z"})
    assert result.succeeded, result.output[-5000:]
    after = emulator.stats()
    assert after["distinct"] == before["distinct"]  # billed once, whatever is re-sent
    assert after["received"] - before["received"] == 4  # p-0, a-0, s-0, sc-0 re-sent as identical bytes
    assert {k: state.watermark(k).value for k in marks} == marks  # no watermark moved
    assert "backfill of event times" in result.output


def test_backfill_older_than_60_days_is_refused_with_a_clear_message(duckdb_warehouse, airflow, emulator):
    build_small_warehouse(duckdb_warehouse)
    runner = airflow(duckdb_warehouse)
    result = runner.dags_test("segment_events_to_amberflo",
                              conf={"start": "2025-01-01T00:00:00Z", "end": "2025-01-02T00:00:00Z"})
    assert not result.succeeded
    assert "more than 60 days ago" in result.output and "allow_older_than_60_days" in result.output
    assert emulator.stats()["requests"] == 0
    allowed = runner.dags_test("segment_events_to_amberflo", conf={
        "start": "2025-01-01T00:00:00Z", "end": "2025-01-02T00:00:00Z", "allow_older_than_60_days": True})
    assert allowed.succeeded, allowed.output[-5000:]
