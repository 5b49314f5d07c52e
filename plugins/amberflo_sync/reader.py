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
* Snowflake: the connector's own Arrow batches (``cursor.fetch_arrow_batches()``).
* Everything else: one typed fallback — a server-side cursor (``stream_results``) whose columns are
  built as Arrow arrays typed from ``information_schema`` (integers stay integers next to NULLs).

Every path ends in the same Arrow → pandas conversion (:func:`_arrow_frame`), so the bytes of a
record depend only on the warehouse row: not on the engine, the chunk, the read path (window, ids,
backfill) or the batch size. Engine differences live in one table, :data:`DIALECTS`.

Discovery is one statement per schema (``information_schema.columns`` joined with ``tables``),
cached for the reader's life and serializable (:meth:`WarehouseReader.catalog_to_dict`,
:meth:`WarehouseReader.from_catalog`) so the planning task hands it to the slice tasks through XCom.
:attr:`WarehouseReader.statements` counts the statements the reader sent.
"""

from __future__ import annotations

import datetime as dt
import decimal
import logging
import os
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Callable

import orjson

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
    "json": pa.string(),  # canonicalized after parsing (see _normalize_frame)
    "jsonb": pa.string(),
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


@dataclass(frozen=True)
class Dialect:
    """What differs between warehouses, in one row per engine (see :data:`DIALECTS`).

    :param name: the row's key (SQLAlchemy dialect name, or the connection type that picks it).
    :param quote_char: identifier quote (backtick on BigQuery and Databricks).
    :param table_types: ``information_schema.tables.table_type`` values of a readable table
        (Databricks reports ``MANAGED``/``EXTERNAL``, not ``BASE TABLE``).
    :param folds_upper: unquoted names are stored upper-case (Snowflake): column names are read
        back lower-case, so a record's dimension keys do not depend on the engine.
    :param load_cursor: the column Segment stamps at load time (BigQuery ``loaded_at``), used as the
        incremental cursor when the configured one is the default ``uuid_ts`` and the table has it.
    :param naive_utc_timestamps: timestamps are stored without a zone and mean UTC (Redshift,
        Snowflake ``TIMESTAMP_NTZ``): window bounds are sent naive UTC.
    :param qualify_catalog: table names carry the catalog (DuckDB: a file ``prod.duckdb`` holding a
        schema ``prod`` makes ``prod.pages`` ambiguous).
    :param fetch: the typed read path: ``duckdb`` (Arrow reader), ``postgres_copy`` (COPY as CSV
        into pyarrow), ``snowflake`` (connector Arrow batches) or ``typed`` (the fallback).
    :param schema_scoped_catalog: ``information_schema`` lives inside each schema (BigQuery
        datasets: ``dataset.INFORMATION_SCHEMA.COLUMNS``).
    :param plain_timestamp_is_zoned: a bare ``TIMESTAMP`` column is an instant (BigQuery,
        Databricks), not a naive date-time: window bounds are sent with their zone.
    """

    name: str
    quote_char: str = '"'
    table_types: tuple[str, ...] = ("BASE TABLE",)
    folds_upper: bool = False
    load_cursor: str | None = None
    naive_utc_timestamps: bool = False
    qualify_catalog: bool = False
    fetch: str = "typed"
    schema_scoped_catalog: bool = False
    plain_timestamp_is_zoned: bool = False

    def is_zoned(self, column: Column) -> bool | None:
        """Whether ``column`` holds instants with a zone (None: not a timestamp). A bare
        ``TIMESTAMP`` is zoned on BigQuery and Databricks, naive elsewhere."""
        t = column.data_type.upper()
        if "TIMESTAMP" not in t and t != "DATETIME":
            return None
        if t == "TIMESTAMP" and self.plain_timestamp_is_zoned:
            return True
        return column.has_time_zone

    def quote(self, name: str) -> str:
        q = self.quote_char
        escaped = name.replace("\\", "\\\\").replace(q, "\\" + q) if q == "`" else name.replace(q, q * 2)
        return f"{q}{escaped}{q}"


#: The engine dialects, explicitly. Keys are SQLAlchemy dialect names or connection types.
DIALECTS: dict[str, Dialect] = {
    "duckdb": Dialect("duckdb", qualify_catalog=True, fetch="duckdb"),
    "postgresql": Dialect("postgresql", fetch="postgres_copy"),
    # Redshift speaks PostgreSQL but has no COPY … TO STDOUT; its timestamps are naive UTC
    "redshift": Dialect("redshift", naive_utc_timestamps=True),
    "snowflake": Dialect("snowflake", folds_upper=True, naive_utc_timestamps=True, fetch="snowflake"),
    "bigquery": Dialect("bigquery", quote_char="`", load_cursor="loaded_at", schema_scoped_catalog=True,
                        plain_timestamp_is_zoned=True),
    "databricks": Dialect("databricks", quote_char="`", table_types=("MANAGED", "EXTERNAL", "BASE TABLE"),
                          plain_timestamp_is_zoned=True),
}
#: Any other SQLAlchemy engine: standard ``information_schema``, the typed fallback.
DEFAULT_DIALECT = Dialect("default", table_types=("BASE TABLE", "TABLE"))
#: The configured cursor that a dialect's :attr:`Dialect.load_cursor` replaces when present.
SEGMENT_LOAD_CURSOR = "uuid_ts"


def dialect_for(engine: Engine, name: str | None = None) -> Dialect:
    """The :data:`DIALECTS` row of ``name`` (a connection type such as ``redshift``) or of the
    engine's SQLAlchemy dialect."""
    for key in (name, engine.dialect.name):
        if key and key in DIALECTS:
            return DIALECTS[key]
    return DEFAULT_DIALECT


def create_engine(url: str, *, read_only: bool = False, **engine_kwargs: Any) -> Engine:
    """An engine for ``url``; a DuckDB file opened for reading only when ``read_only`` (several
    processes may then read it at once). No ``pool_pre_ping``: a task opens its connection when it
    needs it, and a liveness ``SELECT 1`` is a billed statement (it can resume a suspended
    Snowflake warehouse)."""
    connect_args: dict[str, Any] = dict(engine_kwargs.pop("connect_args", None) or {})
    if url.startswith("duckdb") and read_only:
        connect_args["read_only"] = True
    return sa.create_engine(url, connect_args=connect_args, **engine_kwargs)


@dataclass
class SchemaCatalog:
    """One schema as discovery found it: its spelling, catalog, and every table's columns."""

    name: str
    catalog: str | None = None
    tables: dict[str, str] = field(default_factory=dict)  # lower-case name → actual name
    types: dict[str, str] = field(default_factory=dict)  # actual name → table_type
    columns: dict[str, list[Column]] = field(default_factory=dict)  # actual name → columns


class WarehouseReader:
    """Reads Segment tables from one warehouse.

    :param engine: SQLAlchemy engine of the warehouse.
    :param chunk_rows: rows per DataFrame yielded by :meth:`extract_window`.
    :param dialect: a :data:`DIALECTS` key when the engine's own dialect name is not the right row
        (a ``redshift`` connection through psycopg2 is ``postgresql`` to SQLAlchemy).
    """

    def __init__(self, engine: Engine, *, chunk_rows: int = 50_000, dialect: str | None = None) -> None:
        self.engine = engine
        self.chunk_rows = chunk_rows
        self.dialect = dialect_for(engine, dialect)
        self._quote: Callable[[str], str] = self.dialect.quote
        self._is_duckdb = self.dialect.fetch == "duckdb"
        #: statements this reader sent to the warehouse (catalog and data reads; see :meth:`_count`)
        self.statements = 0
        #: of which discovery statements (one per schema at most)
        self.discovery_statements = 0
        self._schemas: dict[str, SchemaCatalog | None] = {}
        self._lock = threading.Lock()
        sa.event.listen(engine, "before_cursor_execute", self._count_sqlalchemy)

    # -- statement count and catalog hand-over -----------------------------------------------------
    def _count_sqlalchemy(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self._count()

    def _count(self, n: int = 1) -> None:
        with self._lock:
            self.statements += n

    def catalog_to_dict(self) -> dict[str, Any]:
        """Everything discovery found so far, JSON-safe (XCom): hand it to :meth:`from_catalog`."""
        schemas: dict[str, Any] = {}
        for wanted, found in sorted(self._schemas.items()):
            schemas[wanted] = None if found is None else {
                "name": found.name,
                "catalog": found.catalog,
                "tables": {
                    actual: {"type": found.types.get(actual), "columns": [[c.name, c.data_type] for c in cols]}
                    for actual, cols in sorted(found.columns.items())
                },
            }
        return {"version": 1, "dialect": self.dialect.name, "schemas": schemas}

    def seed_catalog(self, catalog: dict[str, Any]) -> None:
        """Take discovery answers from :meth:`catalog_to_dict` (of the planning task): the schemas
        it holds are never discovered again by this reader."""
        for wanted, data in (catalog.get("schemas") or {}).items():
            if data is None:
                self._schemas[wanted.lower()] = None
                continue
            found = SchemaCatalog(data["name"], data.get("catalog"))
            for actual, table in data["tables"].items():
                found.tables[actual.lower()] = actual
                found.types[actual] = table.get("type")
                found.columns[actual] = [Column(str(n), str(t)) for n, t in table["columns"]]
            self._schemas[wanted.lower()] = found

    @classmethod
    def from_catalog(cls, engine: Engine, catalog: dict[str, Any], **kwargs: Any) -> WarehouseReader:
        """A reader that starts with ``catalog`` (see :meth:`seed_catalog`): a slice task built so
        sends no discovery statement."""
        reader = cls(engine, **kwargs)
        reader.seed_catalog(catalog)
        return reader

    # -- discovery ------------------------------------------------------------------------------
    def discover(self, schemas: Iterable[str]) -> None:
        """Discover every schema of ``schemas`` not yet known: one statement per schema."""
        for schema in schemas:
            self._schema(schema)

    def _schema(self, schema: str) -> SchemaCatalog | None:
        wanted = schema.lower()
        if wanted not in self._schemas:
            self._schemas[wanted] = self._discover(schema)
        return self._schemas[wanted]

    def discovery_sql(self, schema: str) -> tuple[str, dict[str, Any]]:
        """The one statement that discovers ``schema``: every table (with its type) and column.

        Rows: ``table_schema, table_name, column_name, data_type, table_type, table_catalog``.
        """
        d = self.dialect
        if d.schema_scoped_catalog:
            source = f"{d.quote(schema)}.INFORMATION_SCHEMA"
        else:
            source = "information_schema"
        catalog_filter = " AND c.table_catalog = current_database()" if d.qualify_catalog else ""
        sql = (
            "SELECT c.table_schema, c.table_name, c.column_name, c.data_type, t.table_type, c.table_catalog "
            f"FROM {source}.columns AS c JOIN {source}.tables AS t "
            "ON t.table_catalog = c.table_catalog AND t.table_schema = c.table_schema AND t.table_name = c.table_name "
            f"WHERE lower(c.table_schema) = :schema{catalog_filter} "
            "ORDER BY c.table_name, c.ordinal_position"
        )
        return sql, {"schema": schema.lower()}

    def _discover(self, schema: str) -> SchemaCatalog | None:
        sql, params = self.discovery_sql(schema)
        with self._lock:
            self.discovery_statements += 1
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(sa.text(sql), params).fetchall()
        except sa.exc.DBAPIError as error:
            if self.dialect.schema_scoped_catalog and "not found" in str(error).lower():
                return None  # BigQuery: the dataset does not exist
            raise
        return catalog_from_rows(rows, self.dialect)

    def _display(self, name: str) -> str:
        """A name as callers see it: Segment's lower-case where the engine folds names upper
        (Snowflake ``PAGES`` → ``pages``), so keys, meter names and dimensions never depend on the
        engine; SQL always uses the warehouse's own spelling (:meth:`_actual_columns`, :meth:`_table`)."""
        return name.lower() if self.dialect.folds_upper else name

    def tables(self, schema: str) -> dict[str, str]:
        """Base tables of ``schema`` as ``{lower-case name: name}`` (empty if no schema)."""
        found = self._schema(schema)
        return {} if found is None else {k: self._display(v) for k, v in sorted(found.tables.items())}

    def columns(self, schema: str, table: str) -> list[Column]:
        """Columns of ``schema.table`` in ordinal order (empty when the table does not exist)."""
        return [Column(self._display(c.name), c.data_type) for c in self._actual_columns(schema, table)]

    def _actual_columns(self, schema: str, table: str) -> list[Column]:
        found = self._schema(schema)
        if found is None:
            return []
        actual = found.tables.get(table.lower(), table)
        return list(found.columns.get(actual, []))

    def actual_schema(self, schema: str) -> str | None:
        """The schema's name as the sync uses it (the warehouse's spelling; lower-case on engines
        that fold names upper), or None if it is absent (or holds no table)."""
        found = self._schema(schema)
        return None if found is None else self._display(found.name)

    def event_streams(self, schemas: tuple[str, ...] | list[str], events: EventsConfig) -> list[EventStream]:
        """Every billable stream in the source schemas: pages, screens and each track event table
        that passes the include/exclude lists. Missing schemas and tables are simply absent
        (:func:`amberflo_sync.discovery_report.missing_sources` says which)."""
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
        """The cursor column of ``stream`` (any case), or None when the table lacks it. Where the
        dialect has a load-time column of its own (BigQuery ``loaded_at``), it replaces the default
        ``uuid_ts``."""
        columns = self.columns(stream.schema, stream.table)
        names = [c.name for c in columns]
        candidates = [cursor]
        if self.dialect.load_cursor and cursor.lower() == SEGMENT_LOAD_CURSOR:
            candidates.insert(0, self.dialect.load_cursor)
        for candidate in candidates:
            actual = find_column(names, candidate)
            if actual is not None:
                return next(c for c in columns if c.name == actual)
        return None

    def max_cursor(self, stream: EventStream, cursor: str) -> Any:
        """``MAX(cursor)`` of the table right now: the upper bound a run owns."""
        sql = f"SELECT MAX({self._quote(self._actual(stream, cursor))}) FROM {self._table(stream)}"
        with self.engine.connect() as conn:
            return conn.execute(sa.text(_escape_colons(sql))).scalar()

    def extract_window(self, stream: EventStream, window: Window) -> Iterator[pd.DataFrame]:
        """Stream the rows of ``stream`` inside ``window`` as DataFrames of at most ``chunk_rows``.

        Each row carries :data:`~amberflo_sync.transform.DUP_RANK_COLUMN`: 1 for the first copy of
        an ``id`` in the window (earliest cursor), 2+ for later copies, so duplicates are dropped
        across chunk boundaries.
        """
        columns = self._actual_columns(stream.schema, stream.table)
        if not columns:
            log.warning("table %s does not exist (any more); nothing to read", stream.key)
            return
        names = [c.name for c in columns]
        # ``rowid`` identifies a DuckDB row unless a column is called that (it would shadow it).
        row_id = "rowid" if self._is_duckdb and not find_column(names, "rowid") else None
        template, params = self._window_select(stream, window, names, row_id=row_id)
        frames = self._read(template, params, columns)
        try:
            first = next(frames, None)
        except Exception:
            # the catalog is the plan's: a table dropped since then is gone, not an error
            if self._table_gone(stream):
                log.warning("table %s does not exist (any more); nothing to read", stream.key)
                return
            raise
        if first is not None:
            yield first
            yield from frames

    def extract_ids(self, stream: EventStream, ids: list[str]) -> Iterator[pd.DataFrame]:
        """The rows of ``stream`` whose ``id`` is one of ``ids`` (to retry or replay rejected rows).

        Same SELECT shape (duplicate rank included) and same typed read path as
        :meth:`extract_window`, so a retried row renders the bytes it rendered the first time.
        """
        columns = self._actual_columns(stream.schema, stream.table)
        names = [c.name for c in columns]
        id_column = find_column(names, "id")
        if id_column is None or not ids:
            return
        for start in range(0, len(ids), 1000):
            batch = [str(i) for i in ids[start : start + 1000]]
            params = {f"id{n}": value for n, value in enumerate(batch)}
            where = f"t.{self._quote(id_column)} IN ({', '.join(_param(name) for name in params)})"
            template, _ = self._window_select(stream, Window(None), names, row_id=None, where=where)
            yield from self._read(template, params, columns)

    def window_stats(self, stream: EventStream, cursor: str, lower: Any = None, *,
                     include_null: bool = True) -> tuple[int, Any, Any]:
        """``(rows, MIN(cursor), MAX(cursor))`` of the window ``(lower, MAX(cursor)]`` in ONE
        statement — :meth:`max_cursor` and :meth:`count_window` together, for a plan that sends one
        statement per stream. ``MAX`` is the whole table's (the upper bound the run owns); ``rows``
        counts the NULL-cursor rows too when ``include_null``."""
        if not self._actual_columns(stream.schema, stream.table):
            return 0, None, None
        actual = self._actual(stream, cursor)
        c = f"t.{self._quote(actual)}"
        params: dict[str, Any] = {}
        if lower is None:
            inside = "1 = 1" if include_null else f"{c} IS NOT NULL"
            low = f"MIN({c})"
        else:
            params["lower"] = self._bound_value(stream, actual, lower)
            after = f"{c} > {_param('lower')}"
            inside = f"({after} OR {c} IS NULL)" if include_null else after
            low = f"MIN(CASE WHEN {after} THEN {c} END)"
        template = (f"SELECT COUNT(CASE WHEN {inside} THEN 1 END), {low}, MAX({c}) "
                    f"FROM {self._table(stream)} AS t")
        sql = _bind(_escape_colons(template), params, ":{}")
        with self.engine.connect() as conn:
            rows, low_value, high = conn.execute(sa.text(sql), params).one()
        return int(rows or 0), low_value, high

    def _table_gone(self, stream: EventStream) -> bool:
        """Discover ``stream``'s schema again (after a read failed) and say whether its table is gone."""
        self._schemas.pop(stream.schema.lower(), None)
        return not self.columns(stream.schema, stream.table)

    def count_window(self, stream: EventStream, window: Window) -> tuple[int, Any, Any]:
        """``(rows, MIN(cursor), MAX(cursor))`` inside ``window`` — what fan-out planning splits."""
        if not self.columns(stream.schema, stream.table):
            return 0, None, None
        window = self._actual_window(stream, window)
        bounds, params = self._bounds(window, stream)
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
        found = self._schema(stream.schema)
        schema = found.name if found is not None else stream.schema
        table = found.tables.get(stream.table.lower(), stream.table) if found is not None else stream.table
        name = f"{self._quote(schema)}.{self._quote(table)}"
        if self.dialect.qualify_catalog and found is not None and found.catalog:
            name = f"{self._quote(found.catalog)}.{name}"
        return name

    def _actual(self, stream: EventStream, column: str) -> str:
        """``column`` as the warehouse spells it (``UUID_TS`` on Snowflake)."""
        return find_column([c.name for c in self._actual_columns(stream.schema, stream.table)], column) or column

    def _actual_window(self, stream: EventStream, window: Window) -> Window:
        if window.cursor is None:
            return window
        actual = self._actual(stream, window.cursor)
        if actual == window.cursor:
            return window
        return Window(actual, window.lower, window.upper, window.include_null)

    def _bound_value(self, stream: EventStream | None, cursor: str, value: Any) -> Any:
        """A window bound as the cursor column holds it: naive UTC for a zone-less timestamp column
        (Redshift, Snowflake ``TIMESTAMP_NTZ``), UTC-zoned for a zoned one (BigQuery ``TIMESTAMP``),
        so the comparison means the same instant on every engine."""
        if stream is None or not isinstance(value, dt.datetime):
            return value
        column = next((c for c in self._actual_columns(stream.schema, stream.table) if c.name == cursor), None)
        zoned = None if column is None else self.dialect.is_zoned(column)
        if zoned is False and value.tzinfo is not None:
            return value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        if zoned is True and value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value

    def _bounds(self, window: Window, stream: EventStream | None = None) -> tuple[str, dict[str, Any]]:
        """The WHERE condition of a window over table alias ``t`` (placeholders from :func:`_param`)."""
        params: dict[str, Any] = {}
        if window.cursor is None:
            return "", params
        cursor = f"t.{self._quote(window.cursor)}"
        parts = []
        if window.lower is not None:
            parts.append(f"{cursor} > {_param('lower')}")
            params["lower"] = self._bound_value(stream, window.cursor, window.lower)
        if window.upper is not None:
            parts.append(f"{cursor} <= {_param('upper')}")
            params["upper"] = self._bound_value(stream, window.cursor, window.upper)
        if not parts:
            return ("" if window.include_null else f"{cursor} IS NOT NULL"), params
        if window.include_null:
            return f"(({' AND '.join(parts)}) OR {cursor} IS NULL)", params
        return f"({' AND '.join(parts)})", params

    def _window_select(
        self, stream: EventStream, window: Window, names: list[str], *, row_id: str | None, where: str | None = None
    ) -> tuple[str, dict[str, Any]]:
        """The SELECT of a window (with placeholders from :func:`_param`) and its parameters.

        With ``row_id`` (a column that identifies a row), only rows whose ``id`` occurs more than
        once are ranked, over a narrow projection, and the ranks are joined back by row id: the
        engine never holds whole rows of the window at once. Without it, one window function ranks
        every row. ``where`` replaces the window's condition (:meth:`extract_ids`).
        """
        window = self._actual_window(stream, window)
        bounds, params = (where, {}) if where is not None else self._bounds(window, stream)
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

    def _read(self, template: str, params: dict[str, Any], columns: list[Column]) -> Iterator[pd.DataFrame]:
        """Run a SELECT built by :meth:`_window_select` through the dialect's typed read path, and
        hand out frames normalized the one way every path shares (:func:`_normalize_frame`)."""
        fetch = self.dialect.fetch
        if fetch == "duckdb":
            frames = self._stream_duckdb(template, params)
        elif fetch == "postgres_copy" and self._copy_types(columns) is not None:
            frames = self._stream_postgres_copy(template, params, columns)
        elif fetch == "snowflake":
            frames = self._stream_snowflake(template, params)
        else:
            frames = self._stream_sqlalchemy(template, params, columns)
        json_columns = [c.name for c in columns if _is_json_type(c.data_type)]
        for frame in frames:
            yield _normalize_frame(frame, json_columns, lower_names=self.dialect.folds_upper)

    def _stream_duckdb(self, template: str, params: dict[str, Any]) -> Iterator[pd.DataFrame]:
        sql = _bind(template, params, "${}")
        with self.engine.connect() as conn:
            raw = conn.connection.driver_connection
            duck = getattr(raw, "_ConnectionWrapper__c", raw).cursor()
            try:
                _cap_duckdb_memory(duck)  # session settings: not counted as statements
                self._count()
                relation = duck.sql(sql, params=params or None)
                for batch in relation.to_arrow_reader(self.chunk_rows):
                    if batch.num_rows:
                        yield _arrow_frame(batch)
            finally:
                duck.close()

    def _stream_snowflake(self, template: str, params: dict[str, Any]) -> Iterator[pd.DataFrame]:
        """The Snowflake connector's own Arrow result batches (no Python tuples), re-cut into
        ``chunk_rows`` frames. Parameters are bound by the connector (``pyformat``)."""
        sql = _bind(template.replace("%", "%%"), params, "%({})s")
        with self.engine.connect() as conn:
            raw = conn.connection.driver_connection
            cursor = raw.cursor()
            try:
                self._count()
                cursor.execute(sql, params or None)
                batches = (b for table in cursor.fetch_arrow_batches() for b in table.to_batches())
                yield from _rechunk(batches, self.chunk_rows)
            finally:
                cursor.close()

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
                # SET LOCAL needs a transaction, and pyarrow reads UTF-8 only: take the typed fallback.
                conn.close()
                yield from self._stream_sqlalchemy(template, params, columns)
                return
            with raw.cursor() as cur:
                cur.execute("SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, MDY'")
                copy_sql = b"COPY (" + cur.mogrify(sql, params) + b") TO STDOUT WITH (FORMAT csv)"
                read_fd, write_fd = os.pipe()
                copy = _CopyThread(cur, copy_sql, write_fd)
                self._count()
                finished = False
                try:
                    with os.fdopen(read_fd, "rb", buffering=0) as source:
                        copy.start()
                        try:
                            batches = _open_copy_csv(source, names, types)
                        except pa.ArrowInvalid as error:
                            if "empty csv" not in str(error).lower():
                                raise
                            batches = iter(())  # no row in the window (a CSV without any line)
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

    def _stream_sqlalchemy(
        self, template: str, params: dict[str, Any], columns: list[Column] | None = None
    ) -> Iterator[pd.DataFrame]:
        """The typed fallback: a server-side cursor whose chunks become Arrow arrays typed from
        ``information_schema`` (a BIGINT column stays int64 next to NULLs, whatever the chunk)."""
        sql = _bind(_escape_colons(template), params, ":{}")
        declared = {c.name: _arrow_type(c.data_type) for c in columns or []}
        if find_column(list(declared), "id") is not None:
            declared[DUP_RANK_COLUMN] = pa.int64()
        # PostgreSQL drivers hand JSON columns over parsed (a JSON string "a" arrives as 'a'): print
        # them back as JSON text, which is what every other path reads
        parsed_json = {c.name for c in columns or [] if _is_json_type(c.data_type)} \
            if self.engine.dialect.name == "postgresql" else set()
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, max_row_buffer=self.chunk_rows).execute(
                sa.text(sql), params
            )
            keys = list(result.keys())
            positions = [i for i, key in enumerate(keys) if key in parsed_json]
            for part in result.partitions(self.chunk_rows):
                rows = [tuple(r) for r in part]
                if positions:
                    rows = [_json_text_at(row, positions) for row in rows]
                yield _arrow_frame(_typed_batch(keys, rows, declared))


def _open_copy_csv(source: Any, names: list[str], types: dict[str, pa.DataType]) -> Any:
    """pyarrow's streaming reader over PostgreSQL's CSV (``t``/``f`` booleans, empty = NULL,
    quoted empty = empty string)."""
    return pacsv.open_csv(
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


def catalog_from_rows(rows: Iterable[Any], dialect: Dialect) -> SchemaCatalog | None:
    """A :class:`SchemaCatalog` from the rows of :meth:`WarehouseReader.discovery_sql` (None when
    the schema holds no readable table). Pure: BigQuery/Databricks answers are tested recorded."""
    found: SchemaCatalog | None = None
    readable = {t.upper() for t in dialect.table_types}
    for table_schema, table_name, column_name, data_type, table_type, table_catalog in rows:
        if str(table_type or "").upper() not in readable:
            continue
        if found is None:
            found = SchemaCatalog(str(table_schema), None if table_catalog is None else str(table_catalog))
        table = str(table_name)
        found.tables[table.lower()] = table
        found.types[table] = str(table_type)
        found.columns.setdefault(table, []).append(Column(str(column_name), str(data_type)))
    return found


_JSON_TYPES = {"JSON", "JSONB", "VARIANT", "OBJECT", "SUPER"}


def _is_json_type(data_type: str) -> bool:
    return data_type.upper() in _JSON_TYPES


def _arrow_type(data_type: str) -> pa.DataType | None:
    """The Arrow type the typed fallback builds a column as (None: inferred from the values)."""
    t = data_type.upper().strip()
    if t in ("BIGINT", "INTEGER", "INT", "SMALLINT", "TINYINT", "INT64", "INT8", "INT4", "INT2", "LONG", "SHORT",
             "BYTE"):
        return pa.int64()
    if t in ("DOUBLE", "DOUBLE PRECISION", "FLOAT", "FLOAT8", "FLOAT4", "FLOAT64", "REAL"):
        return pa.float64()
    if t in ("BOOLEAN", "BOOL"):
        return pa.bool_()
    return None


def _typed_batch(keys: list[str], rows: list[tuple], declared: dict[str, pa.DataType | None]) -> pa.Table | pd.DataFrame:
    """DB-API rows as one Arrow table, each column of its declared type, else of the type Arrow
    infers from the Python values (ints stay ints, NULL stays NULL, NaN stays NaN); a column
    Arrow cannot hold (mixed Python types) stays as Python objects."""
    columns = list(zip(*rows)) if rows else [() for _ in keys]
    arrays: dict[str, pa.Array] = {}
    objects: dict[str, list] = {}
    for key, values in zip(keys, columns):
        wanted = declared.get(key)
        for arrow_type in ([wanted] if wanted is not None else []) + [None]:
            try:
                array = pa.array(list(values), type=arrow_type, from_pandas=False)
            except (pa.ArrowException, TypeError, ValueError, OverflowError):
                continue
            if not pa.types.is_decimal(array.type):  # Decimals stay the driver's objects (scale kept)
                arrays[key] = array
            break
        if key not in arrays:
            objects[key] = list(values)
    if not objects:
        return pa.table(arrays)
    frame = _arrow_frame(pa.table(arrays)) if arrays else pd.DataFrame(index=range(len(rows)))
    for key, values in objects.items():
        frame[key] = pd.Series(values, dtype=object, index=frame.index)
    return frame[keys]


def _arrow_frame(data: pa.RecordBatch | pa.Table | pd.DataFrame) -> pd.DataFrame:
    """The one Arrow → pandas conversion every read path ends in (types: :func:`_arrow_floats`)."""
    if isinstance(data, pd.DataFrame):
        return data
    return data.to_pandas(use_threads=False, types_mapper=_arrow_floats)


def _normalize_frame(frame: pd.DataFrame, json_columns: list[str], *, lower_names: bool) -> pd.DataFrame:
    """What every path does last: names as Segment spells them (lower-case where the engine folds
    them upper) and JSON values as canonical text (sorted keys, no spaces), whatever the engine
    printed or the driver parsed."""
    for name in json_columns:
        if name in frame.columns:
            frame[name] = pd.Series([_canonical_json(v) for v in frame[name].astype(object)], index=frame.index,
                                    dtype=object)
    if lower_names:
        frame.columns = [str(c).lower() for c in frame.columns]
    return frame


def _json_text_at(row: tuple, positions: list[int]) -> tuple:
    values = list(row)
    for i in positions:
        if values[i] is not None:
            # numbers as I-JSON reads them first: a driver-parsed integer beyond 64 bits would make
            # orjson refuse the row (and crash the run); the canonical text is the same either way
            values[i] = orjson.dumps(_json_numbers(values[i]), default=str, option=orjson.OPT_SORT_KEYS).decode()
    return tuple(values)


def _canonical_json(value: Any) -> Any:
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, (bytes, str)):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    if value is None:
        # JSON ``null`` is no value, like SQL NULL: drivers that parse JSON (psycopg2) cannot tell
        # them apart, so neither may the record
        return None
    return orjson.dumps(_json_numbers(value), default=str, option=orjson.OPT_SORT_KEYS).decode()


def _json_numbers(value: Any) -> Any:
    """JSON numbers as I-JSON reads them (doubles), whole ones within ±2**53 printed as integers:
    engines print the same number differently (PostgreSQL ``jsonb`` keeps ``numeric`` digits,
    ``60063382467772420``; DuckDB keeps the text, ``6.006338246777242e+16``)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float, decimal.Decimal)):
        number = float(value)
        if number.is_integer() and abs(number) < 2**53:
            return int(number)
        return number
    if isinstance(value, dict):
        return {str(k): _json_numbers(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_numbers(v) for v in value]
    return value


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
            yield _arrow_frame(table.slice(0, rows))
            rest = table.slice(rows)
            pending = rest.to_batches() if rest.num_rows else []
            count = rest.num_rows
    if count:
        yield _arrow_frame(pa.Table.from_batches(pending))


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

