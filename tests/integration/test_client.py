"""The Amberflo client against the emulator over real HTTP: batching, gzip, retries, failures."""

from __future__ import annotations

import json
import time

import pytest

from amberflo_sync.client import (
    AmberfloAuthError,
    AmberfloClient,
    AmberfloRejectedError,
    AmberfloUnavailableError,
    ClientSettings,
)
from amberflo_sync.emulator import FaultConfig
from amberflo_sync.retry import RetryPolicy, parse_retry_after

FAST_RETRY = RetryPolicy(base_delay=0.01, max_delay=0.05, give_up_after=10.0)


def record(i: int, **extra) -> str:
    body = {
        "uniqueId": f"u-{i}",
        "customerId": "c-1",
        "meterApiName": "ApiCalls",
        "meterValue": 1.0,
        "meterTimeInMillis": 1_700_000_000_000 + i,
        **extra,
    }
    return json.dumps(body, separators=(",", ":"))


def client_for(emulator, key: str, *, retry: RetryPolicy = FAST_RETRY, **settings) -> AmberfloClient:
    return AmberfloClient(ClientSettings(base_url=emulator.url, api_key=key, **settings), retry=retry)


def test_records_are_sent_in_batches_of_the_configured_size(emulator, api_key):
    with client_for(emulator, api_key, batch_size=7) as client:
        assert client.ingest_records([record(i) for i in range(20)]) == 20
    stats = emulator.stats()
    assert stats["ingest_requests"] == 3 and stats["distinct"] == 20
    assert client.stats.batches_sent == 3


def test_bodies_are_gzip_json_arrays():
    body = AmberfloClient.build_ingest_body([record(1), record(2)])
    import gzip

    assert json.loads(gzip.decompress(body))[1]["uniqueId"] == "u-2"
    assert body == AmberfloClient.build_ingest_body([record(1), record(2)])  # no timestamp in the header


def test_resending_identical_records_adds_nothing(emulator, api_key):
    with client_for(emulator, api_key) as client:
        client.ingest_records([record(i) for i in range(5)])
        client.ingest_records([record(i) for i in range(5)])
    assert emulator.stats()["distinct"] == 5 and emulator.stats()["duplicates"] == 5


def test_429_with_retry_after_is_retried_until_accepted(emulator, api_key):
    emulator.set_faults(FaultConfig(rate_429=0.6, retry_after=0, seed=3))
    with client_for(emulator, api_key, batch_size=1) as client:
        client.ingest_records([record(i) for i in range(10)])
    assert emulator.stats()["distinct"] == 10
    assert client.stats.retries == emulator.stats()["fault_429"] > 0


@pytest.mark.parametrize("kind", ["rate_500", "rate_502", "rate_503", "rate_drop"])
def test_server_errors_and_dropped_connections_are_retried(emulator, api_key, kind):
    emulator.set_faults(FaultConfig(**{kind: 0.5}, seed=11))
    with client_for(emulator, api_key, batch_size=2) as client:
        client.ingest_records([record(i) for i in range(20)])
    assert emulator.stats()["distinct"] == 20
    assert client.stats.retries > 0


def test_read_timeout_is_retried_and_the_resend_is_absorbed(emulator, api_key):
    emulator.set_faults(FaultConfig(rate_slow=0.4, slow_ms=600, seed=1))
    with client_for(emulator, api_key, batch_size=2, read_timeout=0.2) as client:
        client.ingest_records([record(i) for i in range(30)])
    stats = emulator.stats()
    assert stats["distinct"] == 30 and stats["fault_slow"] > 0 and client.stats.retries > 0


def test_outage_longer_than_the_budget_gives_up_with_a_clear_error(emulator, api_key):
    emulator.set_faults(FaultConfig(outage_seconds=30))
    retry = RetryPolicy(base_delay=0.05, max_delay=0.1, give_up_after=0.5)
    with client_for(emulator, api_key, retry=retry) as client, pytest.raises(AmberfloUnavailableError) as err:
        client.ingest_records([record(1)])
    assert "HTTP 503" in str(err.value) and "attempts" in str(err.value)
    assert emulator.stats()["distinct"] == 0


def test_outage_shorter_than_the_budget_is_ridden_out(emulator, api_key):
    emulator.set_faults(FaultConfig(outage_seconds=0.6))
    retry = RetryPolicy(base_delay=0.1, max_delay=0.2, give_up_after=10)
    started = time.monotonic()
    with client_for(emulator, api_key, retry=retry) as client:
        client.ingest_records([record(1)])
    assert time.monotonic() - started >= 0.5 and emulator.stats()["distinct"] == 1


def test_a_400_fails_at_once_with_amberflos_message(emulator, api_key):
    bad = record(2, dimensions={"path": "/home"})
    with client_for(emulator, api_key) as client, pytest.raises(AmberfloRejectedError) as err:
        client.ingest_records([record(1), bad])
    assert err.value.status == 400 and "record 1" in str(err.value) and "dimensions" in str(err.value)
    assert client.stats.retries == 0 and emulator.stats()["distinct"] == 0


def test_a_wrong_key_fails_fast_and_never_shows_the_key(emulator):
    wrong = "wrong-key-0123456789abcdef"
    with client_for(emulator, wrong) as client, pytest.raises(AmberfloAuthError) as err:
        client.ingest_records([record(1)])
    assert err.value.status == 401 and client.stats.retries == 0
    assert wrong not in str(err.value) and "API key" in str(err.value)


def test_default_policy_keeps_trying_for_more_than_20_seconds():
    clock = [0.0]
    policy = RetryPolicy(sleep=lambda s: clock.__setitem__(0, clock[0] + s), clock=lambda: clock[0])
    attempt, first = 0, 0.0
    while True:
        attempt += 1
        delay = policy.backoff(attempt)
        if not policy.may_retry(attempt, first, delay):
            break
        policy.sleep(delay)
    assert clock[0] > 20 and attempt >= 5


def test_retry_after_accepts_seconds_and_http_dates():
    import datetime as dt

    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Thu, 01 Jan 2026 00:00:05 GMT", now=now) == 5.0
    assert parse_retry_after("garbage") is None and parse_retry_after(None) is None
    policy = RetryPolicy(max_delay=3.0)
    assert policy.backoff(1, "100") == 3.0  # capped


def test_backoff_grows_exponentially_with_jitter():
    import random

    policy = RetryPolicy(base_delay=1.0, max_delay=30.0, jitter=0.5)
    rng = random.Random(1)
    delays = [policy.backoff(n, rng=rng) for n in range(1, 7)]
    for n, delay in enumerate(delays, start=1):
        assert 0.5 * min(30, 2 ** (n - 1)) <= delay <= min(30, 2 ** (n - 1))


def test_customers_calls(emulator, api_key):
    with client_for(emulator, api_key) as client:
        assert client.get_customer("c-9") is None
        client.create_customer({"customerId": "c-9", "customerName": "Nine", "traits": {"plan": "pro"}})
        assert client.get_customer("c-9")["traits"] == {"plan": "pro"}
        client.replace_customer({"customerId": "c-9", "customerName": "Nine"})
        assert "traits" not in client.get_customer("c-9") or not client.get_customer("c-9")["traits"]
        assert [c["customerId"] for c in client.list_customers()] == ["c-9"]


@pytest.mark.parametrize("retry_after", [0, "-1", "soon", "Thu, 01 Jan 2015 00:00:00 GMT", "0.0"])
def test_a_retry_after_of_zero_or_garbage_never_makes_a_tight_loop(emulator, api_key, retry_after):
    """429 with ``Retry-After: 0`` (or a value that parses as 0, or none at all) for 1 s: the client
    waits at least the floor between attempts, so the requests it makes meanwhile stay bounded."""
    emulator.set_faults(FaultConfig(throttle_seconds=1.0, retry_after=retry_after))
    retry = RetryPolicy(base_delay=0.01, max_delay=1.0, retry_after_floor=0.1, give_up_after=10.0)
    with client_for(emulator, api_key, retry=retry) as client:
        assert client.ingest_records([record(1)]) == 1
    requests_made = emulator.stats()["requests"]
    assert 2 <= requests_made <= 1.0 / 0.1 + 2, requests_made  # before the floor: thousands in 1 s


def test_retry_after_is_honoured_between_a_floor_and_a_ceiling():
    import datetime as dt

    policy = RetryPolicy(max_delay=30.0)  # default floor: 0.5 s
    assert policy.retry_after_floor == 0.5
    assert policy.backoff(1, "7") == 7.0
    assert policy.backoff(1, "0") == 0.5
    assert policy.backoff(1, "100") == 30.0
    for unreadable in ("-1", "garbage", "nan"):  # our own back-off, still floored
        assert all(policy.backoff(n, unreadable) >= 0.5 for n in range(1, 5))
    assert RetryPolicy(base_delay=0.01).backoff(1, "-1") == 0.5
    past = email_date(dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1))
    assert policy.backoff(1, past) == 0.5
    assert parse_retry_after("-1") is None and parse_retry_after("nan") is None and parse_retry_after("inf") is None
    assert RetryPolicy(max_delay=0.05).backoff(1, "0") == 0.05  # a ceiling below the floor wins: tests stay fast
    with pytest.raises(ValueError, match="retry_after_floor"):
        RetryPolicy(retry_after_floor=0)
    with pytest.raises(ValueError, match="max_delay"):
        RetryPolicy(max_delay=0)


def email_date(when) -> str:
    import email.utils

    return email.utils.format_datetime(when, usegmt=True)


def test_an_answer_short_of_the_batch_is_verified_by_resending_the_same_bytes(emulator, api_key):
    emulator.set_faults(FaultConfig(short_ingest_by=2, short_ingest_requests=1))
    with client_for(emulator, api_key, batch_size=3) as client:
        assert client.ingest_records([record(i) for i in range(3)]) == 3
    stats = emulator.stats()
    assert (stats["ingest_requests"], stats["fault_short_ingest"], stats["distinct"]) == (2, 1, 3)
    assert stats["duplicates"] == 1  # the resent record Amberflo already had: identical bytes, absorbed
    assert client.stats.short_ingest_resends == 1


def test_an_answer_still_short_after_the_resends_fails_the_batch(emulator, api_key):
    from amberflo_sync.client import AmberfloShortIngestError

    emulator.set_faults(FaultConfig(short_ingest_by=2))  # every answer short
    with client_for(emulator, api_key, batch_size=3) as client, pytest.raises(AmberfloShortIngestError) as err:
        client.ingest_records([record(i) for i in range(3)])
    assert (err.value.sent, err.value.ingested, err.value.attempts) == (3, 1, 3)  # 1 + 2 resends
    assert "1 records were ingested" in str(err.value) and api_key not in str(err.value)
    assert client.stats.records_sent == 0 and emulator.stats()["ingest_requests"] == 3
