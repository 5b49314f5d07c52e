"""Customer merge rules (mapping.md, customer records) as pure functions."""

from __future__ import annotations

import pandas as pd

from amberflo_sync.customers import (
    CustomerState,
    apply_updates,
    customer_body,
    group_updates,
    identify_updates,
    latest_updates,
    same_customer,
)
from tests.segment_rows import BASE_TIME

SEED_TRAITS = {
    "name": "John Doe",
    "email": "john.doe@email.com",
    "plan": "premium",
    "logins": 5,
    "phone": "650-769-3240",
    "username": "marakasina",
    "website": "example.com",
    "avatar": "https://s3.amazonaws.com/uifaces/faces/twitter/scottkclark/128.jpg",
}


def identifies(*calls: dict) -> pd.DataFrame:
    rows = []
    for i, call in enumerate(calls):
        rows.append({
            "id": f"i-{i}", "user_id": "some_user_id", "anonymous_id": "anon",
            "timestamp": BASE_TIME + pd.Timedelta(minutes=i), "received_at": BASE_TIME + pd.Timedelta(minutes=i),
            "uuid_ts": BASE_TIME + pd.Timedelta(hours=1), "context_ip": "1.1.1.1", **call,
        })
    return pd.DataFrame(rows)


def merged(frame: pd.DataFrame, base: CustomerState | None = None) -> dict[str, CustomerState]:
    batch = identify_updates(frame)
    out = {}
    for customer_id, updates in group_updates(batch.updates).items():
        out[customer_id] = apply_updates(base or CustomerState(customer_id), updates)
    for customer_id in batch.customers - set(out):
        out[customer_id] = base or CustomerState(customer_id)
    return out


def test_seed_identify_example_becomes_the_seed_customer_record_after_sanitizing():
    state = merged(identifies(SEED_TRAITS))["some_user_id"]
    assert customer_body(state, None) == {
        "customerId": "some_user_id",
        "customerName": "John Doe",
        "customerEmail": "john.doe@email.com",
        "traits": {
            "avatar": "https:__s3.amazonaws.com_uifaces_faces_twitter_scottkclark_128.jpg",
            "logins": "5",
            "phone": "650-769-3240",
            "plan": "premium",
            "username": "marakasina",
            "website": "example.com",
        },
    }


def test_later_non_null_values_win_and_nulls_keep_the_known_value():
    frame = identifies({"plan": "free", "name": "J"}, {"plan": "pro", "name": None}, {"plan": None, "seats": 3})
    state = merged(frame)["some_user_id"]
    body = customer_body(state, None)
    assert body["traits"] == {"plan": "pro", "seats": "3"} and body["customerName"] == "J"


def test_row_order_does_not_matter_only_event_time_does():
    frame = identifies({"plan": "free"}, {"plan": "pro"})
    assert customer_body(merged(frame.iloc[::-1])["some_user_id"], None)["traits"] == {"plan": "pro"}


def test_a_late_loaded_older_identify_does_not_overwrite_a_newer_value():
    newer = merged(identifies({}, {"plan": "pro"}))["some_user_id"]  # plan set at minute 1
    older = identifies({"plan": "free"})  # minute 0, loaded later
    state = merged(older, base=newer)["some_user_id"]
    assert state.values["traits.plan"] == "pro"


def test_customer_without_a_name_is_named_after_its_id():
    state = merged(identifies({"plan": "pro"}))["some_user_id"]
    assert customer_body(state, None)["customerName"] == "some_user_id"
    assert "customerEmail" not in customer_body(state, None)


def test_identify_rows_without_user_id_are_skipped_and_counted():
    frame = identifies({"plan": "a"}, {"plan": "b", "user_id": None}, {"plan": "c", "user_id": "  "})
    batch = identify_updates(frame)
    assert batch.skipped == 2 and batch.customers == {"some_user_id"}


def test_duplicate_identify_ids_count_once():
    frame = identifies({"plan": "a"}, {"plan": "b"})
    frame.loc[1, "id"] = "i-0"
    assert identify_updates(frame).duplicates == 1


def test_trait_values_are_sanitized_never_raw():
    state = merged(identifies({"company": "A/B | C", "bio": "x" * 300, "vip": True}))["some_user_id"]
    assert customer_body(state, None)["traits"] == {"bio": "x" * 200, "company": "A_B _ C", "vip": "true"}


def test_live_fields_and_traits_the_project_does_not_own_are_preserved():
    state = merged(identifies({"plan": "pro"}))["some_user_id"]
    live = {"customerId": "some_user_id", "customerName": "Typed In UI", "enabled": True, "createTime": 1,
            "traits": {"stripeId": "cus_1", "plan": "legacy"}}
    body = customer_body(state, live)
    assert body == {"customerId": "some_user_id", "customerName": "Typed In UI", "enabled": True,
                    "traits": {"plan": "pro", "stripeId": "cus_1"}}
    assert same_customer(body, {**body, "updateTime": 5})
    assert not same_customer(body, {**body, "traits": {"plan": "pro"}})


def test_fingerprint_changes_only_with_owned_values():
    a = CustomerState("c", {"traits.plan": "pro"}, {"traits.plan": 1})
    b = CustomerState("c", {"traits.plan": "pro"}, {"traits.plan": 2}, record={"x": 1})
    c = CustomerState("c", {"traits.plan": "free"}, {"traits.plan": 2})
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_latest_updates_is_order_independent():
    one = identify_updates(identifies({"plan": "a"}, {"plan": "b"})).updates
    two = identify_updates(identifies({"plan": "c"}).assign(timestamp=BASE_TIME - pd.Timedelta(days=1))).updates
    assert latest_updates([one, two]).equals(latest_updates([two, one]))
