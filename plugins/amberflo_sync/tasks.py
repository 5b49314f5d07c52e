"""Airflow task bodies: build the parts from connections and config, call the pure orchestration.

DAG files import from here and only wire tasks together. Everything returned is JSON-safe (XCom).
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from amberflo_sync.config import SyncConfig, load_config
from amberflo_sync.events_sync import DryRun, stats_to_dict, sync_stream
from amberflo_sync.isolation import IsolatingSender
from amberflo_sync.planning import INCREMENTAL
from amberflo_sync.rejected_retry import retry_rejected
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
    read_only = bool(config.state.url)
    if warehouse_url is None:
        from amberflo_sync.hooks import SegmentWarehouseHook

        warehouse = SegmentWarehouseHook().get_warehouse_engine(read_only=read_only)
        engine, dialect = warehouse.engine, warehouse.dialect
    else:
        engine, dialect = create_engine(warehouse_url, read_only=read_only), None
    reader = WarehouseReader(engine, chunk_rows=config.chunk_rows, dialect=dialect)
    if config.state.url:
        state = StateStore.from_url(config.state.url, schema=config.state.schema)
    else:
        state = StateStore(engine, schema=config.state.schema)
    state.create()
    return Runtime(config, reader, state)


def discover_identify_streams(runtime: Runtime | None = None) -> list[dict[str, str]]:
    """``<source>.identifies`` streams the identify DAG maps over."""
    from amberflo_sync.identifies_sync import identify_streams

    runtime = runtime or build_runtime()
    streams = identify_streams(runtime.reader, runtime.config.source_schemas)
    log.info("discovered %d identify streams: %s", len(streams), ", ".join(s.key for s in streams) or "none")
    return [{"key": s.key, "schema": s.schema, "table": s.table, "kind": s.kind} for s in streams]


def customer_writer(runtime: Runtime, client: Any) -> Any:
    from amberflo_sync.customer_writer import CustomerWriter

    customers = runtime.config.customers
    return CustomerWriter(
        client,
        runtime.state,
        concurrency=customers.concurrency or (client.settings.concurrency if client is not None else 8),
        bulk_read_threshold=customers.bulk_read_threshold,
        create_in_stripe=customers.create_in_stripe,
        progress_every_seconds=runtime.config.progress_every_seconds,
    )


def run_identify_stream(
    stream: dict[str, str],
    *,
    run_id: str,
    params: dict[str, Any] | None = None,
    runtime: Runtime | None = None,
    amberflo_conn_id: str = "amberflo_default",
) -> dict[str, Any]:
    """Sync one identifies table into Amberflo customers; returns its ``sync_runs`` row."""
    from amberflo_sync.identifies_sync import sync_identifies

    event_stream = EventStream(stream["schema"], stream["table"], stream["kind"])
    return _run_customer_sync(sync_identifies, event_stream, event_stream, run_id=run_id, params=params,
                              runtime=runtime, amberflo_conn_id=amberflo_conn_id)


def _run_customer_sync(
    sync: Any,
    target: Any,
    dry_run_stream: EventStream,
    *,
    run_id: str,
    params: dict[str, Any] | None,
    runtime: Runtime | None,
    amberflo_conn_id: str,
) -> dict[str, Any]:
    """Run a customer sync (identifies or Engage) the one way both run: a dry run needs no client;
    otherwise one pooled client, whose request counts join the ``sync_runs`` row returned."""
    from amberflo_sync.hooks import AmberfloHook

    params = params or {}
    runtime = runtime or build_runtime()
    common = {"reader": runtime.reader, "state": runtime.state, "config": runtime.config, "run_id": run_id,
              "full_resync": bool(params.get("full_resync"))}
    if params.get("dry_run"):
        dry_run = _dry_run(runtime.config, params, run_id, dry_run_stream)
        return stats_to_dict(sync(target, writer=customer_writer(runtime, None), dry_run=dry_run, **common))
    with AmberfloHook(amberflo_conn_id).get_client() as client:
        result = stats_to_dict(sync(target, writer=customer_writer(runtime, client), **common))
        result["http_requests"] = client.stats.requests
        result["http_retries"] = client.stats.retries
    return result


def discover_engage_spaces(runtime: Runtime | None = None) -> list[dict[str, str]]:
    """Engage spaces the Engage DAG maps over (``[{"key", "schema", "shape"}]``)."""
    from amberflo_sync.engage_sync import engage_spaces

    runtime = runtime or build_runtime()
    spaces = engage_spaces(runtime.reader, runtime.config)
    log.info("discovered %d Engage spaces: %s", len(spaces),
             ", ".join(f"{s.key} ({s.shape})" for s in spaces) or "none")
    return [{"key": s.key, "schema": s.schema, "shape": s.shape} for s in spaces]


def run_engage_space(
    space: dict[str, str],
    *,
    run_id: str,
    params: dict[str, Any] | None = None,
    runtime: Runtime | None = None,
    amberflo_conn_id: str = "amberflo_default",
) -> dict[str, Any]:
    """Sync one Engage space's audiences and traits; returns its ``sync_runs`` row."""
    from amberflo_sync.engage_sync import EngageSpace, sync_engage_space

    engage_space = EngageSpace(space["schema"], space["shape"])
    return _run_customer_sync(sync_engage_space, engage_space, EventStream(engage_space.schema, "users", "engage"),
                              run_id=run_id, params=params, runtime=runtime, amberflo_conn_id=amberflo_conn_id)


def customers_ready(context: Any, identify_dag_id: str = "segment_identifies_to_amberflo") -> bool:
    """Whether a scheduled events run may bill: the identify run of the same interval succeeded
    (customers exist before their meters), or it has not within ``customers.wait_minutes`` (billing
    is never blocked for good). Manual runs and backfills do not wait."""
    dag_run = context["dag_run"]
    if str(getattr(dag_run, "run_type", "")) not in ("scheduled", "DagRunType.SCHEDULED"):
        return True
    logical_date = context.get("logical_date")
    ti = context["ti"]
    if logical_date is not None and ti.get_dr_count(
        dag_id=identify_dag_id, logical_dates=[logical_date], states=["success"]
    ):
        return True
    config = load_config()
    interval_end = context.get("data_interval_end")
    if interval_end is not None:
        waited = (datetime.now(timezone.utc) - interval_end).total_seconds() / 60
        if waited >= config.customers.wait_minutes:
            log.warning(
                "%s has not succeeded for this interval after %.0f minutes; billing events anyway",
                identify_dag_id,
                waited,
            )
            return True
    log.info("waiting for %s of the same interval (customers before meters)", identify_dag_id)
    return False


# -- fan-out and backfills (events DAG) ---------------------------------------------------------
def plan_event_slices(context: Any, runtime: Runtime | None = None) -> list[list[dict[str, Any]]]:
    """Discover the streams and cut this run's work into slices, grouped under ``max_map_length``.

    Incremental runs slice each stream's cursor window; backfills — runs created by the UI's Backfill
    dialog / ``airflow backfill create`` (``run_type == "backfill"``), or any run given ``start`` and
    ``end`` Params — slice the event-time interval instead and move no watermark.
    """
    from amberflo_sync.planning import check_backfill_interval, plan_backfill, plan_incremental, work_units

    runtime = runtime or build_runtime()
    params = dict(context.get("params") or {})
    interval = backfill_interval(context)
    streams = runtime.reader.event_streams(runtime.config.source_schemas, runtime.config.events)
    slices = []
    if interval is not None:
        start, end = interval
        check_backfill_interval(start, end, allow_older=bool(params.get("allow_older_than_60_days")))
        log.info("backfill of event times (%s, %s] over %d streams; watermarks stay where they are",
                 start.isoformat(), end.isoformat(), len(streams))
        for stream in streams:
            slices += plan_backfill(runtime.reader, stream, start, end, runtime.config)
    else:
        for stream in streams:
            slices += plan_incremental(runtime.reader, runtime.state, stream, runtime.config)
    units = work_units(slices, max_map_length=_max_map_length())
    log.info("planned %d slices over %d streams in %d mapped tasks: %s", len(slices), len(streams), len(units),
             ", ".join(s.key for s in slices) or "nothing to do")
    return units


def backfill_interval(context: Any) -> tuple[datetime, datetime] | None:
    """``(start, end)`` when this run is a backfill, else None (see :func:`plan_event_slices`)."""
    params = dict(context.get("params") or {})
    if params.get("start") or params.get("end"):
        if not (params.get("start") and params.get("end")):
            raise ValueError("a backfill needs both the start and the end Param (ISO-8601, UTC)")
        return _utc(params["start"]), _utc(params["end"])
    dag_run = context.get("dag_run")
    if str(getattr(dag_run, "run_type", "")).lower().endswith("backfill"):
        start, end = context.get("data_interval_start"), context.get("data_interval_end")
        if start is None or end is None:
            raise ValueError("a backfill run needs a data interval (use a CronDataIntervalTimetable)")
        return _utc(start), _utc(end)
    return None


def run_event_slices(
    unit: list[dict[str, Any]],
    *,
    run_id: str,
    params: dict[str, Any] | None = None,
    runtime: Runtime | None = None,
    amberflo_conn_id: str = "amberflo_default",
) -> list[dict[str, Any]]:
    """Sync the slices of one mapped task; no watermark moves here (see :func:`finish_event_run`)."""
    from amberflo_sync.hooks import AmberfloHook
    from amberflo_sync.planning import Slice

    params = params or {}
    runtime = runtime or build_runtime()
    results = []
    worker = os.environ.get("AMBERFLO_SYNC_WORKER_NAME") or f"{socket.gethostname()}:{os.getpid()}"
    for data in unit:
        part = Slice.from_dict(data)
        slice_run = f"{run_id}#{part.index + 1}/{part.count}"
        if params.get("dry_run"):
            stats = sync_stream(part.stream, reader=runtime.reader, state=runtime.state, send=_refuse_to_send,
                                config=runtime.config, run_id=slice_run,
                                dry_run=_dry_run(runtime.config, params, slice_run, part.stream),
                                window=part.window, move_watermark=False)
            results.append(stats_to_dict(stats) | {"slice": part.key, "worker": worker})
            continue
        with AmberfloHook(amberflo_conn_id, batch_size=runtime.config.batch_size).get_client() as client:
            send = IsolatingSender(client.ingest_records)
            retried = None
            if part.mode == INCREMENTAL and part.index == 0:  # once per stream and run
                retried = retry_rejected(part.stream, reader=runtime.reader, state=runtime.state, send=send,
                                         config=runtime.config)
            stats = sync_stream(part.stream, reader=runtime.reader, state=runtime.state, send=send,
                                config=runtime.config, run_id=slice_run, window=part.window, move_watermark=False,
                                allow_old_events=bool(params.get("allow_older_than_60_days")))
            stats.details = {**(stats.details or {}), "slice": part.key, "mode": part.mode, "worker": worker}
            if retried is not None and retried.tried:
                stats.details["rejected_retried"] = retried.tried
                stats.details["rejected_resolved"] = retried.sent
            runtime.state.record_run(stats)
            results.append(stats_to_dict(stats) | {"slice": part.key, "worker": worker,
                                                   "http_requests": client.stats.requests,
                                                   "http_retries": client.stats.retries})
    return results


def finish_event_run(units: list[list[dict[str, Any]]], *, run_id: str, params: dict[str, Any] | None = None,
                     runtime: Runtime | None = None) -> str:
    """After every slice ran (or failed): move each stream's watermark as far as its succeeded slices
    reach, log the run's summary, and fail when a slice failed (so the run shows it)."""
    from amberflo_sync.planning import Slice, committable_watermarks

    runtime = runtime or build_runtime()
    slices = [Slice.from_dict(d) for unit in (units or []) for d in unit]
    runs = {(r["run_id"], r["stream"]): r for r in runtime.state.runs()
            if str(r["run_id"]).startswith(f"{run_id}#")}

    def slice_run(s: Slice) -> dict[str, Any]:
        return runs.get((f"{run_id}#{s.index + 1}/{s.count}", s.stream.key), {})

    succeeded = {s.key for s in slices if slice_run(s).get("status") == "success"}
    if not (params or {}).get("dry_run"):
        for stream_key, mark in committable_watermarks(slices, succeeded).items():
            current = runtime.state.get_watermark(stream_key)
            if current is None or _later(mark, current.value):
                runtime.state.set_watermark(stream_key, mark, run_id=run_id)
                log.info("%s: watermark → %s", stream_key, mark)
    totals = {k: sum(int(r.get(c) or 0) for r in runs.values()) for k, c in (
        ("read", "rows_read"), ("sent", "rows_sent"), ("duplicates", "duplicates"), ("rejected", "rejected"),
        ("skipped", "skipped"))}
    line = (f"{len({s.stream.key for s in slices})} streams: read={totals['read']} sent={totals['sent']} "
            f"duplicates={totals['duplicates']} rejected={totals['rejected']} skipped={totals['skipped']} "
            f"slices={len(slices)} succeeded={len(succeeded)}")
    log.info("%s", line)
    failed = sorted(s.key for s in slices if s.key not in succeeded and not (params or {}).get("dry_run"))
    if failed:
        raise RuntimeError(f"{len(failed)} slice(s) failed, their streams' watermarks stop before them: {', '.join(failed)}")
    return line


def _later(a: Any, b: Any) -> bool:
    try:
        return a > b
    except TypeError:
        return True


def _utc(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def _max_map_length() -> int:
    try:
        from airflow.configuration import conf

        return conf.getint("core", "max_map_length", fallback=1024)
    except Exception:  # pragma: no cover - outside Airflow
        return 1024


def summarize(results: list[dict[str, Any]]) -> str:
    """One line over all streams of a run, logged by the DAG's last task."""
    totals = {k: sum(int(r.get(k) or 0) for r in results) for k in ("read", "sent", "duplicates", "rejected", "skipped")}
    line = (
        f"{len(results)} streams: read={totals['read']} sent={totals['sent']} duplicates={totals['duplicates']} "
        f"rejected={totals['rejected']} skipped={totals['skipped']}"
    )
    log.info("%s", line)
    return line


def _dry_run(config: SyncConfig, params: dict[str, Any], run_id: str, stream: EventStream) -> DryRun:
    limit = int(params.get("dry_run_records") or config.dry_run_records)
    path = None
    if config.dry_run_dir:
        safe_run = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in run_id)
        path = Path(config.dry_run_dir) / safe_run / f"{stream.key}.jsonl"
    return DryRun(limit=limit, path=path)


def _refuse_to_send(records: Any) -> int:
    raise AssertionError("dry run must not send")
