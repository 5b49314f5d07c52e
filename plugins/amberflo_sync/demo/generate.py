"""Generate a realistic Segment warehouse of any size: the embedded demo and the test fixture factory.

The warehouse follows ``shared/spec/warehouse.md``: source schemas ``prod`` (web) and ``ios_app``
(mobile) with ``pages``/``screens``, ``tracks``, one table per track event, ``identifies``, ``users``
(and ``groups``/``aliases`` in ``prod``); Engage schemas ``engage_default`` (identify-shaped) and
``personas_legacy`` (track-shaped). It carries the quirks a sync must survive: anonymous, blank and
missing user ids, null timestamps, duplicate ``id``s, late rows, null properties, values Amberflo
does not accept as they are, and columns that exist in some tables only.

Usage::

    PYTHONPATH=plugins python -m amberflo_sync.demo.generate --url duckdb:////tmp/demo.duckdb --events 20000

Data are deterministic for a given ``seed`` and ``now``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from collections.abc import Sequence

import pandas as pd
import pyarrow as pa

from amberflo_sync.demo.engage_spaces import (
    IDENTIFY_SCHEMA,
    KEYS,
    TRACK_SCHEMA,
    engage_tables,
    initial_changes,
    later_changes,
)
from amberflo_sync.demo.event_sources import PROD, SOURCES, allocate, customer_profiles, source_tables
from amberflo_sync.demo.population import build_population, customer_count
from amberflo_sync.demo.random_columns import SECOND, LoadSchedule, Quirks, choice, stream
from amberflo_sync.demo.table_model import WarehouseTable
from amberflo_sync.demo.warehouse_writer import Warehouse, append_rows, quote, upsert_rows

#: Schemas the generator owns (and drops before writing), before suffix and case are applied.
OWNED_SCHEMAS = tuple(s.schema for s in SOURCES) + (IDENTIFY_SCHEMA, TRACK_SCHEMA)

#: Quirk rates of a later load: a tenth of its rows arrive days late (a retried or replayed load).
BATCH_QUIRKS = Quirks(late=0.10, null_timestamp=0.002, duplicate=0.005, late_loads=1)


def default_now() -> dt.datetime:
    """The current UTC time truncated to the hour."""
    return dt.datetime.now(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)


def _epoch_us(now: dt.datetime | None, default: dt.datetime) -> int:
    moment = default if now is None else now
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    delta = moment.astimezone(dt.timezone.utc) - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * SECOND + delta.microseconds


def build_warehouse(events: int = 20_000, seed: int = 42, now: dt.datetime | None = None) -> list[WarehouseTable]:
    """Every table of the demo warehouse, in memory (no I/O), with lower-case names.

    :param events: page, screen and track calls to generate (distinct message ids, spread over the
        call tables by fixed shares); duplicate deliveries (~0.5%) come on top.
    :param seed: random seed; the same seed and ``now`` give the same data.
    :param now: the end of the generated period (default: this hour); no ``uuid_ts`` is later.
    """
    if events < 0:
        raise ValueError("events must be >= 0")
    now_us = _epoch_us(now, default_now())
    population = build_population(seed, events)
    schedule = LoadSchedule.hourly(seed, now_us)
    profiles = customer_profiles(seed, population, now_us)
    specs = [(source, table) for source in SOURCES for table in source.tables]
    counts = allocate(events, [table.share for _, table in specs])
    tables: list[WarehouseTable] = []
    for source in SOURCES:
        rows = {table.name: count for (owner, table), count in zip(specs, counts) if owner is source}
        tables += source_tables(source, rows, seed=seed, label="base", population=population, profiles=profiles,
                                schedule=schedule, quirks=Quirks())
    tables += engage_tables(seed, "base", initial_changes(seed, population, schedule), population)
    return tables


def physical_schema(schema: str, *, suffix: str = "", uppercase: bool = False) -> str:
    """The warehouse name of a generated schema."""
    name = schema + suffix
    return name.upper() if uppercase else name


def _physical(table: WarehouseTable, suffix: str, uppercase: bool) -> WarehouseTable:
    schema = physical_schema(table.schema, suffix=suffix, uppercase=uppercase)
    return table.renamed(str.upper if uppercase else (lambda s: s), schema=schema)


def generate_warehouse(url: str, events: int = 20_000, seed: int = 42, now: dt.datetime | None = None,
                       uppercase: bool = False, naive_timestamps: bool = False, *,
                       schema_suffix: str = "") -> dict[str, int]:
    """Write a complete Segment warehouse to ``url``, replacing the schemas it owns.

    :param url: SQLAlchemy URL: ``duckdb:////abs/path/file.duckdb`` or
        ``postgresql+psycopg2://user@host:5432/db``.
    :param events: page, screen and track calls (see :func:`build_warehouse`).
    :param seed: random seed.
    :param now: end of the generated period (default: current UTC hour); naive means UTC.
    :param uppercase: upper-case every schema, table and column name, as Snowflake does.
    :param naive_timestamps: ``timestamp`` columns without time zone holding UTC (Redshift);
        default ``timestamp with time zone`` (Segment's Postgres warehouses).
    :param schema_suffix: appended to every schema name (``prod_t1``), e.g. to isolate tests.
    :returns: rows per ``schema.table`` (physical names).
    """
    tables = [_physical(t, schema_suffix, uppercase) for t in build_warehouse(events, seed, now)]
    schemas = [physical_schema(s, suffix=schema_suffix, uppercase=uppercase) for s in OWNED_SCHEMAS]
    with Warehouse.open(url) as wh:
        for schema in schemas:
            wh.drop_schema(schema)
            wh.create_schema(schema)
        for table in tables:
            wh.create_table(table, naive=naive_timestamps)
        wh.commit()
    return {t.qualified_name: t.num_rows for t in sorted(tables, key=lambda t: (t.schema, t.name))}


def append_load(url: str, schema: str, table: str, rows: pd.DataFrame) -> int:
    """Insert ``rows`` into ``schema.table`` like a Segment load: columns the table does not have
    yet are added first (schema drift); the table is created if it does not exist.

    Names match case-insensitively (``value`` fills ``VALUE``); naive datetimes are read as UTC.
    Types of new columns come from the DataFrame dtypes (datetime → timestamp, int → bigint,
    float → double, bool → boolean, Decimal → numeric, anything else → text).

    :returns: the number of rows inserted.
    """
    data = pa.Table.from_pandas(rows, preserve_index=False)
    with Warehouse.open(url) as wh:
        append_rows(wh, schema, table, data)
        wh.commit()
    return len(rows)


def _with_new_property(table: WarehouseTable, seed: int, name: str, values: Sequence[str]) -> WarehouseTable:
    """``table`` with one more text property column (a property Segment has not seen before)."""
    rng = stream(seed, "drift", table.schema, table.name, name)
    column = choice(rng, values, table.num_rows, null_rate=0.2)
    return WarehouseTable(table.schema, table.name, table.data.append_column(name, column),
                          {**table.types, name: "text"})


def build_batch(events: int, seed: int, now: dt.datetime | None, *, customers: int,
                engage_state: pd.DataFrame | None) -> list[WarehouseTable]:
    """The tables of one later Segment load (no I/O): new calls received during the last hour and
    ~10% late ones received days ago, all with ``uuid_ts = now``; a few identifies; Engage changes.

    :param customers: number of customers the base warehouse has (``user_0001`` …).
    :param engage_state: current ``engage_default.users`` (lower-case columns), or None.
    """
    now_us = _epoch_us(now, dt.datetime.now(dt.timezone.utc).replace(microsecond=0))
    label = f"batch-{now_us // SECOND}"
    population = build_population(seed, events, customers=customers)
    schedule = LoadSchedule.single(now_us)
    profiles = customer_profiles(seed, population, now_us)
    specs = [(source, table) for source in SOURCES for table in source.tables]
    counts = allocate(events, [table.share for _, table in specs])
    tables: list[WarehouseTable] = []
    for source in SOURCES:
        rows = {table.name: count for (owner, table), count in zip(specs, counts) if owner is source}
        tables += source_tables(source, rows, seed=seed, label=label, population=population, profiles=profiles,
                                schedule=schedule, quirks=BATCH_QUIRKS,
                                identify_customers=max(1, events // 50), with_side_tables=False)
    tables = [_with_new_property(t, seed, "sdk_version", ("2.2.0", "2.3.0-beta"))
              if (t.schema, t.name) == (PROD.schema, "api_calls") else t for t in tables]
    changes = later_changes(seed, population, schedule, engage_state, count=max(1, events // 100))
    tables += engage_tables(seed, label, changes, population)
    return tables


def load_new_batch(url: str, events: int = 1_000, seed: int = 7, now: dt.datetime | None = None, *,
                   schema_suffix: str = "") -> dict[str, int]:
    """Append a fresh Segment load to a warehouse made by :func:`generate_warehouse`.

    New rows land in the same schemas with ``uuid_ts = now``: calls received in the last hour, ~10%
    late calls whose ``timestamp``/``received_at`` are days old, ~0.5% duplicate deliveries, a few
    identifies (``users`` rows are merged in place, as Segment upserts them), Engage audience
    changes, and a property never seen before (``prod.api_calls.sdk_version``: schema drift).
    Upper-case and naive-timestamp warehouses are detected and followed.

    :param events: page, screen and track calls in the load.
    :param seed: random seed (use a different one per batch for different calls).
    :param now: the load time (default: the current UTC second); must be after the base's ``now``
        for the rows to sort after it.
    :param schema_suffix: the suffix the warehouse was generated with.
    :returns: rows appended (or, for ``users``, upserted) per ``schema.table``.
    """
    summary: dict[str, int] = {}
    with Warehouse.open(url) as wh:
        users = wh.find_table(PROD.schema + schema_suffix, "users")
        customers = customer_count(events)
        if users is not None:
            customers = int(wh.fetch(f"SELECT count(*) AS n FROM {quote(users[0])}.{quote(users[1])}")["n"].iloc[0])
        state = None
        engage_users = wh.find_table(IDENTIFY_SCHEMA + schema_suffix, "users")
        if engage_users is not None:
            state = wh.fetch(f"SELECT * FROM {quote(engage_users[0])}.{quote(engage_users[1])}")
            state = state.rename(columns={c: c.lower() for c in state.columns})
            state = state[[c for c in state.columns if c == "id" or c in KEYS]]
        for table in build_batch(events, seed, now, customers=max(1, customers), engage_state=state):
            schema = table.schema + schema_suffix
            if table.name == "users":
                upsert_rows(wh, WarehouseTable(schema, table.name, table.data, table.types))
                actual = wh.find_table(schema, table.name) or (schema, table.name)
            else:
                actual = append_rows(wh, schema, table.name, table.data, table.types)
            summary[f"{actual[0]}.{actual[1]}"] = table.num_rows
        wh.commit()
    return dict(sorted(summary.items()))


# --- command line -------------------------------------------------------------------------------------


def _parse_now(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m amberflo_sync.demo.generate --url URL --events N [--seed S] [--uppercase]
    [--naive-timestamps] [--now ISO] [--schema-suffix S] [--new-batch]``"""
    parser = argparse.ArgumentParser(prog="python -m amberflo_sync.demo.generate",
                                     description="Generate a realistic Segment warehouse (DuckDB or PostgreSQL).")
    parser.add_argument("--url", required=True, help="duckdb:////abs/path/file.duckdb or postgresql+psycopg2://…")
    parser.add_argument("--events", type=int, default=20_000, help="page/screen/track calls (default 20000)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--now", type=_parse_now, default=None,
                        help="end of the period, ISO-8601 (default: this hour, UTC)")
    parser.add_argument("--uppercase", action="store_true", help="upper-case identifiers (Snowflake)")
    parser.add_argument("--naive-timestamps", action="store_true", help="timestamp without time zone (Redshift)")
    parser.add_argument("--schema-suffix", default="", help="suffix for every schema name")
    parser.add_argument("--new-batch", action="store_true",
                        help="append one new Segment load to an existing demo warehouse instead")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.new_batch:
        summary = load_new_batch(args.url, args.events, args.seed, args.now, schema_suffix=args.schema_suffix)
    else:
        summary = generate_warehouse(args.url, args.events, args.seed, args.now, args.uppercase,
                                     args.naive_timestamps, schema_suffix=args.schema_suffix)
    elapsed = time.perf_counter() - started
    width = max((len(k) for k in summary), default=10)
    for name, rows in summary.items():
        print(f"{name:<{width}}  {rows:>10,}")
    print(f"{'total':<{width}}  {sum(summary.values()):>10,}  rows in {elapsed:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["OWNED_SCHEMAS", "append_load", "build_batch", "build_warehouse", "default_now", "generate_warehouse",
           "load_new_batch", "main"]
