"""The state store on SQLite, DuckDB and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa

from amberflo_sync.reader import create_engine
from amberflo_sync.state import RunStats, StateStore


@pytest.fixture(params=["sqlite", "duckdb", "postgres"])
def state(request, tmp_path):
    if request.param == "sqlite":
        store = StateStore.from_url(f"sqlite:///{tmp_path / 'sub' / 'state.sqlite'}")
    elif request.param == "duckdb":
        store = StateStore(create_engine(f"duckdb:///{tmp_path / 'w.duckdb'}"), schema="amberflo_sync")
    else:
        url = request.getfixturevalue("pg_url")
        store = StateStore(sa.create_engine(url), schema=f"state_{uuid.uuid4().hex[:8]}")
    store.create()
    store.create()  # idempotent
    yield store
    if request.param == "postgres":
        with store.engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{store.schema}" CASCADE'))
    store.engine.dispose()


def test_watermarks_round_trip_with_their_time_zone(state):
    aware = dt.datetime(2026, 11, 20, 10, 0, 0, 123456, tzinfo=dt.timezone.utc)
    naive = dt.datetime(2026, 11, 20, 10, 0, 0)
    assert state.get_watermark("prod.pages") is None
    state.set_watermark("prod.pages", aware, run_id="r1")
    state.set_watermark("prod.api_calls", naive, run_id="r1")
    assert state.get_watermark("prod.pages").value == aware
    assert state.get_watermark("prod.api_calls").value == naive
    later = aware + dt.timedelta(hours=1)
    state.set_watermark("prod.pages", later, run_id="r2")
    assert state.get_watermark("prod.pages").value == later


def test_rejected_rows_keep_first_seen_and_count_attempts(state):
    row = {"id": "m-1", "reason": "missing_customer_id", "row": {"id": "m-1", "user_id": None}}
    state.record_rejected("prod.pages", [row])
    first = state.rejected_rows("prod.pages")[0]
    state.record_rejected("prod.pages", [row])
    again = state.rejected_rows("prod.pages")
    assert len(again) == 1 and again[0]["attempts"] == 2
    assert again[0]["first_seen"] == first["first_seen"] and again[0]["last_seen"] >= first["last_seen"]
    assert '"user_id":null' in again[0]["row_json"]


def test_rejected_rows_without_id_are_keyed_by_content(state):
    rows = [
        {"id": None, "reason": "missing_unique_id", "row": {"user_id": "a"}},
        {"id": None, "reason": "missing_unique_id", "row": {"user_id": "b"}},
    ]
    state.record_rejected("s", rows)
    assert len({r["row_id"] for r in state.rejected_rows("s")}) == 2


def test_sync_runs_are_upserted_per_run_and_stream(state):
    stats = RunStats(run_id="r1", stream="prod.pages", started_at=dt.datetime.now(dt.timezone.utc))
    state.record_run(stats)
    stats.status, stats.read, stats.sent, stats.seconds = "success", 10, 10, 1.5
    state.record_run(stats)
    runs = state.runs("prod.pages")
    assert len(runs) == 1 and runs[0]["status"] == "success" and runs[0]["rows_read"] == 10
