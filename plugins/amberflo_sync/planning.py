"""Fan-out and backfill planning: split a stream's window into slices that run as mapped tasks.

* **Incremental runs** own the cursor window ``(watermark − overlap, MAX(cursor)]``. A window holding
  more than ``fan_out.slice_rows`` rows is cut into equal cursor-time slices; each slice runs as its own
  mapped task (retried alone when it fails); the ledger (:meth:`amberflo_sync.ledger.Ledger.close_plan`)
  moves a stream's watermark only as far as the prefix of its slices that all succeeded reaches.
* **Backfills** re-send the events whose *event time* (``timestamp``) lies in an interval — the run's
  data interval, or ``start``/``end`` Params — from every stream, and never move a watermark. Records
  are deterministic, so re-sending billed events adds nothing in Amberflo.

Slices travel through XCom as JSON dicts (:meth:`Slice.to_dict`), each with the id of the plan that
fixed its bounds.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import logging

from amberflo_sync.config import SyncConfig
from amberflo_sync.reader import EventStream, WarehouseReader, Window
from amberflo_sync.state import decode_cursor, encode_cursor

log = logging.getLogger(__name__)

INCREMENTAL, BACKFILL = "incremental", "backfill"
#: Amberflo accepts records up to 60 days old; older backfills need Amberflo support.
AMBERFLO_HISTORY = dt.timedelta(days=60)


class BackfillRefused(ValueError):
    """A backfill interval Amberflo would not accept (older than its 60-day horizon)."""


@dataclass(frozen=True)
class Slice:
    """One unit of work: rows of ``stream`` whose ``window.cursor`` lies in ``(lower, upper]``."""

    stream: EventStream
    mode: str
    window: Window
    index: int = 0
    count: int = 1
    plan_id: str | None = None

    @property
    def key(self) -> str:
        return f"{self.stream.key}#{self.index + 1}/{self.count}"

    def to_dict(self) -> dict[str, Any]:
        w = self.window
        return {
            "key": self.key,
            "schema": self.stream.schema,
            "table": self.stream.table,
            "kind": self.stream.kind,
            "mode": self.mode,
            "cursor": w.cursor,
            "lower": None if w.lower is None else encode_cursor(w.lower),
            "upper": None if w.upper is None else encode_cursor(w.upper),
            "include_null": w.include_null,
            "index": self.index,
            "count": self.count,
            "plan_id": self.plan_id,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Slice:
        window = Window(
            cursor=data["cursor"],
            lower=None if data["lower"] is None else decode_cursor(data["lower"]),
            upper=None if data["upper"] is None else decode_cursor(data["upper"]),
            include_null=bool(data["include_null"]),
        )
        stream = EventStream(data["schema"], data["table"], data["kind"])
        return cls(stream, data["mode"], window, int(data["index"]), int(data["count"]), data.get("plan_id"))

    def bound_to(self, plan_id: str) -> Slice:
        return Slice(self.stream, self.mode, self.window, self.index, self.count, plan_id)


def plan_window(reader: WarehouseReader, watermark: Any, stream: EventStream, config: SyncConfig) -> Window:
    """The cursor window a run owns for ``stream``: ``(watermark − overlap, MAX(cursor) now]``.

    :param watermark: the stream's watermark value (None = never synced: from the beginning).
    """
    cursor = reader.cursor_column(stream, config.cursor_column)
    if cursor is None:
        log.warning(
            "%s has no %r column: reading the whole table (identical re-sends are de-duplicated by Amberflo)",
            stream.key,
            config.cursor_column,
        )
        return Window(cursor=None)
    upper = reader.max_cursor(stream, cursor.name)
    lower = None if watermark is None else watermark - config.overlap
    return Window(cursor=cursor.name, lower=lower, upper=upper)


def plan_incremental(reader: WarehouseReader, watermark: Any, stream: EventStream, config: SyncConfig) -> list[Slice]:
    """The slices of this run's cursor window for ``stream`` (one when it is small), from ONE
    warehouse statement: the window's row count and its cursor's MIN and MAX together."""
    cursor = reader.cursor_column(stream, config.cursor_column)
    if cursor is None:
        return [Slice(stream, INCREMENTAL, plan_window(reader, watermark, stream, config))]
    lower = None if watermark is None else watermark - config.overlap
    rows, first, upper = reader.window_stats(stream, cursor.name, lower, include_null=True)
    window = Window(cursor=cursor.name, lower=lower, upper=upper)
    if window.upper is None:
        return [Slice(stream, INCREMENTAL, window)]
    pieces = _pieces(rows, config)
    lower = window.lower if window.lower is not None else first
    if pieces == 1 or lower is None:
        return [Slice(stream, INCREMENTAL, window)]
    bounds = split_range(lower, window.upper, pieces)
    slices = []
    for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        # the first slice keeps the window's own lower bound (None = from the beginning) and the
        # rows whose cursor is NULL; the last one ends exactly at the window's upper bound
        lo = window.lower if i == 0 else lo
        slices.append(Slice(stream, INCREMENTAL, Window(window.cursor, lo, hi, include_null=i == 0), i, pieces))
    return slices


def plan_backfill(
    reader: WarehouseReader, stream: EventStream, start: dt.datetime, end: dt.datetime, config: SyncConfig
) -> list[Slice]:
    """Slices re-sending the events of ``stream`` whose event time lies in ``(start, end]``."""
    columns = [c.name for c in reader.columns(stream.schema, stream.table)]
    event_time = next((c for c in columns if c.lower() == "timestamp"), None) or next(
        (c for c in columns if c.lower() == "received_at"), None
    )
    if event_time is None:
        return []
    window = Window(event_time, _like_column(reader, stream, event_time, start), _like_column(reader, stream, event_time, end),
                    include_null=False)
    rows, _, _ = reader.count_window(stream, window)
    if rows == 0:
        return []
    pieces = _pieces(rows, config)
    bounds = split_range(window.lower, window.upper, pieces)
    return [
        Slice(stream, BACKFILL, Window(event_time, lo, hi, include_null=False), i, pieces)
        for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:]))
    ]


def check_backfill_interval(start: dt.datetime, end: dt.datetime, *, now: dt.datetime | None = None,
                            allow_older: bool = False) -> None:
    """Refuse intervals Amberflo would not take (or nonsense ones) with a message that says why."""
    if end <= start:
        raise BackfillRefused(f"backfill interval is empty: start {start.isoformat()} is not before end {end.isoformat()}")
    now = now or dt.datetime.now(dt.timezone.utc)
    horizon = now - AMBERFLO_HISTORY
    if start < horizon and not allow_older:
        raise BackfillRefused(
            f"backfill interval starts {start.isoformat()}, more than 60 days ago ({horizon.date()}): Amberflo "
            "accepts records up to 60 days old, older ones need Amberflo support. Set the Param "
            "allow_older_than_60_days=true once Amberflo has agreed."
        )


def split_range(lower: Any, upper: Any, pieces: int) -> list[Any]:
    """``pieces + 1`` increasing boundaries from ``lower`` to ``upper`` (datetimes or numbers)."""
    span = upper - lower
    bounds = [lower + span * i / pieces if not isinstance(span, int) else lower + span * i // pieces
              for i in range(pieces)]
    return bounds + [upper]


def work_units(slices: Sequence[Slice], max_map_length: int = 1024) -> list[list[dict[str, Any]]]:
    """Group slices so that the mapped task count stays under ``[core] max_map_length``."""
    per_unit = max(1, math.ceil(len(slices) / max_map_length))
    return [[s.to_dict() for s in slices[i : i + per_unit]] for i in range(0, len(slices), per_unit)]


def _pieces(rows: int, config: SyncConfig) -> int:
    return max(1, min(config.fan_out.max_slices, math.ceil(rows / max(1, config.fan_out.slice_rows))))


def _like_column(reader: WarehouseReader, stream: EventStream, column: str, value: dt.datetime) -> dt.datetime:
    """Bind an aware UTC datetime to a zone-aware column and a naive UTC one to a naive column."""
    info = next((c for c in reader.columns(stream.schema, stream.table) if c.name == column), None)
    value = value.astimezone(dt.timezone.utc)
    return value if info is None or info.has_time_zone else value.replace(tzinfo=None)
