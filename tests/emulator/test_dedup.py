"""De-duplication: a record identical in every known field is counted once, anything else is new."""

from __future__ import annotations

from tests.emulator.helpers import meter_record, post_json


def counts(emulator) -> tuple[int, int]:
    stats = emulator.stats()
    return stats["distinct"], stats["duplicates"]


def test_same_record_twice_in_one_request_is_stored_once(emulator, session, ingest_url):
    post_json(session, ingest_url, [meter_record(), meter_record()])
    assert counts(emulator) == (1, 1)
    assert emulator.records() == [meter_record()]


def test_same_record_in_two_requests_is_a_duplicate(emulator, session, ingest_url):
    post_json(session, ingest_url, meter_record())
    post_json(session, ingest_url, meter_record(), gzipped=True)
    assert counts(emulator) == (1, 1)


def test_dimensions_in_another_order_are_a_duplicate(emulator, session, ingest_url):
    post_json(session, ingest_url, meter_record(dimensions={"a": "1", "b": "2", "c": "3"}))
    post_json(session, ingest_url, meter_record(dimensions={"c": "3", "a": "1", "b": "2"}))
    assert counts(emulator) == (1, 1)


def test_a_different_dimension_value_is_a_new_record(emulator, session, ingest_url):
    post_json(session, ingest_url, meter_record(dimensions={"region": "us-west-2"}))
    post_json(session, ingest_url, meter_record(dimensions={"region": "eu-west-1"}))
    assert counts(emulator) == (2, 0)


def test_an_added_dimension_is_a_new_record(emulator, session, ingest_url):
    post_json(session, ingest_url, meter_record(dimensions={"region": "us-west-2"}))
    post_json(session, ingest_url, meter_record(dimensions={"region": "us-west-2", "plan": "pro"}))
    assert counts(emulator) == (2, 0)


def test_a_changed_meter_value_is_a_new_record(emulator, session, ingest_url):
    post_json(session, ingest_url, [meter_record(meterValue=2.0), meter_record(meterValue=3.0)])
    assert counts(emulator) == (2, 0)


def test_a_different_unique_id_is_a_new_record(emulator, session, ingest_url):
    post_json(session, ingest_url, [meter_record(uniqueId="a"), meter_record(uniqueId="b")])
    assert counts(emulator) == (2, 0)


def test_integer_and_float_meter_values_that_are_equal_are_a_duplicate(emulator, session, ingest_url):
    post_json(session, ingest_url, [meter_record(meterValue=1), meter_record(meterValue=1.0)])
    assert counts(emulator) == (1, 1)


def test_unknown_top_level_keys_do_not_make_a_record_new(emulator, session, ingest_url):
    post_json(session, ingest_url, [meter_record(), meter_record(note="resent")])
    assert counts(emulator) == (1, 1)


def test_empty_dimensions_and_no_dimensions_are_the_same_record(emulator, session, ingest_url):
    post_json(session, ingest_url, [meter_record(dimensions={}), meter_record(dimensions=None)])
    assert counts(emulator) == (1, 1)


def test_a_dimension_named_like_a_field_is_still_a_dimension(emulator, session, ingest_url):
    with_dimension = meter_record(dimensions={"customerId": "x"})
    post_json(session, ingest_url, [meter_record(dimensions={}), with_dimension])
    assert counts(emulator) == (2, 0)


def test_a_duplicate_keeps_the_first_arrival_position(emulator, session, ingest_url):
    post_json(session, ingest_url, [meter_record(1), meter_record(2)])
    post_json(session, ingest_url, [meter_record(1), meter_record(3)])
    assert [r["uniqueId"] for r in emulator.records()] == ["m-1", "m-2", "m-3"]
