"""Records Amberflo refuses are isolated (the rest of the window is billed), stored with Amberflo's
message, and retried on later runs until they are accepted — or an operator replays them."""

from __future__ import annotations

import pytest

from amberflo_sync.emulator import FaultConfig
from amberflo_sync.isolation import REFUSED_BY_AMBERFLO, IsolatingSender
from amberflo_sync.rejected_retry import retry_rejected
from tests.integration.test_events_sync import Harness
from tests.segment_rows import event_rows


@pytest.fixture
def harness(duckdb_warehouse, emulator, api_key, sqlite_state_url):
    h = Harness(duckdb_warehouse, emulator, api_key, sqlite_state_url)
    yield h
    h.reader.engine.dispose()


def send_isolating(h, table="api_calls"):
    """One incremental run as the DAG task does it: retry what was refused, then the window."""
    from amberflo_sync.client import AmberfloClient, ClientSettings
    from amberflo_sync.events_sync import sync_stream
    from amberflo_sync.retry import RetryPolicy
    from tests.integration.test_events_sync import CONFIG

    settings = ClientSettings(base_url=h.emulator.url, api_key=h.key, batch_size=CONFIG.batch_size)
    with AmberfloClient(settings, retry=RetryPolicy(base_delay=0.01, give_up_after=2)) as client:
        send = IsolatingSender(client.ingest_records)
        retried = retry_rejected(h.stream(table), reader=h.reader, state=h.state, send=send, config=CONFIG)
        h.runs += 1
        stats = sync_stream(h.stream(table), reader=h.reader, state=h.state, send=send, config=CONFIG,
                            run_id=f"run-{h.runs}")
    return retried, stats


def test_a_refused_record_is_isolated_and_the_rest_of_the_batch_is_billed(harness):
    harness.emulator.set_faults(FaultConfig(refuse_customers=("user_1",)))
    harness.warehouse.write("prod", "api_calls", event_rows(7, event_text="ApiCalls"))
    _, stats = send_isolating(harness)
    billed = sorted(r["uniqueId"] for r in harness.records())
    assert billed == ["m-0", "m-2", "m-3", "m-5", "m-6"]  # user_1 owns m-1 and m-4
    assert (stats.status, stats.sent, stats.rejected) == ("success", 5, 2) and stats.balanced
    assert stats.details["rejected_by_reason"] == {REFUSED_BY_AMBERFLO: 2}
    rows = harness.state.rejected_rows()
    assert {r["row_id"] for r in rows} == {"m-1", "m-4"} and {r["reason"] for r in rows} == {REFUSED_BY_AMBERFLO}
    assert "customerId" in rows[0]["row_json"] and "does not exist" in rows[0]["row_json"]
    assert harness.state.get_watermark(harness.stream("api_calls").key) is not None


def test_refused_records_are_retried_until_amberflo_accepts_them(harness):
    harness.emulator.set_faults(FaultConfig(refuse_customers=("user_1",)))
    harness.warehouse.write("prod", "api_calls", event_rows(4, event_text="ApiCalls"))
    send_isolating(harness)
    retried, _ = send_isolating(harness)  # still refused: one more attempt
    assert retried.tried == 1 and retried.sent == 0
    assert harness.state.rejected_rows()[0]["attempts"] >= 2  # retried, and refused again in the overlap
    harness.emulator.set_faults(FaultConfig())  # the customer exists now
    retried, _ = send_isolating(harness)
    assert (retried.tried, retried.sent) == (1, 1)
    assert harness.state.rejected_rows() == []
    assert sorted(r["uniqueId"] for r in harness.records()) == ["m-0", "m-1", "m-2", "m-3"]


def test_data_problems_are_not_retried_automatically(harness):
    frame = event_rows(2, event_text="ApiCalls")
    frame.loc[1, ["user_id", "anonymous_id"]] = None
    harness.warehouse.write("prod", "api_calls", frame)
    send_isolating(harness)
    retried, _ = send_isolating(harness)
    assert retried.tried == 0 and harness.state.rejected_rows()[0]["reason"] == "missing_customer_id"


def test_retries_stop_after_the_configured_number_of_attempts(harness):
    from dataclasses import replace

    from tests.integration.test_events_sync import CONFIG

    harness.emulator.set_faults(FaultConfig(refuse_customers=("user_1",)))
    harness.warehouse.write("prod", "api_calls", event_rows(2, event_text="ApiCalls"))
    send_isolating(harness)
    config = replace(CONFIG, rejected_max_attempts=1)
    from amberflo_sync.client import AmberfloClient, ClientSettings

    with AmberfloClient(ClientSettings(base_url=harness.emulator.url, api_key=harness.key)) as client:
        result = retry_rejected(harness.stream("api_calls"), reader=harness.reader, state=harness.state,
                                send=IsolatingSender(client.ingest_records), config=config)
    assert result.tried == 0


def test_operator_replays_old_events_once_amberflo_allows_them(harness, monkeypatch, tmp_path, capsys):
    """``python -m amberflo_sync.replay`` with the DAGs' connections and config."""
    import json

    import pandas as pd
    import yaml

    from amberflo_sync import replay
    from amberflo_sync.config import config_from_dict

    old = pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=70)
    frame = event_rows(2, event_text="ApiCalls")
    frame.loc[1, ["timestamp", "received_at"]] = old
    harness.warehouse.write("prod", "api_calls", frame)
    config = config_from_dict({"source_schemas": ["prod"], "state": {"url": str(harness.state.engine.url)}})
    from amberflo_sync.client import AmberfloClient, ClientSettings
    from amberflo_sync.events_sync import sync_stream

    with AmberfloClient(ClientSettings(base_url=harness.emulator.url, api_key=harness.key)) as client:
        sync_stream(harness.stream("api_calls"), reader=harness.reader, state=harness.state,
                    send=client.ingest_records, config=config, run_id="r1")
    assert [r["reason"] for r in harness.state.rejected_rows()] == ["event_too_old"]

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"source_schemas": ["prod"], "state": {"url": str(harness.state.engine.url)}}))
    monkeypatch.setenv("AMBERFLO_SYNC_CONFIG", str(path))
    monkeypatch.setenv("AIRFLOW_CONN_SEGMENT_WAREHOUSE", json.dumps(
        {"conn_type": "generic", "extra": {"sqlalchemy_url": harness.warehouse.url}}))
    monkeypatch.setenv("AIRFLOW_CONN_AMBERFLO_DEFAULT", json.dumps(
        {"conn_type": "amberflo", "host": harness.emulator.url, "password": harness.key}))
    harness.reader.engine.dispose()
    harness.warehouse.dispose()  # the replay opens the DuckDB file read-only, as a separate process would
    assert replay.main(["--stream", "prod.api_calls", "--allow-old-events"]) == 0
    assert "replayed 1 rows (event_too_old): 1 sent, 0 still rejected" in capsys.readouterr().out
    assert sorted(r["uniqueId"] for r in harness.records()) == ["m-0", "m-1"]
    assert harness.state.rejected_rows() == []
