"""A tiny test warehouse writer: exact rows into DuckDB or PostgreSQL, Segment-typed.

Tests state the rows they need and the records they expect; the big realistic data comes from
``amberflo_sync.demo``. Schemas get a per-test prefix on PostgreSQL so tests never collide.
"""

from __future__ import annotations

from contextlib import contextmanager

import pandas as pd
import sqlalchemy as sa

from amberflo_sync.reader import create_engine


class Warehouse:
    """Writes DataFrames as warehouse tables.

    :param url: SQLAlchemy URL (``duckdb:///file`` or PostgreSQL).
    :param prefix: prepended to every schema name (isolation on a shared server).
    """

    def __init__(self, url: str, *, prefix: str = "") -> None:
        self.url = url
        self.prefix = prefix
        self.is_duckdb = url.startswith("duckdb")
        self.schemas: set[str] = set()
        # DuckDB refuses a second in-process connection with another configuration, so the test
        # writer opens the file exactly like the reader does.
        self._engine = create_engine(url)

    def schema(self, name: str) -> str:
        return self.prefix + name

    def write(self, schema: str, table: str, frame: pd.DataFrame, *, replace: bool = True) -> None:
        """Create (or replace) ``schema.table`` holding ``frame`` (schema name gets the prefix)."""
        actual = self.schema(schema)
        self.schemas.add(actual)
        if self.is_duckdb:
            with self._duck() as con:
                con.execute(f'CREATE SCHEMA IF NOT EXISTS "{actual}"')
                con.register("frame_view", frame)
                target = f'"{actual}"."{table.replace(chr(34), chr(34) * 2)}"'
                if replace:
                    con.execute(f"CREATE OR REPLACE TABLE {target} AS SELECT * FROM frame_view")
                else:
                    existing = {r[0] for r in con.execute(f"SELECT * FROM {target} LIMIT 0").description}
                    for name, sql_type, *_ in con.execute("DESCRIBE SELECT * FROM frame_view").fetchall():
                        if name not in existing:  # schema drift: Segment adds the column first
                            con.execute(f'ALTER TABLE {target} ADD COLUMN "{name}" {sql_type}')
                    con.execute(f"INSERT INTO {target} BY NAME SELECT * FROM frame_view")
                con.unregister("frame_view")
        else:
            with self._engine.begin() as conn:
                conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{actual}"'))
            if not replace:
                self._add_missing_pg_columns(actual, table, frame)
            frame.to_sql(table, self._engine, schema=actual, if_exists="replace" if replace else "append", index=False)

    def _add_missing_pg_columns(self, schema: str, table: str, frame: pd.DataFrame) -> None:
        with self._engine.begin() as conn:
            existing = {r[0] for r in conn.execute(sa.text(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = :s AND table_name = :t"),
                {"s": schema, "t": table})}
            for name, dtype in frame.dtypes.items():
                if name in existing:
                    continue
                if isinstance(dtype, pd.DatetimeTZDtype):
                    sql_type = "timestamptz"
                elif pd.api.types.is_bool_dtype(dtype):
                    sql_type = "boolean"
                elif pd.api.types.is_integer_dtype(dtype):
                    sql_type = "bigint"
                elif pd.api.types.is_float_dtype(dtype):
                    sql_type = "double precision"
                else:
                    sql_type = "text"
                conn.exec_driver_sql(f'ALTER TABLE "{schema}"."{table}" ADD COLUMN "{name}" {sql_type}')

    def execute(self, sql: str) -> None:
        if self.is_duckdb:
            with self._duck() as con:
                con.execute(sql)
        else:
            with self._engine.begin() as conn:
                conn.exec_driver_sql(sql)

    @contextmanager
    def _duck(self):
        with self._engine.connect() as conn:
            raw = conn.connection.driver_connection
            yield getattr(raw, "_ConnectionWrapper__c", raw)
            conn.commit()

    def drop_all(self) -> None:
        for schema in self.schemas:
            self.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    def dispose(self) -> None:
        self._engine.dispose()
