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
                    con.execute(f"INSERT INTO {target} BY NAME SELECT * FROM frame_view")
                con.unregister("frame_view")
        else:
            with self._engine.begin() as conn:
                conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{actual}"'))
            frame.to_sql(table, self._engine, schema=actual, if_exists="replace" if replace else "append", index=False)

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
