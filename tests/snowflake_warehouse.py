"""A Snowflake-speaking server on loopback (``fakesnow[server]``) and a test warehouse writer for it.

The sync reaches it exactly as it reaches Snowflake: a ``snowflake``-type Airflow connection made
like the provider's form (account, user, password, warehouse, database), plus the extras a local
server needs (``host``, ``port`` and ``engine_kwargs.connect_args.protocol = "http"``).

Known fakesnow gaps this helper works around (not the sync's behaviour):

* a NULL ``TIMESTAMP`` comes back as the epoch (fakesnow's ``arrow.py`` builds the timestamp array
  without the null mask): :meth:`SnowflakeWarehouse.write` refuses frames with NULL timestamps, so
  every fixture seeded here states its timestamps — the workaround lives in the fixture;
* inserts are slow (~6k rows/min): seed small tables.
"""

from __future__ import annotations

import decimal
import json
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from collections.abc import Iterator

import pandas as pd

ACCOUNT, USER, PASSWORD, WAREHOUSE = "fake_account", "sync_user", "fake-password-123", "COMPUTE_WH"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def fakesnow_server() -> Iterator[int]:
    """Run ``python -m fakesnow -s`` on a free loopback port; yields the port."""
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "fakesnow", "-s", "--host", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("fakesnow server did not start") from None
                time.sleep(0.2)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


def snowflake_connection(port: int, database: str, **extra) -> dict:
    """A ``snowflake`` connection as the provider's form makes it, plus the local-server extras."""
    return {
        "conn_type": "snowflake",
        "login": USER,
        "password": PASSWORD,
        "extra": {"account": ACCOUNT, "warehouse": WAREHOUSE, "database": database,
                  "host": "127.0.0.1", "port": port,
                  "engine_kwargs": {"connect_args": {"protocol": "http"}}, **extra},
    }


def _snowflake_type(series: pd.Series) -> str:
    dtype = series.dtype
    if isinstance(dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(dtype):
        return "TIMESTAMP_NTZ"  # Segment's Snowflake timestamps: naive UTC
    if pd.api.types.is_bool_dtype(dtype):
        return "BOOLEAN"
    if pd.api.types.is_integer_dtype(dtype):
        return "NUMBER(38,0)"
    if pd.api.types.is_float_dtype(dtype):
        return "FLOAT"
    values = series.dropna()
    if len(values) and all(isinstance(v, bool) for v in values):
        return "BOOLEAN"
    if len(values) and all(isinstance(v, decimal.Decimal) for v in values):
        return "NUMBER(38,6)"
    return "VARCHAR"


class SnowflakeWarehouse:
    """Writes DataFrames into one fakesnow database (a fresh one per test), upper-case names as
    Snowflake stores unquoted identifiers."""

    def __init__(self, port: int) -> None:
        import snowflake.connector

        self.port = port
        self.database = f"DB_{uuid.uuid4().hex[:8].upper()}"
        self._conn = snowflake.connector.connect(account=ACCOUNT, user=USER, password=PASSWORD, host="127.0.0.1",
                                                 port=port, protocol="http", warehouse=WAREHOUSE)
        self._conn.cursor().execute(f"CREATE DATABASE IF NOT EXISTS {self.database}")
        self._conn.cursor().execute(f"USE DATABASE {self.database}")

    def connection(self, **extra) -> dict:
        return snowflake_connection(self.port, self.database, **extra)

    def connection_json(self, **extra) -> str:
        return json.dumps(self.connection(**extra))

    def schema(self, name: str) -> str:
        return name

    def write(self, schema: str, table: str, frame: pd.DataFrame, *, replace: bool = True) -> None:
        cursor = self._conn.cursor()
        cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {schema.upper()}")
        target = f"{schema.upper()}.{table.upper()}"
        columns = [(name.upper(), _snowflake_type(frame[name])) for name in frame.columns]
        for name, sql_type in columns:
            if sql_type == "TIMESTAMP_NTZ" and frame[name.lower()].isna().any():
                raise ValueError(f"{table}.{name}: fakesnow returns a NULL TIMESTAMP as the epoch; seed no NULLs")
        if replace:
            cursor.execute(f"CREATE OR REPLACE TABLE {target} ({', '.join(f'{n} {t}' for n, t in columns)})")
        rows = [tuple(_plain(v) for v in row) for row in frame.itertuples(index=False, name=None)]
        placeholders = ", ".join(["%s"] * len(columns))
        cursor.executemany(f"INSERT INTO {target} ({', '.join(n for n, _ in columns)}) VALUES ({placeholders})", rows)

    def dispose(self) -> None:
        self._conn.close()


def _plain(value):
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, pd.Timestamp):
        ts = value.tz_convert("UTC").tz_localize(None) if value.tzinfo else value
        return ts.to_pydatetime()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value
