"""Events sync: one stream (pages, screens or a track table) from the warehouse into Amberflo.

``extract_window()`` → ``to_meter_records()`` → ``ingest_batches()``, with the bookkeeping rules that
make billing exactly-once:

* the window is ``(watermark - overlap, MAX(cursor) at start]`` on the load-time cursor
  (``uuid_ts``), so late-loaded rows are caught and in-flight loads are re-read by the next run;
* records are deterministic, so re-reading the overlap re-sends identical bytes that Amberflo drops;
* the watermark moves to the window's upper bound only after every record in it was accepted
  (rejected rows are stored with their reason); a run that fails moves nothing.

No Airflow import here: the DAG task (``amberflo_sync.tasks``) only builds the parts and calls in.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amberflo_sync.config import SyncConfig
from amberflo_sync.reader import EventStream, WarehouseReader, Window
from amberflo_sync.state import RunStats, StateStore, encode_cursor
from amberflo_sync.transform import to_meter_records

log = logging.getLogger(__name__)

#: Sends rendered records; returns how many were accepted. ``AmberfloClient.ingest_records`` fits.
Sender = Callable[[Sequence[str]], int]


@dataclass
class DryRun:
    """Send nothing, move nothing: keep the first ``limit`` records, log them, write them to ``path``."""

    limit: int = 20
    path: Path | None = None
    records: list[str] = field(default_factory=list)

    def take(self, records: Sequence[str]) -> None:
        room = self.limit - len(self.records)
        if room > 0:
            self.records.extend(records[:room])

    def finish(self, stream: EventStream) -> None:
        for record in self.records:
            log.info("dry run %s: %s", stream.key, record)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("".join(r + "\n" for r in self.records), encoding="utf-8")
            log.info("dry run %s: wrote %d records to %s", stream.key, len(self.records), self.path)


def plan_window(reader: WarehouseReader, state: StateStore, stream: EventStream, config: SyncConfig) -> Window:
    """The cursor window this run owns for ``stream`` (see the module docstring)."""
    cursor = reader.cursor_column(stream, config.cursor_column)
    if cursor is None:
        log.warning(
            "%s has no %r column: reading the whole table (identical re-sends are de-duplicated by Amberflo)",
            stream.key,
            config.cursor_column,
        )
        return Window(cursor=None)
    upper = reader.max_cursor(stream, cursor.name)
    watermark = state.get_watermark(stream.key)
    lower = None if watermark is None else watermark.value - config.overlap
    return Window(cursor=cursor.name, lower=lower, upper=upper)


def sync_stream(
    stream: EventStream,
    *,
    reader: WarehouseReader,
    state: StateStore,
    send: Sender,
    config: SyncConfig,
    run_id: str,
    dry_run: DryRun | None = None,
) -> RunStats:
    """Bill one stream's window into Amberflo and record what happened.

    :param send: callable that ingests a sequence of rendered records (batched by the client).
    :param dry_run: when given, nothing is sent and no state is written.
    :returns: the run's counts; ``status`` is ``success`` or ``dry_run``.
    :raises Exception: whatever stopped the run, after recording it as ``failed`` (watermark unmoved).
    """
    started = time.monotonic()
    stats = RunStats(run_id=run_id, stream=stream.key, started_at=dt.datetime.now(dt.timezone.utc))
    window = plan_window(reader, state, stream, config)
    stats.window_lower = None if window.lower is None else encode_cursor(window.lower)
    stats.window_upper = None if window.upper is None else encode_cursor(window.upper)
    log.info(
        "%s: reading %s in (%s, %s]%s",
        stream.key,
        window.cursor or "the whole table",
        stats.window_lower or "beginning",
        stats.window_upper or "end",
        " [dry run: nothing is sent]" if dry_run else "",
    )
    last_progress = started
    try:
        for chunk in reader.extract_window(stream, window):
            batch = to_meter_records(chunk, kind=stream.kind, table=stream.table)
            stats.read += len(chunk)
            stats.duplicates += batch.duplicates
            stats.rejected += batch.rejected_count
            if dry_run is not None:
                dry_run.take(batch.records)
                stats.sent += len(batch.records)
            else:
                if batch.rejected_count:
                    state.record_rejected(stream.key, batch.rejected.to_dict("records"))
                stats.sent += send(batch.records)
            now = time.monotonic()
            if now - last_progress >= config.progress_every_seconds:
                last_progress = now
                log.info(
                    "%s: %d rows so far (%s sent), %.0f rows/s",
                    stream.key,
                    stats.read,
                    stats.sent,
                    stats.read / max(now - started, 1e-9),
                )
        if not stats.balanced:
            raise RuntimeError(f"{stream.key}: row accounting does not balance: {stats}")
    except BaseException as exc:
        stats.status = "failed"
        stats.error = f"{type(exc).__name__}: {exc}"[:2000]
        _finish(stats, started)
        if dry_run is None:
            state.record_run(stats)
        log.error("%s", stats.summary())
        raise
    if dry_run is not None:
        stats.status = "dry_run"
        dry_run.finish(stream)
    else:
        if window.upper is not None:
            state.set_watermark(stream.key, _max_cursor(state, stream, window.upper), run_id=run_id)
        stats.status = "success"
    _finish(stats, started)
    if dry_run is None:
        state.record_run(stats)
    log.info("%s", stats.summary())
    return stats


def _max_cursor(state: StateStore, stream: EventStream, upper: Any) -> Any:
    """Never move a watermark backwards (e.g. rows deleted from the warehouse)."""
    current = state.get_watermark(stream.key)
    if current is None:
        return upper
    try:
        return max(current.value, upper)
    except TypeError:
        return upper


def _finish(stats: RunStats, started: float) -> None:
    stats.seconds = time.monotonic() - started
    stats.finished_at = dt.datetime.now(dt.timezone.utc)


def stats_to_dict(stats: RunStats) -> dict[str, Any]:
    """JSON-safe dict of a run (XCom-friendly)."""
    out = {}
    for key, value in stats.__dict__.items():
        out[key] = value.isoformat() if isinstance(value, dt.datetime) else value
    return json.loads(json.dumps(out, default=str))
