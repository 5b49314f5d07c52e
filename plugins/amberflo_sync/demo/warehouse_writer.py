"""Write generated tables to DuckDB or PostgreSQL, the way Segment loads a warehouse.

DuckDB receives Arrow tables through its own connection (``INSERT … SELECT CAST(…)`` from a
registered Arrow table); PostgreSQL receives CSV through psycopg2 ``COPY … FROM STDIN``. Every table
is created with explicit column types; every identifier is quoted. One ``Warehouse`` is one
connection and one transaction: nothing is visible to readers until ``commit()``, and the connection
is always closed (a DuckDB file accepts a single writing process).
"""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
from sqlalchemy.engine import make_url

from amberflo_sync.demo.table_model import ColumnType, WarehouseTable

_SQL_TYPES: dict[str, dict[str, str]] = {
    "duckdb": {"timestamp": "TIMESTAMPTZ", "naive_timestamp": "TIMESTAMP", "bigint": "BIGINT", "double": "DOUBLE",
               "numeric": "DECIMAL(18,2)", "boolean": "BOOLEAN", "text": "VARCHAR"},
    "postgresql": {"timestamp": "timestamptz", "naive_timestamp": "timestamp", "bigint": "bigint",
                   "double": "double precision", "numeric": "numeric(18,2)", "boolean": "boolean", "text": "text"},
}

#: (logical type, naive) of a column whose ``information_schema.columns.data_type`` is given.
ColumnKind = tuple[ColumnType, bool]


def quote(identifier: str) -> str:
    """A double-quoted SQL identifier."""
    return '"' + identifier.replace('"', '""') + '"'


def column_kind(data_type: str) -> ColumnKind:
    """The logical type of a warehouse column from its ``information_schema`` data type."""
    t = data_type.lower()
    if "timestamp" in t:
        return "timestamp", not ("with time zone" in t or "tz" in t)
    if t in ("bigint", "integer", "smallint", "hugeint", "tinyint", "int", "int8", "int4", "ubigint", "uinteger"):
        return "bigint", False
    if t.startswith(("double", "real", "float")):
        return "double", False
    if t.startswith(("numeric", "decimal")):
        return "numeric", False
    if t.startswith("bool"):
        return "boolean", False
    return "text", False


def infer_column_type(values: pa.Array | pa.ChunkedArray) -> ColumnType:
    """The logical type for a new column holding ``values``."""
    t = values.type
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return "timestamp"
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_integer(t):
        return "bigint"
    if pa.types.is_floating(t):
        return "double"
    if pa.types.is_decimal(t):
        return "numeric"
    return "text"


def conform(data: pa.Table, kinds: Mapping[str, ColumnKind]) -> pa.Table:
    """``data`` with every column cast to the Arrow type its warehouse column expects.

    Naive timestamps are read as UTC; a naive target column receives UTC wall-clock values.
    """
    arrays = []
    for name in data.column_names:
        values = data.column(name)
        ctype, naive = kinds[name]
        if pa.types.is_null(values.type):
            values = pa.chunked_array([pa.nulls(len(values), pa.large_string())])
        if ctype == "timestamp":
            if not pa.types.is_timestamp(values.type):
                values = values.cast(pa.timestamp("us"))
            values = values.cast(pa.timestamp("us", tz="UTC"), safe=False)
            if naive:
                values = values.cast(pa.timestamp("us"))
        elif ctype == "numeric":
            if not pa.types.is_decimal(values.type):
                values = values.cast(pa.float64())
        elif ctype == "text":
            if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
                values = pc.cast(values, pa.large_string())
        else:
            target = {"bigint": pa.int64(), "double": pa.float64(), "boolean": pa.bool_()}[ctype]
            if values.type != target:
                values = values.cast(target)
        arrays.append(values)
    return pa.Table.from_arrays(arrays, names=data.column_names)


class Warehouse(ABC):
    """One connection (and one transaction) to a DuckDB file or a PostgreSQL database."""

    dialect: str

    @staticmethod
    def open(url: str) -> Warehouse:
        """Connect to the SQLAlchemy ``url`` (``duckdb:////abs/file.duckdb``,
        ``postgresql+psycopg2://user@host:5432/db``)."""
        parsed = make_url(url)
        backend = parsed.get_backend_name()
        if backend == "duckdb":
            return DuckDBWarehouse(parsed.database)
        if backend in ("postgresql", "postgres"):
            return PostgresWarehouse(parsed)
        raise ValueError(f"unsupported warehouse URL {url!r}: expected duckdb:// or postgresql://")

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if exc_type is not None:
                self.rollback()
        finally:
            self.close()

    # -- dialect-specific primitives --
    @abstractmethod
    def execute(self, sql: str, params: Iterable[Any] = ()) -> None: ...

    @abstractmethod
    def fetch(self, sql: str, params: Iterable[Any] = ()) -> pd.DataFrame: ...

    @abstractmethod
    def insert(self, schema: str, table: str, data: pa.Table, kinds: Mapping[str, ColumnKind]) -> None:
        """Append ``data`` (columns named as in the table, already conformed)."""

    @abstractmethod
    def commit(self) -> None: ...

    @abstractmethod
    def rollback(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    # -- shared DDL and catalog lookups --
    def sql_type(self, ctype: ColumnType, naive: bool = False) -> str:
        return _SQL_TYPES[self.dialect]["naive_timestamp" if ctype == "timestamp" and naive else ctype]

    def drop_schema(self, schema: str) -> None:
        self.execute(f"DROP SCHEMA IF EXISTS {quote(schema)} CASCADE")

    def create_schema(self, schema: str) -> None:
        self.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}")

    def _catalog_filter(self) -> str:
        return "table_catalog = current_database()"

    def find_schema(self, schema: str) -> str | None:
        """The actual spelling of ``schema`` (identifiers compare case-insensitively), or None."""
        rows = self.fetch("SELECT schema_name FROM information_schema.schemata WHERE catalog_name = current_database()"
                          " AND lower(schema_name) = lower(?)"
                          " ORDER BY schema_name", (schema,))
        names = rows["schema_name"].tolist()
        return schema if schema in names else (names[0] if names else None)

    def find_table(self, schema: str, table: str) -> tuple[str, str] | None:
        """The actual ``(schema, table)`` matching case-insensitively, or None."""
        rows = self.fetch(
            f"SELECT table_schema, table_name FROM information_schema.tables WHERE {self._catalog_filter()}"
            " AND lower(table_schema) = lower(?) AND lower(table_name) = lower(?) ORDER BY 1, 2", (schema, table))
        pairs = list(rows.itertuples(index=False, name=None))
        return (schema, table) if (schema, table) in pairs else (pairs[0] if pairs else None)

    def columns(self, schema: str, table: str) -> dict[str, str]:
        """Column name -> data type of an existing table, in column order."""
        rows = self.fetch(
            f"SELECT column_name, data_type FROM information_schema.columns WHERE {self._catalog_filter()}"
            " AND table_schema = ? AND table_name = ? ORDER BY ordinal_position", (schema, table))
        return dict(zip(rows["column_name"], rows["data_type"]))

    def uses_naive_timestamps(self, schema: str) -> bool:
        """Whether the timestamp columns already in ``schema`` have no time zone."""
        rows = self.fetch(
            f"SELECT data_type FROM information_schema.columns WHERE {self._catalog_filter()}"
            " AND table_schema = ? AND lower(data_type) LIKE '%timestamp%'", (schema,))
        kinds = [column_kind(t) for t in rows["data_type"]]
        return bool(kinds) and all(naive for _, naive in kinds)

    def create_table(self, table: WarehouseTable, *, naive: bool = False) -> None:
        """Create ``table`` (its schema must exist) and load its rows."""
        columns = ", ".join(f"{quote(c)} {self.sql_type(t, naive)}" for c, t in table.types.items())
        self.execute(f"CREATE TABLE {quote(table.schema)}.{quote(table.name)} ({columns})")
        kinds = {c: (t, naive) for c, t in table.types.items()}
        if table.num_rows:
            self.insert(table.schema, table.name, conform(table.data, kinds), kinds)

    def read_rows(self, schema: str, table: str, key: str, values: list[str]) -> pd.DataFrame:
        """Rows of ``schema.table`` whose ``key`` column is in ``values``."""
        if not values:
            return self.fetch(f"SELECT * FROM {quote(schema)}.{quote(table)} WHERE 1 = 0")
        placeholders = ", ".join("?" for _ in values)
        return self.fetch(f"SELECT * FROM {quote(schema)}.{quote(table)} WHERE {quote(key)} IN ({placeholders})",
                          values)

    def delete_rows(self, schema: str, table: str, key: str, values: list[str]) -> None:
        if values:
            placeholders = ", ".join("?" for _ in values)
            self.execute(f"DELETE FROM {quote(schema)}.{quote(table)} WHERE {quote(key)} IN ({placeholders})", values)


class DuckDBWarehouse(Warehouse):
    dialect = "duckdb"

    def __init__(self, path: str | None) -> None:
        import duckdb

        if not path or path == ":memory:":
            raise ValueError("a DuckDB warehouse needs a file path (duckdb:////abs/path/file.duckdb)")
        self._con = duckdb.connect(path)
        self._con.execute("BEGIN TRANSACTION")
        self._views = 0

    def execute(self, sql: str, params: Iterable[Any] = ()) -> None:
        self._con.execute(sql, list(params))

    def fetch(self, sql: str, params: Iterable[Any] = ()) -> pd.DataFrame:
        params = list(params)
        data = self._con.sql(sql, params=params or None).to_arrow_table()
        mapper = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}.get
        return data.to_pandas(types_mapper=mapper)

    def insert(self, schema: str, table: str, data: pa.Table, kinds: Mapping[str, ColumnKind]) -> None:
        self._views += 1
        view = f"__demo_rows_{self._views}"
        self._con.register(view, data)
        try:
            names = ", ".join(quote(c) for c in data.column_names)
            casts = ", ".join(f"CAST({quote(c)} AS {self.sql_type(*kinds[c])})" for c in data.column_names)
            self._con.execute(f"INSERT INTO {quote(schema)}.{quote(table)} ({names}) SELECT {casts} FROM {quote(view)}")
        finally:
            self._con.unregister(view)

    def commit(self) -> None:
        self._con.execute("COMMIT")
        self._con.execute("BEGIN TRANSACTION")

    def rollback(self) -> None:
        self._con.execute("ROLLBACK")
        self._con.execute("BEGIN TRANSACTION")

    def close(self) -> None:
        try:
            self._con.execute("ROLLBACK")  # nothing pending after commit(): ends the idle transaction
        except Exception:  # noqa: BLE001 - closing must not fail
            pass
        self._con.close()


class PostgresWarehouse(Warehouse):
    dialect = "postgresql"
    _COPY_ROWS = 100_000

    def __init__(self, url: Any) -> None:
        import psycopg2

        params = {k: v for k, v in {"host": url.host, "port": url.port, "dbname": url.database,
                                     "user": url.username, "password": url.password}.items() if v is not None}
        params.update({k: v for k, v in url.query.items() if isinstance(v, str)})
        self._con = psycopg2.connect(**params)
        with self._con.cursor() as cur:
            cur.execute("SET TIME ZONE 'UTC'")

    @staticmethod
    def _pg(sql: str) -> str:
        return sql.replace("%", "%%").replace("?", "%s")

    def execute(self, sql: str, params: Iterable[Any] = ()) -> None:
        params = list(params)
        with self._con.cursor() as cur:
            cur.execute(self._pg(sql) if params else sql, params or None)

    def fetch(self, sql: str, params: Iterable[Any] = ()) -> pd.DataFrame:
        params = list(params)
        with self._con.cursor() as cur:
            cur.execute(self._pg(sql) if params else sql, params or None)
            names = [d[0] for d in cur.description]
            return pd.DataFrame(cur.fetchall(), columns=names)

    def insert(self, schema: str, table: str, data: pa.Table, kinds: Mapping[str, ColumnKind]) -> None:
        names = ", ".join(quote(c) for c in data.column_names)
        sql = f"COPY {quote(schema)}.{quote(table)} ({names}) FROM STDIN WITH (FORMAT csv)"
        options = pa_csv.WriteOptions(include_header=False)
        with self._con.cursor() as cur:
            for batch in data.to_batches(max_chunksize=self._COPY_ROWS):
                buffer = io.BytesIO()
                pa_csv.write_csv(batch, buffer, options)
                buffer.seek(0)
                cur.copy_expert(sql, buffer)

    def commit(self) -> None:
        self._con.commit()

    def rollback(self) -> None:
        self._con.rollback()

    def close(self) -> None:
        self._con.close()


# --- appending a load -------------------------------------------------------------------------------


def _case_like(reference: Iterable[str]) -> bool:
    """Whether names in this table/schema are upper-cased (Snowflake style)."""
    names = [n for n in reference if n.upper() != n.lower()]
    return bool(names) and all(n == n.upper() for n in names)


def append_rows(wh: Warehouse, schema: str, table: str, data: pa.Table,
                types: Mapping[str, ColumnType] | None = None) -> tuple[str, str]:
    """Append ``data`` to ``schema.table`` as a Segment load would: the table (and schema) are
    created when missing, and columns the table does not have yet are added first.

    Names match existing ones case-insensitively; new names follow the table's case (upper-case in
    a Snowflake-style warehouse). New timestamp columns follow the schema's time-zone convention.

    :param types: logical types of ``data``'s columns; inferred from the Arrow types when omitted.
    :returns: the actual ``(schema, table)`` written.
    """
    types = dict(types or {})
    for name in data.column_names:
        types.setdefault(name, infer_column_type(data.column(name)))
    found = wh.find_table(schema, table)
    if found is None:
        actual_schema = wh.find_schema(schema)
        if actual_schema is None:
            wh.create_schema(schema)
            actual_schema = schema
        upper = _case_like([actual_schema])
        naive = wh.uses_naive_timestamps(actual_schema)
        rename = str.upper if upper else (lambda s: s)
        renamed = data.rename_columns([rename(c) for c in data.column_names])
        created = WarehouseTable(actual_schema, rename(table), renamed,
                                 {rename(c): t for c, t in types.items() if c in data.column_names})
        wh.create_table(created, naive=naive)
        return actual_schema, created.name

    actual_schema, actual_table = found
    existing = wh.columns(actual_schema, actual_table)
    by_lower = {c.lower(): c for c in existing}
    upper = _case_like(existing)
    naive = any(column_kind(t) == ("timestamp", True) for t in existing.values())
    kinds: dict[str, ColumnKind] = {}
    names = []
    for name in data.column_names:
        actual = by_lower.get(name.lower())
        if actual is None:
            actual = name.upper() if upper else name
            wh.execute(f"ALTER TABLE {quote(actual_schema)}.{quote(actual_table)} "
                       f"ADD COLUMN {quote(actual)} {wh.sql_type(types[name], naive)}")
            by_lower[name.lower()] = actual
            kinds[actual] = (types[name], naive)
        else:
            kinds[actual] = column_kind(existing[actual])
        names.append(actual)
    if data.num_rows:
        renamed = data.rename_columns(names)
        wh.insert(actual_schema, actual_table, conform(renamed, kinds), kinds)
    return actual_schema, actual_table


#: Columns of ``users`` that record when a row was last written: they keep their latest value.
_LOAD_COLUMNS = ("received_at", "uuid_ts")


def upsert_rows(wh: Warehouse, table: WarehouseTable, key: str = "id", order_by: str = "received_at") -> None:
    """Merge ``table``'s rows into the existing table the way Segment maintains ``users``.

    Per ``key``, every column takes its non-null value with the latest ``order_by`` (an existing row
    wins ties, a late row does not overwrite newer values); ``received_at``/``uuid_ts`` take the latest.
    """
    found = wh.find_table(table.schema, table.name)
    if found is None:
        append_rows(wh, table.schema, table.name, table.data, table.types)
        return
    schema, name = found
    existing_columns = wh.columns(schema, name)
    types = {c.lower(): column_kind(t)[0] for c, t in existing_columns.items()}
    types.update({c.lower(): t for c, t in table.types.items()})
    key_column = next((c for c in existing_columns if c.lower() == key.lower()), key)
    ids = [v for v in table.data.column(key).to_pylist() if v is not None]
    frames = []
    for frame in (wh.read_rows(schema, name, key_column, ids), table.to_pandas()):
        frame = frame.rename(columns=str.lower)
        for column in frame.columns:
            if types.get(column) == "timestamp":
                frame[column] = pd.to_datetime(frame[column], utc=True)  # naive warehouse values are UTC
        frames.append(frame.astype(object))
    combined = pd.concat(frames, ignore_index=True)
    if order_by in combined:
        combined = combined.sort_values(order_by, kind="stable", na_position="first")
    grouped = combined.groupby(key.lower(), sort=True)
    merged = grouped.last()
    for column in _LOAD_COLUMNS:
        if column in merged:
            merged[column] = grouped[column].max()
    merged = merged.reset_index()
    arrays = [pa.array(merged[c].where(merged[c].notna(), None).tolist()) for c in merged.columns]
    data = pa.Table.from_arrays(arrays, names=list(merged.columns))
    wh.delete_rows(schema, name, key_column, ids)
    append_rows(wh, schema, name, data, {c: types[c] for c in merged.columns})
