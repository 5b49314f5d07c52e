"""How much an events run asks the warehouse (issue 16 item 3), on the acceptance-sized run:
5 streams, 1 slice each, state in SQLite.

Written against the task functions as the DAG calls them: the plan discovers (one statement per
schema) and hands its catalog to the slices as JSON, so a slice task sends only its read.
"""

from __future__ import annotations

import json

import sqlalchemy as sa

from amberflo_sync.config import StateConfig, SyncConfig
from amberflo_sync.reader import WarehouseReader, create_engine
from amberflo_sync.state import StateStore
from amberflo_sync.ledger import Ledger
from amberflo_sync.tasks import Runtime, finish_event_run, plan_event_slices, run_event_slices
from tests.dag_path import FakeTI
from tests.segment_rows import event_rows

SCHEMAS = ("prod", "ios_app")


def build(warehouse) -> None:
    warehouse.write("prod", "pages", event_rows(3, prefix="p"))
    warehouse.write("prod", "api_calls", event_rows(3, prefix="a", event_text="ApiCalls", value=2.0))
    warehouse.write("prod", "signed_up", event_rows(2, prefix="s", event_text="Signed Up"))
    warehouse.write("prod", "identifies", event_rows(2, prefix="i"))  # not billed
    warehouse.write("ios_app", "screens", event_rows(2, prefix="sc"))
    warehouse.write("ios_app", "order_completed", event_rows(2, prefix="o", event_text="Order Completed"))


def statements_of(engine) -> list[str]:
    seen: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda conn, cur, statement, *a: seen.append(statement))
    return seen


def test_an_events_run_sends_one_discovery_per_schema_and_one_read_per_slice(
        warehouse, emulator, api_key, sqlite_state_url, monkeypatch):
    build(warehouse)
    monkeypatch.setenv("AIRFLOW_CONN_AMBERFLO_DEFAULT", json.dumps(
        {"conn_type": "amberflo", "host": emulator.url, "password": api_key}))
    config = SyncConfig(source_schemas=tuple(warehouse.schema(s) for s in SCHEMAS),
                        state=StateConfig(url=sqlite_state_url))
    state = StateStore.from_url(sqlite_state_url)
    ledger = Ledger(state)
    plan_engine = create_engine(warehouse.url)
    plan_sql = statements_of(plan_engine)
    plan_runtime = Runtime(config, WarehouseReader(plan_engine), state, ledger)
    context = {"run_id": "acceptance", "params": {}, "ti": FakeTI(),
               "dag_run": type("DagRun", (), {"run_type": "manual"})()}
    plan = json.loads(json.dumps(plan_event_slices(context, runtime=plan_runtime)))  # through XCom
    context["ti"].plan = plan
    slices = [s for unit in plan["units"] for s in unit]
    assert len(slices) == 5 and {s["count"] for s in slices} == {1}
    reads = []
    for unit in plan["units"]:  # each mapped task: a new reader, seeded with the plan's catalog
        engine = create_engine(warehouse.url)
        seen = statements_of(engine)
        reader = WarehouseReader(engine)
        results = run_event_slices(unit, context, runtime=Runtime(config, reader, state, ledger))
        assert {r["status"] for r in results} == {"success"}
        assert reader.discovery_statements == 0 and not [s for s in seen if "information_schema" in s.lower()]
        reads.append(reader.statements)
        assert not [s for s in seen if s.strip().upper() == "SELECT 1"]
        assert {r["statements"] for r in results} == {1}  # recorded per slice, summed per stream
    line = finish_event_run(plan, context, runtime=plan_runtime)
    assert len(emulator.records()) == 12
    discovery = [s for s in plan_sql if "information_schema" in s.lower()]
    assert plan_runtime.reader.discovery_statements == len(discovery) <= len(SCHEMAS)
    assert not [s for s in plan_sql if s.strip().upper() == "SELECT 1"]
    assert sum(reads) == len(slices)  # one read per stream and slice
    # the plan: one statement per stream (rows, MIN and MAX of the window together)
    plan_statements = plan_runtime.reader.statements
    assert plan_statements - plan_runtime.reader.discovery_statements <= len(slices)
    assert f"statements={plan_statements + len(slices)} (plan {plan_statements})" in line
    assert {r["statements"] for r in ledger.runs(run_id="acceptance")} == {1}
