"""Identify sync: ``<source>.identifies`` → full Amberflo customer records.

Same window rules as the events sync (``uuid_ts`` cursor, overlap, watermark moved last). The
window's identify calls are collapsed per ``user_id`` (latest non-null value per field by event time)
chunk by chunk, merged over the stored customer state, and only customers whose record changed are
written (:class:`~amberflo_sync.customer_writer.CustomerWriter`), under the ``customers`` state lock
that the Engage sync takes too, so the two never write the same customer at the same time.
"""

from __future__ import annotations

import datetime as dt
import logging

from amberflo_sync.config import SyncConfig
from amberflo_sync.customer_writer import AMBERFLO_REJECTED_CUSTOMER, CustomerWriter
from amberflo_sync.customers import group_updates, identify_updates, latest_updates
from amberflo_sync.events_sync import DryRun, plan_window
from amberflo_sync.reader import EventStream, WarehouseReader
from amberflo_sync.state import RunStats, StateStore, encode_cursor, recorded_run

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
    state: StateStore,
    writer: CustomerWriter,
    config: SyncConfig,
    run_id: str,
    dry_run: DryRun | None = None,
    full_resync: bool = False,
    lock_timeout: float = 3600.0,
) -> RunStats:
    """Bring Amberflo's customers up to date with one identifies table.

    :param full_resync: ignore the watermark and rebuild every customer from the whole table.
    :returns: counts: ``read`` rows, ``skipped`` (no ``user_id``), ``duplicates``, ``sent`` = rows
        applied to customer records, ``rejected`` = customers Amberflo refused; ``details`` holds
        customers created/updated/unchanged.
    """
    stats = RunStats(run_id=run_id, stream=stream.key, started_at=dt.datetime.now(dt.timezone.utc))
    window = plan_window(reader, state, stream, config)
    if full_resync:
        window = type(window)(cursor=window.cursor, lower=None, upper=window.upper)
    stats.window_lower = None if window.lower is None else encode_cursor(window.lower)
    stats.window_upper = None if window.upper is None else encode_cursor(window.upper)
    log.info("%s: reading identifies in (%s, %s]%s", stream.key, stats.window_lower or "beginning",
             stats.window_upper or "end", " [dry run]" if dry_run else "")
    with recorded_run(state, stats, record=dry_run is None):
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
        retry = {
            str(r["row_id"]) for r in state.rejected_rows(stream.key)
            if r["reason"] == AMBERFLO_REJECTED_CUSTOMER and r["attempts"] < config.rejected_max_attempts
        }
        customers |= retry  # customers Amberflo refused before are tried again (they have no stored state)
        updates = group_updates(latest_updates(parts))
        log.info("%s: %d rows → %d customers to check", stream.key, stats.read, len(customers))
        if dry_run is not None:
            result = writer.write(updates, customers, dry_run_limit=dry_run.limit)
            dry_run.take([_json(body) for body in result.planned])
            stats.status = "dry_run"
            stats.details = {"customers_to_write": len(writer.plan(updates, customers)[0])}
            dry_run.finish(stream)
        else:
            with state.lock(CUSTOMERS_LOCK, holder=f"{run_id}:{stream.key}", timeout=lock_timeout):
                result = writer.write(updates, customers)
            stats.rejected = len(result.rejected)
            if result.rejected:
                state.record_rejected(stream.key, result.rejected)
            refused_again = {str(r["id"]) for r in result.rejected}
            state.resolve_rejected(stream.key, retry - refused_again, [AMBERFLO_REJECTED_CUSTOMER])
            stats.details = result.details()
            if window.upper is not None:
                state.set_watermark(stream.key, window.upper, run_id=run_id)
            stats.status = "success"
    return stats


def _json(body: dict) -> str:
    import orjson

    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS).decode()
