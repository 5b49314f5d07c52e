"""Later Segment loads: append_load (schema drift) and load_new_batch (new and late rows)."""

from __future__ import annotations

import datetime as dt
import decimal

import pandas as pd
import pytest
from tests.demo.demo_helpers import NOW, columns_of, duckdb_url, query, scalar

from amberflo_sync.demo.generate import append_load, generate_warehouse, load_new_batch

LATER = NOW + dt.timedelta(hours=1)


@pytest.fixture
def small(tmp_path):
    path = tmp_path / "w.duckdb"
    summary = generate_warehouse(duckdb_url(path), events=2_000, seed=42, now=NOW)
    return path, summary


def test_append_load_adds_columns_the_table_does_not_have(small):
    path, summary = small
    rows = pd.DataFrame({
        "id": ["new-1", "new-2"],
        "user_id": ["user_0001", "user_0002"],
        "received_at": pd.to_datetime(["2026-11-28 12:30:00", "2026-11-28 12:31:00"], utc=True),
        "uuid_ts": pd.to_datetime(["2026-11-28 13:00:00", "2026-11-28 13:00:00"], utc=True),
        "VALUE": [3.5, None],            # existing column, other case
        "sdk_region_tier": ["gold", None],  # new text column
        "retries": [1, 2],                # new bigint column
        "beta": [True, False],            # new boolean column
    })
    assert append_load(duckdb_url(path), "prod", "api_calls", rows) == 2
    columns = columns_of(path, "prod", "api_calls")
    assert columns["sdk_region_tier"] == "VARCHAR" and columns["retries"] == "BIGINT" and columns["beta"] == "BOOLEAN"
    assert list(columns)[-3:] == ["sdk_region_tier", "retries", "beta"]
    assert scalar(path, "SELECT count(*) FROM prod.api_calls") == summary["prod.api_calls"] + 2
    new = query(path, "SELECT * FROM prod.api_calls WHERE id LIKE 'new-%' ORDER BY id")
    assert new["value"].tolist()[0] == 3.5 and pd.isna(new["value"].tolist()[1])
    assert new["sdk_region_tier"].tolist()[0] == "gold"
    assert query(path, "SELECT count(*) AS n FROM prod.api_calls WHERE sdk_region_tier IS NOT NULL")["n"][0] == 1


def test_append_load_creates_a_missing_table(small):
    path, _ = small
    rows = pd.DataFrame({"id": ["x"], "uuid_ts": [pd.Timestamp("2026-11-28 13:00", tz="UTC")],
                         "amount": [decimal.Decimal("1.25")], "event_text": ["Invoice Paid"]})
    append_load(duckdb_url(path), "prod", "invoice_paid", rows)
    columns = columns_of(path, "prod", "invoice_paid")
    assert columns == {"id": "VARCHAR", "uuid_ts": "TIMESTAMP WITH TIME ZONE", "amount": "DECIMAL(18,2)",
                       "event_text": "VARCHAR"}


def test_append_load_follows_an_uppercase_naive_warehouse(tmp_path):
    path = tmp_path / "snow.duckdb"
    generate_warehouse(duckdb_url(path), events=500, seed=1, now=NOW, uppercase=True, naive_timestamps=True)
    moment = pd.Timestamp("2026-11-28 14:00", tz="Europe/Paris")  # 13:00 UTC
    rows = pd.DataFrame({"id": ["u-1"], "uuid_ts": [moment], "first_seen": [moment], "plan_tier": ["gold"]})
    append_load(duckdb_url(path), "prod", "pages", rows)
    columns = columns_of(path, "PROD", "PAGES")
    assert columns["PLAN_TIER"] == "VARCHAR" and columns["FIRST_SEEN"] == "TIMESTAMP"
    row = query(path, 'SELECT "UUID_TS", "FIRST_SEEN" FROM "PROD"."PAGES" WHERE "ID" = \'u-1\'').iloc[0]
    assert row["UUID_TS"] == pd.Timestamp("2026-11-28 13:00") and row["FIRST_SEEN"] == pd.Timestamp("2026-11-28 13:00")


def test_new_batch_appends_rows_loaded_now_including_late_ones(small):
    path, before = small
    old_ids = set(query(path, "SELECT id FROM prod.tracks UNION SELECT id FROM prod.pages")["id"])
    added = load_new_batch(duckdb_url(path), events=1_000, seed=8, now=LATER)
    for name, rows in added.items():
        if not name.endswith(".users"):
            assert scalar(path, f"SELECT count(*) FROM {name}") == before.get(name, 0) + rows, name
    new = query(path, f"SELECT id, received_at, timestamp, uuid_ts FROM prod.pages WHERE uuid_ts > ?", [NOW])
    assert len(new) == added["prod.pages"]
    assert (new["uuid_ts"] == LATER).all()
    assert not set(new["id"]) & old_ids
    late = new[new["received_at"] < LATER - dt.timedelta(days=2)]
    assert 0.03 < len(late) / len(new) < 0.2
    assert (new["received_at"] >= LATER - dt.timedelta(days=10)).all()
    fresh = new.drop(late.index)
    assert (fresh["received_at"] >= LATER - dt.timedelta(hours=1, minutes=2)).all()
    assert (fresh["received_at"] < LATER).all()


def test_new_batch_keeps_tracks_mirroring_event_tables(small):
    path, _ = small
    load_new_batch(duckdb_url(path), events=1_000, seed=8, now=LATER)
    union = " UNION ALL ".join(f'SELECT id FROM prod."{t}"' for t in
                               ("api_calls", "order_completed", "signed_up", "file_uploaded", "_101_account_update"))
    assert scalar(path, f"SELECT count(*) FROM (({union}) EXCEPT ALL (SELECT id FROM prod.tracks))") == 0
    assert scalar(path, f"SELECT count(*) FROM ((SELECT id FROM prod.tracks) EXCEPT ALL ({union}))") == 0


def test_new_batch_brings_a_new_column(small):
    path, _ = small
    assert "sdk_version" not in columns_of(path, "prod", "api_calls")
    load_new_batch(duckdb_url(path), events=1_000, seed=8, now=LATER)
    assert "sdk_version" in columns_of(path, "prod", "api_calls")
    assert scalar(path, "SELECT count(*) FROM prod.api_calls WHERE sdk_version IS NOT NULL AND uuid_ts <= ?",
                  [NOW]) == 0


def test_new_batch_upserts_users_and_engage_state(small):
    path, before = small
    engage_before = query(path, "SELECT * FROM engage_default.users").set_index("id")
    added = load_new_batch(duckdb_url(path), events=2_000, seed=8, now=LATER)
    for schema in ("prod", "ios_app", "engage_default"):
        users = query(path, f"SELECT id FROM {schema}.users")["id"]
        assert users.is_unique
    assert added["engage_default.identifies"] > 0
    engage_after = query(path, "SELECT * FROM engage_default.users").set_index("id")
    changed = query(path, "SELECT DISTINCT user_id FROM engage_default.identifies WHERE uuid_ts = ?", [LATER])
    assert len(changed) > 0
    user = changed["user_id"].dropna().iloc[0]
    latest = query(path, """SELECT * FROM engage_default.identifies WHERE user_id = ?
                            ORDER BY timestamp DESC, received_at DESC""", [user])
    key = latest["context_personas_computation_key"].iloc[0]
    assert engage_after.loc[user, key] == latest[key].iloc[0]
    untouched = engage_before.index.difference(changed["user_id"].dropna())
    pd.testing.assert_frame_equal(engage_before.loc[untouched].sort_index(), engage_after.loc[untouched].sort_index())
    # identifies of the load are merged into users: the latest non-null trait wins
    prod_users = query(path, "SELECT * FROM prod.users").set_index("id")
    identified = query(path, """SELECT * FROM prod.identifies WHERE uuid_ts = ? AND received_at > ?
                                AND plan IS NOT NULL AND user_id <> ''""", [LATER, NOW])
    assert len(identified) > 5
    for _, row in identified.iterrows():
        assert prod_users.loc[row["user_id"], "plan"] == row["plan"]
        assert prod_users.loc[row["user_id"], "uuid_ts"] == LATER
    # a late identify (received days ago) does not overwrite newer traits
    late = query(path, """SELECT i.user_id, i.plan, u.plan AS kept FROM prod.identifies i
                          JOIN prod.users u ON u.id = i.user_id
                          WHERE i.uuid_ts = ? AND i.received_at < ? - INTERVAL 2 DAY AND i.plan IS NOT NULL""",
                 [LATER, LATER])
    assert (late["kept"].notna()).all()


def test_new_batch_is_deterministic(tmp_path):
    frames = []
    for name in ("a", "b"):
        path = tmp_path / f"{name}.duckdb"
        generate_warehouse(duckdb_url(path), events=1_000, seed=42, now=NOW)
        load_new_batch(duckdb_url(path), events=500, seed=3, now=LATER)
        frames.append(query(path, "SELECT * FROM prod.api_calls ORDER BY ALL"))
    pd.testing.assert_frame_equal(*frames)
