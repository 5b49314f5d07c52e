"""The generated warehouse has Segment's real layout (shared/spec/warehouse.md)."""

from __future__ import annotations

import pandas as pd
import pytest
from tests.demo.demo_helpers import EVENTS, columns_of, query, scalar, tables_of

STANDARD = {"id", "received_at", "sent_at", "timestamp", "original_timestamp", "uuid_ts", "anonymous_id", "user_id"}
PROD_EVENTS = {"api_calls", "order_completed", "signed_up", "file_uploaded", "_101_account_update"}
IOS_EVENTS = {"api_calls", "song_played"}


def is_standard(column: str) -> bool:
    return column in STANDARD or column.startswith("context_") or column in ("event", "event_text")


def test_summary_lists_every_table_with_its_row_count(demo_warehouse):
    path, summary = demo_warehouse
    for name, rows in summary.items():
        schema, table = name.split(".")
        assert scalar(path, f'SELECT count(*) FROM "{schema}"."{table}"') == rows


def test_web_source_has_pages_tracks_event_tables_identifies_users_groups_aliases(demo_warehouse):
    path, _ = demo_warehouse
    assert tables_of(path, "prod") == {"pages", "tracks", "identifies", "users", "groups", "aliases", *PROD_EVENTS}


def test_mobile_source_has_screens_and_no_pages(demo_warehouse):
    path, _ = demo_warehouse
    assert tables_of(path, "ios_app") == {"screens", "tracks", "identifies", "users", *IOS_EVENTS}


def test_engage_schemas_have_both_shapes(demo_warehouse):
    path, _ = demo_warehouse
    assert tables_of(path, "engage_default") == {"identifies", "users"}
    assert tables_of(path, "personas_legacy") == {"audience_entered", "audience_exited", "trait_computed", "tracks"}


@pytest.mark.parametrize("schema,table", [
    ("prod", "pages"), ("prod", "api_calls"), ("prod", "order_completed"), ("prod", "signed_up"),
    ("prod", "file_uploaded"), ("prod", "identifies"), ("ios_app", "screens"), ("ios_app", "song_played"),
    ("ios_app", "identifies"),
])
def test_event_tables_have_every_standard_column(demo_warehouse, schema, table):
    path, _ = demo_warehouse
    columns = columns_of(path, schema, table)
    assert STANDARD <= set(columns)
    assert {"context_ip", "context_library_name", "context_library_version"} <= set(columns)
    for name in ("received_at", "sent_at", "timestamp", "original_timestamp", "uuid_ts"):
        assert columns[name] == "TIMESTAMP WITH TIME ZONE"


def test_web_and_mobile_context_columns(demo_warehouse):
    path, _ = demo_warehouse
    web = columns_of(path, "prod", "pages")
    assert {"context_page_path", "context_page_url", "context_user_agent", "context_locale"} <= set(web)
    mobile = columns_of(path, "ios_app", "screens")
    assert {"context_device_type", "context_os_name", "context_app_version", "context_locale"} <= set(mobile)
    assert mobile["context_network_wifi"] == "BOOLEAN" and mobile["context_screen_width"] == "BIGINT"


def test_pages_carry_name_and_page_properties(demo_warehouse):
    path, _ = demo_warehouse
    columns = columns_of(path, "prod", "pages")
    assert {"name", "path", "referrer", "search", "title", "url", "keywords"} <= set(columns)
    titles = set(query(path, "SELECT DISTINCT title FROM prod.pages")["title"])
    assert "Welcome | Initech" in titles
    assert scalar(path, "SELECT count(*) FROM prod.pages WHERE path = '/home'") > 0
    assert scalar(path, "SELECT count(*) FROM prod.pages WHERE url NOT LIKE 'https://segment.com/%'") == 0
    # analytics.js fills page context and page properties from the same page
    assert scalar(path, "SELECT count(*) FROM prod.pages WHERE path IS DISTINCT FROM context_page_path") == 0


def test_tracks_has_standard_columns_only(demo_warehouse):
    path, _ = demo_warehouse
    for schema in ("prod", "ios_app", "personas_legacy"):
        columns = columns_of(path, schema, "tracks")
        assert {"event", "event_text"} <= set(columns)
        assert [c for c in columns if not is_standard(c)] == []


@pytest.mark.parametrize("schema,events", [("prod", PROD_EVENTS), ("ios_app", IOS_EVENTS),
                                           ("personas_legacy", {"audience_entered", "audience_exited",
                                                                "trait_computed"})])
def test_tracks_rows_mirror_the_event_tables(demo_warehouse, schema, events):
    path, _ = demo_warehouse
    union = " UNION ALL ".join(f"SELECT id, event, event_text, uuid_ts, received_at FROM {schema}.\"{t}\""
                               for t in sorted(events))
    assert scalar(path, f"SELECT count(*) FROM (({union}) EXCEPT ALL "
                        f"(SELECT id, event, event_text, uuid_ts, received_at FROM {schema}.tracks))") == 0
    assert scalar(path, f"SELECT count(*) FROM ((SELECT id, event, event_text, uuid_ts, received_at "
                        f"FROM {schema}.tracks) EXCEPT ALL ({union}))") == 0
    names = query(path, f"SELECT DISTINCT event FROM {schema}.tracks")["event"]
    assert set(names) == events


def test_event_names_are_snake_cased_table_names_with_original_event_text(demo_warehouse):
    path, _ = demo_warehouse
    pairs = query(path, "SELECT DISTINCT event, event_text FROM prod.tracks ORDER BY 1")
    assert dict(zip(pairs["event"], pairs["event_text"])) == {
        "_101_account_update": "101 Account Update", "api_calls": "ApiCalls", "file_uploaded": "File Uploaded",
        "order_completed": "Order Completed", "signed_up": "Signed Up"}


def test_events_count_is_the_number_of_distinct_calls(demo_warehouse):
    path, _ = demo_warehouse
    tables = ["prod.pages", "ios_app.screens", *(f'prod."{t}"' for t in PROD_EVENTS),
              *(f"ios_app.{t}" for t in IOS_EVENTS)]
    distinct = sum(scalar(path, f"SELECT count(DISTINCT id) FROM {t}") for t in tables)
    assert distinct == EVENTS


def test_property_columns_types_and_naming_quirks(demo_warehouse):
    path, _ = demo_warehouse
    assert columns_of(path, "prod", "api_calls")["value"] == "DOUBLE"
    assert columns_of(path, "prod", "api_calls")["status_code"] == "BIGINT"
    order = columns_of(path, "prod", "order_completed")
    assert order["value"].startswith("DECIMAL")
    assert {"revenue", "currency", "product_sku", "products", "coupon"} <= set(order)
    signed_up = columns_of(path, "prod", "signed_up")
    assert "value" not in signed_up and signed_up["_2fa_enabled"] == "BOOLEAN" and "plan" in signed_up
    uploaded = columns_of(path, "prod", "file_uploaded")
    assert uploaded["value"] == "BIGINT" and "_id" in uploaded and "file_type" in uploaded
    assert columns_of(path, "ios_app", "song_played")["value"] == "VARCHAR"
    products = query(path, "SELECT products FROM prod.order_completed")["products"]
    assert products.str.match(r"^\[[^\[\]]+\]$").all()
    assert products.str.contains(", ").any()


def test_columns_that_exist_in_one_table_but_not_another(demo_warehouse):
    path, _ = demo_warehouse
    server = columns_of(path, "prod", "api_calls")
    assert "context_page_path" not in server and "context_user_agent" not in server  # a server library
    assert "context_page_path" in columns_of(path, "prod", "order_completed")
    assert "status_code" not in columns_of(path, "ios_app", "api_calls")
    assert "retry_count" in columns_of(path, "ios_app", "api_calls")
    assert "context_campaign_source" in columns_of(path, "prod", "pages")
    assert "push_enabled" in columns_of(path, "ios_app", "identifies")
    assert "push_enabled" not in columns_of(path, "prod", "identifies")


def test_identifies_have_traits_and_several_calls_per_user(demo_warehouse):
    path, _ = demo_warehouse
    columns = columns_of(path, "prod", "identifies")
    assert {"name", "email", "plan", "logins", "phone", "username", "website", "avatar", "company_name",
            "created_at"} <= set(columns)
    assert columns["logins"] == "BIGINT" and columns["created_at"] == "TIMESTAMP WITH TIME ZONE"
    per_user = query(path, "SELECT user_id, count(*) AS n FROM prod.identifies WHERE user_id <> '' GROUP BY 1")
    assert (per_user["n"] >= 2).mean() > 0.4
    # later identify calls leave some traits null
    later_nulls = scalar(path, """
        SELECT count(*) FROM (SELECT name, row_number() OVER (PARTITION BY user_id ORDER BY received_at) AS n
                              FROM prod.identifies WHERE user_id <> '') WHERE n > 1 AND name IS NULL""")
    assert later_nulls > 100
    assert scalar(path, "SELECT count(*) FROM prod.identifies WHERE user_id IS NULL OR user_id = ''") > 0


@pytest.mark.parametrize("schema", ["prod", "ios_app"])
def test_users_hold_the_latest_non_null_traits_per_user(demo_warehouse, schema):
    path, _ = demo_warehouse
    identifies = query(path, f"SELECT * FROM {schema}.identifies WHERE user_id <> '' ORDER BY received_at, uuid_ts")
    users = query(path, f"SELECT * FROM {schema}.users ORDER BY id").set_index("id")
    assert users.index.is_unique
    assert set(users.index) == set(identifies["user_id"])
    traits = [c for c in users.columns if c not in ("received_at", "uuid_ts")]
    expected = identifies.groupby("user_id")[traits].last()
    pd.testing.assert_frame_equal(users[traits], expected.loc[users.index], check_names=False, check_dtype=False)


def test_customers_have_user_ids_like_user_0001(demo_warehouse):
    path, _ = demo_warehouse
    ids = query(path, """SELECT user_id FROM prod.pages WHERE user_id <> ''
                         UNION SELECT user_id FROM prod.tracks WHERE user_id <> ''""")["user_id"]
    assert ids.str.fullmatch(r"user_\d{4}").all()
    assert 850 <= len(ids) <= 1000


def test_engage_identifies_have_audience_and_trait_columns(demo_warehouse):
    path, _ = demo_warehouse
    columns = columns_of(path, "engage_default", "identifies")
    for audience in ("order_completed_last_30days", "high_value_customer", "churn_risk"):
        assert columns[audience] == "BOOLEAN"
    assert columns["lifetime_value"] == "DOUBLE" and columns["favorite_category"] == "VARCHAR"
    assert {"context_personas_computation_class", "context_personas_computation_key",
            "context_personas_space_id"} <= set(columns)
    classes = set(query(path, "SELECT DISTINCT context_personas_computation_class AS c "
                              "FROM engage_default.identifies")["c"])
    assert classes == {"audience", "trait"}
    # exactly the changed key is set on each row
    mismatched = scalar(path, """
        SELECT count(*) FROM engage_default.identifies
        WHERE (context_personas_computation_key = 'churn_risk') <> (churn_risk IS NOT NULL)""")
    assert mismatched == 0


def test_engage_users_hold_the_latest_value_per_user_id(demo_warehouse):
    path, _ = demo_warehouse
    users = query(path, "SELECT * FROM engage_default.users").set_index("id")
    assert users.index.is_unique and users.index.notna().all()
    changes = query(path, """SELECT * FROM engage_default.identifies WHERE user_id IS NOT NULL
                              ORDER BY timestamp, received_at""")
    expected = changes.groupby("user_id")[["churn_risk", "lifetime_value"]].last()
    pd.testing.assert_frame_equal(users[["churn_risk", "lifetime_value"]].sort_index(), expected.sort_index(),
                                  check_names=False, check_dtype=False)
    exited = scalar(path, "SELECT count(*) FROM engage_default.users WHERE order_completed_last_30days = false")
    assert exited > 0


def test_track_shaped_engage_has_key_columns_and_duplicate_entered_events(demo_warehouse):
    path, _ = demo_warehouse
    entered = columns_of(path, "personas_legacy", "audience_entered")
    assert {"audience_key", "event", "event_text", "order_completed_last_30days", "churn_risk"} <= set(entered)
    assert scalar(path, "SELECT count(*) FROM personas_legacy.audience_entered WHERE audience_key = 'churn_risk' "
                        "AND churn_risk IS NOT TRUE") == 0
    assert scalar(path, "SELECT count(*) FROM personas_legacy.audience_exited WHERE audience_key = 'churn_risk' "
                        "AND churn_risk IS NOT FALSE") == 0
    repeated = scalar(path, """SELECT count(*) FROM (SELECT user_id, audience_key FROM personas_legacy.audience_entered
                               WHERE user_id IS NOT NULL GROUP BY 1, 2 HAVING count(*) > 1)""")
    assert repeated > 10
    computed = columns_of(path, "personas_legacy", "trait_computed")
    assert {"trait_key", "lifetime_value", "favorite_category"} <= set(computed)
