"""The same warehouse written to PostgreSQL (COPY, explicit types); skipped without a server."""

from __future__ import annotations

import datetime as dt
import time

import pandas as pd
import pytest
from tests.demo.demo_helpers import NOW, pg_query

from amberflo_sync.demo.generate import append_load, build_warehouse, generate_warehouse, load_new_batch

pytestmark = pytest.mark.postgres


def pg_columns(url: str, schema: str, table: str) -> dict[str, str]:
    frame = pg_query(url, "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = %s "
                     "AND table_name = %s ORDER BY ordinal_position", (schema, table))
    return dict(zip(frame["column_name"], frame["data_type"]))


def test_postgres_warehouse_has_segment_types_and_all_rows(pg_url, pg_suffix):
    started = time.perf_counter()
    summary = generate_warehouse(pg_url, events=5_000, seed=42, now=NOW, schema_suffix=pg_suffix)
    print(f"\n5,000 events -> PostgreSQL in {time.perf_counter() - started:.2f}s")
    prod = f"prod{pg_suffix}"
    for name, rows in summary.items():
        schema, table = name.split(".")
        assert pg_query(pg_url, f'SELECT count(*) AS n FROM "{schema}"."{table}"')["n"][0] == rows
    tables = set(pg_query(pg_url, "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                          (f"ios_app{pg_suffix}",))["table_name"])
    assert "pages" not in tables and "screens" in tables
    assert pg_columns(pg_url, prod, "pages")["uuid_ts"] == "timestamp with time zone"
    assert pg_columns(pg_url, prod, "order_completed")["value"] == "numeric"
    assert pg_columns(pg_url, prod, "api_calls")["value"] == "double precision"
    assert pg_columns(pg_url, prod, "file_uploaded")["value"] == "bigint"
    assert pg_columns(pg_url, prod, "signed_up")["_2fa_enabled"] == "boolean"
    assert pg_columns(pg_url, prod, "pages")["title"] == "text"


def test_postgres_values_match_the_generated_rows(pg_url, pg_suffix):
    generate_warehouse(pg_url, events=2_000, seed=11, now=NOW, schema_suffix=pg_suffix)
    expected = next(t for t in build_warehouse(2_000, seed=11, now=NOW) if t.qualified_name == "prod.pages")
    expected = expected.to_pandas().sort_values(["id", "uuid_ts"], ignore_index=True)
    actual = pg_query(pg_url, 'SELECT id, user_id, search, title, "timestamp", uuid_ts '
                              f'FROM "prod{pg_suffix}".pages ORDER BY id, uuid_ts')
    assert actual["id"].tolist() == expected["id"].tolist()
    assert actual["title"].tolist() == expected["title"].tolist()
    # empty strings stay empty strings, nulls stay null
    assert (actual["search"] == "").sum() == (expected["search"] == "").sum()
    assert actual["user_id"].isna().sum() == expected["user_id"].isna().sum()
    assert (actual["user_id"] == "").sum() == (expected["user_id"] == "").sum()
    ts = pd.to_datetime(actual["timestamp"], utc=True)
    pd.testing.assert_series_equal(ts.astype("datetime64[us, UTC]"),
                                   expected["timestamp"].astype("datetime64[us, UTC]"), check_names=False)


def test_postgres_uppercase_naive_variant(pg_url, pg_suffix):
    summary = generate_warehouse(pg_url, events=1_000, seed=1, now=NOW, uppercase=True, naive_timestamps=True,
                                 schema_suffix=pg_suffix)
    schema = f"PROD{pg_suffix.upper()}"
    assert f"{schema}.PAGES" in summary
    columns = pg_columns(pg_url, schema, "PAGES")
    assert columns["UUID_TS"] == "timestamp without time zone"
    latest = pg_query(pg_url, f'SELECT max("UUID_TS") AS m FROM "{schema}"."PAGES"')["m"][0]
    assert NOW.replace(tzinfo=None) - dt.timedelta(hours=1) < latest <= NOW.replace(tzinfo=None)


def test_postgres_append_load_and_new_batch(pg_url, pg_suffix):
    generate_warehouse(pg_url, events=1_000, seed=2, now=NOW, schema_suffix=pg_suffix)
    prod = f"prod{pg_suffix}"
    rows = pd.DataFrame({"id": ["pg-1"], "uuid_ts": [pd.Timestamp("2026-11-28 13:00", tz="UTC")],
                         "value": [2.0], "brand_new": ["yes"]})
    append_load(pg_url, prod, "api_calls", rows)
    assert pg_columns(pg_url, prod, "api_calls")["brand_new"] == "text"
    added = load_new_batch(pg_url, events=500, seed=5, now=NOW + dt.timedelta(hours=1), schema_suffix=pg_suffix)
    assert added[f"{prod}.pages"] > 0
    loaded = pg_query(pg_url, f'SELECT count(*) AS n FROM "{prod}".pages WHERE uuid_ts = %s',
                      (NOW + dt.timedelta(hours=1),))
    assert loaded["n"][0] == added[f"{prod}.pages"]
    assert pg_query(pg_url, f'SELECT count(*) - count(DISTINCT id) AS d FROM "{prod}".users')["d"][0] == 0
