"""The bad-input corpus generator writes exactly the hostile values it promises, on DuckDB and PostgreSQL.

A corpus that quietly stored NULL instead of NaN, or trimmed a 10 kB string, would let the reliability
tests pass for the wrong reason; these tests read the tables back with plain SQL.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from amberflo_sync import transform
from amberflo_sync.demo.bad_input import (
    DUPLICATE,
    HOSTILE_TABLE,
    PAGES_TABLE,
    SCHEMA,
    SENT,
    TABLE_COLUMNS,
    TEXT_VALUE_TABLE,
    TRACK_TABLE,
    BadRow,
    change_value_type,
    corpus_rows,
    drop_table,
    quote,
    write_bad_input_warehouse,
)
from tests.demo.demo_helpers import duckdb_url, pg_query, query

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.timezone.utc)
Query = Callable[[str], list[tuple[Any, ...]]]


@pytest.fixture(params=["duckdb", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str, Query]:
    """``(url, schema suffix, run a query)`` on a DuckDB file or an isolated PostgreSQL schema."""
    if request.param == "duckdb":
        path = tmp_path / "bad.duckdb"
        return duckdb_url(path), "", lambda sql: list(query(path, sql).itertuples(index=False, name=None))
    url = request.getfixturevalue("pg_url")
    suffix = request.getfixturevalue("pg_suffix")
    return url, suffix, lambda sql: list(pg_query(url, sql).itertuples(index=False, name=None))


def _columns(run: Query, schema: str, table: str) -> dict[str, str]:
    escaped = table.replace("'", "''")
    rows = run("SELECT column_name, data_type FROM information_schema.columns "
               f"WHERE table_schema = '{schema}' AND table_name = '{escaped}' ORDER BY ordinal_position")
    return {name: data_type.lower() for name, data_type in rows}


def test_every_table_is_written_with_its_rows(target: tuple[str, str, Query]) -> None:
    url, suffix, run = target
    summary = write_bad_input_warehouse(url, suffix, now=NOW)
    expected: dict[str, int] = {}
    for row in corpus_rows(NOW):
        key = f"{SCHEMA}{suffix}.{row.table}"
        expected[key] = expected.get(key, 0) + 1
    assert summary == expected
    for table in TABLE_COLUMNS:
        assert run(f"SELECT count(*) FROM {quote(SCHEMA + suffix)}.{quote(table)}")[0][0] == expected[
            f"{SCHEMA}{suffix}.{table}"]


def test_columns_have_explicit_types_including_sql_keyword_names(target: tuple[str, str, Query]) -> None:
    url, suffix, run = target
    write_bad_input_warehouse(url, suffix, now=NOW)
    track = _columns(run, SCHEMA + suffix, TRACK_TABLE)
    assert list(track) == [name for name, _ in TABLE_COLUMNS[TRACK_TABLE]]
    assert track["value"] in ("double", "double precision")
    assert track["timestamp"] in ("timestamp with time zone",)
    assert track["order"] == "bigint" and track["_2fa"] == "boolean"
    assert _columns(run, SCHEMA + suffix, TEXT_VALUE_TABLE)["value"] in ("varchar", "text")
    assert list(_columns(run, SCHEMA + suffix, HOSTILE_TABLE)) == [name for name, _ in TABLE_COLUMNS[HOSTILE_TABLE]]


def test_non_finite_values_are_stored_as_such_not_as_null(target: tuple[str, str, Query]) -> None:
    """NaN must reach the warehouse as NaN, not NULL: the NaN-vs-NULL rule is what that row tests.
    (Compared as SQL text: pandas would turn NULL into NaN on the way back and hide the difference.)"""
    url, suffix, run = target
    write_bad_input_warehouse(url, suffix, now=NOW)
    table = f"{quote(SCHEMA + suffix)}.{quote(TRACK_TABLE)}"
    rows = run(f"SELECT id, lower(CAST(value AS VARCHAR)), value IS NULL FROM {table} "
               "WHERE id IN ('value-nan', 'value-inf', 'value-neg-inf', 'value-null', 'value-huge')")
    stored = {row_id: (text, bool(is_null)) for row_id, text, is_null in rows}
    assert stored["value-nan"] == ("nan", False)
    assert stored["value-inf"][0] in ("inf", "infinity") and stored["value-neg-inf"][0] in ("-inf", "-infinity")
    assert stored["value-null"][1] is True
    assert float(stored["value-huge"][0]) == 1e300


def test_hostile_strings_are_stored_byte_for_byte(target: tuple[str, str, Query]) -> None:
    url, suffix, run = target
    write_bad_input_warehouse(url, suffix, now=NOW)
    table = f"{quote(SCHEMA + suffix)}.{quote(TRACK_TABLE)}"
    regions = dict(run(f"SELECT id, region FROM {table} WHERE region IS NOT NULL AND id IS NOT NULL"))
    assert regions["dim-10kb"] == "x" * 10_240
    assert regions["dim-newlines"] == "line1\nline2\r\ttab"
    assert regions["dim-emoji"] == "rocket \U0001F680 café"
    assert regions["dim-punctuation"] == "a/b|c\\d\"e'f"
    assert run(f"SELECT count(*) FROM {table} WHERE id IS NULL")[0][0] == 1


def test_times_are_relative_to_now(target: tuple[str, str, Query]) -> None:
    """The 60-day horizon is relative to the run: the old row must be 61 days before ``now``."""
    url, suffix, run = target
    write_bad_input_warehouse(url, suffix, now=NOW)
    table = f"{quote(SCHEMA + suffix)}.{quote(TRACK_TABLE)}"
    (old,), = run(f"SELECT {quote('timestamp')} FROM {table} WHERE id = 'time-61-days'")
    assert old == NOW - dt.timedelta(days=61)


def test_value_type_change_casts_existing_values_and_loads_new_rows(target: tuple[str, str, Query]) -> None:
    url, suffix, run = target
    write_bad_input_warehouse(url, suffix, now=NOW)
    late = BadRow("late-abc", TRACK_TABLE, "invalid_meter_value", "text after the change", {"value": "abc"})
    change_value_type(url, suffix, to="text", new_rows=[late], now=NOW, loaded_at=NOW + dt.timedelta(minutes=1))
    assert _columns(run, SCHEMA + suffix, TRACK_TABLE)["value"] in ("varchar", "text")
    table = f"{quote(SCHEMA + suffix)}.{quote(TRACK_TABLE)}"
    values = dict(run(f"SELECT id, value FROM {table} WHERE id IN ('ok', 'late-abc', 'value-huge')"))
    assert values == {"ok": "2.5", "late-abc": "abc", "value-huge": "1e+300"}


def test_drop_table_removes_only_that_table(target: tuple[str, str, Query]) -> None:
    url, suffix, run = target
    write_bad_input_warehouse(url, suffix, now=NOW)
    drop_table(url, TEXT_VALUE_TABLE, suffix)
    tables = {r[0] for r in run(f"SELECT table_name FROM information_schema.tables "
                                f"WHERE table_schema = '{SCHEMA + suffix}'")}
    assert tables == {TRACK_TABLE, PAGES_TABLE, HOSTILE_TABLE}


def test_writing_again_replaces_the_corpus(target: tuple[str, str, Query]) -> None:
    url, suffix, run = target
    write_bad_input_warehouse(url, suffix, now=NOW)
    drop_table(url, PAGES_TABLE, suffix)
    summary = write_bad_input_warehouse(url, suffix, now=NOW)
    table = f"{quote(SCHEMA + suffix)}.{quote(TRACK_TABLE)}"
    assert run(f"SELECT count(*) FROM {table}")[0][0] == summary[f"{SCHEMA}{suffix}.{TRACK_TABLE}"]
    assert run(f"SELECT count(*) FROM {quote(SCHEMA + suffix)}.{quote(PAGES_TABLE)}")[0][0] == 2


def test_case_names_are_unique_and_outcomes_are_known() -> None:
    """Every outcome is one the sync can produce (``event_too_old`` is the one the issue asks for)."""
    rows = corpus_rows(NOW)
    assert len({r.name for r in rows}) == len(rows)
    reasons = {transform.MISSING_UNIQUE_ID, transform.MISSING_CUSTOMER_ID, transform.MISSING_EVENT_TIME,
               transform.INVALID_EVENT_TIME, transform.INVALID_METER_VALUE, "event_too_old"}
    assert {r.expected for r in rows} <= reasons | {SENT, DUPLICATE}
