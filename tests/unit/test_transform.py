"""Every rule of shared/spec/mapping.md for page, screen and track meter records."""

from __future__ import annotations

import datetime as dt
import decimal
import json

import numpy as np
import pandas as pd
import pytest

from amberflo_sync.transform import (
    DUP_RANK_COLUMN,
    INVALID_EVENT_TIME,
    INVALID_METER_VALUE,
    MISSING_CUSTOMER_ID,
    MISSING_EVENT_TIME,
    MISSING_UNIQUE_ID,
    to_meter_records,
)

SEED_TIME = pd.Timestamp("2021-04-26T14:01:46.909Z")
SEED_MILLIS = 1619445706909


def rows(*records: dict, **common: object) -> pd.DataFrame:
    """A warehouse-like frame: standard columns with seed defaults, overridden per record."""
    base = {
        "id": "messageId",
        "user_id": "some_user_id",
        "anonymous_id": "anon-1",
        "timestamp": SEED_TIME,
        "received_at": SEED_TIME + pd.Timedelta(seconds=3),
        "uuid_ts": SEED_TIME + pd.Timedelta(minutes=30),
        "context_ip": "10.0.0.1",
        "context_library_name": "analytics.js",
    }
    base.update(common)
    frame = pd.DataFrame([{**base, **r} for r in (records or ({},))])
    return frame


def records_of(frame: pd.DataFrame, kind: str = "track", table: str = "api_calls") -> list[dict]:
    batch = to_meter_records(frame, kind=kind, table=table)
    return [json.loads(r) for r in batch.records]


def reasons_of(frame: pd.DataFrame, kind: str = "track") -> list[str]:
    return to_meter_records(frame, kind=kind, table="t").rejected["reason"].tolist()


# ---- the seed's examples -------------------------------------------------------------------------
def test_seed_page_example_becomes_a_page_meter_with_sanitized_dimensions():
    frame = rows(
        {
            "name": "Home",
            "title": "Welcome | Initech",
            "keywords": "paper,comedy",
            "search": "schrute farms",
            "referrer": "https://google.com",
            "path": "/home",
            "browser": "Chrome",
            "url": "https://segment.com",
        }
    )
    assert records_of(frame, "page", "pages") == [
        {
            "uniqueId": "messageId",
            "customerId": "some_user_id",
            "meterApiName": "page",
            "meterValue": 1.0,
            "meterTimeInMillis": SEED_MILLIS,
            "dimensions": {
                "browser": "Chrome",
                "keywords": "paper,comedy",
                "name": "Home",
                "path": "_home",
                "referrer": "https:__google.com",
                "search": "schrute farms",
                "title": "Welcome _ Initech",
                "url": "https:__segment.com",
            },
        }
    ]


def test_seed_screen_example_becomes_a_screen_meter():
    frame = rows({"name": "Home", "title": "Welcome | Initech"})
    assert records_of(frame, "screen", "screens") == [
        {
            "uniqueId": "messageId",
            "customerId": "some_user_id",
            "meterApiName": "screen",
            "meterValue": 1.0,
            "meterTimeInMillis": SEED_MILLIS,
            "dimensions": {"name": "Home", "title": "Welcome _ Initech"},
        }
    ]


def test_seed_track_example_matches_the_spec_exactly():
    frame = rows({"id": "m-1", "event": "api_calls", "event_text": "ApiCalls", "value": 2.0, "region": "us-west-2"})
    batch = to_meter_records(frame, kind="track", table="api_calls")
    assert batch.records == [
        '{"uniqueId":"m-1","customerId":"some_user_id","meterApiName":"ApiCalls","meterValue":2.0,'
        '"meterTimeInMillis":1619445706909,"dimensions":{"region":"us-west-2"}}'
    ]


# ---- customer id ---------------------------------------------------------------------------------
@pytest.mark.parametrize("user_id", [None, "", "   "])
def test_customer_falls_back_to_anonymous_id_when_user_id_is_null_or_blank(user_id):
    assert records_of(rows({"user_id": user_id}))[0]["customerId"] == "anon-1"


@pytest.mark.parametrize("anonymous_id", [None, "", " "])
def test_row_without_user_or_anonymous_id_is_rejected(anonymous_id):
    frame = rows({"user_id": None, "anonymous_id": anonymous_id})
    assert reasons_of(frame) == [MISSING_CUSTOMER_ID]
    assert records_of(frame) == []


def test_missing_user_id_column_uses_anonymous_id():
    frame = rows().drop(columns=["user_id"])
    assert records_of(frame)[0]["customerId"] == "anon-1"


def test_numeric_user_ids_print_without_decimal_point():
    frame = rows({"user_id": 42}, {"user_id": 43, "id": "b"})
    assert [r["customerId"] for r in records_of(frame)] == ["42", "43"]


def test_row_without_id_is_rejected_not_sent():
    assert reasons_of(rows({"id": None})) == [MISSING_UNIQUE_ID]


# ---- event time ----------------------------------------------------------------------------------
def test_event_time_is_epoch_millis_of_timestamp_in_utc():
    frame = rows({"timestamp": pd.Timestamp("2021-04-26T16:01:46.909+02:00")})
    assert records_of(frame)[0]["meterTimeInMillis"] == SEED_MILLIS


def test_naive_timestamps_are_taken_as_utc_like_redshift():
    frame = rows(timestamp=pd.Timestamp("2021-04-26 14:01:46.909"), received_at=pd.Timestamp("2021-04-26 14:01:50"))
    assert records_of(frame)[0]["meterTimeInMillis"] == SEED_MILLIS


def test_null_timestamp_falls_back_to_received_at():
    frame = rows({"id": "a"}, {"id": "b", "timestamp": None})
    got = records_of(frame)
    assert got[0]["meterTimeInMillis"] == SEED_MILLIS
    assert got[1]["meterTimeInMillis"] == SEED_MILLIS + 3000


def test_missing_timestamp_column_falls_back_to_received_at():
    assert records_of(rows().drop(columns=["timestamp"]))[0]["meterTimeInMillis"] == SEED_MILLIS + 3000


def test_row_without_any_event_time_is_rejected():
    assert reasons_of(rows({"timestamp": None, "received_at": None})) == [MISSING_EVENT_TIME]


def test_event_time_before_1970_is_rejected():
    assert reasons_of(rows(timestamp=pd.Timestamp("1960-01-01", tz="UTC"))) == [INVALID_EVENT_TIME]


def test_timestamps_stored_as_text_are_parsed():
    frame = rows(timestamp="2021-04-26T14:01:46.909Z", received_at="2021-04-26T14:01:50Z")
    assert records_of(frame)[0]["meterTimeInMillis"] == SEED_MILLIS


# ---- meter value ---------------------------------------------------------------------------------
def test_track_without_value_column_counts_one():
    assert records_of(rows({"event_text": "Signed Up"}))[0]["meterValue"] == 1


def test_track_with_null_value_counts_one():
    frame = rows({"id": "a", "value": 3.0}, {"id": "b", "value": None})
    assert [r["meterValue"] for r in records_of(frame)] == [3.0, 1.0]


@pytest.mark.parametrize("text, expected", [("2.5", 2.5), (" 7 ", 7.0), ("-4", -4.0), ("1e3", 1000.0)])
def test_track_value_text_that_parses_as_a_number_is_used(text, expected):
    assert records_of(rows({"value": text}))[0]["meterValue"] == expected


@pytest.mark.parametrize("bad", ["abc", "", "NaN", "inf", "-Infinity", float("inf"), float("-inf")])
def test_track_value_that_is_not_a_finite_number_rejects_the_row(bad):
    frame = rows({"id": "a", "value": bad}, {"id": "b", "value": "1"})
    batch = to_meter_records(frame, kind="track", table="t")
    assert batch.rejected["reason"].tolist() == [INVALID_METER_VALUE]
    assert batch.ids == ["b"]


def test_negative_values_are_sent_as_they_are():
    assert records_of(rows({"value": -2.5}))[0]["meterValue"] == -2.5


def test_integer_and_decimal_value_columns():
    frame = rows({"id": "a", "value": decimal.Decimal("12.50")}, {"id": "b", "value": decimal.Decimal("NaN")})
    batch = to_meter_records(frame, kind="track", table="t")
    assert [json.loads(r)["meterValue"] for r in batch.records] == [12.5]
    assert batch.rejected["reason"].tolist() == [INVALID_METER_VALUE]
    ints = rows({"id": "a", "value": 5}, {"id": "b", "value": 7})
    assert [r["meterValue"] for r in records_of(ints)] == [5.0, 7.0]


def test_boolean_value_is_not_a_number():
    frame = pd.concat([rows({"id": "a"}), rows({"id": "b"})], ignore_index=True)
    frame["value"] = pd.array([True, None], dtype="boolean")
    batch = to_meter_records(frame, kind="track", table="t")
    assert batch.rejected["reason"].tolist() == [INVALID_METER_VALUE]
    assert batch.ids == ["b"]


def test_value_is_not_a_dimension_on_tracks_but_is_on_pages():
    frame = rows({"value": 3.0, "region": "eu"})
    assert records_of(frame)[0]["dimensions"] == {"region": "eu"}
    page = records_of(frame, "page", "pages")[0]
    assert page["meterValue"] == 1.0 and page["dimensions"] == {"region": "eu", "value": "3"}


# ---- meter name ----------------------------------------------------------------------------------
def test_meter_name_is_event_text_then_event_then_table():
    frame = rows(
        {"id": "a", "event_text": "ApiCalls", "event": "api_calls"},
        {"id": "b", "event_text": None, "event": "api_calls"},
        {"id": "c", "event_text": None, "event": None},
    )
    assert [r["meterApiName"] for r in records_of(frame, table="api_calls_table")] == [
        "ApiCalls",
        "api_calls",
        "api_calls_table",
    ]


# ---- dimensions ----------------------------------------------------------------------------------
def test_standard_and_context_columns_are_never_dimensions():
    frame = rows(
        {"sent_at": SEED_TIME, "original_timestamp": SEED_TIME, "uuid": "u", "loaded_at": SEED_TIME, "event": "x",
         "event_text": "X", "context_page_path": "/p", "plan": "pro"}
    )
    assert records_of(frame)[0]["dimensions"] == {"plan": "pro"}


def test_dimension_keys_are_lower_cased_column_names_like_snowflake():
    frame = rows({"REGION": "us-west-2", "CONTEXT_IP": "1.1.1.1"})
    frame = frame.rename(columns={"id": "ID", "user_id": "USER_ID", "timestamp": "TIMESTAMP"})
    record = records_of(frame)[0]
    assert record["dimensions"] == {"region": "us-west-2"}
    assert record["uniqueId"] == "messageId" and record["meterTimeInMillis"] == SEED_MILLIS


def test_prefixed_property_columns_are_dimensions():
    frame = rows({"_id": "file-1", "_2fa_enabled": True, "product_sku": "SKU-1"})
    assert records_of(frame)[0]["dimensions"] == {"_2fa_enabled": "true", "_id": "file-1", "product_sku": "SKU-1"}


def test_dimension_value_formatting_rules():
    frame = rows(
        {
            "flag": False,
            "count": 5,
            "whole": 5.0,
            "ratio": 2.5,
            "created": pd.Timestamp("2026-04-26T13:41:46.909123Z"),
            "array": "[a, b]",
            "accent": "café",
            "emoji": "ok 👍",
            "long": "x" * 250,
            "blank": "",
            "nothing": None,
        }
    )
    assert records_of(frame)[0]["dimensions"] == {
        "accent": "caf_",
        "array": "_a, b_",
        "count": "5",
        "created": "2026-04-26T13:41:46.909Z",
        "emoji": "ok _",
        "flag": "false",
        "long": "x" * 200,
        "ratio": "2.5",
        "whole": "5",
    }


def test_allowed_punctuation_survives_and_the_rest_becomes_underscore():
    allowed = "A-z 0_9!.*'()&$@=;:+,?"
    frame = rows({"a": allowed, "b": 'x/y|z\\w"q<>#%^~`[]{}\n\t'})
    dims = records_of(frame)[0]["dimensions"]
    assert dims["a"] == allowed
    assert dims["b"] == "x_y_z_w_q" + "_" * 13


def test_record_without_dimensions_omits_the_key():
    frame = rows({"event_text": "X", "only_null": None})
    assert "dimensions" not in records_of(frame)[0]


# ---- de-duplication and determinism --------------------------------------------------------------
def test_duplicate_ids_in_a_chunk_are_billed_once():
    frame = rows({"id": "a", "value": 1.0}, {"id": "a", "value": 1.0}, {"id": "b", "value": 1.0})
    batch = to_meter_records(frame, kind="track", table="t")
    assert batch.ids == ["a", "b"] and batch.duplicates == 1


def test_rank_from_the_reader_drops_copies_seen_in_earlier_chunks():
    frame = rows({"id": "a"}, {"id": "b"})
    frame[DUP_RANK_COLUMN] = [2, 1]
    batch = to_meter_records(frame, kind="track", table="t")
    assert batch.ids == ["b"] and batch.duplicates == 1
    assert DUP_RANK_COLUMN not in json.loads(batch.records[0]).get("dimensions", {})


def test_same_row_gives_identical_bytes_whatever_the_column_and_row_order():
    frame = rows({"id": "a", "zeta": "1", "alpha": "2", "value": 3}, {"id": "b", "zeta": "x", "alpha": None, "value": 4})
    shuffled = frame[list(reversed(frame.columns))].iloc[::-1]
    one = to_meter_records(frame, kind="track", table="t").records
    two = to_meter_records(shuffled, kind="track", table="t").records
    assert sorted(one) == sorted(two)
    assert '"dimensions":{"alpha":"2","zeta":"1"}' in one[0]


def test_ids_with_quotes_and_control_characters_are_json_escaped():
    frame = rows({"id": 'we"ird\\id\n', "user_id": "ü-ser"})
    record = to_meter_records(frame, kind="track", table="t").records[0]
    assert json.loads(record)["uniqueId"] == 'we"ird\\id\n'
    assert json.loads(record)["customerId"] == "ü-ser"


def test_rejected_rows_keep_the_original_row_and_reason():
    frame = rows({"id": "r1", "user_id": None, "anonymous_id": None, "plan": "pro"})
    rejected = to_meter_records(frame, kind="track", table="t").rejected
    assert rejected["id"].tolist() == ["r1"]
    assert rejected["row"].iloc[0]["plan"] == "pro"


def test_every_row_is_accounted_for():
    frame = rows(
        {"id": "a"}, {"id": "a"}, {"id": None}, {"id": "c", "user_id": None, "anonymous_id": None},
        {"id": "d", "value": "zz"}, {"id": "e"},
    )
    batch = to_meter_records(frame, kind="track", table="t")
    assert len(batch.records) + batch.duplicates + batch.rejected_count == len(frame)


def test_arrow_backed_frames_map_like_numpy_frames():
    frame = rows({"id": "a", "value": 2.0, "flag": True, "n": 3})
    arrow = frame.convert_dtypes(dtype_backend="pyarrow")
    assert to_meter_records(arrow, kind="track", table="t").records == to_meter_records(frame, kind="track", table="t").records


def test_empty_frame_gives_nothing():
    batch = to_meter_records(rows().iloc[0:0], kind="page", table="pages")
    assert batch.records == [] and batch.rejected_count == 0 and batch.duplicates == 0
