"""Warehouse reader: discover Segment tables at run time and stream a cursor window in chunks.

Works on any SQLAlchemy URL. Discovery reads ``information_schema`` directly (portable across
PostgreSQL, DuckDB, Snowflake, Redshift, BigQuery; SQLAlchemy reflection is broken on
duckdb-engine 0.17 + DuckDB 2.0). Every identifier that comes from the warehouse is quoted by the
dialect's own preparer, so table names with quotes, semicolons or upper-case letters are safe.

Rows stream in chunks, so memory stays flat whatever the window, and never as Python tuples where the
driver offers something better:

* DuckDB: its Arrow record-batch reader; the engine's own memory is capped while it reads
  (:data:`DUCKDB_MEMORY_LIMIT`, spilling to disk beyond it), and copies of an ``id`` are ranked over a
  narrow projection joined back by ``rowid`` instead of a window over whole rows (which would hold
  the entire window in memory).
* PostgreSQL (psycopg2): ``COPY (SELECT …) TO STDOUT (FORMAT csv)`` parsed by pyarrow's streaming
  CSV reader with every column's type fixed from ``information_schema`` — the same values the
  driver would have built, at a fraction of the cost. Tables with a type the CSV path does not
  handle exactly use the generic path.
* Everything else: a server-side cursor (``stream_results``) through SQLAlchemy.
"""

from __future__ import annotations

import datetime as dt
import decimal
import logging
import os
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Callable

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from amberflo_sync.config import EventsConfig
from amberflo_sync.segment import NON_EVENT_TABLES, PAGE, SCREEN, TRACK, find_column
from amberflo_sync.transform import DUP_RANK_COLUMN

log = logging.getLogger(__name__)

#: DuckDB memory cap while the reader streams a window: enough for its scans and the duplicate-id
#: aggregate of a typical window, so the task's memory does not grow with the window (DuckDB spills
#: what does not fit to its temp directory).
DUCKDB_MEMORY_LIMIT = "128MB"

#: PostgreSQL types the COPY path reads exactly as psycopg2 would (``information_schema`` spelling)
#: and the Arrow type they are parsed into; ``numeric`` is parsed as text and becomes ``Decimal``.
_PG_ARROW_TYPES: dict[str, pa.DataType] = {
    "text": pa.string(),
    "character varying": pa.string(),
    "character": pa.string(),
    "uuid": pa.string(),
    "bigint": pa.int64(),
    "integer": pa.int64(),
    "smallint": pa.int64(),
    "double precision": pa.float64(),
    "real": pa.float64(),
    "boolean": pa.bool_(),
    "timestamp with time zone": pa.timestamp("us", tz="UTC"),
    "timestamp without time zone": pa.timestamp("us"),
    "numeric": pa.string(),
}
_PG_COPY_BLOCK_BYTES = 1 << 20


@dataclass(frozen=True)
class Column:
    """One warehouse column as ``information_schema`` reports it."""

    name: str
    data_type: str

    @property
    def has_time_zone(self) -> bool:
        t = self.data_type.upper()
        return "WITH TIME ZONE" in t or "TIMESTAMPTZ" in t or "TIMESTAMP_TZ" in t or t == "TIMESTAMP_LTZ"


@dataclass(frozen=True)
class EventStream:
    """One billable table: ``<schema>.<table>`` and what kind of Segment call its rows are."""

    schema: str
    table: str
    kind: str

    @property
    def key(self) -> str:
        """Stable, case-insensitive name used for watermarks and run history."""
        return f"{self.schema}.{self.table}".lower()


@dataclass(frozen=True)
class Window:
    """Rows whose cursor lies in ``(lower, upper]``; ``lower=None`` means from the beginning.

    Rows whose cursor is NULL are included unless ``include_null`` is False (they cannot be placed
    in time; re-sending them is absorbed by Amberflo's de-duplication, losing them would lose
    revenue). When a window is cut into slices, only the first slice includes them.
    """

    cursor: str | None
    lower: Any = None
    upper: Any = None
    include_null: bool = True


def create_engine(url: str, *, read_only: bool = False) -> Engine:
    """An engine for ``url``; a DuckDB file opened for reading only when ``read_only`` (several
    processes may then read it at once)."""
    connect_args: dict[str, Any] = {}
    if url.startswith("duckdb") and read_only:
        connect_args["read_only"] = True
    return sa.create_engine(url, connect_args=connect_args, pool_pre_ping=not url.startswith("duckdb"))


class WarehouseReader:
    """Reads Segment tables from one warehouse.

    :param engine: SQLAlchemy engine of the warehouse.
    :param chunk_rows: rows per DataFrame yielded by :meth:`extract_window`.
    """

    def __init__(self, engine: Engine, *, chunk_rows: int = 50_000) -> None:
        self.engine = engine
        self.chunk_rows = chunk_rows
        self._quote: Callable[[str], str] = engine.dialect.identifier_preparer.quote_identifier
        self._is_duckdb = engine.dialect.name == "duckdb"

    # -- discovery ------------------------------------------------------------------------------
    def tables(self, schema: str) -> dict[str, str]:
        """Base tables of ``schema`` as ``{lower-case name: actual name}`` (empty if no schema)."""
        sql = sa.text(
            "SELECT table_name FROM information_schema.tables "
            "WHERE lower(table_schema) = :schema AND table_type IN ('BASE TABLE', 'TABLE')"
        )
        with self.engine.connect() as conn:
            names = [r[0] for r in conn.execute(sql, {"schema": schema.lower()})]
        return {name.lower(): name for name in sorted(names)}

    def columns(self, schema: str, table: str) -> list[Column]:
        """Columns of ``schema.table`` in ordinal order (empty when the table does not exist)."""
        sql = sa.text(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE lower(table_schema) = :schema AND table_name = :table ORDER BY ordinal_position"
        )
        with self.engine.connect() as conn:
            rows = conn.execute(sql, {"schema": schema.lower(), "table": table}).fetchall()
        return [Column(str(name), str(data_type)) for name, data_type in rows]

    def actual_schema(self, schema: str) -> str | None:
        """The schema's spelling in the warehouse (``PROD`` on Snowflake), or None if it is absent."""
        sql = sa.text("SELECT schema_name FROM information_schema.schemata WHERE lower(schema_name) = :schema")
        with self.engine.connect() as conn:
            row = conn.execute(sql, {"schema": schema.lower()}).first()
        return None if row is None else str(row[0])

    def event_streams(self, schemas: tuple[str, ...] | list[str], events: EventsConfig) -> list[EventStream]:
        """Every billable stream in the source schemas: pages, screens and each track event table
        that passes the include/exclude lists. Missing schemas and tables are simply absent."""
        streams: list[EventStream] = []
        for wanted in schemas:
            schema = self.actual_schema(wanted)
            if schema is None:
                log.warning("source schema %r does not exist in the warehouse; skipping it", wanted)
                continue
            tables = self.tables(schema)
            if events.pages and "pages" in tables:
                streams.append(EventStream(schema, tables["pages"], PAGE))
            if events.screens and "screens" in tables:
                streams.append(EventStream(schema, tables["screens"], SCREEN))
            if events.tracks:
                for lower, actual in tables.items():
                    if lower not in NON_EVENT_TABLES and events.wants_event_table(lower):
                        streams.append(EventStream(schema, actual, TRACK))
        return streams

    # -- windows --------------------------------------------------------------------------------
    def cursor_column(self, stream: EventStream, cursor: str) -> Column | None:
        """The cursor column of ``stream`` (any case), or None when the table lacks it."""
        columns = self.columns(stream.schema, stream.table)
        actual = find_column([c.name for c in columns], cursor)
        return next((c for c in columns if c.name == actual), None)

    def max_cursor(self, stream: EventStream, cursor: str) -> Any:
        """``MAX(cursor)`` of the table right now: the upper bound a run owns."""
        sql = f"SELECT MAX({self._quote(cursor)}) FROM {self._table(stream)}"
        with self.engine.connect() as conn:
            return conn.execute(sa.text(_escape_colons(sql))).scalar()

    def extract_window(self, stream: EventStream, window: Window) -> Iterator[pd.DataFrame]:
        """Stream the rows of ``stream`` inside ``window`` as DataFrames of at most ``chunk_rows``.

        Each row carries :data:`~amberflo_sync.transform.DUP_RANK_COLUMN`: 1 for the first copy of
        an ``id`` in the window (earliest cursor), 2+ for later copies, so duplicates are dropped
        across chunk boundaries.
        """
        columns = self.columns(stream.schema, stream.table)
        if not columns:
            log.warning("table %s does not exist (any more); nothing to read", stream.key)
            return
        names = [c.name for c in columns]
        if self._is_duckdb:
            # ``rowid`` identifies a row unless a column is called that (it would shadow it).
            row_id = None if find_column(names, "rowid") else "rowid"
            template, params = self._window_select(stream, window, names, row_id=row_id)
            yield from self._stream_duckdb(template, params)
        elif self._copy_types(columns) is not None:
            template, params = self._window_select(stream, window, names, row_id=None)
            yield from self._stream_postgres_copy(template, params, columns)
        else:
            template, params = self._window_select(stream, window, names, row_id=None)
            yield from self._stream_sqlalchemy(template, params)

    def extract_ids(self, stream: EventStream, ids: list[str]) -> Iterator[pd.DataFrame]:
        """The rows of ``stream`` whose ``id`` is one of ``ids`` (to retry or replay rejected rows)."""
        columns = [c.name for c in self.columns(stream.schema, stream.table)]
        id_column = find_column(columns, "id")
        if id_column is None or not ids:
            return
        select = ", ".join(self._quote(c) for c in columns)
        template = f"SELECT {select} FROM {self._table(stream)} WHERE {self._quote(id_column)} IN {_param('ids')}"
        sql = sa.text(_bind(_escape_colons(template), {"ids": None}, ":{}")).bindparams(
            sa.bindparam("ids", expanding=True))
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 1000):
                result = conn.execute(sql, {"ids": list(ids[start : start + 1000])})
                rows = [tuple(r) for r in result]
                if rows:
                    yield _keep_float_nulls(pd.DataFrame.from_records(rows, columns=list(result.keys())), rows)

    def count_window(self, stream: EventStream, window: Window) -> tuple[int, Any, Any]:
        """``(rows, MIN(cursor), MAX(cursor))`` inside ``window`` — what fan-out planning splits."""
        if not self.columns(stream.schema, stream.table):
            return 0, None, None
        bounds, params = self._bounds(window)
        cursor = f"t.{self._quote(window.cursor)}" if window.cursor else "NULL"
        template = f"SELECT COUNT(*), MIN({cursor}), MAX({cursor}) FROM {self._table(stream)} AS t"
        if bounds:
            template += f" WHERE {bounds}"
        sql = _bind(_escape_colons(template), params, ":{}")
        with self.engine.connect() as conn:
            rows, low, high = conn.execute(sa.text(sql), params).one()
        return int(rows or 0), low, high

    # -- internals ------------------------------------------------------------------------------
    def _table(self, stream: EventStream) -> str:
        return f"{self._quote(stream.schema)}.{self._quote(stream.table)}"

    def _bounds(self, window: Window) -> tuple[str, dict[str, Any]]:
        """The WHERE condition of a window over table alias ``t`` (placeholders from :func:`_param`)."""
        params: dict[str, Any] = {}
        if window.cursor is None:
            return "", params
        cursor = f"t.{self._quote(window.cursor)}"
        parts = []
        if window.lower is not None:
            parts.append(f"{cursor} > {_param('lower')}")
            params["lower"] = window.lower
        if window.upper is not None:
            parts.append(f"{cursor} <= {_param('upper')}")
            params["upper"] = window.upper
        if not parts:
            return ("" if window.include_null else f"{cursor} IS NOT NULL"), params
        if window.include_null:
            return f"(({' AND '.join(parts)}) OR {cursor} IS NULL)", params
        return f"({' AND '.join(parts)})", params

    def _window_select(
        self, stream: EventStream, window: Window, names: list[str], *, row_id: str | None
    ) -> tuple[str, dict[str, Any]]:
        """The SELECT of a window (with placeholders from :func:`_param`) and its parameters.

        With ``row_id`` (a column that identifies a row), only rows whose ``id`` occurs more than
        once are ranked, over a narrow projection, and the ranks are joined back by row id: the
        engine never holds whole rows of the window at once. Without it, one window function ranks
        every row.
        """
        bounds, params = self._bounds(window)
        where = f" WHERE {bounds}" if bounds else ""
        table = f"{self._table(stream)} AS t"
        select = ", ".join(f"t.{self._quote(c)}" for c in names)
        id_column = find_column(names, "id")
        if id_column is None:
            return f"SELECT {select} FROM {table}{where}", params
        rank_alias = self._quote(DUP_RANK_COLUMN)
        ident = f"t.{self._quote(id_column)}"
        order = [c for c in (window.cursor, find_column(names, "received_at"), id_column) if c]
        row_number = (
            f"ROW_NUMBER() OVER (PARTITION BY {ident} ORDER BY {', '.join(f't.{self._quote(c)}' for c in order)})"
        )
        if row_id is None:
            rank = f"CASE WHEN {ident} IS NULL THEN 1 ELSE {row_number} END"
            return f"SELECT {select}, {rank} AS {rank_alias} FROM {table}{where}", params
        and_bounds = f" AND {bounds}" if bounds else ""
        duplicated = (
            f"SELECT {ident} AS dup_id FROM {table} WHERE {ident} IS NOT NULL{and_bounds} "
            f"GROUP BY {ident} HAVING COUNT(*) > 1"
        )
        ranks = (
            f"SELECT t.{row_id} AS dup_row, {row_number} AS dup_rank FROM {table} "
            f"WHERE {ident} IN (SELECT dup_id FROM duplicated){and_bounds}"
        )
        template = (
            f"WITH duplicated AS ({duplicated}), ranks AS ({ranks}) "
            f"SELECT {select}, COALESCE(ranks.dup_rank, 1) AS {rank_alias} "
            f"FROM {table} LEFT JOIN ranks ON t.{row_id} = ranks.dup_row{where}"
        )
        return template, params

    def _stream_duckdb(self, template: str, params: dict[str, Any]) -> Iterator[pd.DataFrame]:
        sql = _bind(template, params, "${}")
        with self.engine.connect() as conn:
            raw = conn.connection.driver_connection
            duck = getattr(raw, "_ConnectionWrapper__c", raw).cursor()
            try:
                _cap_duckdb_memory(duck)
                relation = duck.sql(sql, params=params or None)
                for batch in relation.to_arrow_reader(self.chunk_rows):
                    if batch.num_rows:
                        yield batch.to_pandas(use_threads=False, types_mapper=_arrow_floats)
            finally:
                duck.close()

    def _copy_types(self, columns: list[Column]) -> dict[str, pa.DataType] | None:
        """Arrow types for the COPY path, or None when it does not apply (not PostgreSQL through
        psycopg2, or a column type it does not read exactly like the driver)."""
        if self.engine.dialect.name != "postgresql" or self.engine.dialect.driver != "psycopg2":
            return None
        types = {}
        for column in columns:
            arrow_type = _PG_ARROW_TYPES.get(column.data_type.lower())
            if arrow_type is None:
                return None
            types[column.name] = arrow_type
        return types

    def _stream_postgres_copy(
        self, template: str, params: dict[str, Any], columns: list[Column]
    ) -> Iterator[pd.DataFrame]:
        """``COPY (SELECT …) TO STDOUT`` as CSV through a pipe into pyarrow's streaming CSV reader.

        A helper thread runs the COPY (psycopg2 pushes rows into the pipe) while the calling thread
        parses. Parameters are bound by psycopg2 itself (``mogrify``), as for any psycopg2 query.
        Timestamps are printed in UTC/ISO for this transaction only, so any server setting parses.
        """
        types = dict(self._copy_types(columns) or {})
        names = [c.name for c in columns]
        if find_column(names, "id") is not None:
            names.append(DUP_RANK_COLUMN)
            types[DUP_RANK_COLUMN] = pa.int64()
        numeric = [c.name for c in columns if c.data_type.lower() == "numeric"]
        sql = _bind(template.replace("%", "%%"), params, "%({})s")
        with self.engine.connect() as conn:
            raw = conn.connection.driver_connection
            if raw.autocommit or raw.encoding != "UTF8":
                # SET LOCAL needs a transaction, and pyarrow reads UTF-8 only: take the generic path.
                conn.close()
                yield from self._stream_sqlalchemy(template, params)
                return
            with raw.cursor() as cur:
                cur.execute("SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, MDY'")
                copy_sql = b"COPY (" + cur.mogrify(sql, params) + b") TO STDOUT WITH (FORMAT csv)"
                read_fd, write_fd = os.pipe()
                copy = _CopyThread(cur, copy_sql, write_fd)
                finished = False
                try:
                    with os.fdopen(read_fd, "rb", buffering=0) as source:
                        copy.start()
                        batches = _open_csv_or_nothing(
                            source,
                            read_options=pacsv.ReadOptions(column_names=names, block_size=_PG_COPY_BLOCK_BYTES),
                            parse_options=pacsv.ParseOptions(newlines_in_values=True),
                            convert_options=pacsv.ConvertOptions(
                                column_types=types,
                                true_values=["t"],
                                false_values=["f"],
                                null_values=[""],
                                strings_can_be_null=True,
                                quoted_strings_can_be_null=False,
                            ),
                        )
                        for frame in _rechunk(batches, self.chunk_rows):
                            for name in numeric:
                                frame[name] = _decimals(frame[name])
                            yield frame
                        finished = True
                finally:
                    copy.join()
                    if not finished or copy.error is not None:
                        conn.invalidate()  # the COPY may be half-read: never hand this session back
                if copy.error is not None:
                    raise copy.error

    def _stream_sqlalchemy(self, template: str, params: dict[str, Any]) -> Iterator[pd.DataFrame]:
        sql = _bind(_escape_colons(template), params, ":{}")
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, max_row_buffer=self.chunk_rows).execute(
                sa.text(sql), params
            )
            keys = list(result.keys())
            for part in result.partitions(self.chunk_rows):
                frame = pd.DataFrame.from_records([tuple(r) for r in part], columns=keys)
                yield _keep_float_nulls(frame, part)


class _CopyThread(threading.Thread):
    """Runs one ``COPY … TO STDOUT`` into a pipe; closes the pipe when done so the parser sees EOF."""

    def __init__(self, cursor: Any, sql: str, write_fd: int) -> None:
        super().__init__(name="amberflo-sync-copy", daemon=True)
        self._cursor = cursor
        self._sql = sql
        self._sink = os.fdopen(write_fd, "wb", buffering=_PG_COPY_BLOCK_BYTES)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._cursor.copy_expert(self._sql, self._sink)
        except BrokenPipeError:
            pass  # the reader stopped early (run failed or was abandoned); nothing to report
        except BaseException as error:  # noqa: BLE001 - re-raised by the reading thread
            self.error = error
        finally:
            try:
                self._sink.close()
            except BrokenPipeError:
                pass


def _cap_duckdb_memory(duck: Any) -> None:
    """Lower the DuckDB instance's memory limit to :data:`DUCKDB_MEMORY_LIMIT` unless it is lower
    already (a limit someone chose stays). It stays lowered: DuckDB prints limits rounded down, so
    restoring the old value on every read would shrink it a little each time. Next to a read-only
    warehouse file, spilling goes to the system's temp dir instead."""
    ((limit, temp_directory),) = duck.execute(
        "SELECT current_setting('memory_limit'), current_setting('temp_directory')"
    ).fetchall()
    if temp_directory and not os.access(os.path.dirname(temp_directory) or ".", os.W_OK):
        spill = os.path.join(tempfile.gettempdir(), f"amberflo-sync-duckdb-{os.getpid()}")
        duck.execute(f"SET temp_directory = '{spill}'")
    if _duckdb_bytes(limit) > _duckdb_bytes(DUCKDB_MEMORY_LIMIT):
        duck.execute(f"SET memory_limit = '{DUCKDB_MEMORY_LIMIT}'")


_DUCKDB_UNITS = {"b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def _duckdb_bytes(text: str) -> float:
    """``"18.8 GiB"`` / ``"128MB"`` as bytes; anything unreadable counts as unlimited."""
    number = text.strip().rstrip("BbIiKkMmGgTt ")
    unit = text.strip()[len(number):].strip().lower() or "b"
    try:
        return float(number) * _DUCKDB_UNITS[unit]
    except (KeyError, ValueError):
        return float("inf")


def _keep_float_nulls(frame: pd.DataFrame, rows: list[Any]) -> pd.DataFrame:
    """Rebuild the float columns of a DB-API chunk so NULL and NaN stay apart (see :func:`_arrow_floats`)."""
    floats = [i for i, dtype in enumerate(frame.dtypes) if pd.api.types.is_float_dtype(dtype)]
    if not floats:
        return frame
    columns = list(zip(*rows))
    for i in floats:
        values = columns[i]
        if any(type(v) is int for v in values):
            # a BIGINT column with NULLs (pandas made it float64): Arrow refuses ints beyond 2**53
            # as float64, so convert them the way pandas did (correctly rounded)
            values = [v if v is None or isinstance(v, float) else float(v) for v in values]
        frame[frame.columns[i]] = pd.Series(
            pa.array(values, type=pa.float64(), from_pandas=False), dtype=pd.ArrowDtype(pa.float64()),
            index=frame.index)
    return frame


def _arrow_floats(arrow_type: pa.DataType) -> pd.ArrowDtype | None:
    """Keep floating-point columns Arrow-backed: a NumPy float64 column cannot tell NULL (an unset
    ``value``: bill 1) from NaN (a present, non-finite ``value``: reject) — both would be NaN."""
    if pa.types.is_floating(arrow_type):
        return pd.ArrowDtype(arrow_type)
    if pa.types.is_integer(arrow_type):
        # a NumPy int column with a NULL becomes float64: values above 2**53 would then print with
        # other digits in chunks that hold a NULL — the same row must always give the same bytes
        return pd.Int64Dtype() if arrow_type.bit_width <= 64 and pa.types.is_signed_integer(arrow_type) else None
    return None


def _rechunk(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pd.DataFrame]:
    """Record batches of any size as DataFrames of exactly ``rows`` rows (the last one fewer).

    Conversions to pandas here and in :meth:`WarehouseReader._stream_duckdb` run on the calling
    thread (``use_threads=False``): Arrow's pool costs more than it saves on 50k-row chunks (6x
    slower on 2 cores) and competes with the threads rendering and sending records.
    """
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        if not batch.num_rows:
            continue
        pending.append(batch)
        count += batch.num_rows
        while count >= rows:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, rows).to_pandas(use_threads=False, types_mapper=_arrow_floats)
            rest = table.slice(rows)
            pending = rest.to_batches() if rest.num_rows else []
            count = rest.num_rows
    if count:
        yield pa.Table.from_batches(pending).to_pandas(use_threads=False, types_mapper=_arrow_floats)


def _decimals(column: pd.Series) -> pd.Series:
    """PostgreSQL ``numeric`` text as the ``Decimal`` objects psycopg2 builds (``NaN`` included)."""
    return pd.Series(
        [None if value is None else decimal.Decimal(value) for value in column.astype(object).where(column.notna(), None)],
        index=column.index,
        dtype=object,
    )


def _param(name: str) -> str:
    """A placeholder no identifier can contain (NUL), swapped for the driver's syntax by :func:`_bind`."""
    return f"\x00{name}\x00"


def _bind(template: str, params: dict[str, Any], style: str) -> str:
    for name in params:
        template = template.replace(_param(name), style.format(name))
    return template


def _escape_colons(sql: str) -> str:
    """``sa.text`` treats ``:name`` as a bind parameter — even inside a quoted identifier."""
    return sql.replace(":", r"\:")


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _open_csv_or_nothing(source: Any, **options: Any) -> Iterator[pa.RecordBatch]:
    """``pyarrow.csv.open_csv`` over a COPY's output, or no batches when the COPY printed nothing:
    pyarrow refuses an empty CSV ("Empty CSV file"), and an empty table (an Engage ``users`` table
    between two loads) is not an error."""
    try:
        return pacsv.open_csv(source, **options)
    except pa.ArrowInvalid as exc:
        if "Empty CSV file" not in str(exc):
            raise
        return iter(())
