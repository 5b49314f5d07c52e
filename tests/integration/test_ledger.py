"""The ledger's rules on a real state database (SQLite, DuckDB and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa

from amberflo_sync.ledger import ABANDONED, OPEN, RESOLVED, Ledger, LedgerError, RunStats
from amberflo_sync.planning import BACKFILL, INCREMENTAL, Slice, split_range
from amberflo_sync.reader import EventStream, Window, create_engine
from amberflo_sync.state import StateStore

T0 = dt.datetime(2026, 11, 20, tzinfo=dt.timezone.utc)
STREAM = EventStream("prod", "api_calls", "track")


@pytest.fixture(params=["sqlite", "duckdb", "postgres"])
def ledger(request, tmp_path):
    if request.param == "sqlite":
        store = StateStore.from_url(f"sqlite:///{tmp_path / 'state.sqlite'}")
    elif request.param == "duckdb":
        store = StateStore(create_engine(f"duckdb:///{tmp_path / 'w.duckdb'}"))
    else:
        store = StateStore(sa.create_engine(request.getfixturevalue("pg_url")), schema=f"l_{uuid.uuid4().hex[:8]}")
    yield Ledger(store)
    if request.param == "postgres":
        with store.engine.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {store.schema} CASCADE"))
    store.engine.dispose()


def slices(n: int, start: dt.datetime = T0) -> list[Slice]:
    bounds = split_range(start, start + dt.timedelta(hours=n), n)
    return [Slice(STREAM, INCREMENTAL, Window("uuid_ts", lo, hi, include_null=i == 0), i, n)
            for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:]))]


def run(ledger: Ledger, parts: list[Slice], succeed: set[int], run_id: str = "r1") -> tuple[str, list[Slice]]:
    plan_id = ledger.open_plan(run_id, "manual", parts)
    bound = [p.bound_to(plan_id) for p in parts]
    for part in bound:
        ledger.slice_started(plan_id, part)
        if part.index in succeed:
            ledger.slice_finished(plan_id, part, RunStats(run_id, STREAM.key, status="success", read=1, sent=1))
    return plan_id, bound


def test_watermark_moves_to_the_end_of_the_succeeded_prefix(ledger):
    plan_id, _ = run(ledger, slices(4), {0, 1, 3})
    outcome = ledger.close_plan(plan_id)
    assert ledger.watermark(STREAM.key).value == T0 + dt.timedelta(hours=2)
    assert outcome.streams[STREAM.key].status == "failed"
    assert "did not finish" in outcome.failed[STREAM.key] and "#3/4 (running)" in outcome.failed[STREAM.key]
    [row] = ledger.runs(STREAM.key)
    assert (row["status"], row["rows_read"]) == ("failed", 3)


def test_no_watermark_when_the_first_slice_failed_and_never_backwards(ledger):
    plan_id, _ = run(ledger, slices(2), {1})
    ledger.close_plan(plan_id)
    assert ledger.watermark(STREAM.key) is None
    plan_id, _ = run(ledger, slices(2), {0, 1}, "r2")
    ledger.close_plan(plan_id)
    plan_id, _ = run(ledger, slices(1, T0 - dt.timedelta(days=1)), {0}, "r3")  # an older window
    ledger.close_plan(plan_id)
    assert ledger.watermark(STREAM.key).value == T0 + dt.timedelta(hours=2)


def test_outcomes_of_an_earlier_plan_never_count_for_a_new_one(ledger):
    """A cleared run re-plans: the first plan's succeeded slice must not move the new plan's watermark."""
    first, _ = run(ledger, slices(1), {0})
    later = slices(1, T0 + dt.timedelta(hours=5))
    second = ledger.open_plan("r1", "manual", later)  # same run id, cleared: new rows landed meanwhile
    ledger.slice_started(second, later[0].bound_to(second))  # its worker dies here
    outcome = ledger.close_plan(second)
    assert ledger.watermark(STREAM.key) is None and outcome.failed


def test_a_slice_that_ran_for_another_window_is_refused(ledger):
    plan_id = ledger.open_plan("r1", "manual", slices(1))
    other = slices(1, T0 + dt.timedelta(hours=1))[0].bound_to(plan_id)
    with pytest.raises(LedgerError, match="fixed"):
        ledger.slice_finished(plan_id, other, RunStats("r1", STREAM.key, status="success"))


def test_backfill_and_dry_run_plans_move_no_watermark(ledger):
    part = Slice(STREAM, BACKFILL, Window("timestamp", T0, T0 + dt.timedelta(hours=1), include_null=False))
    plan_id, _ = run(ledger, [part], {0})
    assert not ledger.close_plan(plan_id).failed and ledger.watermark(STREAM.key) is None
    plan_id, _ = run(ledger, slices(1), {0}, "dry")
    ledger.close_plan(plan_id, dry_run=True)
    assert ledger.watermark(STREAM.key) is None


def test_plan_problems_fail_the_run_and_are_recorded(ledger):
    plan_id = ledger.open_plan("r1", "manual", [], problems={"prod.pages": "ProgrammingError: permission denied"})
    outcome = ledger.close_plan(plan_id)
    assert outcome.failed == {"prod.pages": "ProgrammingError: permission denied"}
    assert ledger.runs("prod.pages")[0]["status"] == "failed"


def test_a_rejected_row_lives_from_open_to_resolved_or_abandoned(ledger):
    row = {"id": "m-1", "reason": "amberflo_rejected", "row": {"error": "customer does not exist"}}
    for attempt in range(1, 4):
        abandoned = ledger.record_rejected(STREAM.key, [row], run_id=f"r{attempt}", max_attempts=3,
                                           retryable=["amberflo_rejected"])
        assert bool(abandoned) == (attempt == 3)
    [stored] = ledger.rejected_rows(STREAM.key, status=None)
    assert (stored["status"], stored["attempts"]) == (ABANDONED, 3)
    assert ledger.open_rejected(STREAM.key) == []  # abandoned rows are not retried automatically
    assert ledger.unresolved_ids(STREAM.key) == {"m-1"}  # but sending the row still resolves it
    assert ledger.resolve_rejected(STREAM.key, ["m-1"], run_id="r4") == 1
    assert ledger.rejected_rows(STREAM.key, status=RESOLVED)[0]["row_id"] == "m-1"
    ledger.record_rejected(STREAM.key, [row], run_id="r5", max_attempts=10, retryable=["amberflo_rejected"])
    assert ledger.rejected_rows(STREAM.key)[0]["status"] == OPEN  # refused again: open again


def test_rejected_rows_keep_first_seen_and_rows_without_id_are_keyed_by_content(ledger):
    row = {"id": "m-1", "reason": "missing_customer_id", "row": {"id": "m-1", "user_id": None}}
    ledger.record_rejected("prod.pages", [row])
    first = ledger.rejected_rows("prod.pages")[0]
    ledger.record_rejected("prod.pages", [row])
    again = ledger.rejected_rows("prod.pages")
    assert len(again) == 1 and again[0]["attempts"] == 2 and again[0]["first_seen"] == first["first_seen"]
    ledger.record_rejected("s", [{"id": None, "reason": "missing_unique_id", "row": {"user_id": u}} for u in "ab"])
    assert len({r["row_id"] for r in ledger.rejected_rows("s")}) == 2


def test_watermarks_round_trip_with_their_time_zone(ledger):
    aware = dt.datetime(2026, 11, 20, 10, 0, 0, 123456, tzinfo=dt.timezone.utc)
    naive = dt.datetime(2026, 11, 20, 10, 0, 0)
    for stream, value in (("prod.pages", aware), ("prod.api_calls", naive)):
        part = Slice(EventStream("prod", stream.split(".")[1], "track"), INCREMENTAL, Window("uuid_ts", None, value))
        plan_id, _ = run(ledger, [part], {0}, f"r-{stream}")
        ledger.close_plan(plan_id)
    assert ledger.watermark("prod.pages").value == aware
    assert ledger.watermark("prod.api_calls").value == naive


def test_runs_are_looked_up_by_run_id(ledger):
    for i in range(30):
        ledger.record_run(RunStats(f"r{i}", "prod.pages", status="success", read=i))
    assert [r["rows_read"] for r in ledger.runs(run_id="r7")] == [7]
