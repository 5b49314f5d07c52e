"""The events sync end to end without Airflow: warehouse (DuckDB, PostgreSQL) → emulator over HTTP."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest

from dataclasses import replace

from amberflo_sync.client import AmberfloAuthError
from amberflo_sync.config import EventsConfig, SyncConfig
from amberflo_sync.events_run import RunFailed
from amberflo_sync.events_sync import DryRun
from amberflo_sync.ledger import RunStats
from amberflo_sync.reader import EventStream
from tests.dag_path import DagPath, amberflo_connection
from tests.segment_rows import BASE_TIME, event_rows

CONFIG = SyncConfig(source_schemas=("prod",), chunk_rows=4, batch_size=3)


class Harness:
    """The events DAG's own task functions (plan → slices → finish) over one warehouse and the
    emulator, restricted to the stream under test."""

    def __init__(self, warehouse, emulator, key, state_url):
        self.warehouse = warehouse
        self.emulator = emulator
        self.key = key
        self.state_url = state_url
        self.base_config = CONFIG
        self.dag = DagPath(warehouse.url, state_url, CONFIG, read_only=False)
        self.reader, self.state, self.ledger = self.dag.reader, self.dag.state, self.dag.ledger
        self.runs = 0

    def stream(self, table: str, kind: str = "track") -> EventStream:
        return EventStream(self.warehouse.schema("prod"), table, kind)

    def sync(self, table: str, kind: str = "track", key: str | None = None, dry_run: DryRun | None = None):
        """One DAG run over ``prod.<table>``; returns its stream's stats, raises what failed it."""
        self.runs += 1
        events = EventsConfig(pages=kind == "page", screens=kind == "screen", tracks=kind == "track",
                              include=(table,) if kind == "track" else ())
        self.dag.config = self.dag.runtime.config = replace(self.base_config, events=events, source_schemas=(self.warehouse.schema("prod"),),
                                                            dry_run_dir=str(dry_run.path.parent) if dry_run and dry_run.path else None)
        params = {"dry_run": True, "dry_run_records": dry_run.limit} if dry_run else {}
        context = self.dag.context(f"manual__run-{self.runs}", params=params)
        with amberflo_connection(self.emulator.url, key or self.key):
            result = self.dag.run(context)
        if result.plan_error is not None:
            raise result.plan_error
        for outcome in result.slices:
            if isinstance(outcome, BaseException):
                raise outcome.__cause__ or outcome
        if isinstance(result.finish, BaseException):
            raise result.finish
        if dry_run is not None and dry_run.path:
            dry_run.records = [line for f in sorted(dry_run.path.parent.rglob("*.jsonl"))
                               for line in f.read_text().splitlines()]
        rows = [r for r in self.ledger.runs(run_id=context["run_id"]) if r["stream"] == self.stream(table, kind).key]
        return stats_from_row(rows[0]) if rows else RunStats(context["run_id"], self.stream(table, kind).key,
                                                             status="success")

    def records(self, meter: str | None = None) -> list[dict]:
        return [r for r in self.emulator.records() if meter is None or r["meterApiName"] == meter]


def stats_from_row(row: dict) -> RunStats:
    """A ``sync_runs`` row as :class:`RunStats` (what the tests assert on)."""
    return RunStats(row["run_id"], row["stream"], status=row["status"], read=row["rows_read"], sent=row["rows_sent"],
                    duplicates=row["duplicates"], rejected=row["rejected"], skipped=row["skipped"],
                    abandoned=row["abandoned"] or 0, error=row["error"],
                    details=json.loads(row["details"]) if row["details"] else None)


@pytest.fixture
def harness(warehouse, emulator, api_key, sqlite_state_url):
    h = Harness(warehouse, emulator, api_key, sqlite_state_url)
    yield h
    h.dag.close()


def test_first_run_sends_exactly_the_mapped_records(harness):
    frame = event_rows(3, event_text="ApiCalls", value=[2.0, None, 5.0], region=["us-west-2", "a/b", None])
    harness.warehouse.write("prod", "api_calls", frame)
    stats = harness.sync("api_calls")
    assert (stats.read, stats.sent, stats.rejected, stats.duplicates) == (3, 3, 0, 0)
    base = int(BASE_TIME.timestamp() * 1000)
    assert sorted(harness.records(), key=lambda r: r["uniqueId"]) == [
        {"uniqueId": "m-0", "customerId": "user_0", "meterApiName": "ApiCalls", "meterValue": 2.0,
         "meterTimeInMillis": base, "dimensions": {"region": "us-west-2"}},
        {"uniqueId": "m-1", "customerId": "user_1", "meterApiName": "ApiCalls", "meterValue": 1.0,
         "meterTimeInMillis": base + 1000, "dimensions": {"region": "a_b"}},
        {"uniqueId": "m-2", "customerId": "user_2", "meterApiName": "ApiCalls", "meterValue": 5.0,
         "meterTimeInMillis": base + 2000},
    ]


def test_second_run_adds_nothing_and_resends_only_the_overlap(harness):
    old = event_rows(5, prefix="old", loaded=BASE_TIME)  # loaded 5 h before the newest rows
    new = event_rows(4, prefix="new", loaded=BASE_TIME + pd.Timedelta(hours=5))
    harness.warehouse.write("prod", "pages", pd.concat([old, new], ignore_index=True).assign(name="Home"))
    harness.sync("pages", "page")
    first = harness.emulator.stats()
    assert first["distinct"] == 9
    stats = harness.sync("pages", "page")
    second = harness.emulator.stats()
    assert second["distinct"] == 9  # nothing new billed
    assert second["received"] - first["received"] == 4  # only rows inside the 2 h overlap re-sent
    assert stats.read == 4


def test_late_rows_are_sent_by_the_next_run(harness):
    harness.warehouse.write("prod", "api_calls", event_rows(3, event_text="ApiCalls"))
    harness.sync("api_calls")
    late = event_rows(2, prefix="late", start=BASE_TIME - pd.Timedelta(days=3),
                      loaded=BASE_TIME + pd.Timedelta(hours=6), event_text="ApiCalls")
    harness.warehouse.write("prod", "api_calls", late, replace=False)
    harness.sync("api_calls")
    ids = sorted(r["uniqueId"] for r in harness.records())
    assert ids == ["late-0", "late-1", "m-0", "m-1", "m-2"]
    late_record = next(r for r in harness.records() if r["uniqueId"] == "late-0")
    assert late_record["meterTimeInMillis"] == int((BASE_TIME - pd.Timedelta(days=3)).timestamp() * 1000)


def test_a_duplicated_id_is_billed_once_even_across_loads(harness):
    frame = event_rows(4, event_text="ApiCalls")
    frame.loc[3, "id"] = "m-0"  # same call twice in one load
    harness.warehouse.write("prod", "api_calls", frame)
    stats = harness.sync("api_calls")
    assert stats.duplicates == 1 and stats.sent == 3
    again = event_rows(1, event_text="ApiCalls", loaded=BASE_TIME + pd.Timedelta(days=1))  # m-0 re-loaded a day later
    harness.warehouse.write("prod", "api_calls", again, replace=False)
    harness.sync("api_calls")
    assert harness.emulator.stats()["distinct"] == 3


def test_rejected_rows_are_stored_with_reasons_and_counts_balance(harness):
    frame = event_rows(4, event_text="ApiCalls", value=["1", "abc", "2", "3"])
    frame.loc[2, ["user_id", "anonymous_id"]] = None
    harness.warehouse.write("prod", "api_calls", frame)
    stats = harness.sync("api_calls")
    assert (stats.read, stats.sent, stats.rejected) == (4, 2, 2) and stats.balanced
    reasons = {r["row_id"]: r["reason"] for r in harness.ledger.rejected_rows()}
    assert reasons == {"m-1": "invalid_meter_value", "m-2": "missing_customer_id"}
    run = harness.ledger.runs()[0]
    assert (run["rows_read"], run["rows_sent"], run["rejected"], run["status"]) == (4, 2, 2, "success")


def test_a_failed_run_moves_no_watermark_and_the_next_run_completes(harness):
    harness.warehouse.write("prod", "api_calls", event_rows(5, event_text="ApiCalls"))
    with pytest.raises(AmberfloAuthError):
        harness.sync("api_calls", key="not-the-key")
    key = harness.stream("api_calls").key
    assert harness.ledger.watermark(key) is None
    assert harness.ledger.runs()[0]["status"] == "failed"
    harness.sync("api_calls")
    assert harness.emulator.stats()["distinct"] == 5
    assert harness.ledger.watermark(key) is not None


def test_watermark_is_the_max_cursor_at_the_start_of_the_run(harness):
    frame = event_rows(3)
    harness.warehouse.write("prod", "pages", frame.assign(name="x"))
    harness.sync("pages", "page")
    mark = harness.ledger.watermark(harness.stream("pages").key).value
    assert pd.Timestamp(mark) == frame["uuid_ts"].max()


def test_dry_run_sends_nothing_and_moves_nothing(harness, tmp_path):
    harness.warehouse.write("prod", "api_calls", event_rows(5, event_text="ApiCalls"))
    dry = DryRun(limit=2, path=tmp_path / "dry" / "dry.jsonl")
    stats = harness.sync("api_calls", dry_run=dry)
    assert stats.status == "dry_run" and stats.sent == 5
    assert "would send=5" in stats.summary() and "sent=5" not in stats.summary().replace("would send", "")
    assert harness.emulator.stats()["requests"] == 0
    assert harness.ledger.watermark(harness.stream("api_calls").key) is None
    assert [json.loads(line)["uniqueId"] for line in dry.records] == ["m-0", "m-1"]


def test_table_without_cursor_column_is_read_whole_and_not_double_billed(harness):
    harness.warehouse.write("prod", "api_calls", event_rows(3, event_text="ApiCalls").drop(columns=["uuid_ts"]))
    harness.sync("api_calls")
    harness.sync("api_calls")
    assert harness.emulator.stats()["distinct"] == 3
    assert harness.ledger.watermark(harness.stream("api_calls").key) is None


def test_a_run_that_finds_none_of_its_configured_streams_fails_and_says_what_it_looked_for(harness):
    with pytest.raises(RunFailed) as failed:
        harness.sync("never_existed")
    assert "none of the configured streams exists" in str(failed.value)
    assert "prod.<track tables: never_existed>" in str(failed.value)
    assert harness.emulator.stats()["requests"] == 0


def test_big_integers_keep_every_digit_even_next_to_nulls(harness):
    """A BIGINT column with a NULL must not go through float64: 2**60 + 1 would print as 2**60."""
    frame = event_rows(2, event_text="ApiCalls")
    frame["bytes"] = pd.array([2**60 + 1, None], dtype="Int64")
    harness.warehouse.write("prod", "api_calls", frame)
    harness.sync("api_calls")
    dims = {r["uniqueId"]: r.get("dimensions", {}) for r in harness.records()}
    assert dims["m-0"] == {"bytes": "1152921504606846977"} and dims["m-1"] == {}
