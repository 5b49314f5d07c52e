"""Vectorized generation of a Segment-shaped events warehouse (DuckDB file and PostgreSQL schema).

N track events spread over three per-event tables (``api_calls``, ``file_uploaded``,
``report_exported``) of one source schema, with Segment's standard and ``context_*`` columns, a
``value`` property and eight more property columns of mixed types (text that needs sanitizing,
integers, booleans, non-integral floats, nulls). 1,000 customers. A few rows are duplicated ids
(0.1 %) and a few have no customer at all (0.02 %), so that de-duplication and rejection run on the
hot path like they do on real data.

Built with numpy and pyarrow in chunks of at most 1M rows (no per-row Python), loaded into DuckDB from
Arrow and into PostgreSQL with ``COPY … FROM STDIN (FORMAT csv)``. Generation is never timed.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

SCHEMA = "bench_prod"
EVENT_TABLES = (("api_calls", "ApiCalls"), ("file_uploaded", "File Uploaded"), ("report_exported", "Report Exported"))
CUSTOMERS = 1_000
GENERATION_CHUNK = 1_000_000
#: Loads start two days ago (on the hour): inside Amberflo's 60-day history, which the sync enforces
#: (``max_event_age_days``), and in the past even for 10M rows (7 ms of load time apart each).
BASE_MILLIS = (int(time.time()) // 3600 - 48) * 3600 * 1000

_REGIONS = ["us-west-2", "us-east-1", "eu-west-1", "eu-central-1", "ap-south-1", "sa-east-1"]
_PLANS = ["free", "starter", "pro", "enterprise"]
_ENDPOINTS = [f"/api/v{v}/{name}" for v in (1, 2) for name in
              ("items", "items/{id}", "users", "users/{id}/files", "reports?format=csv", "search|fuzzy", "café")]
_VERSIONS = [f"{a}.{b}.{c}" for a in (1, 2) for b in range(4) for c in range(3)]
_AGENTS = [
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/128.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Edge/127.0 Safari/537.36",
    "python-requests/2.32.3",
    "analytics-node/1.3.0 (+https://segment.com)",
]

#: Columns of every generated table, in warehouse order, with their SQL types (PostgreSQL spelling).
COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "text"),
    ("anonymous_id", "text"),
    ("user_id", "text"),
    ("timestamp", "timestamptz"),
    ("received_at", "timestamptz"),
    ("sent_at", "timestamptz"),
    ("original_timestamp", "timestamptz"),
    ("uuid_ts", "timestamptz"),
    ("event", "text"),
    ("event_text", "text"),
    ("context_ip", "text"),
    ("context_library_name", "text"),
    ("context_library_version", "text"),
    ("context_user_agent", "text"),
    ("value", "float8"),
    ("region", "text"),
    ("plan", "text"),
    ("endpoint", "text"),
    ("status_code", "bigint"),
    ("success", "boolean"),
    ("latency_ms", "float8"),
    ("request_id", "text"),
    ("sdk_version", "text"),
)
PROPERTY_COLUMNS = 9  # value + 8 dimensions


@dataclass(frozen=True)
class TableSpec:
    """One event table: its name, the event's original name and how many rows it gets."""

    table: str
    event_text: str
    rows: int


def table_specs(total_rows: int) -> list[TableSpec]:
    """``total_rows`` split over the three event tables (the first ones take the remainder)."""
    base, extra = divmod(total_rows, len(EVENT_TABLES))
    return [TableSpec(t, e, base + (1 if i < extra else 0)) for i, (t, e) in enumerate(EVENT_TABLES)]


def _pick(rng: np.random.Generator, values: list[str], n: int) -> pa.Array:
    return pa.array(np.asarray(values, dtype=object)[rng.integers(0, len(values), n)], type=pa.string())


def _with_nulls(array: pa.Array, rng: np.random.Generator, fraction: float) -> pa.Array:
    mask = pa.array(rng.random(len(array)) < fraction)
    return pc.if_else(mask, pa.scalar(None, type=array.type), array)


def _prefixed(prefix: str, numbers: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(prefix, pc.cast(pa.array(numbers), pa.string()), "")


def _timestamps(millis: np.ndarray) -> pa.Array:
    return pa.array(millis.astype("datetime64[ms]").astype("datetime64[us]"), type=pa.timestamp("us", tz="UTC"))


def generate_chunk(spec: TableSpec, start: int, n: int, seed: int) -> pa.Table:
    """Rows ``start … start+n`` of ``spec`` as an Arrow table (deterministic for a seed)."""
    rng = np.random.default_rng([seed, start, len(spec.table)])
    row = np.arange(start, start + n, dtype=np.int64)
    ids = row.copy()
    dup = rng.random(n) < 0.001  # a copy of an earlier row's id, loaded later
    ids[dup] = np.maximum(ids[dup] - rng.integers(1, 5_000, int(dup.sum())), 0)
    customer = rng.integers(0, CUSTOMERS, n)
    loaded = BASE_MILLIS + row * 7 + rng.integers(0, 7, n)  # uuid_ts grows with the load
    event_time = loaded - rng.integers(0, 3_600_000, n)
    received = event_time + rng.integers(5, 2_000, n)
    user = _prefixed("user_", customer)
    no_user = rng.random(n) < 0.05  # anonymous traffic: falls back to anonymous_id
    user = pc.if_else(pa.array(no_user), pa.scalar(None, pa.string()), user)
    anonymous = _prefixed(f"anon-{spec.table[:3]}-", customer * 7 + rng.integers(0, 7, n))
    nobody = no_user & (rng.random(n) < 0.004)  # ≈0.02 %: no customer at all → rejected
    anonymous = pc.if_else(pa.array(nobody), pa.scalar(None, pa.string()), anonymous)
    value = np.round(rng.gamma(2.0, 3.0, n), 2)
    integral = rng.random(n) < 0.5  # half the values are whole numbers (printed as 3.0 in meterValue)
    value[integral] = np.floor(value[integral])
    columns = {
        "id": _prefixed(f"{spec.table}-", ids),
        "anonymous_id": anonymous,
        "user_id": user,
        "timestamp": _timestamps(event_time),
        "received_at": _timestamps(received),
        "sent_at": _timestamps(event_time + 3),
        "original_timestamp": _timestamps(event_time),
        "uuid_ts": _timestamps(loaded),
        "event": pa.array(np.full(n, spec.table, dtype=object), type=pa.string()),
        "event_text": pa.array(np.full(n, spec.event_text, dtype=object), type=pa.string()),
        "context_ip": _prefixed("10.0.", rng.integers(0, 255, n)),
        "context_library_name": _pick(rng, ["analytics.js", "analytics-python", "analytics-node"], n),
        "context_library_version": _pick(rng, _VERSIONS, n),
        "context_user_agent": _pick(rng, _AGENTS, n),
        "value": _with_nulls(pa.array(value), rng, 0.1),
        "region": _pick(rng, _REGIONS, n),
        "plan": _with_nulls(_pick(rng, _PLANS, n), rng, 0.05),
        "endpoint": _pick(rng, _ENDPOINTS, n),
        "status_code": pa.array(rng.choice([200, 201, 204, 400, 404, 429, 500], n)),
        "success": pa.array(rng.random(n) < 0.97),
        "latency_ms": pa.array(np.round(rng.lognormal(3.0, 1.0, n), 3)),
        "request_id": _prefixed("req-", rng.integers(0, 2**62, n)),
        "sdk_version": _with_nulls(_pick(rng, _VERSIONS, n), rng, 0.1),
    }
    return pa.table(columns)


def chunks(spec: TableSpec, seed: int) -> Iterator[pa.Table]:
    for start in range(0, spec.rows, GENERATION_CHUNK):
        yield generate_chunk(spec, start, min(GENERATION_CHUNK, spec.rows - start), seed)


def write_duckdb(path: str, total_rows: int, seed: int = 7) -> list[TableSpec]:
    """Create ``path`` holding the three event tables; returns what was written."""
    import duckdb

    specs = table_specs(total_rows)
    with duckdb.connect(path) as con:
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{SCHEMA}"')
        for spec in specs:
            target = f'"{SCHEMA}"."{spec.table}"'
            con.execute(f"DROP TABLE IF EXISTS {target}")
            created = False
            for chunk in chunks(spec, seed):
                con.register("bench_chunk", chunk)
                if created:
                    con.execute(f"INSERT INTO {target} SELECT * FROM bench_chunk")
                else:
                    con.execute(f"CREATE TABLE {target} AS SELECT * FROM bench_chunk")
                    created = True
                con.unregister("bench_chunk")
        con.execute("CHECKPOINT")
    return specs


def write_postgres(dsn: str, schema: str, total_rows: int, seed: int = 7) -> list[TableSpec]:
    """Create ``schema`` (dropped first) with the three event tables, loaded with ``COPY``."""
    import psycopg2

    specs = table_specs(total_rows)
    columns_sql = ", ".join(f'"{name}" {sql_type}' for name, sql_type in COLUMNS)
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE; CREATE SCHEMA "{schema}"')
        for spec in specs:
            target = f'"{schema}"."{spec.table}"'
            cur.execute(f"CREATE UNLOGGED TABLE {target} ({columns_sql})")
            for chunk in chunks(spec, seed):
                buffer = io.BytesIO()
                pacsv.write_csv(chunk, buffer, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
                buffer.seek(0)
                cur.copy_expert(f"COPY {target} FROM STDIN WITH (FORMAT csv)", buffer)
            cur.execute(f"ANALYZE {target}")
    return specs


def drop_postgres(dsn: str, schema: str) -> None:
    import psycopg2

    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
