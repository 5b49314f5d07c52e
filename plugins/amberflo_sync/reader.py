"""Warehouse reader: discover Segment tables at run time and stream a cursor window in chunks.

Works on any SQLAlchemy URL. Discovery reads ``information_schema`` directly (portable across
PostgreSQL, DuckDB, Snowflake, Redshift, BigQuery; SQLAlchemy reflection is broken on
duckdb-engine 0.17 + DuckDB 2.0). Every identifier that comes from the warehouse is quoted by the
dialect's own preparer, so table names with quotes, semicolons or upper-case letters are safe.

Rows stream in chunks: DuckDB through its Arrow record-batch reader (no Python tuples), every other
dialect through a server-side cursor (``stream_results``), so memory stays flat whatever the window.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Callable

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from amberflo_sync.config import EventsConfig
from amberflo_sync.segment import NON_EVENT_TABLES, PAGE, SCREEN, TRACK, find_column
from amberflo_sync.transform import DUP_RANK_COLUMN

log = logging.getLogger(__name__)


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

    Rows whose cursor is NULL are always included (they cannot be placed in time; re-sending them
    is absorbed by Amberflo's de-duplication, losing them would lose revenue).
    """

    cursor: str | None
    lower: Any = None
    upper: Any = None


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
        columns = [c.name for c in self.columns(stream.schema, stream.table)]
        if not columns:
            log.warning("table %s does not exist (any more); nothing to read", stream.key)
            return
        params: dict[str, Any] = {}
        where = ""
        if window.cursor is not None and (window.lower is not None or window.upper is not None):
            cursor = self._quote(window.cursor)
            bounds = []
            if window.lower is not None:
                bounds.append(f"{cursor} > {_param('lower')}")
                params["lower"] = window.lower
            if window.upper is not None:
                bounds.append(f"{cursor} <= {_param('upper')}")
                params["upper"] = window.upper
            where = f" WHERE ({' AND '.join(bounds)}) OR {cursor} IS NULL"
        select = ", ".join(self._quote(c) for c in columns)
        id_column = find_column(columns, "id")
        if id_column is not None:
            order = [c for c in (window.cursor, find_column(columns, "received_at"), id_column) if c]
            rank = (
                f"CASE WHEN {self._quote(id_column)} IS NULL THEN 1 ELSE ROW_NUMBER() OVER ("
                f"PARTITION BY {self._quote(id_column)} ORDER BY {', '.join(self._quote(c) for c in order)}) END"
            )
            select += f", {rank} AS {self._quote(DUP_RANK_COLUMN)}"
        template = f"SELECT {select} FROM {self._table(stream)}{where}"
        if self._is_duckdb:
            yield from self._stream_duckdb(template, params)
        else:
            yield from self._stream_sqlalchemy(template, params)

    # -- internals ------------------------------------------------------------------------------
    def _table(self, stream: EventStream) -> str:
        return f"{self._quote(stream.schema)}.{self._quote(stream.table)}"

    def _stream_duckdb(self, template: str, params: dict[str, Any]) -> Iterator[pd.DataFrame]:
        sql = _bind(template, params, "${}")
        with self.engine.connect() as conn:
            raw = conn.connection.driver_connection
            duck = getattr(raw, "_ConnectionWrapper__c", raw).cursor()
            try:
                relation = duck.sql(sql, params=params or None)
                for batch in relation.to_arrow_reader(self.chunk_rows):
                    if batch.num_rows:
                        yield batch.to_pandas()
            finally:
                duck.close()

    def _stream_sqlalchemy(self, template: str, params: dict[str, Any]) -> Iterator[pd.DataFrame]:
        sql = _bind(_escape_colons(template), params, ":{}")
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, max_row_buffer=self.chunk_rows).execute(
                sa.text(sql), params
            )
            keys = list(result.keys())
            for part in result.partitions(self.chunk_rows):
                yield pd.DataFrame.from_records([tuple(r) for r in part], columns=keys)


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
