"""The peer: Amberflo's official Python SDK (``amberflo-metering-python``) fed the same rows.

What a team would write with the SDK: read the window (the same reader, the same SQL, the same rows),
map each row to a record the way ``shared/spec/mapping.md`` says — in Python, one row at a time, with
the project's single-value sanitizer :func:`~amberflo_sync.formatting.format_value` — and hand it to
the SDK's threaded producer (``create_ingest_client`` with default settings: 2 threads, batches of 100
or whatever arrived within 0.5 s, a 100,000-item queue). ``meter()`` returns False when the queue is
full; the caller then waits a millisecond and offers the record again, as the SDK's docstring asks,
so nothing is dropped on our side. ``shutdown()`` waits for the queue to drain. The SDK has no URL
setting: its ``IngestSession.root_url`` class attribute is pointed at the sink.

Before timing starts nothing is checked; afterwards the first records of the first chunk are compared
with the project's own rendering of the same rows (same meter, value, time, customer, dimensions), so
the ratio compares equal work. Only records the sink received count.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import pandas as pd

from amberflo_sync.config import SyncConfig
from amberflo_sync.formatting import format_value
from amberflo_sync.reader import WarehouseReader, Window, create_engine
from amberflo_sync.segment import TRACK, find_column, property_columns
from amberflo_sync.transform import DUP_RANK_COLUMN, to_meter_records

SPOT_CHECK_RECORDS = 1_000


def _text(value: Any) -> str | None:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    text = value if isinstance(value, str) else str(value)
    return text if text.strip() else None


def _millis(row: dict[str, Any], columns: dict[str, str | None]) -> int | None:
    for name in ("timestamp", "received_at"):
        column = columns[name]
        value = row.get(column) if column else None
        if value is not None and value is not pd.NaT and not (isinstance(value, float) and math.isnan(value)):
            stamp = pd.Timestamp(value)
            stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
            return stamp.value // 1_000_000
    return None


def _meter_value(value: Any) -> float | None:
    """mapping.md: the ``value`` property when set (a finite number), else 1; None = reject."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return 1.0
    if isinstance(value, bool):
        return None
    try:
        number = float(str(value).strip()) if isinstance(value, str) else float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def map_row(row: dict[str, Any], columns: dict[str, str | None], dimension_columns: list[tuple[str, str]],
            kind: str, table: str) -> dict[str, Any] | None:
    """One warehouse row → keyword arguments of the SDK's ``meter()``, or None when rejected."""
    unique_id = _text(row.get(columns["id"])) if columns["id"] else None
    customer = None
    for name in ("user_id", "anonymous_id"):
        if customer is None and columns[name]:
            customer = _text(row.get(columns[name]))
    millis = _millis(row, columns)
    value = _meter_value(row.get(columns["value"])) if kind == TRACK and columns["value"] else 1.0
    if unique_id is None or customer is None or millis is None or millis <= 0 or value is None:
        return None
    if kind == TRACK:
        name = _text(row.get(columns["event_text"])) if columns["event_text"] else None
        name = name or (_text(row.get(columns["event"])) if columns["event"] else None) or table
    else:
        name = kind
    dimensions = {}
    for key, column in dimension_columns:
        text = format_value(row.get(column))
        if text is not None:
            dimensions[key] = text
    return {"meter_api_name": name, "meter_value": value, "meter_time_in_millis": millis,
            "customer_id": customer, "dimensions": dimensions or None, "unique_id": unique_id}


def _spot_check(frame: pd.DataFrame, produced: list[dict[str, Any]], kind: str, table: str) -> None:
    ours = [json.loads(r) for r in to_meter_records(frame, kind=kind, table=table).records[:SPOT_CHECK_RECORDS]]
    theirs = [{"uniqueId": p["unique_id"], "customerId": p["customer_id"], "meterApiName": p["meter_api_name"],
               "meterValue": p["meter_value"], "meterTimeInMillis": p["meter_time_in_millis"],
               **({"dimensions": p["dimensions"]} if p["dimensions"] else {})} for p in produced[:len(ours)]]
    if ours != theirs:
        bad = next(i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b)
        raise AssertionError(f"the peer maps differently from the sync at record {bad}: {theirs[bad]} != {ours[bad]}")


def run_sdk_peer(warehouse_url: str, sink_url: str, api_key: str, schema: str) -> dict[str, Any]:
    """Send every event table of ``schema`` through the SDK; returns rows read and seconds."""
    from metering.ingest import create_ingest_client
    from metering.session.ingest_session import IngestSession

    IngestSession.root_url = sink_url  # the SDK posts to root_url + "/ingest/"
    config = SyncConfig(source_schemas=(schema,))
    reader = WarehouseReader(create_engine(warehouse_url, read_only=True), chunk_rows=config.chunk_rows)
    streams = reader.event_streams(config.source_schemas, config.events)
    windows = {s.key: Window(config.cursor_column, upper=reader.max_cursor(s, config.cursor_column)) for s in streams}
    rows_read = offered = full_waits = 0
    checks: list[tuple[pd.DataFrame, list[dict[str, Any]], str, str]] = []
    started = time.perf_counter()
    producer = create_ingest_client(api_key=api_key)
    for stream in streams:
        seen: set[str] = set()
        for frame in reader.extract_window(stream, windows[stream.key]):
            names = list(frame.columns)
            columns = {n: find_column(names, n) for n in
                       ("id", "user_id", "anonymous_id", "timestamp", "received_at", "value", "event_text", "event")}
            keyed: dict[str, str] = {}
            for column in property_columns([n for n in names if n != DUP_RANK_COLUMN],
                                           exclude=("value",) if stream.kind == TRACK else ()):
                keyed.setdefault(column.lower(), column)
            dimension_columns = sorted(keyed.items())
            produced = []
            for row in frame.to_dict("records"):
                rows_read += 1
                rank = row.get(DUP_RANK_COLUMN, 1)
                unique_id = row.get(columns["id"]) if columns["id"] else None
                if (rank is not None and rank > 1) or (unique_id is not None and unique_id in seen):
                    continue
                if unique_id is not None:
                    seen.add(unique_id)
                payload = map_row(row, columns, dimension_columns, stream.kind, stream.table)
                if payload is None:
                    continue
                while not producer.meter(**payload):
                    full_waits += 1
                    time.sleep(0.001)
                offered += 1
                if not checks and len(produced) < SPOT_CHECK_RECORDS:
                    produced.append(payload)
            if not checks:
                checks.append((frame, produced, stream.kind, stream.table))
    producer.shutdown()
    seconds = time.perf_counter() - started
    reader.engine.dispose()
    for frame, produced, kind, table in checks:
        _spot_check(frame, produced, kind, table)
    return {"seconds": seconds, "rows": rows_read, "offered": offered, "queue_full_waits": full_waits}
