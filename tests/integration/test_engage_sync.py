"""Engage audiences and computed traits → customer traits, against the emulator over HTTP."""

from __future__ import annotations

import time

import pandas as pd
import pytest

from amberflo_sync.config import EngageConfig, SyncConfig
from amberflo_sync.engage_sync import engage_spaces
from amberflo_sync.ledger import RunStats
from amberflo_sync.tasks import discover_engage_spaces, run_engage_space
from tests.dag_path import amberflo_connection
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
    def sync_engage(self, schema: str = "engage_default", shape: str | None = None, params: dict | None = None,
                    **engage) -> RunStats:
        """One Engage DAG run's ``sync_space`` task for one space."""
        engage.setdefault("spaces", (self.warehouse.schema(schema),))
        self.new_run()
        runtime = self.runtime(SyncConfig(source_schemas=("prod",), chunk_rows=2, engage=EngageConfig(**engage)))
        space = {"key": self.warehouse.schema(schema).lower(), "schema": self.warehouse.schema(schema),
                 "shape": shape} if shape else next(s for s in discover_engage_spaces(runtime)
                                                    if s["schema"] == self.warehouse.schema(schema))
        context = {"run_id": f"manual__engage-{time.monotonic_ns()}", "params": dict(params or {}),
                   "dag_run": type("DagRun", (), {"run_type": "manual"})()}
        with amberflo_connection(self.emulator.url, self.key):
            result = run_engage_space(space, context, runtime)
        return RunStats(**{k: v for k, v in result.items() if k in RunStats.__dataclass_fields__
                           and k not in ("started_at", "finished_at")})

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


def writes(engage) -> int:
    stats = engage.emulator.stats()
    return stats["customer_posts"] + stats["customer_puts"]


def test_a_user_deleted_from_a_snapshot_gets_false_once(engage):
    engage.warehouse.write("engage_default", "users", users({"u1": {AUDIENCE: True, "lifetime_value": 3.5},
                                                              "u2": {AUDIENCE: True}, "u3": {AUDIENCE: False}}))
    engage.sync_engage()
    engage.warehouse.write("engage_default", "users", users({"u2": {AUDIENCE: True}}))  # u1 and u3 deleted
    before = writes(engage)
    engage.sync_engage()
    # u1 leaves the audience; its computed trait stays as it was; u3 was never a member: nothing
    assert engage.traits() == {"u1": {AUDIENCE: "false", "lifetime_value": "3.5"}, "u2": {AUDIENCE: "true"}}
    assert writes(engage) - before == 1
    calls = engage.api_calls()
    engage.sync_engage()  # a second run sends nothing more
    assert engage.api_calls() == calls
    assert engage.state.load_fingerprints(engage.warehouse.schema("engage_default").lower(), ["u1", "u3"]) == {}


def test_a_dropped_audience_column_sends_false_to_its_members_once(engage):
    engage.warehouse.write("engage_default", "users", users({"u1": {AUDIENCE: True, "churn_risk": True},
                                                              "u2": {AUDIENCE: False, "churn_risk": True},
                                                              "u3": {AUDIENCE: True, "churn_risk": False}}))
    engage.sync_engage()
    engage.warehouse.write("engage_default", "users", users({"u1": {"churn_risk": True}, "u2": {"churn_risk": True},
                                                              "u3": {"churn_risk": False}}))
    before = writes(engage)
    engage.sync_engage()
    assert engage.traits() == {"u1": {AUDIENCE: "false", "churn_risk": "true"}, "u2": {"churn_risk": "true"},
                               "u3": {AUDIENCE: "false"}}
    assert writes(engage) - before == 2  # u1 and u3 were members; u2 never was
    calls = engage.api_calls()
    engage.sync_engage()
    assert engage.api_calls() == calls


def test_an_audience_column_dropped_and_its_member_deleted_together_gets_false(engage):
    engage.warehouse.write("engage_default", "users", users({"u1": {AUDIENCE: True, "churn_risk": True},
                                                              "u2": {AUDIENCE: True, "churn_risk": True}}))
    engage.sync_engage()
    engage.warehouse.write("engage_default", "users", users({"u2": {"churn_risk": True}}))
    engage.sync_engage()
    assert engage.traits() == {"u1": {AUDIENCE: "false", "churn_risk": "false"}, "u2": {AUDIENCE: "false",
                                                                                      "churn_risk": "true"}}


def test_with_snapshot_complete_off_absence_changes_nothing(engage):
    engage.warehouse.write("engage_default", "users", users({"u1": {AUDIENCE: True, "churn_risk": True},
                                                              "u2": {AUDIENCE: True, "churn_risk": True}}))
    engage.sync_engage(snapshot_complete=False)
    engage.warehouse.write("engage_default", "users", users({"u2": {"churn_risk": True}}))  # u1 and a column gone
    before = writes(engage)
    engage.sync_engage(snapshot_complete=False)
    assert writes(engage) == before
    assert engage.traits() == {"u1": {AUDIENCE: "true", "churn_risk": "true"}, "u2": {AUDIENCE: "true", "churn_risk": "true"}}


def test_an_empty_users_table_is_not_everyone_leaving(engage):
    engage.warehouse.write("engage_default", "users", users({"u1": {AUDIENCE: True}}))
    engage.sync_engage()
    engage.warehouse.write("engage_default", "users", users({"u1": {AUDIENCE: True}}).iloc[0:0])
    before = writes(engage)
    engage.sync_engage()
    assert writes(engage) == before and engage.traits() == {"u1": {AUDIENCE: "true"}}


def test_a_user_who_left_and_came_back_is_a_member_again(engage):
    engage.warehouse.write("engage_default", "users", users({"u1": {AUDIENCE: True}, "u2": {AUDIENCE: True}}))
    engage.sync_engage()
    engage.warehouse.write("engage_default", "users", users({"u2": {AUDIENCE: True}}))
    engage.sync_engage()
    engage.sync_engage()  # u1's false accepted: its fingerprint row is dropped
    engage.warehouse.write("engage_default", "users", users({"u1": {AUDIENCE: True}, "u2": {AUDIENCE: True}}))
    engage.sync_engage()
    assert engage.traits() == {"u1": {AUDIENCE: "true"}, "u2": {AUDIENCE: "true"}}


def test_a_key_excluded_by_config_is_not_taken_for_a_dropped_audience(engage):
    engage.warehouse.write("engage_default", "users", users({"u1": {AUDIENCE: True, "churn_risk": True}}))
    engage.sync_engage()
    before = writes(engage)
    engage.sync_engage(exclude=("churn_*",))  # not synced any more: not a membership that ended
    assert writes(engage) == before
    assert engage.traits() == {"u1": {AUDIENCE: "true", "churn_risk": "true"}}


def test_a_dry_run_shows_the_ended_membership_and_writes_nothing(engage):
    from amberflo_sync.events_sync import DryRun

    engage.warehouse.write("engage_default", "users", users({"u1": {AUDIENCE: True}, "u2": {AUDIENCE: False}}))
    engage.sync_engage()
    engage.warehouse.write("engage_default", "users", users({"u3": {AUDIENCE: False}}))  # u1, u2 deleted
    config = SyncConfig(source_schemas=("prod",), chunk_rows=2,
                        engage=EngageConfig(spaces=(engage.warehouse.schema("engage_default"),)))
    from amberflo_sync.customer_writer import CustomerWriter
    from amberflo_sync.engage_sync import EngageSpace, sync_engage_space

    space = EngageSpace(engage.warehouse.schema("engage_default"), "identify")
    dry = DryRun()
    sync_engage_space(space, reader=engage.reader, ledger=engage.ledger, config=config, run_id="dry",
                      writer=CustomerWriter(None, engage.state), dry_run=dry)
    assert len(dry.records) == 1 and '"false"' in dry.records[0] and '"u1"' in dry.records[0]
    assert engage.traits() == {"u1": {AUDIENCE: "true"}}
    # nothing forgotten: u2 (nothing to end) still has its fingerprint row
    assert set(engage.state.load_fingerprints(space.key, ["u1", "u2"])) == {"u1", "u2"}


def test_a_refused_customer_of_a_track_shaped_space_is_retried_after_its_events_left_the_window(engage):
    """Its watermark moved past the refused user's event: the retry comes from the state, and resolves."""
    from amberflo_sync.emulator import FaultConfig

    engage.emulator.set_faults(FaultConfig(refuse_customer_writes=("u1",)))
    engage.warehouse.write("personas_legacy", "audience_entered", track_events("audience_entered", [
        ("u1", AUDIENCE, 1, True), ("u2", AUDIENCE, 1, True)]))
    assert engage.sync_engage("personas_legacy").rejected == 1
    later = track_events("audience_entered", [("u3", AUDIENCE, 30, True)])
    later["uuid_ts"] = BASE_TIME + pd.Timedelta(hours=5)  # the next window no longer holds u1's event
    later["id"] = "later-0"
    frame = pd.concat([track_events("audience_entered", [("u1", AUDIENCE, 1, True), ("u2", AUDIENCE, 1, True)]),
                       later], ignore_index=True)
    engage.warehouse.write("personas_legacy", "audience_entered", frame)
    engage.emulator.set_faults(FaultConfig())
    stats = engage.sync_engage("personas_legacy")
    assert stats.details["rejected_resolved"] == 1
    assert engage.traits() == {"u1": {AUDIENCE: "true"}, "u2": {AUDIENCE: "true"}, "u3": {AUDIENCE: "true"}}
    assert engage.ledger.rejected_rows() == []
