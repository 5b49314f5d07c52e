"""Fault injection: every kind is observable over HTTP, reproducible, and stores nothing it should not."""

from __future__ import annotations

import time

import pytest
import requests

from amberflo_sync.emulator import EmulatorServer, FaultConfig
from tests.emulator.helpers import meter_record, post_json


def test_rate_429_answers_429_with_retry_after(emulator, session, ingest_url):
    emulator.set_faults(FaultConfig(rate_429=1.0, retry_after=7))
    response = post_json(session, ingest_url, meter_record())
    assert response.status_code == 429 and response.headers["Retry-After"] == "7"
    assert emulator.records() == [] and emulator.stats()["fault_429"] == 1


def test_retry_after_may_be_zero(emulator, session, ingest_url):
    emulator.set_faults(FaultConfig(rate_429=1.0, retry_after=0))
    assert post_json(session, ingest_url, meter_record()).headers["Retry-After"] == "0"


def test_429_without_retry_after_sends_no_header(emulator, session, ingest_url):
    emulator.set_faults(FaultConfig(rate_429=1.0))
    response = post_json(session, ingest_url, meter_record())
    assert response.status_code == 429 and "Retry-After" not in response.headers


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_error_rates_answer_that_status_and_store_nothing(emulator, session, ingest_url, status):
    emulator.set_faults(FaultConfig(**{f"rate_{status}": 1.0}))
    response = post_json(session, ingest_url, meter_record())
    assert response.status_code == status and "injected" in response.json()["error"]
    assert emulator.records() == [] and emulator.stats()[f"fault_{status}"] == 1


def test_outage_answers_503_then_recovers(emulator, session, ingest_url):
    emulator.set_faults(FaultConfig(outage_seconds=0.3))
    assert post_json(session, ingest_url, meter_record(1)).status_code == 503
    assert session.get(f"{emulator.url}/customers/c").status_code == 503
    time.sleep(0.35)
    assert post_json(session, ingest_url, meter_record(2)).status_code == 200
    assert [r["uniqueId"] for r in emulator.records()] == ["m-2"]
    assert emulator.stats()["fault_outage"] == 2


def test_wrong_key_period_answers_401_then_recovers(emulator, session, ingest_url):
    emulator.set_faults(FaultConfig(wrong_key_seconds=0.3))
    assert post_json(session, ingest_url, meter_record(1)).status_code == 401
    time.sleep(0.35)
    assert post_json(session, ingest_url, meter_record(2)).status_code == 200
    stats = emulator.stats()
    assert stats["fault_wrong_key"] == 1 and stats["unauthorized"] == 0 and stats["distinct"] == 1


def test_slow_answer_outlasts_the_read_timeout_but_the_record_is_stored(emulator, session, ingest_url):
    emulator.set_faults(FaultConfig(rate_slow=1.0, slow_ms=800))
    with pytest.raises(requests.ReadTimeout):
        post_json(session, ingest_url, meter_record(), timeout=(1, 0.2))
    assert emulator.records() == [meter_record()]
    assert emulator.stats()["fault_slow"] == 1


def test_slow_answer_arrives_when_the_client_waits(emulator, session, ingest_url):
    emulator.set_faults(FaultConfig(rate_slow=1.0, slow_ms=150))
    started = time.monotonic()
    response = post_json(session, ingest_url, meter_record())
    assert response.status_code == 200 and time.monotonic() - started >= 0.15


def test_drop_closes_the_connection_without_an_answer_and_stores_nothing(emulator, session, ingest_url):
    emulator.set_faults(FaultConfig(rate_drop=1.0))
    with pytest.raises(requests.ConnectionError):
        post_json(session, ingest_url, meter_record())
    assert emulator.records() == [] and emulator.stats()["fault_drop"] == 1
    emulator.set_faults(None)
    assert post_json(session, ingest_url, meter_record()).status_code == 200  # a new connection


def test_latency_delays_every_api_request(emulator, session, ingest_url):
    emulator.set_faults(FaultConfig(latency_ms=200))
    started = time.monotonic()
    assert post_json(session, ingest_url, meter_record()).status_code == 200
    assert time.monotonic() - started >= 0.2


def test_faults_apply_to_customers_endpoints(emulator, session):
    emulator.set_faults(FaultConfig(rate_502=1.0))
    assert session.get(f"{emulator.url}/customers/c-1").status_code == 502


def test_faults_never_apply_to_admin_endpoints(emulator, anonymous):
    emulator.set_faults(FaultConfig(rate_500=1.0, latency_ms=1000))
    started = time.monotonic()
    assert anonymous.get(f"{emulator.url}/__emulator/stats").status_code == 200
    assert anonymous.get(f"{emulator.url}/__emulator/records").status_code == 200
    assert time.monotonic() - started < 0.9


def test_faulted_requests_are_counted_as_requests(emulator, session, ingest_url):
    emulator.set_faults(FaultConfig(rate_503=1.0))
    post_json(session, ingest_url, meter_record())
    stats = emulator.stats()
    assert stats["requests"] == 1 and stats["fault_503"] == 1 and stats["received"] == 0


def statuses(session, url: str, count: int) -> list[int]:
    return [post_json(session, url, meter_record(i)).status_code for i in range(count)]


def test_seeded_fault_draws_are_reproducible(emulator, session, ingest_url):
    emulator.set_faults(FaultConfig(rate_429=0.5, seed=7))
    first = statuses(session, ingest_url, 30)
    emulator.reset()
    emulator.set_faults(FaultConfig(rate_429=0.5, seed=7))
    assert statuses(session, ingest_url, 30) == first
    assert {200, 429} == set(first)


def test_fault_rates_are_fractions_of_requests(emulator, session, ingest_url):
    emulator.set_faults(FaultConfig(rate_500=0.25, rate_503=0.25, seed=1))
    observed = statuses(session, ingest_url, 200)
    assert 30 <= observed.count(500) <= 70 and 30 <= observed.count(503) <= 70
    assert emulator.stats()["distinct"] == observed.count(200)


def test_faults_can_be_set_and_read_over_http(emulator, anonymous, session, ingest_url):
    response = anonymous.post(f"{emulator.url}/__emulator/faults", json={"rate_429": 1, "retry_after": 2})
    assert response.status_code == 200
    config = anonymous.get(f"{emulator.url}/__emulator/faults").json()
    assert config == FaultConfig(rate_429=1, retry_after=2).to_dict()
    assert emulator.faults == FaultConfig(rate_429=1, retry_after=2)
    assert post_json(session, ingest_url, meter_record()).status_code == 429


@pytest.mark.parametrize(
    "body", [{"rate_429": 2}, {"no_such_fault": 1}, {"rate_500": 0.6, "rate_503": 0.6}, [1]], ids=str
)
def test_invalid_fault_settings_over_http_are_400(emulator, anonymous, body):
    response = anonymous.post(f"{emulator.url}/__emulator/faults", json=body)
    assert response.status_code == 400 and response.json()["error"]
    assert emulator.faults == FaultConfig()


def test_fault_config_refuses_rates_adding_up_to_more_than_one():
    with pytest.raises(ValueError, match="add up"):
        FaultConfig(rate_429=0.7, rate_drop=0.5)


def test_fault_config_refuses_a_negative_retry_after():
    with pytest.raises(ValueError, match="retry_after"):
        FaultConfig(retry_after=-1)


def test_reset_clears_faults_unless_asked_to_keep_them(emulator, anonymous):
    emulator.set_faults(FaultConfig(rate_429=1.0))
    emulator.reset(keep_faults=True)
    assert emulator.faults == FaultConfig(rate_429=1.0)
    anonymous.post(f"{emulator.url}/__emulator/reset", params={"keepFaults": "true"})
    assert emulator.faults == FaultConfig(rate_429=1.0)
    anonymous.post(f"{emulator.url}/__emulator/reset")
    assert emulator.faults == FaultConfig()


def test_faults_given_to_the_constructor_apply_from_the_start(api_key):
    with EmulatorServer(api_key, faults=FaultConfig(rate_503=1.0)) as server:
        response = requests.post(f"{server.url}/ingest", json=meter_record(), headers={"X-API-KEY": api_key})
        assert response.status_code == 503


@pytest.mark.parametrize("value", ["-1", "soon", "Thu, 01 Jan 2015 00:00:00 GMT"])
def test_retry_after_may_be_any_header_text(emulator, session, ingest_url, value):
    emulator.set_faults(FaultConfig(rate_429=1.0, retry_after=value))
    assert post_json(session, ingest_url, meter_record()).headers["Retry-After"] == value


def test_fault_config_refuses_a_retry_after_that_is_no_header_value():
    with pytest.raises(ValueError, match="retry_after"):
        FaultConfig(retry_after="0\r\nX-Evil: 1")


def test_throttle_period_answers_429_with_retry_after_then_recovers(emulator, session, ingest_url):
    emulator.set_faults(FaultConfig(throttle_seconds=0.3, retry_after=0))
    response = post_json(session, ingest_url, meter_record(1))
    assert response.status_code == 429 and response.headers["Retry-After"] == "0"
    time.sleep(0.35)
    assert post_json(session, ingest_url, meter_record(2)).status_code == 200
    assert emulator.stats()["fault_429"] == 1 and emulator.stats()["distinct"] == 1


def test_short_ingest_answers_and_stores_fewer_records_than_sent(emulator, session, ingest_url):
    emulator.set_faults(FaultConfig(short_ingest_by=2, short_ingest_requests=1))
    batch = [meter_record(i) for i in range(3)]
    first = post_json(session, ingest_url, batch)
    assert (first.status_code, first.text) == (200, "1 records were ingested")
    assert [r["uniqueId"] for r in emulator.records()] == ["m-0"]
    second = post_json(session, ingest_url, batch)  # only the first request was short
    assert second.text == "3 records were ingested" and emulator.stats()["distinct"] == 3
    assert emulator.stats()["fault_short_ingest"] == 1


@pytest.mark.parametrize("body", [{"short_ingest_by": -1}, {"short_ingest_requests": 1.5}], ids=str)
def test_invalid_short_ingest_settings_are_refused(body):
    with pytest.raises(ValueError, match="short_ingest"):
        FaultConfig.from_dict(body)
