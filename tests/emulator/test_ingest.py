"""POST /ingest: bodies, encodings, the success answer and what gets stored."""

from __future__ import annotations

import gzip
import http.client

import orjson

from tests.emulator.helpers import meter_record, post_json, post_raw


def test_single_object_body_is_ingested(emulator, session, ingest_url):
    response = post_json(session, ingest_url, meter_record())
    assert response.status_code == 200
    assert emulator.records() == [meter_record()]


def test_array_body_is_ingested(emulator, session, ingest_url):
    records = [meter_record(i) for i in range(3)]
    assert post_json(session, ingest_url, records).status_code == 200
    assert emulator.records() == records


def test_gzip_body_is_decompressed(emulator, session, ingest_url):
    records = [meter_record(i) for i in range(50)]
    assert post_json(session, ingest_url, records, gzipped=True).status_code == 200
    assert emulator.records() == records


def test_success_answer_is_plain_text_naming_the_record_count(emulator, session, ingest_url):
    response = post_json(session, ingest_url, [meter_record(i) for i in range(3)])
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.text == "3 records were ingested"


def test_record_count_in_the_answer_includes_duplicates(emulator, session, ingest_url):
    post_json(session, ingest_url, meter_record())
    response = post_json(session, ingest_url, [meter_record(), meter_record()])
    assert response.text == "2 records were ingested"


def test_empty_array_ingests_nothing(emulator, session, ingest_url):
    response = post_json(session, ingest_url, [])
    assert response.status_code == 200 and response.text == "0 records were ingested"


def test_ingest_path_with_trailing_slash_is_accepted(emulator, session, ingest_url):
    assert post_json(session, ingest_url + "/", meter_record()).status_code == 200


def test_corrupt_gzip_is_400(emulator, session, ingest_url):
    body = gzip.compress(orjson.dumps(meter_record()))[:-6]
    response = session.post(ingest_url, data=body, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 400
    assert "gzip" in response.json()["error"]


def test_gzip_with_trailing_garbage_is_400(emulator, session, ingest_url):
    body = gzip.compress(orjson.dumps(meter_record())) + b"garbage!"
    response = session.post(ingest_url, data=body, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 400


def test_multi_member_gzip_is_decompressed_whole(emulator, session, ingest_url):
    text = orjson.dumps([meter_record(1), meter_record(2)])
    middle = len(text) // 2
    body = gzip.compress(text[:middle]) + gzip.compress(text[middle:])
    response = session.post(ingest_url, data=body, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 200 and len(emulator.records()) == 2


def test_unsupported_content_encoding_is_refused(emulator, session, ingest_url):
    response = session.post(ingest_url, data=b"{}", headers={"Content-Encoding": "br"})
    assert response.status_code == 415


def test_invalid_json_is_400_with_a_clear_message(emulator, session, ingest_url):
    response = post_raw(session, ingest_url, '[{"uniqueId": "m-1",')
    assert response.status_code == 400
    assert response.json()["error"].startswith("body is not valid JSON")


def test_json_that_is_neither_object_nor_array_is_400(emulator, session, ingest_url):
    response = post_raw(session, ingest_url, '"hello"')
    assert response.status_code == 400
    assert "object or an array" in response.json()["error"]


def test_unknown_top_level_keys_are_ignored_and_not_stored(emulator, session, ingest_url):
    response = post_json(session, ingest_url, meter_record(extra="x", timestamp=[1]))
    assert response.status_code == 200
    assert emulator.records() == [meter_record()]


def test_meter_value_is_stored_as_sent(emulator, session, ingest_url):
    post_json(session, ingest_url, [meter_record(1, meterValue=1), meter_record(2, meterValue=2.5)])
    values = [record["meterValue"] for record in emulator.records()]
    assert values == [1, 2.5] and type(values[0]) is int


def test_record_without_dimensions_is_stored_without_the_key(emulator, session, ingest_url):
    post_json(session, ingest_url, meter_record(dimensions=None))
    assert "dimensions" not in emulator.records()[0]


def test_records_are_kept_in_arrival_order(emulator, session, ingest_url):
    for index in (3, 1, 2):
        post_json(session, ingest_url, meter_record(index))
    assert [r["uniqueId"] for r in emulator.records()] == ["m-3", "m-1", "m-2"]


def test_records_endpoint_returns_them_and_filters_by_meter(emulator, session, anonymous, ingest_url):
    post_json(session, ingest_url, [meter_record(1), meter_record(2, meterApiName="page")])
    everything = anonymous.get(f"{emulator.url}/__emulator/records").json()
    pages = anonymous.get(f"{emulator.url}/__emulator/records", params={"meterApiName": "page"}).json()
    assert everything == emulator.records() and len(everything) == 2
    assert pages == [meter_record(2, meterApiName="page")]
    assert emulator.records("page") == pages


def test_ingestion_counters(emulator, session, ingest_url):
    post_json(session, ingest_url, [meter_record(1), meter_record(2)])
    post_json(session, ingest_url, [meter_record(2), meter_record(3)])
    post_json(session, ingest_url, meter_record(4, meterValue="x"))
    stats = emulator.stats()
    assert stats["requests"] == 3 and stats["ingest_requests"] == 3
    assert stats["received"] == 4 and stats["distinct"] == 3 and stats["duplicates"] == 1
    assert stats["rejected_requests"] == 1


def test_stats_endpoint_matches_stats_method(emulator, session, anonymous, ingest_url):
    post_json(session, ingest_url, meter_record())
    assert anonymous.get(f"{emulator.url}/__emulator/stats").json() == emulator.stats()


def test_keep_alive_connection_serves_many_requests(emulator, api_key):
    connection = http.client.HTTPConnection("127.0.0.1", emulator.port)
    try:
        for index in range(3):
            body = orjson.dumps(meter_record(index))
            connection.request("POST", "/ingest", body=body, headers={"X-API-KEY": api_key})
            response = connection.getresponse()
            assert response.status == 200 and response.read() == b"1 records were ingested"
            assert response.getheader("Connection") != "close"
            assert int(response.getheader("Content-Length")) == len(b"1 records were ingested")
    finally:
        connection.close()
    assert emulator.stats()["distinct"] == 3


def test_chunked_body_is_read(emulator, session, ingest_url):
    chunks = iter([orjson.dumps([meter_record(1), meter_record(2)])])
    response = session.post(ingest_url, data=chunks)  # a generator is sent chunked
    assert response.status_code == 200 and response.text == "2 records were ingested"


def test_unknown_endpoint_is_404(emulator, session):
    assert session.get(f"{emulator.url}/invoices").status_code == 404  # /usage exists since issue 13


def test_wrong_method_is_405(emulator, session, ingest_url):
    assert session.get(ingest_url).status_code == 405


def test_reset_forgets_records_and_counters(emulator, session, anonymous, ingest_url):
    post_json(session, ingest_url, meter_record())
    assert anonymous.post(f"{emulator.url}/__emulator/reset").status_code == 200
    assert emulator.records() == [] and set(emulator.stats().values()) == {0}
    post_json(session, ingest_url, meter_record())
    assert emulator.stats()["distinct"] == 1  # the de-duplication memory is gone too
