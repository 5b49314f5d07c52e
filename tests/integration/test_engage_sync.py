"""Engage audiences and computed traits → customer traits, against the emulator over HTTP."""

from __future__ import annotations

import pandas as pd
import pytest

from amberflo_sync.client import AmberfloClient, ClientSettings
from amberflo_sync.config import EngageConfig, SyncConfig
from amberflo_sync.customer_writer import CustomerWriter
from amberflo_sync.engage_sync import EngageSpace, engage_spaces, sync_engage_space
from amberflo_sync.reader import WarehouseReader, create_engine
from amberflo_sync.retry import RetryPolicy
from amberflo_sync.state import StateStore
from tests.integration.test_identifies_sync import CustomersHarness
from tests.segment_rows import BASE_TIME

CONFIG = SyncConfig(source_schemas=("prod",), chunk_rows=2)
AUDIENCE = "order_completed_last_30days"


def users(rows: dict[str, dict]) -> pd.DataFrame:
    """An ``engage_<space>.users`` table: one row per user, boolean audience columns."""
    frame = pd.DataFrame([{"id": uid, "received_at": BASE_TIME, "uuid_ts": BASE_TIME, **vals} for uid, vals in rows.items()])
    for column in frame.columns:
        if column not in ("id", "received_at", "uuid_ts") and column != "lifetime_value":
            if frame[column].dropna().map(type).eq(bool).all():
                frame[column] = frame[column].astype("boolean")
    return frame


def track_events(table: str, events: list[tuple[str, str, int, object]]) -> pd.DataFrame:
    """``(user_id, key, minute, value)`` rows of audience_entered / audience_exited / trait_computed."""
    key_column = "trait_key" if table == "trait_computed" else "audience_key"
    rows = []
    for i, (user, key, minute, value) in enumerate(events):
        t = BASE_TIME + pd.Timedelta(minutes=minute)
        rows.append({"id": f"{table}-{i}", "user_id": user, "anonymous_id": None, "timestamp": t, "received_at": t,
                     "uuid_ts": BASE_TIME + pd.Timedelta(hours=1, seconds=i), "event": table, "event_text": table,
                     key_column: key, key: value})
    return pd.DataFrame(rows)


class EngageHarness(CustomersHarness):
    def sync_engage(self, schema: str = "engage_default", shape: str | None = None, **engage):
        engage.setdefault("spaces", (self.warehouse.schema(schema),))
        self.new_run()
        config = SyncConfig(source_schemas=("prod",), chunk_rows=2, engage=EngageConfig(**engage))
        settings = ClientSettings(base_url=self.emulator.url, api_key=self.key)
        with AmberfloClient(settings, retry=RetryPolicy(base_delay=0.01, give_up_after=2)) as client:
            writer = CustomerWriter(client, self.state, **self.writer_options)
            space = EngageSpace(self.warehouse.schema(schema), shape) if shape else next(
                s for s in engage_spaces(self.reader, config) if s.schema == self.warehouse.schema(schema))
            return sync_engage_space(space, reader=self.reader, state=self.state, writer=writer, config=config,
                                     run_id="engage")

    def traits(self) -> dict[str, dict]:
        return {k: c.get("traits", {}) for k, c in self.emulator.customers().items()}


@pytest.fixture
def engage(warehouse, emulator, api_key, sqlite_state_url):
    h = EngageHarness(warehouse, emulator, api_key, sqlite_state_url)
    yield h
    h.reader.engine.dispose()


def test_seed_example_member_gets_true_then_false_when_it_leaves(engage):
    engage.warehouse.write("engage_default", "users", users({"u1": {AUDIENCE: True}, "u2": {AUDIENCE: False}}))
    engage.sync_engage()
    assert engage.traits() == {"u1": {AUDIENCE: "true"}}  # first sync: every member, nobody else
    engage.warehouse.write("engage_default", "users", users({"u1": {AUDIENCE: False}, "u2": {AUDIENCE: False}}))
    engage.sync_engage()
    assert engage.traits() == {"u1": {AUDIENCE: "false"}}


def test_exit_to_null_also_sends_false(engage):
    engage.warehouse.write("engage_default", "users", users({"u1": {AUDIENCE: True}}))
    engage.sync_engage()
    frame = users({"u1": {AUDIENCE: True}})
    frame[AUDIENCE] = pd.array([None], dtype="boolean")
    engage.warehouse.write("engage_default", "users", frame)
    engage.sync_engage()
    assert engage.traits() == {"u1": {AUDIENCE: "false"}}


def test_second_sync_without_change_sends_nothing(engage):
    engage.warehouse.write("engage_default", "users", users({f"u{i}": {AUDIENCE: i % 2 == 0, "lifetime_value": i * 1.5}
                                                              for i in range(6)}))
    first = engage.sync_engage()
    calls = engage.api_calls()
    second = engage.sync_engage()
    assert engage.api_calls() == calls
    assert first.details["users_changed"] == 6 and second.details["users_changed"] == 0


def test_a_new_audience_column_syncs_just_that_audience(engage):
    engage.warehouse.write("engage_default", "users", users({"u1": {AUDIENCE: True}, "u2": {AUDIENCE: True},
                                                              "u3": {AUDIENCE: False}}))
    engage.sync_engage()
    puts_before = engage.emulator.stats()["customer_puts"] + engage.emulator.stats()["customer_posts"]
    engage.warehouse.write("engage_default", "users", users({"u1": {AUDIENCE: True, "churn_risk": False},
                                                              "u2": {AUDIENCE: True, "churn_risk": True},
                                                              "u3": {AUDIENCE: False, "churn_risk": True}}))
    engage.sync_engage()
    writes = engage.emulator.stats()["customer_puts"] + engage.emulator.stats()["customer_posts"] - puts_before
    assert writes == 2  # u2 and u3 joined churn_risk; u1 is untouched
    assert engage.traits() == {"u1": {AUDIENCE: "true"}, "u2": {AUDIENCE: "true", "churn_risk": "true"},
                               "u3": {"churn_risk": "true"}}


def test_computed_traits_are_sent_with_their_value(engage):
    engage.warehouse.write("engage_default", "users", users({"u1": {"lifetime_value": 1234.5, "favorite_category": "Books/Media"}}))
    engage.sync_engage()
    assert engage.traits() == {"u1": {"favorite_category": "Books_Media", "lifetime_value": "1234.5"}}


def test_include_and_exclude_lists_filter_keys(engage):
    engage.warehouse.write("engage_default", "users", users({"u1": {AUDIENCE: True, "churn_risk": True, "ltv": 3}}))
    engage.sync_engage(include=("*",), exclude=("churn_*",))
    assert engage.traits() == {"u1": {AUDIENCE: "true", "ltv": "3"}}


def test_track_shaped_space_rebuilds_membership_from_events(engage):
    engage.warehouse.write("personas_legacy", "audience_entered", track_events("audience_entered", [
        ("u1", AUDIENCE, 1, True), ("u1", AUDIENCE, 2, True), ("u2", AUDIENCE, 1, True), ("u3", "churn_risk", 1, True)]))
    engage.warehouse.write("personas_legacy", "audience_exited", track_events("audience_exited", [
        ("u2", AUDIENCE, 5, False), ("u4", AUDIENCE, 5, False)]))
    engage.warehouse.write("personas_legacy", "trait_computed", track_events("trait_computed", [
        ("u1", "lifetime_value", 1, 10.0), ("u1", "lifetime_value", 9, 12.5)]))
    engage.sync_engage("personas_legacy")
    # u1 entered twice: one change; u2 entered then exited in one window: net non-member; u4 never member
    assert engage.traits() == {"u1": {AUDIENCE: "true", "lifetime_value": "12.5"}, "u3": {"churn_risk": "true"}}
    assert engage.emulator.stats()["customer_posts"] == 2


def test_track_shaped_exit_in_a_later_window_sends_false(engage):
    engage.warehouse.write("personas_legacy", "audience_entered", track_events("audience_entered", [("u1", AUDIENCE, 1, True)]))
    engage.sync_engage("personas_legacy")
    exited = track_events("audience_exited", [("u1", AUDIENCE, 30, False)])
    exited["uuid_ts"] = BASE_TIME + pd.Timedelta(hours=5)
    engage.warehouse.write("personas_legacy", "audience_exited", exited)
    engage.sync_engage("personas_legacy")
    assert engage.traits() == {"u1": {AUDIENCE: "false"}}


@pytest.mark.parametrize("order", ["identify-first", "engage-first"])
def test_identify_traits_and_audience_traits_survive_either_order(engage, order):
    engage.warehouse.write("engage_default", "users", users({"some_user_id": {AUDIENCE: True}}))
    steps = [lambda: (engage.load([{"name": "J", "plan": "pro"}]), engage.sync()),
             lambda: engage.sync_engage()]
    for step in steps if order == "identify-first" else steps[::-1]:
        step()
    engage.load([{"plan": "enterprise"}])
    engage.sync()
    engage.warehouse.write("engage_default", "users", users({"some_user_id": {AUDIENCE: True, "churn_risk": True}}))
    engage.sync_engage()
    customer = engage.customer()
    assert customer["customerName"] == "J"
    assert customer["traits"] == {AUDIENCE: "true", "churn_risk": "true", "plan": "enterprise"}


def test_shapes_are_detected(engage):
    engage.warehouse.write("engage_default", "users", users({"u1": {AUDIENCE: True}}))
    engage.warehouse.write("personas_legacy", "audience_entered", track_events("audience_entered", [("u1", AUDIENCE, 1, True)]))
    spaces = (engage.warehouse.schema("engage_default"), engage.warehouse.schema("personas_legacy"))
    found = {s.schema: s.shape for s in engage_spaces(engage.reader, SyncConfig(engage=EngageConfig(spaces=spaces)))}
    assert found[engage.warehouse.schema("engage_default")] == "identify"
    assert found[engage.warehouse.schema("personas_legacy")] == "track"
