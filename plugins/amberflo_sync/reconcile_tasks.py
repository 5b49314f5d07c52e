"""Airflow task body of ``amberflo_reconciliation``: build the parts, reconcile, store, report, judge.

The DAG file only wires this in. Returns a JSON-safe summary (XCom) — the fields a run-ledger row of
this run should carry (see :meth:`ReconciliationResult.summary`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from typing import Any

from amberflo_sync.config import SyncConfig, load_config
from amberflo_sync.ledger import Ledger, RunStats
from amberflo_sync.reader import WarehouseReader, create_engine
from amberflo_sync.reconciliation.report import markdown, write_files
from amberflo_sync.reconciliation.run import fail_on_drift, reconcile
from amberflo_sync.reconciliation.table import ReconciliationTable
from amberflo_sync.reconciliation.window import resolve_window
from amberflo_sync.state import StateStore

log = logging.getLogger(__name__)

#: Rows per extraction chunk when reconciling: the chunking never changes the records (duplicates are
#: ranked over the whole window in SQL), and smaller chunks kept the peak memory of a 1M-event
#: reconciliation ~110 MiB lower than the sync's 50,000 (bench/bench_reconcile.py).
RECONCILE_CHUNK_ROWS = 20_000


def open_parts(config: SyncConfig, warehouse_url: str) -> tuple[WarehouseReader, StateStore]:
    """The warehouse reader (read-only when state lives elsewhere) and the state store."""
    chunk_rows = min(config.chunk_rows, RECONCILE_CHUNK_ROWS)
    if config.state.url:
        reader = WarehouseReader(create_engine(warehouse_url, read_only=True), chunk_rows=chunk_rows)
        state = StateStore.from_url(config.state.url, schema=config.state.schema)
    else:
        engine = create_engine(warehouse_url)
        reader, state = WarehouseReader(engine, chunk_rows=chunk_rows), StateStore(engine, schema=config.state.schema)
    return reader, state


def run_reconciliation(
    context: Any,
    *,
    config: SyncConfig | None = None,
    warehouse_url: str | None = None,
    amberflo_conn_id: str = "amberflo_default",
) -> dict[str, Any]:
    """Reconcile the interval the Params (or the defaults) name; fail when drift exceeds the tolerance.

    Params: ``start``/``end`` (event-time interval, ISO-8601 UTC; default the ``days`` days ending
    ``settle_hours`` ago), ``meters`` (default all), ``repair``, ``dry_run`` (plan a repair, send
    nothing), ``settle_hours`` (override the configured settle delay).
    """
    from amberflo_sync.hooks import AmberfloHook, SegmentWarehouseHook

    params = dict(context.get("params") or {})
    config = config or load_config()
    settings = config.reconciliation
    settle = params.get("settle_hours")
    window = resolve_window(start=params.get("start") or None, end=params.get("end") or None,
                            settle_hours=settings.settle_hours if settle is None else float(settle),
                            days=settings.days)
    run_id = str(context.get("run_id") or "manual")
    started, began = dt.datetime.now(dt.timezone.utc), time.monotonic()
    log.info("reconciling %s; hours ending after %s are pending%s", window.describe(),
             window.settled_before.isoformat(), " (repair on)" if params.get("repair") else "")
    reader, state = open_parts(config, warehouse_url or SegmentWarehouseHook().get_url())
    with AmberfloHook(amberflo_conn_id, batch_size=config.batch_size).get_client() as client:
        result = reconcile(reader=reader, client=client, config=config, window=window, run_id=run_id,
                           meters=params.get("meters") or None, repair=bool(params.get("repair")),
                           dry_run=bool(params.get("dry_run")))
    table = ReconciliationTable(state.engine, state.schema)
    table.create()
    stored = table.write(run_id, window, result.cells, result.cells_before_repair)
    log.info("wrote %d rows to the state table reconciliation", stored)
    files = write_files(result, settings.reports_dir)
    log.info("reconciliation report (Markdown):\n%s", markdown(result))
    log.info("reconciliation report files: %s (chart), %s (drill-down)", files["html"], files["json"])
    summary = result.summary() | {"report": files}
    log.info("reconciliation summary: %s", json.dumps(summary, sort_keys=True))
    drifted = result.drifted > settings.max_drifted_cells
    Ledger(state).record_run(RunStats(
        run_id, "reconciliation", status="failed" if drifted else "success",
        error=f"{result.drifted} drifted cells (tolerated: {settings.max_drifted_cells})" if drifted else None,
        window_lower=window.start.isoformat(), window_upper=window.end.isoformat(),
        started_at=started, finished_at=dt.datetime.now(dt.timezone.utc),
        seconds=time.monotonic() - began, details=summary))
    fail_on_drift(result, settings.max_drifted_cells)
    return summary
