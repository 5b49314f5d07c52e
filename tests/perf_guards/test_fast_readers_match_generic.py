"""The fast extraction paths read exactly what the generic SQLAlchemy path reads (issue 6).

DuckDB (Arrow reader, duplicates ranked through ``rowid``) and PostgreSQL (``COPY … TO STDOUT`` as
CSV parsed by pyarrow) must hand the mapping the same rows, types and duplicate ranks as a plain
server-side cursor — CSV's awkward values included: empty strings vs NULL, quotes, commas,
newlines, backslashes, the text ``NULL``, NaN and ±Infinity, ``numeric`` NaN.
"""

from __future__ import annotations

import datetime as dt
import decimal

import numpy as np
import pandas as pd
import pytest

from amberflo_sync.reader import EventStream, WarehouseReader, Window, create_engine
from amberflo_sync.transform import DUP_RANK_COLUMN, to_meter_records
from tests.segment_rows import BASE_TIME, event_rows

AWKWARD_TEXT = ["NULL", "", "null", "a,b", 'say "hi"', "two\nlines", "back\\slash", " padded ", "tab\there",
                "ünï/cødé|😀", "\\N", "x" * 300, "'quoted'", "\r\n"]


def awkward_frame(n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    frame = event_rows(n, event_text="ApiCalls")
    frame.loc[[5, 17], "id"] = frame.loc[[3, 4], "id"].to_numpy()  # duplicates, later copies
    frame.loc[9, "id"] = None
    frame.loc[11, ["user_id", "anonymous_id"]] = None
    frame.loc[12, "timestamp"] = pd.NaT
    frame["value"] = [[1.5, None, float("nan"), 2.0, -0.0, 1e20][i % 6] for i in range(n)]
    frame["note"] = [AWKWARD_TEXT[i % len(AWKWARD_TEXT)] if i % 7 else None for i in range(n)]
    # within ±2**53: a BIGINT column with NULLs becomes float64 per chunk on every path (so a bigger
    # value's digits depend on whether its chunk holds a NULL — a known gap of the reader, not of
    # the fast paths)
    frame["count"] = pd.array([None if i % 5 == 0 else int(rng.integers(-2**53, 2**53)) for i in range(n)], dtype="Int64")
    frame["ratio"] = [[0.1, float("inf"), float("-inf"), None, 123456789.123, 5e-324][i % 6] for i in range(n)]
    frame["flag"] = pd.array([None if i % 4 == 0 else bool(i % 3) for i in range(n)], dtype="boolean")
    frame["seen_at"] = [None if i % 6 == 0 else BASE_TIME + dt.timedelta(microseconds=int(rng.integers(0, 10**12)))
                        for i in range(n)]
    frame["seen_at"] = pd.to_datetime(frame["seen_at"], utc=True)
    return frame


def both_paths(url: str, schema: str, table: str, chunk_rows: int = 7) -> tuple[list[pd.DataFrame], list[pd.DataFrame]]:
    """The chunks of the same window through the fast path and through the generic path."""
    reader = WarehouseReader(create_engine(url), chunk_rows=chunk_rows)
    try:
        stream = EventStream(schema, table, "track")
        upper = reader.max_cursor(stream, "uuid_ts")
        window = Window("uuid_ts", lower=upper - dt.timedelta(days=1), upper=upper)
        fast = list(reader.extract_window(stream, window))
        assert all(len(c) <= chunk_rows for c in fast)
        names = [c.name for c in reader.columns(schema, table)]
        template, params = reader._window_select(stream, window, names, row_id=None)
        generic = list(reader._stream_sqlalchemy(template, params))
    finally:
        reader.engine.dispose()
    return fast, generic


def _rows(chunks: list[pd.DataFrame]) -> pd.DataFrame:
    # chunks may differ in dtype (an integer column with NULLs in one chunk only): compare values
    order = ["id", DUP_RANK_COLUMN, "uuid_ts"]
    frame = pd.concat([c.astype(object) for c in chunks], ignore_index=True)
    return frame.sort_values(order, na_position="first", key=lambda c: c.astype(str)).reset_index(drop=True)


def _mapped(chunks: list[pd.DataFrame]) -> tuple:
    batches = [to_meter_records(c, kind="track", table="t") for c in chunks]
    return (sorted(r for b in batches for r in b.records), sum(b.duplicates for b in batches),
            sorted(x for b in batches for x in b.rejected["reason"]))


def _plain_values(column: pd.Series, *, integer: bool) -> list:
    """Values with NULL as None. An integer column is float64 in the chunks that hold a NULL (NULL
    as NaN or NA, depending on the path), and chunk boundaries differ between paths: for it, whole
    floats compare as ints and NaN as NULL. Float columns keep NaN apart from NULL."""
    out = []
    for v in column:
        if v is None or v is pd.NA or v is pd.NaT or (integer and isinstance(v, float) and v != v):
            out.append(None)
        elif integer and isinstance(v, float) and v.is_integer():
            out.append(int(v))
        else:
            out.append(v)
    return out


def assert_same_rows(fast_chunks: list[pd.DataFrame], plain_chunks: list[pd.DataFrame]) -> None:
    fast, plain = _rows(fast_chunks), _rows(plain_chunks)
    assert list(fast.columns) == list(plain.columns)
    assert fast[DUP_RANK_COLUMN].tolist() == plain[DUP_RANK_COLUMN].tolist()
    for column in fast.columns:
        integer = column == "count"
        assert repr(_plain_values(fast[column], integer=integer)) == repr(_plain_values(plain[column], integer=integer)), column
    assert _mapped(fast_chunks) == _mapped(plain_chunks)


def test_duckdb_arrow_path_matches_the_generic_path(duckdb_warehouse):
    duckdb_warehouse.write("prod", "api_calls", awkward_frame())
    fast, plain = both_paths(duckdb_warehouse.url, duckdb_warehouse.schema("prod"), "api_calls")
    assert_same_rows(fast, plain)
    assert sum((c[DUP_RANK_COLUMN] > 1).sum() for c in fast) == 2


def test_postgres_copy_path_matches_the_generic_path(pg_warehouse):
    frame = awkward_frame()
    frame["amount"] = [decimal.Decimal(["12.50", "NaN", "-3", "1E+2"][i % 4]) if i % 9 else None for i in range(len(frame))]
    pg_warehouse.write("prod", "api_calls", frame)
    schema = pg_warehouse.schema("prod")
    pg_warehouse.execute(f'ALTER TABLE "{schema}"."api_calls" ALTER COLUMN "amount" TYPE numeric USING "amount"::numeric')
    fast, plain = both_paths(pg_warehouse.url, schema, "api_calls")
    assert_same_rows(fast, plain)
    notes = pd.concat([c["note"] for c in fast])
    assert notes.isna().sum() == pd.concat([c["note"] for c in plain]).isna().sum() > 0 and (notes == "").sum() > 0


def test_postgres_copy_path_is_taken(pg_warehouse, monkeypatch):
    pg_warehouse.write("prod", "api_calls", event_rows(3))
    reader = WarehouseReader(create_engine(pg_warehouse.url), chunk_rows=2)
    monkeypatch.setattr(reader, "_stream_sqlalchemy", lambda *a: pytest.fail("took the generic path"))
    try:
        stream = EventStream(pg_warehouse.schema("prod"), "api_calls", "track")
        assert sum(len(c) for c in reader.extract_window(stream, Window(None))) == 3
    finally:
        reader.engine.dispose()


def test_duckdb_spills_to_the_system_temp_dir_next_to_a_read_only_file(duckdb_warehouse, monkeypatch):
    """DuckDB spills next to the database file by default; a read-only location must not make a
    big window fail once the reader caps DuckDB's memory."""
    import amberflo_sync.reader as reader_module

    duckdb_warehouse.write("prod", "api_calls", event_rows(5))
    monkeypatch.setattr(reader_module.os, "access", lambda path, mode: False)
    reader = WarehouseReader(create_engine(duckdb_warehouse.url), chunk_rows=2)
    try:
        stream = EventStream(duckdb_warehouse.schema("prod"), "api_calls", "track")
        for _ in range(3):  # the cap does not drift from read to read
            assert sum(len(c) for c in reader.extract_window(stream, Window("uuid_ts"))) == 5
        with reader.engine.connect() as conn:
            setting = conn.exec_driver_sql("SELECT current_setting('temp_directory')").scalar()
            limit = conn.exec_driver_sql("SELECT current_setting('memory_limit')").scalar()
        assert "amberflo-sync-duckdb-" in setting
        assert limit == "122.0 MiB"  # 128MB
    finally:
        reader.engine.dispose()


@pytest.mark.parametrize("text, expected", [("18.8 GiB", 18.8 * 2**30), ("128MB", 128e6), ("122.0 MiB", 122 * 2**20),
                                            ("0 bytes", float("inf")), ("512 KiB", 512 * 1024)])
def test_duckdb_limits_are_read_in_bytes(text, expected):
    from amberflo_sync.reader import _duckdb_bytes

    assert _duckdb_bytes(text) == expected


def test_a_lower_duckdb_limit_someone_chose_is_kept(duckdb_warehouse):
    duckdb_warehouse.write("prod", "api_calls", event_rows(5))
    reader = WarehouseReader(create_engine(duckdb_warehouse.url), chunk_rows=2)
    try:
        with reader.engine.connect() as conn:
            conn.exec_driver_sql("SET memory_limit = '64MB'")
        stream = EventStream(duckdb_warehouse.schema("prod"), "api_calls", "track")
        assert sum(len(c) for c in reader.extract_window(stream, Window("uuid_ts"))) == 5
        with reader.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT current_setting('memory_limit')").scalar() == "61.0 MiB"
    finally:
        reader.engine.dispose()
