"""Identify sync: ``<source>.identifies`` → full Amberflo customer records.

Same window rules as the events sync (``uuid_ts`` cursor, overlap, watermark moved last). The
window's identify calls are collapsed per ``user_id`` (latest non-null value per field by event time)
chunk by chunk, merged over the stored customer state, and only customers whose record changed are
written (:class:`~amberflo_sync.customer_writer.CustomerWriter`), under the ``customers`` state lock
that the Engage sync takes too, so the two never write the same customer at the same time.
"""

from __future__ import annotations

import logging

from amberflo_sync.config import SyncConfig
from amberflo_sync.customer_writer import AMBERFLO_REJECTED_CUSTOMER, CustomerWriter
from amberflo_sync.customers import group_updates, identify_updates, latest_updates
from amberflo_sync.events_sync import DryRun
from amberflo_sync.ledger import Ledger, RunStats, bound_text
from amberflo_sync.planning import BACKFILL, INCREMENTAL, Slice, plan_window
from amberflo_sync.reader import EventStream, WarehouseReader
from amberflo_sync.run_kinds import RunRules
from amberflo_sync.state import encode_cursor

log = logging.getLogger(__name__)

CUSTOMERS_LOCK = "customers"
IDENTIFY = "identify"


def identify_streams(reader: WarehouseReader, schemas: tuple[str, ...] | list[str]) -> list[EventStream]:
    """``<schema>.identifies`` of every source schema that has one."""
    streams = []
    for wanted in schemas:
        schema = reader.actual_schema(wanted)
        if schema is None:
            log.warning("source schema %r does not exist in the warehouse; skipping it", wanted)
            continue
        tables = reader.tables(schema)
        if "identifies" in tables:
            streams.append(EventStream(schema, tables["identifies"], IDENTIFY))
    return streams


def sync_identifies(
    stream: EventStream,
    *,
    reader: WarehouseReader,
    ledger: Ledger,
    writer: CustomerWriter,
    config: SyncConfig,
    run_id: str,
    rules: RunRules | None = None,
    dry_run: DryRun | None = None,
    full_resync: bool = False,
    lock_timeout: float = 3600.0,
) -> RunStats:
    """Bring Amberflo's customers up to date with one identifies table.

    The window is planned and recorded in the ledger like an events slice; the watermark moves when
    the ledger closes the plan, only if every customer write returned.

    :param full_resync: ignore the watermark and rebuild every customer from the whole table.
    :returns: counts: ``read`` rows, ``skipped`` (no ``user_id``), ``duplicates``, ``sent`` = rows
        applied to customer records, ``rejected`` = customers Amberflo refused; ``details`` holds
        customers created/updated/unchanged.
    """
    rules = rules or RunRules("manual", dry_run=dry_run is not None)
    statements_before = getattr(reader, "statements", 0)
    mark = ledger.watermark(stream.key)
    window = plan_window(reader, None if (mark is None or full_resync) else mark.value, stream, config)
    log.info("%s: reading identifies in (%s, %s]%s", stream.key, bound_text(window.lower, "beginning"),
             bound_text(window.upper, "end"), " [dry run]" if dry_run else "")
    mode = INCREMENTAL if rules.moves_watermarks else BACKFILL
    with ledger.recorded_plan(run_id, rules.label, [Slice(stream, mode, window)], stream=stream.key,
                              dry_run=dry_run is not None) as (_, stats):
        stats.window_lower = None if window.lower is None else encode_cursor(window.lower)
        stats.window_upper = None if window.upper is None else encode_cursor(window.upper)
        parts = []
        customers: set[str] = set()
        for chunk in reader.extract_window(stream, window):
            batch = identify_updates(chunk)
            stats.read += len(chunk)
            stats.skipped += batch.skipped
            stats.duplicates += batch.duplicates
            customers |= batch.customers
            parts.append(batch.updates)
            if len(parts) >= 8:  # keep memory bounded by the customers in the window, not its rows
                parts = [latest_updates(parts)]
        stats.sent = stats.read - stats.skipped - stats.duplicates
        stats.statements = getattr(reader, "statements", 0) - statements_before
        updates = group_updates(latest_updates(parts))
        if dry_run is not None:
            log.info("%s: %d rows → %d customers to check", stream.key, stats.read, len(customers))
            result = writer.write(updates, customers, dry_run_limit=dry_run.limit)
            dry_run.take([_json(body) for body in result.planned])
            stats.status = "dry_run"
            stats.details = {"customers_to_write": len(writer.plan(updates, customers)[0])}
            dry_run.finish(stream)
            return stats
        write_customers(stream.key, updates, customers, writer=writer, ledger=ledger, config=config,
                        run_id=run_id, stats=stats, lock_timeout=lock_timeout)
        stats.status = "success"
    return stats


def write_customers(run_key: str, updates: dict, customers: set[str], *, writer: CustomerWriter, ledger: Ledger,
                    config: SyncConfig, run_id: str, stats: RunStats, lock_timeout: float = 3600.0) -> None:
    """Write changed customers under the ``customers`` lock, and keep the refused ones' life cycle:
    customers Amberflo refused before are written again (their merged values are in the state, so
    the record is complete), those refused again count one more attempt, the others are resolved.
    """
    retry = {str(r["row_id"]) for r in ledger.open_rejected(run_key, [AMBERFLO_REJECTED_CUSTOMER])}
    log.info("%s: %d customers to check (%d refused before, tried again)", run_key, len(set(updates) | customers
                                                                                          | retry), len(retry))
    with writer.state.lock(CUSTOMERS_LOCK, holder=f"{run_id}:{run_key}", timeout=lock_timeout):
        result = writer.write(updates, customers | retry)
    stats.rejected = len(result.rejected)
    if result.rejected:
        stats.abandoned = len(ledger.record_rejected(run_key, result.rejected, run_id=run_id,
                                                     max_attempts=config.rejected_max_attempts,
                                                     retryable=[AMBERFLO_REJECTED_CUSTOMER]))
    refused_again = {str(r["id"]) for r in result.rejected}
    resolved = ledger.resolve_rejected(run_key, retry - refused_again, run_id=run_id,
                                       reasons=[AMBERFLO_REJECTED_CUSTOMER])
    stats.details = {**(stats.details or {}), **result.details()}
    if resolved:
        stats.details["rejected_resolved"] = resolved


def _json(body: dict) -> str:
    import orjson

    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS).decode()
