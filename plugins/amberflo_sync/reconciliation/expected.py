"""What the warehouse says should be billed: the records a sync would send, per meter × customer × hour.

The records are produced by the very path a backfill takes — :meth:`WarehouseReader.extract_window`
by event time, then :func:`~amberflo_sync.transform.to_meter_records` — so "expected" means *the
same bytes a sync sends*, not a re-implementation of the mapping. Rows the mapping rejects are not
expected; they are listed with their reason.

Event time is ``timestamp``, else ``received_at`` (``mapping.md``): each stream is read once by
``timestamp`` and, only when the table holds rows without one, once more by ``received_at`` for
exactly those rows. Rendered records are parsed back in bulk (Arrow's JSON reader over the rendered
buffer) and aggregated with an Arrow group-by: no Python loop per record.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson
import sqlalchemy as sa

from amberflo_sync.config import SyncConfig
from amberflo_sync.reader import EventStream, WarehouseReader, Window
from amberflo_sync.reconciliation.window import ReconciliationWindow
from amberflo_sync.segment import PAGE, SCREEN, find_column
from amberflo_sync.transform import to_meter_records

log = logging.getLogger(__name__)

#: The fields of a rendered record the reconciliation reads back (``dimensions`` only travel in the text).
_RECORD_SCHEMA = pa.schema([
    ("uniqueId", pa.large_string()),
    ("customerId", pa.large_string()),
    ("meterApiName", pa.large_string()),
    ("meterValue", pa.float64()),
    ("meterTimeInMillis", pa.int64()),
])
#: Columns of :attr:`ExpectedRecords.records`.
RECORD_COLUMNS = ("meter", "customer", "hour", "uniqueId", "value", "millis", "record")
#: Rejected row ids kept per stream and reason for the report (the counts are always complete).
REJECTED_SAMPLE = 20


@dataclass
class ExpectedRecords:
    """The warehouse side of a reconciliation.

    :ivar records: Arrow table, one row per record a sync would send in the window: ``meter``,
        ``customer``, ``hour`` (epoch seconds of the hour), ``uniqueId``, ``value``, ``millis``, and
        ``record`` (the exact JSON text sent) when read for a drill-down (``only_cells``).
    :ivar rejected: ``{(stream, reason): count}`` of rows the mapping rejects in the window.
    :ivar rejected_ids: a sample of their ids, ``{(stream, reason): [id, …]}``.
    :ivar meters: every meter a stream of the window maps to (``page``/``screen`` when those streams
        exist, plus every track meter seen), so meters billed but no longer expected are checked too.
    """

    records: pa.Table
    rejected: dict[tuple[str, str], int] = field(default_factory=dict)
    rejected_ids: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    meters: list[str] = field(default_factory=list)

    def cells(self) -> pd.DataFrame:
        """Expected SUM and COUNT per ``meter``, ``customer``, ``hour`` (a small DataFrame)."""
        if self.records.num_rows == 0:
            return pd.DataFrame({"meter": pd.Series(dtype=object), "customer": pd.Series(dtype=object),
                                 "hour": pd.Series(dtype="int64"), "expected_sum": pd.Series(dtype="float64"),
                                 "expected_count": pd.Series(dtype="int64")})
        grouped = self.records.group_by(["meter", "customer", "hour"]).aggregate(
            [("value", "sum"), ("value", "count")])
        frame = grouped.to_pandas()
        return frame.rename(columns={"value_sum": "expected_sum", "value_count": "expected_count"})[
            ["meter", "customer", "hour", "expected_sum", "expected_count"]]

    def in_cells(self, cells: pd.DataFrame) -> pd.DataFrame:
        """The expected records of the given cells (``meter``, ``customer``, ``hour``) as a DataFrame
        (with their ``record`` text when this was read with ``only_cells``)."""
        if cells.empty or self.records.num_rows == 0:
            return pd.DataFrame(columns=list(RECORD_COLUMNS))
        return self.records.join(_cell_keys(cells), keys=["meter", "customer", "hour"], join_type="inner").to_pandas()

    def contains_ids(self, ids: Sequence[str]) -> list[bool]:
        """Whether each id is the ``uniqueId`` of an expected record (of any cell of the window)."""
        if not ids:
            return []
        return pc.is_in(pa.array(list(ids), pa.large_string()), value_set=self.records["uniqueId"]).to_pylist()


def read_expected(
    reader: WarehouseReader,
    config: SyncConfig,
    window: ReconciliationWindow,
    *,
    meters: Sequence[str] | None = None,
    only_cells: pd.DataFrame | None = None,
) -> ExpectedRecords:
    """Every record a sync sends whose event time lies in the window, from every configured stream.

    Memory stays small for any window: the records' JSON text is dropped unless ``only_cells`` asks
    for it, and then only the records of those cells are kept (a second pass for the drill-down).

    :param meters: keep only these meters (default: all).
    :param only_cells: ``meter``, ``customer``, ``hour`` of the cells whose records (with their
        ``record`` text) are wanted; default: every record, without the text.
    """
    wanted = set(meters) if meters else None
    keys = None if only_cells is None else _cell_keys(only_cells)
    start_ms, end_ms = window.start_seconds * 1000, window.end_seconds * 1000
    tables: list[pa.Table] = []
    rejected: Counter[tuple[str, str]] = Counter()
    rejected_ids: dict[tuple[str, str], list[str]] = {}
    known_meters: set[str] = set()
    streams = reader.event_streams(config.source_schemas, config.events)
    for stream in streams:
        if stream.kind in (PAGE, SCREEN):
            known_meters.add(stream.kind)
        for chunk in _chunks_in_window(reader, stream, window):
            batch = to_meter_records(chunk, kind=stream.kind, table=stream.table)
            if batch.rejected_count:
                for row_id, reason in zip(batch.rejected["id"].tolist(), batch.rejected["reason"].tolist()):
                    rejected[(stream.key, reason)] += 1
                    sample = rejected_ids.setdefault((stream.key, reason), [])
                    if len(sample) < REJECTED_SAMPLE:
                        sample.append(str(row_id))
            if not len(batch.rendered):
                continue
            table = _parse_records(batch.rendered.arrow, with_text=keys is not None)
            millis = table["millis"]
            keep = pc.and_(pc.greater_equal(millis, start_ms), pc.less(millis, end_ms))
            table = table.filter(keep)
            known_meters.update(pc.unique(table["meter"]).to_pylist())
            if wanted is not None:
                table = table.filter(pc.is_in(table["meter"], value_set=pa.array(sorted(wanted), pa.large_string())))
            if keys is not None:
                table = table.join(keys, keys=["meter", "customer", "hour"], join_type="inner")
            if table.num_rows:
                tables.append(table)
    records = pa.concat_tables(tables) if tables else _empty_records(with_text=keys is not None)
    chosen = sorted(known_meters if wanted is None else wanted)
    log.info("expected from the warehouse: %d records over %d streams in %s; rejected rows: %d",
             records.num_rows, len(streams), window.describe(), sum(rejected.values()))
    return ExpectedRecords(records, dict(rejected), rejected_ids, chosen)


def _chunks_in_window(reader: WarehouseReader, stream: EventStream, window: ReconciliationWindow) -> Iterator[pd.DataFrame]:
    """Rows whose event time may lie in the window: by ``timestamp`` (a second of margin below, the
    exact bound is applied to the rendered records), then rows without a ``timestamp`` by ``received_at``."""
    columns = reader.columns(stream.schema, stream.table)
    names = [c.name for c in columns]
    timestamp, received_at = find_column(names, "timestamp"), find_column(names, "received_at")
    lower = window.start - dt.timedelta(seconds=1)
    first = timestamp or received_at
    if first is None:
        log.warning("%s has neither timestamp nor received_at: no event time, nothing expected", stream.key)
        return
    yield from reader.extract_window(stream, Window(first, _like(columns, first, lower), _like(columns, first, window.end),
                                                    include_null=False))
    if timestamp is None or received_at is None:
        return
    if not _has_untimed_rows(reader, stream, timestamp, received_at, _like(columns, received_at, lower),
                             _like(columns, received_at, window.end)):
        return
    for chunk in reader.extract_window(stream, Window(received_at, _like(columns, received_at, lower),
                                                      _like(columns, received_at, window.end), include_null=False)):
        untimed = chunk[chunk[timestamp].isna()]
        if len(untimed):
            yield untimed


def _has_untimed_rows(reader: WarehouseReader, stream: EventStream, timestamp: str, received_at: str,
                      lower: dt.datetime, upper: dt.datetime) -> bool:
    quote = reader.engine.dialect.identifier_preparer.quote_identifier
    sql = (f"SELECT COUNT(*) FROM {quote(stream.schema)}.{quote(stream.table)} "
           f"WHERE {quote(timestamp)} IS NULL AND {quote(received_at)} > :lower AND {quote(received_at)} <= :upper")
    with reader.engine.connect() as conn:
        return bool(conn.execute(sa.text(sql), {"lower": lower, "upper": upper}).scalar())


def _like(columns: Sequence, name: str, value: dt.datetime) -> dt.datetime:
    """An aware UTC bound for a zone-aware column, a naive UTC one for a naive column."""
    info = next((c for c in columns if c.name == name), None)
    value = value.astimezone(dt.timezone.utc)
    return value if info is None or info.has_time_zone else value.replace(tzinfo=None)


def _cell_keys(cells: pd.DataFrame) -> pa.Table:
    return pa.table({"meter": pa.array(cells["meter"].tolist(), pa.large_string()),
                     "customer": pa.array(cells["customer"].tolist(), pa.large_string()),
                     "hour": pa.array(cells["hour"].astype("int64").tolist(), pa.int64())})


def _parse_records(terminated: pa.Array, *, with_text: bool) -> pa.Table:
    """Rendered records (each followed by ``,``) → an Arrow table of :data:`RECORD_COLUMNS`.

    The rendered buffer is turned into newline-delimited JSON with one bytes replace: a record ends
    with ``}`` and the next starts with ``{"uniqueId":``, and that sequence cannot occur inside a JSON
    string (its quote would be escaped). Arrow's JSON reader then parses every record in C++.
    """
    n = len(terminated)
    data = terminated.buffers()[2]
    raw_offsets = terminated.buffers()[1]
    bounds = np.frombuffer(raw_offsets, dtype=np.int64)[terminated.offset : terminated.offset + n + 1]
    body = memoryview(data)[int(bounds[0]) : int(bounds[-1]) - 1].tobytes()
    ndjson = body.replace(b'},{"uniqueId":', b'}\n{"uniqueId":')
    parsed = pajson.read_json(
        io.BytesIO(ndjson),
        read_options=pajson.ReadOptions(block_size=max(1 << 20, len(ndjson) + 1)),
        parse_options=pajson.ParseOptions(explicit_schema=_RECORD_SCHEMA, unexpected_field_behavior="ignore"),
    )
    if parsed.num_rows != n:
        raise AssertionError(f"parsed {parsed.num_rows} of {n} rendered records")
    millis = parsed["meterTimeInMillis"].combine_chunks()
    hour = pc.multiply(pc.divide(millis, 3_600_000), 3600)  # integer division: epoch seconds of the hour
    columns = {
        "meter": parsed["meterApiName"].combine_chunks(),
        "customer": parsed["customerId"].combine_chunks(),
        "hour": hour,
        "uniqueId": parsed["uniqueId"].combine_chunks(),
        "value": parsed["meterValue"].combine_chunks(),
        "millis": millis,
    }
    if with_text:
        columns["record"] = pc.utf8_slice_codeunits(terminated, 0, -1)
    return pa.table(columns)


def _empty_records(*, with_text: bool = False) -> pa.Table:
    columns = {
        "meter": pa.array([], pa.large_string()), "customer": pa.array([], pa.large_string()),
        "hour": pa.array([], pa.int64()), "uniqueId": pa.array([], pa.large_string()),
        "value": pa.array([], pa.float64()), "millis": pa.array([], pa.int64()),
    }
    if with_text:
        columns["record"] = pa.array([], pa.large_string())
    return pa.table(columns)
