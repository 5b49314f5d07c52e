"""Airflow task bodies: build the parts from connections and config, then call one function per task.

DAG files import from here and only wire tasks together; the work is in :mod:`amberflo_sync.events_run`
(events), :mod:`amberflo_sync.identifies_sync` and :mod:`amberflo_sync.engage_sync`; the run-type
rules in :mod:`amberflo_sync.run_kinds`; the bookkeeping in :mod:`amberflo_sync.ledger`. Everything
returned is JSON-safe (XCom).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from amberflo_sync import run_kinds
from amberflo_sync.config import SyncConfig, load_config
from amberflo_sync.events_sync import DryRun
from amberflo_sync.ledger import Ledger
from amberflo_sync.reader import EventStream, WarehouseReader, create_engine
from amberflo_sync.state import StateStore

log = logging.getLogger(__name__)

IDENTIFY_DAG_ID = "segment_identifies_to_amberflo"


@dataclass
class Runtime:
    """The I/O parts one task needs."""

    config: SyncConfig
    reader: WarehouseReader
    state: StateStore
    ledger: Ledger


def build_runtime(config: SyncConfig | None = None, warehouse_url: str | None = None) -> Runtime:
    """Reader, state store and ledger from the ``segment_warehouse`` connection and the YAML config.

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
    return Runtime(config, reader, state, Ledger(state))


def worker_name() -> str:
    return os.environ.get("AMBERFLO_SYNC_WORKER_NAME") or f"{socket.gethostname()}:{os.getpid()}"


# -- events DAG ---------------------------------------------------------------------------------
def plan_event_slices(context: Mapping[str, Any], runtime: Runtime | None = None) -> dict[str, Any]:
    """Task ``plan_slices``: discover the streams, fix every slice's window, record the plan."""
    from amberflo_sync.events_run import plan_run

    runtime = runtime or build_runtime()
    rules = run_kinds.from_context(context)
    params = dict(context.get("params") or {})
    plan = plan_run(runtime.reader, runtime.ledger, runtime.config, rules, run_id=str(context["run_id"]),
                    dag_id=_dag_id(context), max_map_length=_max_map_length(),
                    allow_older=bool(params.get("allow_older_than_60_days")))
    return plan.to_xcom()


def run_event_slices(unit: list[dict[str, Any]], context: Mapping[str, Any], runtime: Runtime | None = None,
                     amberflo_conn_id: str = "amberflo_default") -> list[dict[str, Any]]:
    """Task ``sync_slices`` (one mapped task): sync its slices, each recorded against its plan."""
    from amberflo_sync.events_run import run_slices
    from amberflo_sync.hooks import AmberfloHook
    from amberflo_sync.isolation import IsolatingSender

    runtime = runtime or build_runtime()
    _take_plan_catalog(runtime, context)
    rules = run_kinds.from_context(context)
    params = dict(context.get("params") or {})
    run_id = str(context["run_id"])
    if rules.dry_run:
        return run_slices(unit, reader=runtime.reader, ledger=runtime.ledger, config=runtime.config, rules=rules,
                          run_id=run_id, sender=None, worker=worker_name(),
                          dry_run_for=lambda stream: _dry_run(runtime.config, params, run_id, stream))
    with AmberfloHook(amberflo_conn_id, batch_size=runtime.config.batch_size).get_client() as client:
        results = run_slices(unit, reader=runtime.reader, ledger=runtime.ledger, config=runtime.config, rules=rules,
                             run_id=run_id, sender=lambda: IsolatingSender(client.ingest_records),
                             worker=worker_name(), allow_old_events=bool(params.get("allow_older_than_60_days")))
        for result in results:
            result["http_requests"] = client.stats.requests
            result["http_retries"] = client.stats.retries
    return results


def _take_plan_catalog(runtime: Runtime, context: Mapping[str, Any]) -> None:
    """Seed the slice's reader with the plan's discovery answers: a slice sends no discovery
    statement (on Snowflake, BigQuery or Databricks every statement costs warehouse time)."""
    pull = getattr(context.get("ti"), "xcom_pull", None)
    plan = pull(task_ids="plan_slices", key="plan") if pull is not None else None
    if plan and plan.get("catalog"):
        runtime.reader.seed_catalog(plan["catalog"])


def finish_event_run(plan: dict[str, Any] | None, context: Mapping[str, Any], runtime: Runtime | None = None) -> str:
    """Task ``finish``: close the plan, move watermarks, and fail the run unless every configured
    stream was synced (or skipped for a stated reason)."""
    from amberflo_sync.events_run import finish_run

    runtime = runtime or build_runtime()
    return finish_run(plan, ledger=runtime.ledger, config=runtime.config, rules=run_kinds.from_context(context))


def customers_ready(context: Mapping[str, Any], identify_dag_id: str = IDENTIFY_DAG_ID,
                    now: datetime | None = None) -> bool:
    """Task ``wait_for_customers``: whether a scheduled events run may bill now.

    It may when the identify run of the same interval succeeded (customers exist before their
    meters), when no identify run exists for the interval (the identify DAG is paused or not
    deployed: a run that may never come — unless ``customers.wait_for_paused``), or once
    ``customers.wait_minutes`` have passed (billing is never blocked for good). Other runs never wait.
    """
    rules = run_kinds.from_context(context)
    if not rules.waits_for_customers:
        return True
    config = load_config().customers
    logical_date = context.get("logical_date")
    interval_end = context.get("data_interval_end")
    ti = context["ti"]
    now = now or datetime.now(timezone.utc)
    waited = 0.0 if interval_end is None else (now - interval_end).total_seconds() / 60
    how_to_stop = ("set customers.wait_minutes: 0 in the YAML config to never wait, or trigger the run by hand "
                   "(manual runs do not wait)")
    if logical_date is not None:
        if ti.get_dr_count(dag_id=identify_dag_id, logical_dates=[logical_date], states=["success"]):
            log.info("%s succeeded for this interval: customers exist, billing events", identify_dag_id)
            return True
        exists = ti.get_dr_count(dag_id=identify_dag_id, logical_dates=[logical_date])
        if not exists and not config.wait_for_paused:
            log.warning("%s has no run for this interval (%s): it is paused or not deployed, so no run will come; "
                        "billing events now. Set customers.wait_for_paused: true to wait for it anyway.",
                        identify_dag_id, logical_date.isoformat())
            return True
    if waited >= config.wait_minutes:
        log.warning("%s has not succeeded for this interval after %.0f minutes (customers.wait_minutes=%s); "
                    "billing events anyway", identify_dag_id, waited, config.wait_minutes)
        return True
    log.info("waiting for %s's run of this interval to succeed (customers before meters): waited %.0f of at most "
             "%s minutes; to stop waiting, %s", identify_dag_id, waited, config.wait_minutes, how_to_stop)
    return False


# -- identify and Engage DAGs -------------------------------------------------------------------
def discover_identify_streams(runtime: Runtime | None = None) -> list[dict[str, str]]:
    """Task ``discover_streams``: the ``<source>.identifies`` streams the identify DAG maps over."""
    from amberflo_sync.identifies_sync import identify_streams

    from amberflo_sync.events_run import RunFailed

    runtime = runtime or build_runtime()
    streams = identify_streams(runtime.reader, runtime.config.source_schemas)
    log.info("discovered %d identify streams: %s", len(streams), ", ".join(s.key for s in streams) or "none")
    if not streams:
        raise RunFailed("no identifies table found; looked for " + ", ".join(
            f"{schema}.identifies" for schema in runtime.config.source_schemas))
    return [{"key": s.key, "schema": s.schema, "table": s.table, "kind": s.kind} for s in streams]


def run_identify_stream(stream: dict[str, str], context: Mapping[str, Any], runtime: Runtime | None = None,
                        amberflo_conn_id: str = "amberflo_default") -> dict[str, Any]:
    """Task ``sync_customers``: one identifies table into Amberflo customers; returns its run row."""
    from amberflo_sync.identifies_sync import sync_identifies

    event_stream = EventStream(stream["schema"], stream["table"], stream["kind"])
    return _run_customer_sync(sync_identifies, event_stream, event_stream, context, runtime, amberflo_conn_id)


def discover_engage_spaces(runtime: Runtime | None = None) -> list[dict[str, str]]:
    """Task ``discover_spaces``: the Engage spaces the Engage DAG maps over."""
    from amberflo_sync.engage_sync import engage_spaces

    from amberflo_sync.events_run import RunFailed

    runtime = runtime or build_runtime()
    spaces = engage_spaces(runtime.reader, runtime.config)
    log.info("discovered %d Engage spaces: %s", len(spaces),
             ", ".join(f"{s.key} ({s.shape})" for s in spaces) or "none (no engage_*/personas_* schema)")
    if runtime.config.engage.spaces and not spaces:
        raise RunFailed("none of the configured Engage spaces exists; looked for "
                        + ", ".join(runtime.config.engage.spaces))
    return [{"key": s.key, "schema": s.schema, "shape": s.shape} for s in spaces]


def run_engage_space(space: dict[str, str], context: Mapping[str, Any], runtime: Runtime | None = None,
                     amberflo_conn_id: str = "amberflo_default") -> dict[str, Any]:
    """Task ``sync_space``: one Engage space's audiences and traits; returns its run row."""
    from amberflo_sync.engage_sync import EngageSpace, sync_engage_space

    engage_space = EngageSpace(space["schema"], space["shape"])
    return _run_customer_sync(sync_engage_space, engage_space, EventStream(engage_space.schema, "users", "engage"),
                              context, runtime, amberflo_conn_id)


def _run_customer_sync(sync: Any, target: Any, dry_run_stream: EventStream, context: Mapping[str, Any],
                       runtime: Runtime | None, amberflo_conn_id: str) -> dict[str, Any]:
    """Run a customer sync (identifies or Engage) the one way both run: a dry run needs no client;
    otherwise one pooled client, whose request counts join the run row returned."""
    from amberflo_sync.customer_writer import CustomerWriter
    from amberflo_sync.hooks import AmberfloHook

    runtime = runtime or build_runtime()
    rules = run_kinds.from_context(context)
    params = dict(context.get("params") or {})
    run_id = str(context["run_id"])
    common = {"reader": runtime.reader, "ledger": runtime.ledger, "config": runtime.config, "run_id": run_id,
              "rules": rules, "full_resync": bool(params.get("full_resync"))}

    def writer(client: Any) -> CustomerWriter:
        customers = runtime.config.customers
        return CustomerWriter(client, runtime.state,
                              concurrency=customers.concurrency or (client.settings.concurrency if client else 8),
                              bulk_read_threshold=customers.bulk_read_threshold,
                              create_in_stripe=customers.create_in_stripe,
                              progress_every_seconds=runtime.config.progress_every_seconds)

    if rules.dry_run:
        dry_run = _dry_run(runtime.config, params, run_id, dry_run_stream)
        return sync(target, writer=writer(None), dry_run=dry_run, **common).to_dict()
    with AmberfloHook(amberflo_conn_id).get_client() as client:
        result = sync(target, writer=writer(client), **common).to_dict()
        result["http_requests"] = client.stats.requests
        result["http_retries"] = client.stats.retries
    return result


def summarize(results: list[dict[str, Any]]) -> str:
    """Task ``summarize``: one line over all streams of a run."""
    totals = {k: sum(int(r.get(k) or 0) for r in results) for k in ("read", "sent", "duplicates", "rejected", "skipped")}
    dry = bool(results) and all(r.get("status") == "dry_run" for r in results)
    line = (
        f"{len(results)} streams: read={totals['read']} {'would send' if dry else 'sent'}={totals['sent']} "
        f"duplicates={totals['duplicates']} rejected={totals['rejected']} skipped={totals['skipped']}"
    )
    log.info("%s", line)
    return line


# -- helpers ------------------------------------------------------------------------------------
def _dag_id(context: Mapping[str, Any]) -> str | None:
    dag = context.get("dag")
    return getattr(dag, "dag_id", None)


def _max_map_length() -> int:
    try:
        from airflow.configuration import conf

        return conf.getint("core", "max_map_length", fallback=1024)
    except Exception:  # pragma: no cover - outside Airflow
        return 1024


def _dry_run(config: SyncConfig, params: dict[str, Any], run_id: str, stream: EventStream) -> DryRun:
    limit = int(params.get("dry_run_records") or config.dry_run_records)
    path = None
    if config.dry_run_dir:
        from amberflo_sync.paths import path_inside

        path = path_inside(config.dry_run_dir, run_id, f"{stream.key}.jsonl")
    return DryRun(limit=limit, path=path)
