"""Records Amberflo refuses are isolated (the rest of the window is billed), stored with Amberflo's
message, retried on later runs — through the window's own read and render path — until accepted,
abandoned (visibly) after ``rejected_max_attempts``, or replayed by an operator. All through the events
DAG's own task functions."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace

import pandas as pd
import pytest

from amberflo_sync.emulator import FaultConfig
from amberflo_sync.isolation import REFUSED_BY_AMBERFLO
from tests.integration.test_events_sync import CONFIG, Harness
from tests.segment_rows import BASE_TIME, event_rows


@pytest.fixture
def harness(duckdb_warehouse, emulator, api_key, sqlite_state_url):
    h = Harness(duckdb_warehouse, emulator, api_key, sqlite_state_url)
    yield h
    h.dag.close()


def test_a_refused_record_is_isolated_and_the_rest_of_the_batch_is_billed(harness):
    harness.emulator.set_faults(FaultConfig(refuse_customers=("user_1",)))
    harness.warehouse.write("prod", "api_calls", event_rows(7, event_text="ApiCalls"))
    stats = harness.sync("api_calls")
    billed = sorted(r["uniqueId"] for r in harness.records())
    assert billed == ["m-0", "m-2", "m-3", "m-5", "m-6"]  # user_1 owns m-1 and m-4
    assert (stats.status, stats.sent, stats.rejected) == ("success", 5, 2) and stats.balanced
    assert stats.details["rejected_by_reason"] == {REFUSED_BY_AMBERFLO: 2}
    rows = harness.ledger.rejected_rows()
    assert {r["row_id"] for r in rows} == {"m-1", "m-4"} and {r["reason"] for r in rows} == {REFUSED_BY_AMBERFLO}
    assert "customerId" in rows[0]["row_json"] and "does not exist" in rows[0]["row_json"]
    assert harness.ledger.watermark(harness.stream("api_calls").key) is not None


def test_refused_records_are_retried_until_amberflo_accepts_them(harness):
    harness.emulator.set_faults(FaultConfig(refuse_customers=("user_1",)))
    harness.warehouse.write("prod", "api_calls", event_rows(4, event_text="ApiCalls"))
    harness.sync("api_calls")
    harness.sync("api_calls")  # still refused (re-read in the overlap): one more attempt
    assert harness.ledger.rejected_rows()[0]["attempts"] >= 2
    harness.emulator.set_faults(FaultConfig())  # the customer exists now
    stats = harness.sync("api_calls")
    assert stats.details.get("rejected_resolved") == 1
    assert harness.ledger.rejected_rows() == []
    assert [r["status"] for r in harness.ledger.rejected_rows(status=None)] == ["resolved"]
    assert sorted(r["uniqueId"] for r in harness.records()) == ["m-0", "m-1", "m-2", "m-3"]


def test_a_row_refused_long_ago_is_retried_outside_the_window_with_the_same_bytes(harness):
    """A row that left the overlap window is re-read by id through the window's typed path: a BIGINT
    property next to a NULL keeps every digit, so the retry and any re-read are the same record
    (once billed twice: the retry rendered ``…992`` where the window rendered ``…993``)."""
    harness.emulator.set_faults(FaultConfig(refuse_customers=("user_1",)))
    frame = event_rows(3, event_text="ApiCalls")
    frame["big"] = pd.array([2**60 + 1, None, 2**62 + 993], dtype="Int64")
    harness.warehouse.write("prod", "api_calls", frame)
    harness.sync("api_calls")
    assert {r["row_id"] for r in harness.ledger.rejected_rows()} == {"m-1"}
    # much later rows land: the refused row is now far below the next window's lower bound
    later = event_rows(2, prefix="late", loaded=BASE_TIME + dt.timedelta(hours=10), event_text="ApiCalls")
    later["big"] = pd.array([None, None], dtype="Int64")
    harness.warehouse.write("prod", "api_calls", pd.concat([frame, later], ignore_index=True))
    harness.sync("api_calls")  # window of the late rows (+ overlap); m-1 still refused, retried by id
    harness.emulator.set_faults(FaultConfig())
    stats = harness.sync("api_calls")
    # m-1 by id (retried), late-1 (also user_1) by its own window
    assert stats.details.get("rejected_retried") == 1 and stats.details.get("rejected_resolved") == 2
    held = [r for r in harness.emulator.records() if r["uniqueId"] == "m-1"]
    assert len(held) == 1
    # the bytes a window read produces for m-1, and the retry's, are one record in Amberflo
    harness.ledger.forget_watermark(harness.stream("api_calls").key)
    harness.sync("api_calls")
    assert [r for r in harness.emulator.records() if r["uniqueId"] == "m-1"] == held
    assert harness.emulator.stats()["distinct"] == 5


def test_retried_rows_obey_the_60_day_limit_like_window_rows(harness):
    harness.emulator.set_faults(FaultConfig(refuse_customers=("user_1",)))
    frame = event_rows(2, event_text="ApiCalls")
    harness.warehouse.write("prod", "api_calls", frame)
    harness.sync("api_calls")
    later = event_rows(1, prefix="late", loaded=BASE_TIME + dt.timedelta(hours=10), event_text="ApiCalls")
    harness.warehouse.write("prod", "api_calls", pd.concat([frame, later], ignore_index=True))
    harness.emulator.set_faults(FaultConfig())
    age = (dt.datetime.now(dt.timezone.utc) - BASE_TIME).days - 1  # m-1's event time is past this horizon
    harness.base_config = replace(CONFIG, max_event_age_days=age)
    harness.sync("api_calls")
    assert "m-1" not in {r["uniqueId"] for r in harness.records()}
    reasons = {r["reason"] for r in harness.ledger.rejected_rows() if r["row_id"] == "m-1"}
    assert reasons == {"event_too_old"}  # its refusal is resolved by the new, final reason


def test_data_problems_are_not_retried_automatically(harness):
    frame = event_rows(2, event_text="ApiCalls")
    frame.loc[1, ["user_id", "anonymous_id"]] = None
    harness.warehouse.write("prod", "api_calls", frame)
    harness.sync("api_calls")
    stats = harness.sync("api_calls")
    assert "rejected_retried" not in (stats.details or {})
    assert harness.ledger.rejected_rows()[0]["reason"] == "missing_customer_id"


def test_retries_stop_after_the_configured_number_of_attempts_and_say_so(harness, caplog):
    harness.emulator.set_faults(FaultConfig(refuse_customers=("user_1",)))
    harness.warehouse.write("prod", "api_calls", event_rows(2, event_text="ApiCalls"))
    harness.base_config = replace(CONFIG, rejected_max_attempts=2)
    harness.sync("api_calls")
    stats = harness.sync("api_calls")
    assert stats.abandoned == 1 and "abandoned=1" in stats.summary()
    assert "abandoned" in caplog.text
    [row] = harness.ledger.rejected_rows(status="abandoned")
    assert row["row_id"] == "m-1"


def test_operator_replays_old_events_once_amberflo_allows_them(harness, monkeypatch, tmp_path, capsys):
    """``python -m amberflo_sync.replay`` with the DAGs' connections and config."""
    import yaml

    from amberflo_sync import replay

    old = pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=70)
    frame = event_rows(2, event_text="ApiCalls")
    frame.loc[1, ["timestamp", "received_at"]] = old
    harness.warehouse.write("prod", "api_calls", frame)
    harness.sync("api_calls")
    assert [r["reason"] for r in harness.ledger.rejected_rows()] == ["event_too_old"]

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"source_schemas": ["prod"], "state": {"url": harness.state_url}}))
    monkeypatch.setenv("AMBERFLO_SYNC_CONFIG", str(path))
    monkeypatch.setenv("AIRFLOW_CONN_SEGMENT_WAREHOUSE", json.dumps(
        {"conn_type": "generic", "extra": {"sqlalchemy_url": harness.warehouse.url}}))
    monkeypatch.setenv("AIRFLOW_CONN_AMBERFLO_DEFAULT", json.dumps(
        {"conn_type": "amberflo", "host": harness.emulator.url, "password": harness.key}))
    harness.dag.close()
    harness.warehouse.dispose()  # the replay opens the DuckDB file read-only, as a separate process would
    assert replay.main(["--stream", "prod.api_calls", "--allow-old-events"]) == 0
    assert "replayed 1 rows: 1 sent, 1 resolved, 0 still rejected" in capsys.readouterr().out
    assert sorted(r["uniqueId"] for r in harness.records()) == ["m-0", "m-1"]
    assert harness.ledger.rejected_rows() == []
