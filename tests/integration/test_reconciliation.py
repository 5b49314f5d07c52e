"""Reconciliation against the emulator over real HTTP, after real syncs of a generated warehouse.

The warehouse is generated relative to now (its events end a day ago, so the last hours are inside
the 27-hour settle delay and the rest is settled), synced stream by stream with the events sync,
and reconciled. Drift comes from the emulator's drift faults (records lost, records stored twice
with other bytes) and from records posted by hand (for the wrong customer; a foreign record).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from dataclasses import replace

import orjson
import pandas as pd
import pytest
import sqlalchemy as sa

from amberflo_sync.client import AmberfloClient, ClientSettings
from amberflo_sync.config import config_from_dict
from amberflo_sync.demo.generate import generate_warehouse
from amberflo_sync.emulator import FaultConfig
from amberflo_sync.reconciliation import reconcile, resolve_window
from amberflo_sync.reconciliation.table import ReconciliationTable
from tests.dag_path import DagPath, amberflo_connection

NOW = dt.datetime.now(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)
HOUR = 3600


def cell_of(record: dict) -> tuple[str, str, int]:
    return record["meterApiName"], record["customerId"], record["meterTimeInMillis"] // 3_600_000 * HOUR


@pytest.fixture(params=["duckdb", "postgres"])
def synced(request, tmp_path, emulator, api_key):
    """``make(faults=None)`` → (reader, client, config, state) after a full sync of a fresh warehouse."""
    if request.param == "duckdb":
        url, suffix = f"duckdb:///{tmp_path / 'w.duckdb'}", ""
    else:
        url, suffix = request.getfixturevalue("pg_url"), f"_r{uuid.uuid4().hex[:6]}"
    engines = []

    def make(faults: FaultConfig | None = None):
        generate_warehouse(url, events=1500, seed=3, now=NOW - dt.timedelta(days=1), schema_suffix=suffix)
        config = config_from_dict({"source_schemas": [f"prod{suffix}", f"ios_app{suffix}"],
                                   "reconciliation": {"reports_dir": str(tmp_path / "reports"),
                                                      "repair_recheck_seconds": 0}})
        # the events DAG's own task functions
        dag = DagPath(url, f"sqlite:///{tmp_path / 'state.sqlite'}", replace(config, chunk_rows=500), read_only=False)
        engines.append(dag.reader.engine)
        reader, state = dag.reader, dag.state
        client = AmberfloClient(ClientSettings(base_url=emulator.url, api_key=api_key))
        emulator.set_faults(faults)
        with amberflo_connection(emulator.url, api_key):
            result = dag.run(dag.context("sync"))
        assert result.succeeded, result
        emulator.set_faults(None)
        return reader, client, config, state

    yield make
    for engine in engines:
        if suffix:
            with engine.begin() as conn:
                for schema in ("prod", "ios_app", "engage_default", "personas_legacy"):
                    conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}{suffix}" CASCADE'))
        engine.dispose()


def window():
    return resolve_window(start=NOW - dt.timedelta(days=12), end=NOW, settle_hours=27, now=NOW)


def test_after_normal_syncs_every_settled_cell_matches_and_young_cells_are_pending(synced, emulator):
    reader, client, config, state = synced()
    result = reconcile(reader=reader, client=client, config=config, window=window(), run_id="rec")
    counts = result.counts
    assert counts["missing"] == counts["excess"] == 0
    assert counts["match"] > 100 and counts["pending"] > 0
    pending = result.cells[result.cells["status"] == "pending"]
    assert (pending["hour"] + HOUR > window().settled_seconds).all()
    assert (result.cells[result.cells["status"] == "match"]["hour"] + HOUR <= window().settled_seconds).all()
    assert result.api_calls == 1  # one /usage/sparse/batch call for every meter, no drill-down needed
    dense = replace(config, reconciliation=replace(config.reconciliation, sparse_usage=False))
    via_dense = reconcile(reader=reader, client=client, config=dense, window=window(), run_id="dense")
    pd.testing.assert_frame_equal(via_dense.cells, result.cells)  # /usage/batch says the same, with zeros
    assert emulator.stats()["usage_requests"] == 2
    assert result.summary()["rejected_by_reason"]  # the generator's rows without a customer are listed
    table = ReconciliationTable(state.engine, state.schema)
    table.create()
    assert table.write("rec", window(), result.cells) == len(result.cells)
    assert table.write("rec", window(), result.cells) == len(result.cells)  # a retry rewrites, never duplicates
    assert len(table.rows("rec")) == len(result.cells)


def test_drift_is_found_named_exactly_and_repaired_but_foreign_records_are_never_cancelled(synced, emulator, api_key):
    reader, client, config, state = synced(FaultConfig(rate_lose=0.01, rate_double=0.01, seed=4))
    drift = emulator.drift()
    w = window()

    def settled(record: dict) -> bool:
        hour = cell_of(record)[2]
        return w.start_seconds <= hour and hour + HOUR <= w.settled_seconds

    lost = [r for r in drift["lost"] if settled(r)]
    doubled = [r for r in drift["doubled"] if settled(r)]
    # records sent for the wrong customer (another customer of the warehouse), and a foreign record
    stored = [r for r in emulator.records() if settled(r) and "emulator_copy" not in (r.get("dimensions") or {})]
    victims = [r for r in stored if r["meterApiName"] == "page"][:2]
    wrong = [{**r, "customerId": "someone_else"} for r in victims]
    foreign = {**victims[0], "uniqueId": "foreign-1"}
    client.ingest_records([orjson.dumps(r).decode() for r in [*wrong, foreign]])
    assert lost and doubled

    effect: dict[tuple, list[float]] = defaultdict(lambda: [0, 0.0])
    for sign, records in ((-1, lost), (1, doubled), (1, wrong), (1, [foreign])):
        for record in records:
            effect[cell_of(record)][0] += sign
            effect[cell_of(record)][1] += sign * record["meterValue"]
    drifted_cells = {cell for cell, (count, total) in effect.items() if count or abs(total) > 1e-9}

    result = reconcile(reader=reader, client=client, config=config, window=w, run_id="rec")
    found = result.cells[result.cells["status"].isin(["missing", "excess"])]
    assert set(zip(found["meter"], found["customer"], found["hour"])) == drifted_cells
    drills = {(d.meter, d.customer, d.hour): d for d in result.drills}
    in_drifted = lambda records: {r["uniqueId"] for r in records if cell_of(r) in drifted_cells}  # noqa: E731
    assert {i for d in drills.values() for i in d.missing_ids} == in_drifted(lost)
    assert {i for d in drills.values() for i in d.different_bytes_ids} == in_drifted(doubled)
    assert {i for d in drills.values() for i in d.unexpected_ids} == in_drifted(wrong) | {"foreign-1"}

    repaired = reconcile(reader=reader, client=client, config=config, window=w, run_id="repair", repair=True)
    assert {r["uniqueId"] for r in repaired.repair.foreign} == {"foreign-1"}
    assert {r["uniqueId"] for r in repaired.repair.cancel} == in_drifted(doubled) | in_drifted(wrong)
    assert {orjson.loads(t)["uniqueId"] for t in repaired.repair.resend} == in_drifted(lost)
    left = repaired.cells[repaired.cells["status"].isin(["missing", "excess"])]
    assert set(zip(left["meter"], left["customer"], left["hour"])) == {cell_of(foreign)}  # only the foreign record
    assert emulator.stats()["cancelled"] == len(repaired.repair.cancel)
    assert any(r["uniqueId"] == "foreign-1" for r in emulator.records())
