"""Isolating refused records over real HTTP: one bad record among good ones is isolated cheaply; a
refusal of every record for one reason fails fast with Amberflo's message instead of bisecting row by
row (issue 11)."""

from __future__ import annotations

import json
import math

import pytest

from amberflo_sync.client import AmberfloClient, AmberfloSystemicRefusal, ClientSettings
from amberflo_sync.emulator import FaultConfig
from amberflo_sync.isolation import REFUSED_BY_AMBERFLO, IsolatingSender, probe_positions, refusal_reason
from amberflo_sync.retry import RetryPolicy

FAST_RETRY = RetryPolicy(base_delay=0.01, max_delay=0.05, give_up_after=5.0)


def record(i: int, customer: str = "c-ok") -> str:
    return json.dumps({"uniqueId": f"u-{i}", "customerId": customer, "meterApiName": "ApiCalls",
                       "meterValue": 1.0, "meterTimeInMillis": 1_700_000_000_000 + i}, separators=(",", ":"))


@pytest.fixture
def client(emulator, api_key):
    with AmberfloClient(ClientSettings(base_url=emulator.url, api_key=api_key, batch_size=64, concurrency=1),
                        retry=FAST_RETRY) as c:
        yield c


def test_a_batch_refused_for_one_reason_fails_fast_with_amberflos_message(emulator, client):
    emulator.set_faults(FaultConfig(refuse_customers=("c-new",)))
    send = IsolatingSender(client.ingest_records)
    with pytest.raises(AmberfloSystemicRefusal) as err:
        send([record(i, "c-new") for i in range(64)])
    probes = len(probe_positions(64))
    assert (err.value.records, err.value.refused, err.value.status) == (64, probes, 400)
    assert "this customer does not exist" in err.value.detail and "64 records" in str(err.value)
    # 1 batch + 7 probes, where bisection row by row cost 127 sequential requests
    assert emulator.stats()["ingest_requests"] == 1 + probes == 8
    assert send.isolation_requests == err.value.isolation_requests == probes
    assert send.drain_rejected() == []  # nothing recorded as rejected: the run fails instead
    assert emulator.stats()["distinct"] == 0


def test_one_bad_record_among_good_ones_is_still_isolated_at_bounded_cost(emulator, client):
    emulator.set_faults(FaultConfig(refuse_customers=("c-new",)))
    send = IsolatingSender(client.ingest_records)
    records = [record(i, "c-new" if i == 37 else "c-ok") for i in range(64)]
    assert send(records) == 63
    rejected = send.drain_rejected()
    assert [(r["id"], r["reason"]) for r in rejected] == [("u-37", REFUSED_BY_AMBERFLO)]
    assert "does not exist" in rejected[0]["row"]["error"]
    assert emulator.stats()["distinct"] == 63
    probes = len(probe_positions(64))
    # probes, one send per gap between them, and a bisection of the gap that holds the bad record
    assert send.isolation_requests <= probes + (probes + 1) + 2 * math.ceil(math.log2(64)), send.isolation_requests
    assert send.isolated_batches == 1


def test_a_block_of_refusals_beyond_the_bound_is_systemic_too(emulator, client):
    """One customer's records refused among good ones: past ``max_refused_per_reason`` it is not a
    bad row but a missing customer, and isolating it row by row is what the bound prevents."""
    emulator.set_faults(FaultConfig(refuse_customers=("c-new",)))
    send = IsolatingSender(client.ingest_records, max_refused_per_reason=5)
    records = [record(i, "c-new" if 10 <= i < 30 else "c-ok") for i in range(64)]
    with pytest.raises(AmberfloSystemicRefusal) as err:
        send(records)
    assert err.value.refused == 6 and err.value.records == 64
    assert send.drain_rejected() == []


def test_refusals_of_different_records_share_a_reason():
    from amberflo_sync.client import AmberfloRejectedError

    one = AmberfloRejectedError("x", status=400, detail='{"error":"record 0: field \'customerId\': no"}')
    other = AmberfloRejectedError("x", status=400, detail='{"error":"record 17: field \'customerId\': no"}')
    assert refusal_reason(one) == refusal_reason(other)
    assert probe_positions(1) == [0] and probe_positions(2) == [0, 1] and probe_positions(3) == [0, 1, 2]
    assert probe_positions(64) == [0, 10, 21, 32, 42, 52, 63]


def test_the_events_sync_fails_and_keeps_its_watermark_on_a_systemic_refusal(duckdb_warehouse, emulator, api_key,
                                                                           sqlite_state_url):
    from tests.integration.test_events_sync import Harness
    from tests.segment_rows import event_rows

    h = Harness(duckdb_warehouse, emulator, api_key, sqlite_state_url)
    try:
        emulator.set_faults(FaultConfig(refuse_customers=("user_0", "user_1", "user_2")))
        h.warehouse.write("prod", "api_calls", event_rows(7, event_text="ApiCalls"))
        with pytest.raises(AmberfloSystemicRefusal):
            h.sync("api_calls")
        assert h.ledger.watermark(h.stream("api_calls").key) is None
        assert h.ledger.rejected_rows() == []
        assert [r["status"] for r in h.ledger.runs()] == ["failed"]
        assert "does not exist" in h.ledger.runs()[0]["error"]
    finally:
        h.dag.close()


def test_without_fail_fast_every_refused_record_is_isolated(emulator, client):
    """Retries of rows Amberflo refused before: refused together again, they stay rejected rows."""
    emulator.set_faults(FaultConfig(refuse_customers=("c-new",)))
    send = IsolatingSender(client.ingest_records, max_refused_per_reason=2)
    assert send([record(i, "c-new") for i in range(8)], fail_fast=False) == 0
    assert sorted(r["id"] for r in send.drain_rejected()) == [f"u-{i}" for i in range(8)]


def test_retried_rows_refused_together_stay_rejected_and_the_window_still_runs(duckdb_warehouse, emulator, api_key,
                                                                             sqlite_state_url):
    import datetime as dt

    import pandas as pd

    from tests.integration.test_events_sync import Harness
    from tests.segment_rows import BASE_TIME, event_rows

    h = Harness(duckdb_warehouse, emulator, api_key, sqlite_state_url)
    try:
        emulator.set_faults(FaultConfig(refuse_customers=("user_1",)))
        first = event_rows(7, event_text="ApiCalls")  # user_1: m-1, m-4
        h.warehouse.write("prod", "api_calls", first)
        h.sync("api_calls")
        later = event_rows(1, prefix="late", loaded=BASE_TIME + dt.timedelta(hours=10), event_text="ApiCalls")
        h.warehouse.write("prod", "api_calls", pd.concat([first, later], ignore_index=True))
        h.sync("api_calls")  # the overlap still holds m-1 and m-4: refused again by the window
        stats = h.sync("api_calls")  # now below the window: retried by id in one batch, both refused again
        assert stats.status == "success" and stats.details["rejected_retried"] == 2
        assert {r["row_id"] for r in h.ledger.rejected_rows()} == {"m-1", "m-4"}
        assert "late-0" in {r["uniqueId"] for r in h.records()}
    finally:
        h.dag.close()
