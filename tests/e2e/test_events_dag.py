"""Real ``airflow dags test segment_events_to_amberflo`` runs against the emulator."""

from __future__ import annotations

import pandas as pd
import pytest

from amberflo_sync.ledger import Ledger
from amberflo_sync.state import StateStore
from tests.segment_rows import BASE_TIME, event_rows

pytestmark = pytest.mark.airflow
MS = int(BASE_TIME.timestamp() * 1000)


def build_small_warehouse(warehouse) -> None:
    """Web and mobile sources with every table kind; identifies/tracks must not be billed."""
    pages = event_rows(2, prefix="p", name=["Home", "Pricing"], path=["/home", "/pricing"],
                       title=["Welcome | Initech", None], url="https://segment.com")
    api_calls = event_rows(3, prefix="a", event_text="ApiCalls", value=[2.0, None, 0.5],
                           region=["us-west-2", "eu-west-1", None])
    api_calls.loc[2, ["user_id", "anonymous_id"]] = None  # rejected: no customer
    signed_up = event_rows(1, prefix="s", event_text="Signed Up", plan="pro", _2fa_enabled=True)
    tracks = pd.concat([api_calls, signed_up])[["id", "user_id", "anonymous_id", "timestamp", "received_at", "uuid_ts",
                                                  "event", "event_text"]]
    identifies = event_rows(2, prefix="i", name="John Doe", email="john@example.com")
    screens = event_rows(1, prefix="sc", name="Home", title="Welcome | Initech")
    warehouse.write("prod", "pages", pages)
    warehouse.write("prod", "api_calls", api_calls)
    warehouse.write("prod", "signed_up", signed_up)
    warehouse.write("prod", "tracks", tracks)
    warehouse.write("prod", "identifies", identifies)
    warehouse.write("ios_app", "screens", screens)


EXPECTED = [
    {"uniqueId": "a-0", "customerId": "user_0", "meterApiName": "ApiCalls", "meterValue": 2.0,
     "meterTimeInMillis": MS, "dimensions": {"region": "us-west-2"}},
    {"uniqueId": "a-1", "customerId": "user_1", "meterApiName": "ApiCalls", "meterValue": 1.0,
     "meterTimeInMillis": MS + 1000, "dimensions": {"region": "eu-west-1"}},
    {"uniqueId": "p-0", "customerId": "user_0", "meterApiName": "page", "meterValue": 1.0,
     "meterTimeInMillis": MS, "dimensions": {"name": "Home", "path": "_home", "title": "Welcome _ Initech",
                                             "url": "https:__segment.com"}},
    {"uniqueId": "p-1", "customerId": "user_1", "meterApiName": "page", "meterValue": 1.0,
     "meterTimeInMillis": MS + 1000, "dimensions": {"name": "Pricing", "path": "_pricing",
                                                    "url": "https:__segment.com"}},
    {"uniqueId": "s-0", "customerId": "user_0", "meterApiName": "Signed Up", "meterValue": 1.0,
     "meterTimeInMillis": MS, "dimensions": {"_2fa_enabled": "true", "plan": "pro"}},
    {"uniqueId": "sc-0", "customerId": "user_0", "meterApiName": "screen", "meterValue": 1.0,
     "meterTimeInMillis": MS, "dimensions": {"name": "Home", "title": "Welcome _ Initech"}},
]


def test_dag_bills_exactly_the_expected_records_and_a_second_run_adds_none(duckdb_warehouse, airflow, emulator, api_key):
    build_small_warehouse(duckdb_warehouse)
    runner = airflow(duckdb_warehouse)
    first = runner.dags_test("segment_events_to_amberflo")
    assert first.succeeded, first.output[-5000:]
    assert sorted(emulator.records(), key=lambda r: r["uniqueId"]) == EXPECTED
    assert "4 streams: read=7 sent=6 duplicates=0 rejected=1" in first.output
    assert "prod.api_calls: status=success read=3 sent=2 duplicates=0 rejected=1" in first.output
    assert api_key not in first.output

    second = runner.dags_test("segment_events_to_amberflo")
    assert second.succeeded, second.output[-5000:]
    assert emulator.stats()["distinct"] == len(EXPECTED)

    state = Ledger(StateStore.from_url(runner.state_url))
    rejected = state.rejected_rows()
    assert [(r["stream"], r["row_id"], r["reason"]) for r in rejected] == [
        ("prod.api_calls", "a-2", "missing_customer_id")
    ]
    assert {r["status"] for r in state.runs()} == {"success"} and len(state.runs()) == 8


def test_dry_run_param_sends_nothing(duckdb_warehouse, airflow, emulator, tmp_path):
    build_small_warehouse(duckdb_warehouse)
    runner = airflow(duckdb_warehouse)
    result = runner.dags_test("segment_events_to_amberflo", conf={"dry_run": True, "dry_run_records": 1})
    assert result.succeeded, result.output[-5000:]
    assert emulator.stats()["requests"] == 0
    assert "prod.pages: status=dry_run read=2 would send=2" in result.output
    assert " sent=" not in result.output.split("4 streams:")[-1].splitlines()[0]  # the total says would send too
    written = {p.name: p.read_text().splitlines() for p in (tmp_path / "dry_run").rglob("*.jsonl")}
    assert sorted(written) == ["ios_app.screens.jsonl", "prod.api_calls.jsonl", "prod.pages.jsonl", "prod.signed_up.jsonl"]
    assert all(len(lines) == 1 for lines in written.values())
    assert written["prod.pages.jsonl"][0].startswith('{"uniqueId":"p-0","customerId":"user_0","meterApiName":"page"')
    assert Ledger(StateStore.from_url(runner.state_url)).watermark("prod.pages") is None


def test_dag_on_postgres_warehouse(pg_warehouse, airflow, emulator):
    build_small_warehouse(pg_warehouse)
    runner = airflow(pg_warehouse, source_schemas=[pg_warehouse.schema("prod"), pg_warehouse.schema("ios_app")])
    result = runner.dags_test("segment_events_to_amberflo")
    assert result.succeeded, result.output[-5000:]
    assert sorted(emulator.records(), key=lambda r: r["uniqueId"]) == EXPECTED


def test_generated_warehouse_is_billed_exactly_once_across_loads(tmp_path, airflow, emulator):
    """Every id of every billed table reaches Amberflo once, or is in rejected_rows — after a second
    load with late rows, duplicates and a new column."""
    import datetime as dt

    import duckdb

    from amberflo_sync.demo.generate import generate_warehouse, load_new_batch
    from tests.warehouse import Warehouse

    now = dt.datetime(2026, 11, 28, 12, tzinfo=dt.timezone.utc)
    url = f"duckdb:///{tmp_path / 'demo.duckdb'}"
    generate_warehouse(url, events=3000, seed=1, now=now)
    runner = airflow(Warehouse(url))
    assert runner.dags_test("segment_events_to_amberflo").succeeded
    after_first = emulator.stats()["distinct"]
    load_new_batch(url, events=600, seed=9, now=now + dt.timedelta(hours=2))
    second = runner.dags_test("segment_events_to_amberflo")
    assert second.succeeded, second.output[-5000:]
    assert emulator.stats()["distinct"] > after_first

    con = duckdb.connect(str(tmp_path / "demo.duckdb"), read_only=True)
    tables = con.execute(
        "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema IN ('prod', 'ios_app') "
        "AND table_name NOT IN ('tracks', 'identifies', 'users', 'groups', 'aliases', 'accounts')"
    ).fetchall()
    warehouse_ids = set()
    for schema, table in tables:
        warehouse_ids |= {r[0] for r in con.execute(f'SELECT DISTINCT id FROM "{schema}"."{table}"').fetchall()}
    con.close()
    rejected = {r["row_id"] for r in Ledger(StateStore.from_url(runner.state_url)).rejected_rows()}
    billed = [r["uniqueId"] for r in emulator.records()]
    assert len(billed) == len(set(billed)), "an id was billed twice with different content"
    assert set(billed) == warehouse_ids - rejected
    assert rejected <= warehouse_ids and len(rejected) > 0
