"""Our side of a case: the events sync exactly as the DAG task runs it.

the events DAG's plan → slices → finish path for every event table, with a :class:`WarehouseReader`, a SQLite
:class:`StateStore` and ``AmberfloClient(...).ingest_records`` as the sender, default
:class:`SyncConfig` (chunk and batch sizes as shipped). Stage busy-times come from the optional
:class:`~amberflo_sync.events_sync.StageTimings` and the client's own counters.
"""

from __future__ import annotations

import time
from typing import Any

from amberflo_sync.client import AmberfloClient, ClientSettings
from amberflo_sync.config import SyncConfig
from amberflo_sync.events_run import finish_run, plan_run, run_slices
from amberflo_sync.events_sync import StageTimings
from amberflo_sync.ledger import Ledger
from amberflo_sync.run_kinds import RunRules
from amberflo_sync.reader import WarehouseReader, create_engine
from amberflo_sync.state import StateStore


def run_events_sync(warehouse_url: str, sink_url: str, api_key: str, state_path: str, schema: str,
                    client_overrides: dict[str, Any] | None = None, *, via_connection: bool = False,
                    **config_overrides: Any) -> dict[str, Any]:
    """Sync every event table of ``schema``; returns counts, seconds, stage timings and the number
    of warehouse statements sent.

    :param client_overrides: :class:`ClientSettings` fields to change (e.g. ``gzip_level``) —
        none by default, so the client runs with the settings the DAG would use.
    :param via_connection: build the engine from an Airflow connection of the URL's type
        (``postgres``: the provider's PostgresHook) as the DAG does, instead of from the URL.
    :param config_overrides: :class:`SyncConfig` fields to change (e.g. ``batch_size``).
    """
    config = SyncConfig(source_schemas=(schema,), **config_overrides)
    if via_connection:
        reader = _reader_from_connection(warehouse_url, config.chunk_rows)
    else:
        reader = WarehouseReader(create_engine(warehouse_url, read_only=True), chunk_rows=config.chunk_rows)
    state = StateStore.from_url(f"sqlite:///{state_path}")
    state.create()
    timings = StageTimings()
    totals = {"read": 0, "sent": 0, "duplicates": 0, "rejected": 0, "skipped": 0}
    settings = ClientSettings(base_url=sink_url, api_key=api_key, batch_size=config.batch_size,
                              **(client_overrides or {}))
    ledger = Ledger(state)
    rules = RunRules("manual")
    statements_before = getattr(reader, "statements", 0)
    started = time.perf_counter()
    with AmberfloClient(settings) as client:
        # the DAG's own path: plan → every slice → finish (one process here)
        plan = plan_run(reader, ledger, config, rules, run_id="bench")
        for unit in plan.units:
            run_slices(unit, reader=reader, ledger=ledger, config=config, rules=rules, run_id="bench",
                       sender=lambda: client.ingest_records, timings=timings)
        finish_run(plan.to_xcom(), ledger=ledger, config=config, rules=rules)
        for run in ledger.runs(run_id="bench"):
            assert run["status"] == "success", run
            for key, column in (("read", "rows_read"), ("sent", "rows_sent"), ("duplicates", "duplicates"),
                                ("rejected", "rejected"), ("skipped", "skipped")):
                totals[key] += int(run[column])
        seconds = time.perf_counter() - started
        client_stats = client.stats
    totals["warehouse_statements"] = getattr(reader, "statements", 0) - statements_before
    reader.engine.dispose()
    state.engine.dispose()
    stages = timings.as_dict()
    stages["serialize"] = client_stats.serialize_seconds
    stages["sender_wall"] = stages.pop("send")
    stages["send"] = client_stats.send_seconds
    return {"seconds": seconds, "rows": totals["read"], "counts": totals, "stages": stages,
            "requests": client_stats.requests, "statements": reader.statements}


def _reader_from_connection(warehouse_url: str, chunk_rows: int) -> WarehouseReader:
    """The reader the DAG builds from ``segment_warehouse`` of type ``postgres`` (the URL's parts
    as the connection form holds them)."""
    import json
    import os

    from sqlalchemy.engine import make_url

    from amberflo_sync.hooks import SegmentWarehouseHook

    url = make_url(warehouse_url)
    os.environ["AIRFLOW_CONN_SEGMENT_WAREHOUSE"] = json.dumps(
        {"conn_type": "postgres", "host": url.host, "port": url.port, "login": url.username,
         "password": url.password, "schema": url.database})
    warehouse = SegmentWarehouseHook().get_warehouse_engine(read_only=True)
    return WarehouseReader(warehouse.engine, chunk_rows=chunk_rows, dialect=warehouse.dialect)
