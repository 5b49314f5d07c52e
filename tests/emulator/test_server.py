"""The Python API tests use: EmulatorServer's lifecycle, loopback-only binding and accessors."""

from __future__ import annotations

import socket

import pytest
import requests

from amberflo_sync.emulator import COUNTERS, EmulatorServer
from tests.emulator.helpers import meter_record, post_json


def test_url_is_a_loopback_base_url_without_trailing_slash(emulator):
    assert emulator.url == f"http://127.0.0.1:{emulator.port}"
    assert emulator.port > 0


def test_stats_report_every_counter_starting_at_zero(emulator):
    assert emulator.stats() == dict.fromkeys(COUNTERS, 0)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com", "::", ""])
def test_non_loopback_host_is_refused(api_key, host):
    with pytest.raises(ValueError, match="loopback"):
        EmulatorServer(api_key, host=host)


def test_empty_api_key_is_refused():
    with pytest.raises(ValueError):
        EmulatorServer("")


def test_localhost_binds_to_ipv4_loopback(api_key):
    with EmulatorServer(api_key, host="localhost") as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert requests.get(f"{server.url}/__emulator/health").json() == {"status": "ok"}


def test_ipv6_loopback_is_served_when_available(api_key):
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("no IPv6 loopback in this environment")
    with EmulatorServer(api_key, host="::1") as server:
        assert server.url.startswith("http://[::1]:")
        assert requests.get(f"{server.url}/__emulator/health").status_code == 200


def test_stop_closes_the_port_and_kept_alive_connections(api_key):
    server = EmulatorServer(api_key).start()
    http = requests.Session()
    http.headers["X-API-KEY"] = api_key
    assert post_json(http, f"{server.url}/ingest", meter_record()).status_code == 200
    server.stop()
    with pytest.raises(requests.ConnectionError):
        post_json(http, f"{server.url}/ingest", meter_record(1))
    server.stop()  # idempotent


def test_two_servers_run_side_by_side(api_key):
    with EmulatorServer(api_key) as first, EmulatorServer(api_key) as second:
        assert first.url != second.url
        post_json(requests.Session(), f"{first.url}/ingest", meter_record(), headers={"X-API-KEY": api_key})
        assert first.stats()["distinct"] == 1 and second.stats()["distinct"] == 0


def test_url_before_start_is_an_error(api_key):
    with pytest.raises(RuntimeError):
        _ = EmulatorServer(api_key).url


def test_accessors_return_copies(emulator, session):
    session.post(f"{emulator.url}/customers", json={"customerId": "c", "customerName": "C"})
    emulator.customers()["c"]["traits"]["x"] = "y"
    emulator.records().append({"uniqueId": "fake"})
    assert emulator.customers()["c"]["traits"] == {} and emulator.records() == []


def test_reset_clears_customers_too(emulator, session):
    session.post(f"{emulator.url}/customers", json={"customerId": "c", "customerName": "C"})
    emulator.reset()
    assert emulator.customers() == {} and emulator.stats()["customer_posts"] == 0


def test_concurrent_clients_lose_no_record(emulator, api_key):
    from concurrent.futures import ThreadPoolExecutor

    def send(worker: int) -> None:
        with requests.Session() as http:
            http.headers["X-API-KEY"] = api_key
            for batch in range(10):
                records = [meter_record(worker * 1000 + batch * 10 + i) for i in range(10)]
                assert post_json(http, f"{emulator.url}/ingest", records).status_code == 200

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(send, range(8)))
    stats = emulator.stats()
    assert stats["distinct"] == 800 and stats["duplicates"] == 0 and len(emulator.records()) == 800
