"""The deliberate quirks a sync must survive are present, in realistic amounts."""

from __future__ import annotations

import datetime as dt

import pytest
from tests.demo.demo_helpers import NOW, query, scalar

EVENT_TABLES = ["prod.pages", "prod.api_calls", "prod.order_completed", "prod.signed_up", "prod.file_uploaded",
                'prod."_101_account_update"', "ios_app.screens", "ios_app.api_calls", "ios_app.song_played"]
ALL_ROWS = " UNION ALL ".join(
    f"SELECT id, user_id, anonymous_id, timestamp, received_at, uuid_ts, sent_at, original_timestamp FROM {t}"
    for t in EVENT_TABLES)
#: Rows whose id occurs once (duplicate deliveries share the content but not received_at/uuid_ts).
SINGLE_ROWS = f"SELECT * FROM ({ALL_ROWS}) WHERE id IN (SELECT id FROM ({ALL_ROWS}) GROUP BY id HAVING count(*) = 1)"


def share(path, condition: str) -> float:
    return scalar(path, f"SELECT avg(CASE WHEN {condition} THEN 1.0 ELSE 0 END) FROM ({ALL_ROWS})")


def test_about_half_a_percent_of_ids_are_duplicated_with_later_load_times(demo_warehouse):
    path, _ = demo_warehouse
    dup = query(path, f"""
        SELECT id, count(*) AS n, count(DISTINCT uuid_ts) AS loads, count(DISTINCT received_at) AS received,
               count(DISTINCT timestamp) AS ts, count(DISTINCT user_id) AS users
        FROM ({ALL_ROWS}) GROUP BY id HAVING count(*) > 1""")
    total = scalar(path, f"SELECT count(*) FROM ({ALL_ROWS})")
    assert 0.002 < len(dup) / total < 0.01
    assert (dup["n"] == 2).all()
    assert (dup["received"] == 2).all()  # a second delivery, received later
    assert (dup["ts"] <= 1).all() and (dup["users"] <= 1).all()  # same content


def test_duplicate_rows_have_identical_properties(demo_warehouse):
    path, _ = demo_warehouse
    differing = scalar(path, """
        SELECT count(*) FROM (SELECT id FROM prod.api_calls GROUP BY id
                              HAVING count(*) > 1 AND count(DISTINCT (value, region, endpoint, status_code)) > 1)""")
    assert differing == 0


def test_late_rows_were_received_days_ago_but_loaded_recently(demo_warehouse):
    path, _ = demo_warehouse
    late = share(path, "uuid_ts - received_at > INTERVAL 1 DAY")
    assert 0.005 < late < 0.02
    assert scalar(path, f"SELECT min(uuid_ts) FROM ({ALL_ROWS}) WHERE uuid_ts - received_at > INTERVAL 1 DAY") \
        >= NOW - dt.timedelta(hours=7)
    assert scalar(path, f"SELECT min(received_at) FROM ({ALL_ROWS})") < NOW - dt.timedelta(days=6)


def test_other_rows_are_loaded_minutes_to_an_hour_after_they_arrive(demo_warehouse):
    path, _ = demo_warehouse
    delays = query(path, f"""SELECT epoch(uuid_ts - received_at) / 60 AS minutes FROM ({SINGLE_ROWS})
                             WHERE uuid_ts - received_at < INTERVAL 1 DAY""")["minutes"]
    assert delays.min() >= 1 and delays.max() <= 80
    assert 20 < delays.median() < 50
    # a duplicate delivery is loaded by the same load or the next one
    assert scalar(path, f"""SELECT max(uuid_ts - received_at) FROM ({ALL_ROWS})
                           WHERE uuid_ts - received_at < INTERVAL 1 DAY""") <= dt.timedelta(minutes=140)


def test_no_row_is_loaded_after_now_and_calls_span_about_two_days(demo_warehouse):
    path, _ = demo_warehouse
    for table in EVENT_TABLES + ["prod.identifies", "engage_default.identifies", "personas_legacy.tracks"]:
        assert scalar(path, f"SELECT max(uuid_ts) FROM {table}") <= NOW
        assert scalar(path, f"SELECT count(*) FROM {table} WHERE uuid_ts < received_at") == 0
    span = query(path, f"""SELECT min(received_at) AS lo, max(received_at) AS hi FROM ({ALL_ROWS})
                           WHERE uuid_ts - received_at < INTERVAL 1 DAY""").iloc[0]
    assert NOW - span["lo"] <= dt.timedelta(hours=50)
    assert NOW - span["hi"] <= dt.timedelta(hours=1)


def test_segment_timestamp_formula_holds(demo_warehouse):
    path, _ = demo_warehouse
    # timestamp = received_at - (sent_at - original_timestamp), millisecond precision
    assert scalar(path, f"""SELECT count(*) FROM ({SINGLE_ROWS}) WHERE timestamp IS NOT NULL
                            AND timestamp <> received_at - (sent_at - original_timestamp)""") == 0
    assert share(path, "abs(epoch(original_timestamp - timestamp)) > 600") > 0.01  # skewed device clocks


def test_identity_cases(demo_warehouse):
    path, _ = demo_warehouse
    assert 0.05 < share(path, "user_id IS NULL AND anonymous_id IS NOT NULL") < 0.15
    assert 0.01 < share(path, "user_id = '' AND anonymous_id IS NOT NULL") < 0.05
    neither = scalar(path, f"""SELECT count(*) FROM ({ALL_ROWS})
                               WHERE coalesce(user_id, '') = '' AND anonymous_id IS NULL""")
    assert 20 < neither < 150
    assert scalar(path, f"SELECT count(*) FROM ({ALL_ROWS}) WHERE user_id = '' AND anonymous_id IS NULL") > 0


def test_a_few_null_timestamps_with_received_at_set(demo_warehouse):
    path, _ = demo_warehouse
    nulls = scalar(path, f"SELECT count(*) FROM ({ALL_ROWS}) WHERE timestamp IS NULL")
    assert 10 < nulls < 100
    assert scalar(path, f"SELECT count(*) FROM ({ALL_ROWS}) WHERE received_at IS NULL") == 0


def test_ids_are_segment_message_ids(demo_warehouse):
    path, _ = demo_warehouse
    assert query(path, "SELECT id FROM prod.pages")["id"].str.fullmatch(r"ajs-next-[0-9a-f]{32}").all()
    assert query(path, "SELECT id FROM ios_app.screens")["id"].str.fullmatch(r"[0-9A-F-]{36}").all()
    assert scalar(path, "SELECT count(*) FROM prod.pages WHERE id IS NULL") == 0


@pytest.mark.parametrize("table,column,rate_range", [
    ("prod.api_calls", "value", (0.01, 0.06)),
    ("prod.order_completed", "coupon", (0.6, 0.9)),
    ("prod.pages", "keywords", (0.3, 0.7)),
    ("prod.signed_up", "_2fa_enabled", (0.01, 0.12)),
])
def test_some_property_values_are_null(demo_warehouse, table, column, rate_range):
    path, _ = demo_warehouse
    rate = scalar(path, f'SELECT avg(CASE WHEN "{column}" IS NULL THEN 1.0 ELSE 0 END) FROM {table}')
    assert rate_range[0] < rate < rate_range[1]


def test_dimension_values_outside_amberflos_character_set(demo_warehouse):
    path, _ = demo_warehouse
    values = query(path, """
        SELECT title AS v FROM prod.pages UNION ALL SELECT path FROM prod.pages
        UNION ALL SELECT file_name FROM prod.file_uploaded UNION ALL SELECT song_title FROM ios_app.song_played""")["v"]
    values = values.dropna()
    for fragment in ("|", "/", "é", "🚀", "’"):
        assert values.str.contains(fragment, regex=False).any(), fragment
    assert scalar(path, "SELECT count(*) FROM prod.pages WHERE search = ''") > 0  # empty strings, too


def test_some_values_are_longer_than_200_characters(demo_warehouse):
    path, _ = demo_warehouse
    for table, column in (("prod.pages", "url"), ("prod.pages", "search"), ("prod.api_calls", "endpoint"),
                          ("prod.file_uploaded", "file_name"), ("ios_app.song_played", "song_title")):
        assert scalar(path, f"SELECT count(*) FROM {table} WHERE length({column}) > 200") > 0, (table, column)


def test_text_meter_values_hold_numbers_as_strings_and_rare_junk(demo_warehouse):
    path, _ = demo_warehouse
    values = query(path, "SELECT value FROM ios_app.song_played WHERE value IS NOT NULL")["value"]
    numeric = values.str.fullmatch(r"\d+(\.\d+)?")
    assert numeric.mean() > 0.99
    assert (values == "2.5").any()
