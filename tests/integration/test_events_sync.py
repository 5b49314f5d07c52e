"""The events sync end to end without Airflow: warehouse (DuckDB, PostgreSQL) → emulator over HTTP."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest

from amberflo_sync.client import AmberfloAuthError, AmberfloClient, ClientSettings
from amberflo_sync.config import SyncConfig
from amberflo_sync.events_sync import DryRun, sync_stream
from amberflo_sync.reader import EventStream, WarehouseReader, create_engine
from amberflo_sync.retry import RetryPolicy
from amberflo_sync.state import StateStore
from tests.segment_rows import BASE_TIME, event_rows

CONFIG = SyncConfig(source_schemas=("prod",), chunk_rows=4, batch_size=3)


class Harness:
    """Reader, state and client wired like the DAG task wires them."""

    def __init__(self, warehouse, emulator, key, state_url):
        self.warehouse = warehouse
        self.emulator = emulator
        self.reader = WarehouseReader(create_engine(warehouse.url), chunk_rows=CONFIG.chunk_rows)
        self.state = StateStore.from_url(state_url)
        self.state.create()
        self.key = key
        self.runs = 0

    def stream(self, table: str, kind: str = "track") -> EventStream:
        return EventStream(self.warehouse.schema("prod"), table, kind)

    def sync(self, table: str, kind: str = "track", key: str | None = None, dry_run: DryRun | None = None):
        self.runs += 1
        settings = ClientSettings(base_url=self.emulator.url, api_key=key or self.key, batch_size=CONFIG.batch_size)
        with AmberfloClient(settings, retry=RetryPolicy(base_delay=0.01, give_up_after=2)) as client:
            return sync_stream(
                self.stream(table, kind),
                reader=self.reader,
                state=self.state,
                send=client.ingest_records,
                config=CONFIG,
                run_id=f"run-{self.runs}",
                dry_run=dry_run,
            )

    def records(self, meter: str | None = None) -> list[dict]:
        return [r for r in self.emulator.records() if meter is None or r["meterApiName"] == meter]


@pytest.fixture
def harness(warehouse, emulator, api_key, sqlite_state_url):
    h = Harness(warehouse, emulator, api_key, sqlite_state_url)
    yield h
    h.reader.engine.dispose()
    h.state.engine.dispose()


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
    reasons = {r["row_id"]: r["reason"] for r in harness.state.rejected_rows()}
    assert reasons == {"m-1": "invalid_meter_value", "m-2": "missing_customer_id"}
    run = harness.state.runs()[0]
    assert (run["rows_read"], run["rows_sent"], run["rejected"], run["status"]) == (4, 2, 2, "success")


def test_a_failed_run_moves_no_watermark_and_the_next_run_completes(harness):
    harness.warehouse.write("prod", "api_calls", event_rows(5, event_text="ApiCalls"))
    with pytest.raises(AmberfloAuthError):
        harness.sync("api_calls", key="not-the-key")
    key = harness.stream("api_calls").key
    assert harness.state.get_watermark(key) is None
    assert harness.state.runs()[0]["status"] == "failed"
    harness.sync("api_calls")
    assert harness.emulator.stats()["distinct"] == 5
    assert harness.state.get_watermark(key) is not None


def test_watermark_is_the_max_cursor_at_the_start_of_the_run(harness):
    frame = event_rows(3)
    harness.warehouse.write("prod", "pages", frame.assign(name="x"))
    harness.sync("pages", "page")
    mark = harness.state.get_watermark(harness.stream("pages").key).value
    assert pd.Timestamp(mark) == frame["uuid_ts"].max()


def test_dry_run_sends_nothing_and_moves_nothing(harness, tmp_path):
    harness.warehouse.write("prod", "api_calls", event_rows(5, event_text="ApiCalls"))
    dry = DryRun(limit=2, path=tmp_path / "dry.jsonl")
    stats = harness.sync("api_calls", dry_run=dry)
    assert stats.status == "dry_run" and stats.sent == 5
    assert harness.emulator.stats()["requests"] == 0
    assert harness.state.get_watermark(harness.stream("api_calls").key) is None
    lines = (tmp_path / "dry.jsonl").read_text().splitlines()
    assert [json.loads(line)["uniqueId"] for line in lines] == ["m-0", "m-1"] or len(lines) == 2


def test_table_without_cursor_column_is_read_whole_and_not_double_billed(harness):
    harness.warehouse.write("prod", "api_calls", event_rows(3, event_text="ApiCalls").drop(columns=["uuid_ts"]))
    harness.sync("api_calls")
    harness.sync("api_calls")
    assert harness.emulator.stats()["distinct"] == 3
    assert harness.state.get_watermark(harness.stream("api_calls").key) is None


def test_missing_table_is_not_an_error(harness):
    stats = harness.sync("never_existed")
    assert (stats.status, stats.read) == ("success", 0)


def test_big_integers_keep_every_digit_even_next_to_nulls(harness):
    """A BIGINT column with a NULL must not go through float64: 2**60 + 1 would print as 2**60."""
    frame = event_rows(2, event_text="ApiCalls")
    frame["bytes"] = pd.array([2**60 + 1, None], dtype="Int64")
    harness.warehouse.write("prod", "api_calls", frame)
    harness.sync("api_calls")
    dims = {r["uniqueId"]: r.get("dimensions", {}) for r in harness.records()}
    assert dims["m-0"] == {"bytes": "1152921504606846977"} and dims["m-1"] == {}
