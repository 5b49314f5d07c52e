"""The X-API-KEY check: 401 without the right key, and the key never leaks into an answer."""

from __future__ import annotations

from tests.emulator.helpers import meter_record, post_json


def test_missing_key_is_401_with_a_json_error(emulator, anonymous, ingest_url):
    response = post_json(anonymous, ingest_url, meter_record())
    assert response.status_code == 401
    assert response.json() == {"error": "missing X-API-KEY header"}


def test_wrong_key_is_401(emulator, anonymous, ingest_url):
    response = post_json(anonymous, ingest_url, meter_record(), headers={"X-API-KEY": "nope"})
    assert response.status_code == 401
    assert response.json() == {"error": "invalid API key"}


def test_unauthorized_request_stores_nothing_and_is_counted(emulator, anonymous, ingest_url):
    post_json(anonymous, ingest_url, meter_record(), headers={"X-API-KEY": "nope"})
    stats = emulator.stats()
    assert emulator.records() == []
    assert stats["unauthorized"] == 1 and stats["requests"] == 1 and stats["received"] == 0


def test_key_header_name_is_case_insensitive(emulator, anonymous, api_key, ingest_url):
    response = post_json(anonymous, ingest_url, meter_record(), headers={"x-api-key": api_key})
    assert response.status_code == 200


def test_customers_endpoints_require_the_key(emulator, anonymous):
    assert anonymous.get(f"{emulator.url}/customers").status_code == 401
    assert anonymous.get(f"{emulator.url}/customers/c-1").status_code == 401


def test_admin_endpoints_need_no_key(emulator, anonymous):
    assert anonymous.get(f"{emulator.url}/__emulator/stats").status_code == 200
    assert anonymous.get(f"{emulator.url}/__emulator/records").status_code == 200


def test_key_never_appears_in_any_answer(emulator, api_key, session, anonymous, ingest_url):
    url = emulator.url
    wrong = api_key + "x"  # a near miss must not be echoed either
    responses = [
        post_json(session, ingest_url, meter_record()),
        post_json(session, ingest_url, meter_record(dimensions={"k": "/"})),
        post_json(anonymous, ingest_url, meter_record()),
        post_json(anonymous, ingest_url, meter_record(), headers={"X-API-KEY": wrong}),
        post_json(session, f"{url}/customers", {"customerId": "c", "customerName": "C"}),
        session.get(f"{url}/customers/c"),
        session.get(f"{url}/nowhere"),
        anonymous.get(f"{url}/__emulator/stats"),
        anonymous.get(f"{url}/__emulator/records"),
        anonymous.get(f"{url}/__emulator/faults"),
        anonymous.get(f"{url}/__emulator/customers"),
    ]
    for response in responses:
        exposed = response.text + "".join(f"{k}: {v}" for k, v in response.headers.items())
        assert api_key not in exposed and wrong not in exposed, response.request.url
    assert api_key not in repr(emulator)


def test_a_401_keeps_the_connection_usable(emulator, api_key, anonymous, ingest_url):
    assert post_json(anonymous, ingest_url, meter_record()).status_code == 401
    response = post_json(anonymous, ingest_url, meter_record(), headers={"X-API-KEY": api_key})
    assert response.status_code == 200


def test_key_is_checked_before_the_body(emulator, anonymous, ingest_url):
    response = anonymous.post(ingest_url, data=b"not json")
    assert response.status_code == 401
