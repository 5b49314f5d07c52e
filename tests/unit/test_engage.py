"""Pure Engage rules."""

from __future__ import annotations

import numpy as np
import pandas as pd

from amberflo_sync.engage import KeyFilter, fingerprints, snapshot_updates, track_updates, user_values

AUD = "order_completed_last_30days"


def frame(**columns) -> pd.DataFrame:
    return pd.DataFrame({"id": ["u1", "u2"], "received_at": pd.Timestamp("2026-11-20", tz="UTC"), **columns})


def test_audience_columns_become_true_false_and_traits_keep_their_value():
    ids, values, kinds, _ = user_values(frame(**{AUD: pd.array([True, False], dtype="boolean"),
                                                 "ltv": [1.5, None]}), KeyFilter())
    assert kinds == {AUD: "audience", "ltv": "trait"}
    assert values[AUD].tolist() == ["true", "false"] and values["ltv"].tolist()[0] == "1.5"


def test_warehouse_type_decides_audience_even_when_a_chunk_is_all_null():
    f = frame(**{AUD: [None, None]})
    _, _, kinds, _ = user_values(f, KeyFilter(), {AUD: "BOOLEAN"})
    assert kinds == {AUD: "audience"}


def test_fingerprint_is_stable_and_sees_values_and_new_columns():
    _, v1, _, _ = user_values(frame(**{AUD: pd.array([True, False], dtype="boolean")}), KeyFilter())
    _, v2, _, _ = user_values(frame(**{AUD: pd.array([True, True], dtype="boolean")}), KeyFilter())
    _, v3, _, _ = user_values(frame(**{AUD: pd.array([True, False], dtype="boolean"), "x": [None, None]}), KeyFilter())
    assert (fingerprints(v1) == fingerprints(v1.copy())).all()
    assert fingerprints(v1)[0] == fingerprints(v2)[0] and fingerprints(v1)[1] != fingerprints(v2)[1]
    assert (fingerprints(v1) != fingerprints(v3)).all()


def test_snapshot_rules_member_true_leaver_false_never_member_nothing():
    ids = pd.Series(["in", "left", "never"])
    values = pd.DataFrame({AUD: pd.Series(["true", "false", pd.NA], dtype="string")})
    known = {"left": {f"traits.{AUD}": "true"}}
    got = snapshot_updates(ids, values, {AUD: "audience"}, np.array([5, 5, 5]), known)
    assert dict(zip(got["customer_id"], got["value"])) == {"in": "true", "left": "false"}


def test_track_events_latest_wins_and_duplicates_collapse():
    t = pd.Timestamp("2026-11-20", tz="UTC")
    rows = pd.DataFrame({"id": ["e1", "e2", "e3"], "user_id": ["u1", "u1", "u2"], "audience_key": [AUD] * 3,
                         "timestamp": [t, t + pd.Timedelta(minutes=1), t], AUD: [True, True, True]})
    got = track_updates(rows, "audience_entered", KeyFilter())
    assert len(got) == 2 and set(got["value"]) == {"true"}


def test_key_filter_globs():
    keys = KeyFilter(include=("order_*", "ltv"), exclude=("order_refunded*",))
    assert keys.wants("ORDER_completed") and keys.wants("ltv")
    assert not keys.wants("order_refunded_7d") and not keys.wants("churn")


def test_ended_memberships_send_false_only_where_state_holds_true():
    from amberflo_sync.engage import ended_memberships

    known = {"u1": {"traits.a": "true", "traits.b": "false", "traits.ltv": "3"}, "u2": {"traits.b": "true"}}
    updates = ended_memberships(["u1", "u2", "u3"], ["a", "b"], known, 1000)
    assert updates.to_dict("records") == [
        {"customer_id": "u1", "field": "traits.a", "value": "false", "time_ms": 1000},
        {"customer_id": "u2", "field": "traits.b", "value": "false", "time_ms": 1000},
    ]
    assert ended_memberships(["u3"], ["a"], known, 1000).empty


def test_seen_ids_tell_which_stored_ids_the_scan_missed():
    from amberflo_sync.engage_membership import SeenIds

    seen = SeenIds()
    assert seen.missing(["a"]) == ["a"]
    seen.add(["u1", "u2"])
    seen.add(["x" * 5000])  # ids of any length: only their 64-bit hash is kept
    assert seen.missing(["u0", "u1", "u2", "u3", "x" * 5000, "zz"]) == ["u0", "u3", "zz"]
    assert len(seen) == 3
