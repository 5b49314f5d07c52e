"""Helpers shared by the demo generator tests (reading DuckDB files and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pandas as pd

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.timezone.utc)
EVENTS = 20_000


def duckdb_url(path: Path) -> str:
    return f"duckdb:///{path}"


def query(path: Path, sql: str, params: list | None = None) -> pd.DataFrame:
    """Run ``sql`` on a DuckDB file opened read-only."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql, params or []).df()
    finally:
        con.close()


def scalar(path: Path, sql: str, params: list | None = None):
    return query(path, sql, params).iloc[0, 0]


def tables_of(path: Path, schema: str) -> set[str]:
    return set(query(path, "SELECT table_name FROM information_schema.tables WHERE table_schema = ?", [schema])
               ["table_name"])


def columns_of(path: Path, schema: str, table: str) -> dict[str, str]:
    frame = query(path, "SELECT column_name, data_type FROM information_schema.columns "
                        "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position", [schema, table])
    return dict(zip(frame["column_name"], frame["data_type"]))



def pg_connect(url: str):
    """A psycopg2 connection for a ``postgresql+psycopg2://`` URL."""
    import psycopg2
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    params = {"host": parsed.host, "port": parsed.port, "dbname": parsed.database, "user": parsed.username,
              "password": parsed.password}
    return psycopg2.connect(**{k: v for k, v in params.items() if v is not None})


def pg_query(url: str, sql: str, params: tuple = ()) -> pd.DataFrame:
    con = pg_connect(url)
    try:
        with con.cursor() as cur:
            cur.execute(sql, params or None)
            return pd.DataFrame(cur.fetchall(), columns=[d[0] for d in cur.description])
    finally:
        con.close()
