"""The client's usage methods against the emulator over real HTTP (batching, paging, retries)."""

from __future__ import annotations

import orjson

from amberflo_sync.client import AmberfloClient, ClientSettings
from amberflo_sync.emulator import FaultConfig
from amberflo_sync.retry import RetryPolicy

T0 = 1_700_000_000 - 1_700_000_000 % 3600


def record(i: int, customer: str = "a", meter: str = "m") -> str:
    return orjson.dumps({"uniqueId": f"u{i}", "customerId": customer, "meterApiName": meter, "meterValue": i,
                         "meterTimeInMillis": (T0 + i) * 1000}).decode()


def test_usage_batch_and_paged_events(emulator, api_key):
    with AmberfloClient(ClientSettings(base_url=emulator.url, api_key=api_key)) as client:
        client.ingest_records([record(i) for i in range(5)] + [record(9, "b", "other")])
        query = {"aggregation": "SUM", "timeGroupingInterval": "HOUR", "groupBy": ["customerId"],
                 "timeRange": {"startTimeInSeconds": T0, "endTimeInSeconds": T0 + 3600}}
        first, second = client.query_usage_batch([{**query, "meterApiName": "m"}, {**query, "meterApiName": "other"}])
        assert first["clientMeters"][0]["groupValue"] == 10.0 and second["clientMeters"][0]["groupValue"] == 9.0
        assert client.query_usage({**query, "meterApiName": "m", "aggregation": "COUNT"})["clientMeters"][0]["groupValue"] == 5
        before = client.stats.requests
        events = list(client.usage_events("m", customer_id="a", start_seconds=T0, end_seconds=T0 + 3600, page_size=2))
        assert [e["uniqueId"] for e in events] == ["u0", "u1", "u2", "u3", "u4"]
        assert client.stats.requests - before == 3  # three pages, one request each


def test_usage_calls_are_retried_like_any_call(emulator, api_key):
    emulator.set_faults(FaultConfig(outage_seconds=0.3))
    retry = RetryPolicy(give_up_after=10, base_delay=0.05, min_delay=0.05, max_delay=0.1)
    with AmberfloClient(ClientSettings(base_url=emulator.url, api_key=api_key), retry=retry) as client:
        answers = client.query_usage_batch([{"meterApiName": "m", "aggregation": "SUM", "timeGroupingInterval": "DAY",
                                             "timeRange": {"startTimeInSeconds": T0, "endTimeInSeconds": T0 + 86400}}] * 3)
        assert len(answers) == 3 and client.stats.retries >= 1
        assert emulator.stats()["usage_requests"] == 1
