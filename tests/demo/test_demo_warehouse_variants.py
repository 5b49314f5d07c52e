"""Determinism, Snowflake-style upper-case identifiers, Redshift-style naive timestamps, sizes."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from tests.demo.demo_helpers import NOW, columns_of, duckdb_url, query, scalar, tables_of

from amberflo_sync.demo.generate import build_warehouse, generate_warehouse

REPO = Path(__file__).resolve().parents[2]


def table_frame(path: Path, schema: str, table: str) -> pd.DataFrame:
    return query(path, f'SELECT * FROM "{schema}"."{table}" ORDER BY ALL')


def test_same_seed_and_now_give_identical_warehouses(tmp_path):
    first, second = tmp_path / "a.duckdb", tmp_path / "b.duckdb"
    summary = generate_warehouse(duckdb_url(first), events=3_000, seed=5, now=NOW)
    assert generate_warehouse(duckdb_url(second), events=3_000, seed=5, now=NOW) == summary
    for name in summary:
        schema, table = name.split(".")
        pd.testing.assert_frame_equal(table_frame(first, schema, table), table_frame(second, schema, table))


def test_another_seed_gives_other_data(tmp_path):
    a = {t.qualified_name: t for t in build_warehouse(2_000, seed=1, now=NOW)}
    b = {t.qualified_name: t for t in build_warehouse(2_000, seed=2, now=NOW)}
    assert set(a["prod.pages"].data.column("id").to_pylist()).isdisjoint(b["prod.pages"].data.column("id").to_pylist())


def test_now_moves_every_time_but_not_the_rest(tmp_path):
    a = build_warehouse(1_000, seed=3, now=NOW)
    b = build_warehouse(1_000, seed=3, now=NOW + dt.timedelta(days=1))
    pages_a, pages_b = a[0].to_pandas(), b[0].to_pandas()
    assert pages_a["id"].equals(pages_b["id"])
    assert ((pages_b["received_at"] - pages_a["received_at"]) == dt.timedelta(days=1)).all()


def test_default_now_is_the_current_hour(tmp_path):
    summary = generate_warehouse(duckdb_url(tmp_path / "w.duckdb"), events=500)
    latest = scalar(tmp_path / "w.duckdb", "SELECT max(uuid_ts) FROM prod.tracks")
    hour = dt.datetime.now(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)
    assert hour - dt.timedelta(hours=2) <= latest <= hour
    assert summary["prod.pages"] > 0


def test_uppercase_identifiers_like_snowflake(tmp_path):
    path = tmp_path / "upper.duckdb"
    summary = generate_warehouse(duckdb_url(path), events=2_000, seed=42, now=NOW, uppercase=True)
    assert "PROD.PAGES" in summary and "ENGAGE_DEFAULT.USERS" in summary
    names = query(path, "SELECT DISTINCT table_schema, table_name, column_name FROM information_schema.columns "
                        "WHERE table_catalog = current_database()")
    assert (names["table_schema"] == names["table_schema"].str.upper()).all()
    assert (names["table_name"] == names["table_name"].str.upper()).all()
    assert (names["column_name"] == names["column_name"].str.upper()).all()
    assert {"PAGES", "TRACKS", "API_CALLS", "_101_ACCOUNT_UPDATE"} <= tables_of(path, "PROD")
    assert {"UUID_TS", "VALUE", "_ID"} <= set(columns_of(path, "PROD", "FILE_UPLOADED"))
    lower = build_warehouse(2_000, seed=42, now=NOW)
    assert summary == {t.qualified_name.upper(): t.num_rows for t in lower}


def test_naive_timestamps_hold_utc_wall_clock_like_redshift(tmp_path):
    aware, naive = tmp_path / "aware.duckdb", tmp_path / "naive.duckdb"
    generate_warehouse(duckdb_url(aware), events=1_000, seed=9, now=NOW)
    generate_warehouse(duckdb_url(naive), events=1_000, seed=9, now=NOW, naive_timestamps=True)
    types = query(naive, "SELECT DISTINCT data_type FROM information_schema.columns "
                         "WHERE table_catalog = current_database() AND data_type LIKE 'TIMESTAMP%'")["data_type"]
    assert set(types) == {"TIMESTAMP"}
    assert columns_of(naive, "prod", "identifies")["created_at"] == "TIMESTAMP"
    a = query(aware, "SELECT id, uuid_ts, timestamp FROM prod.pages ORDER BY id, uuid_ts")
    n = query(naive, "SELECT id, uuid_ts, timestamp FROM prod.pages ORDER BY id, uuid_ts")
    assert a["id"].equals(n["id"])
    for column in ("uuid_ts", "timestamp"):
        utc_wall = a[column].dt.tz_convert("UTC").dt.tz_localize(None)
        pd.testing.assert_series_equal(utc_wall.astype("datetime64[us]"), n[column].astype("datetime64[us]"),
                                       check_names=False)


def test_regenerating_replaces_the_owned_schemas(tmp_path):
    path = tmp_path / "w.duckdb"
    generate_warehouse(duckdb_url(path), events=2_000, seed=1, now=NOW)
    summary = generate_warehouse(duckdb_url(path), events=500, seed=1, now=NOW)
    assert scalar(path, "SELECT count(*) FROM prod.pages") == summary["prod.pages"]


def test_tiny_warehouses_omit_tables_for_calls_that_never_happened(tmp_path):
    summary = generate_warehouse(duckdb_url(tmp_path / "tiny.duckdb"), events=3, seed=1, now=NOW)
    event_tables = [n for n in summary if n.split(".")[1] not in ("identifies", "users", "groups", "aliases")
                    and not n.startswith(("engage", "personas"))]
    assert 1 <= sum(summary[n] for n in event_tables if not n.endswith(".tracks")) <= 4
    assert all(rows > 0 for rows in summary.values())


def test_command_line_prints_the_summary(tmp_path):
    env = {"PYTHONPATH": str(REPO / "plugins"), "PATH": "/usr/bin:/bin"}
    url = duckdb_url(tmp_path / "cli.duckdb")
    for module in ("amberflo_sync.demo.generate", "amberflo_sync.demo"):
        result = subprocess.run(
            [sys.executable, "-m", module, "--url", url, "--events", "1000", "--seed", "4",
             "--now", "2026-11-28T12:00:00Z", "--uppercase", "--naive-timestamps"],
            capture_output=True, text=True, env=env, cwd=REPO, timeout=120, check=True)
        assert "PROD.PAGES" in result.stdout and "total" in result.stdout
        assert "RuntimeWarning" not in result.stderr
    assert "TRACKS" in tables_of(tmp_path / "cli.duckdb", "PROD")


def test_generation_scales_to_hundreds_of_thousands_of_events(tmp_path):
    started = time.perf_counter()
    summary = generate_warehouse(duckdb_url(tmp_path / "big.duckdb"), events=200_000, seed=42, now=NOW)
    elapsed = time.perf_counter() - started
    rows = sum(summary.values())
    print(f"\n200,000 events -> {rows:,} rows in {len(summary)} tables, DuckDB, {elapsed:.2f}s "
          f"({rows / elapsed:,.0f} rows/s)")
    calls = sum(v for k, v in summary.items() if k.split(".")[0] in ("prod", "ios_app")
                and k.split(".")[1] in ("pages", "screens", "api_calls", "order_completed", "signed_up",
                                        "file_uploaded", "_101_account_update", "song_played"))
    assert 200_000 < calls < 202_000  # plus ~0.5% duplicate deliveries
    tracks = summary["prod.tracks"] + summary["ios_app.tracks"]
    assert tracks == calls - summary["prod.pages"] - summary["ios_app.screens"]
