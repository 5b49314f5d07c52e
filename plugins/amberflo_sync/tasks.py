"""Airflow task bodies: build the parts from connections and config, call the pure orchestration.

DAG files import from here and only wire tasks together. Everything returned is JSON-safe (XCom).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amberflo_sync.config import SyncConfig, load_config
from amberflo_sync.events_sync import DryRun, stats_to_dict, sync_stream
from amberflo_sync.reader import EventStream, WarehouseReader, create_engine
from amberflo_sync.state import StateStore

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """The I/O parts one task needs."""

    config: SyncConfig
    reader: WarehouseReader
    state: StateStore


def build_runtime(config: SyncConfig | None = None, warehouse_url: str | None = None) -> Runtime:
    """Reader and state store from the ``segment_warehouse`` connection and the YAML config.

    With a separate state database the warehouse is opened read-only (a DuckDB file then allows
    any number of parallel readers); otherwise one read-write engine serves both.
    """
    config = config or load_config()
    if warehouse_url is None:
        from amberflo_sync.hooks import SegmentWarehouseHook

        warehouse_url = SegmentWarehouseHook().get_url()
    if config.state.url:
        reader = WarehouseReader(create_engine(warehouse_url, read_only=True), chunk_rows=config.chunk_rows)
        state = StateStore.from_url(config.state.url, schema=config.state.schema)
    else:
        engine = create_engine(warehouse_url)
        reader = WarehouseReader(engine, chunk_rows=config.chunk_rows)
        state = StateStore(engine, schema=config.state.schema)
    state.create()
    return Runtime(config, reader, state)


def discover_event_streams(runtime: Runtime | None = None) -> list[dict[str, str]]:
    """The streams the events DAG maps over (``[{"key", "schema", "table", "kind"}]``)."""
    runtime = runtime or build_runtime()
    streams = runtime.reader.event_streams(runtime.config.source_schemas, runtime.config.events)
    log.info("discovered %d event streams: %s", len(streams), ", ".join(s.key for s in streams) or "none")
    return [{"key": s.key, "schema": s.schema, "table": s.table, "kind": s.kind} for s in streams]


def run_event_stream(
    stream: dict[str, str],
    *,
    run_id: str,
    params: dict[str, Any] | None = None,
    runtime: Runtime | None = None,
    amberflo_conn_id: str = "amberflo_default",
) -> dict[str, Any]:
    """Sync one stream; returns its ``sync_runs`` row as a dict."""
    params = params or {}
    runtime = runtime or build_runtime()
    config = runtime.config
    event_stream = EventStream(stream["schema"], stream["table"], stream["kind"])
    dry_run = None
    if params.get("dry_run"):
        limit = int(params.get("dry_run_records") or config.dry_run_records)
        path = None
        if config.dry_run_dir:
            safe_run = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in run_id)
            path = Path(config.dry_run_dir) / safe_run / f"{event_stream.key}.jsonl"
        dry_run = DryRun(limit=limit, path=path)
        stats = sync_stream(
            event_stream,
            reader=runtime.reader,
            state=runtime.state,
            send=_refuse_to_send,
            config=config,
            run_id=run_id,
            dry_run=dry_run,
        )
        return stats_to_dict(stats)
    from amberflo_sync.hooks import AmberfloHook

    with AmberfloHook(amberflo_conn_id, batch_size=config.batch_size).get_client() as client:
        stats = sync_stream(
            event_stream,
            reader=runtime.reader,
            state=runtime.state,
            send=client.ingest_records,
            config=config,
            run_id=run_id,
        )
        result = stats_to_dict(stats)
        result["http_requests"] = client.stats.requests
        result["http_retries"] = client.stats.retries
    return result


def summarize(results: list[dict[str, Any]]) -> str:
    """One line over all streams of a run, logged by the DAG's last task."""
    totals = {k: sum(int(r.get(k) or 0) for r in results) for k in ("read", "sent", "duplicates", "rejected", "skipped")}
    line = (
        f"{len(results)} streams: read={totals['read']} sent={totals['sent']} duplicates={totals['duplicates']} "
        f"rejected={totals['rejected']} skipped={totals['skipped']}"
    )
    log.info("%s", line)
    return line


def _refuse_to_send(records: Any) -> int:
    raise AssertionError("dry run must not send")
