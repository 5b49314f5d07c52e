"""Strict record validation: each rule answers 400 naming the record index and field, storing nothing."""

from __future__ import annotations

import pytest

from amberflo_sync.emulator import ALLOWED_VALUE_CHARACTERS
from tests.emulator.helpers import meter_record, post_json, post_raw


def assert_rejected(emulator, response, message_start: str, *fragments: str) -> None:
    """400, a message naming record and field, and nothing stored from the request."""
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error.startswith(message_start), error
    for fragment in fragments:
        assert fragment in error, error
    assert emulator.records() == []
    assert emulator.stats()["rejected_requests"] == 1


def batch_with(bad: dict) -> list[dict]:
    """Two valid records, then ``bad`` (index 2), then one more valid record."""
    return [meter_record(0), meter_record(1), bad, meter_record(3)]


def test_slash_in_a_dimension_value_is_refused(emulator, session, ingest_url):
    response = post_json(session, ingest_url, batch_with(meter_record(2, dimensions={"path": "/home"})))
    assert_rejected(emulator, response, "record 2: field 'dimensions.path'", "outside the allowed set")


def test_pipe_in_a_dimension_value_is_refused(emulator, session, ingest_url):
    bad = meter_record(2, dimensions={"region": "eu", "title": "Welcome | Initech"})
    response = post_json(session, ingest_url, batch_with(bad))
    assert_rejected(emulator, response, "record 2: field 'dimensions.title'", "outside the allowed set")


def test_non_ascii_dimension_value_is_refused(emulator, session, ingest_url):
    response = post_json(session, ingest_url, batch_with(meter_record(2, dimensions={"city": "Zürich"})))
    assert_rejected(emulator, response, "record 2: field 'dimensions.city'", "outside the allowed set")


def test_dimension_value_of_201_characters_is_refused(emulator, session, ingest_url):
    response = post_json(session, ingest_url, batch_with(meter_record(2, dimensions={"long": "a" * 201})))
    assert_rejected(emulator, response, "record 2: field 'dimensions.long'", "201 characters")


def test_dimension_value_of_200_characters_is_accepted(emulator, session, ingest_url):
    response = post_json(session, ingest_url, meter_record(dimensions={"long": "a" * 200}))
    assert response.status_code == 200


def test_every_allowed_character_is_accepted(emulator, session, ingest_url):
    response = post_json(session, ingest_url, meter_record(dimensions={"all": ALLOWED_VALUE_CHARACTERS}))
    assert response.status_code == 200
    assert emulator.records()[0]["dimensions"] == {"all": ALLOWED_VALUE_CHARACTERS}


def test_empty_dimension_value_is_refused(emulator, session, ingest_url):
    response = post_json(session, ingest_url, batch_with(meter_record(2, dimensions={"plan": ""})))
    assert_rejected(emulator, response, "record 2: field 'dimensions.plan'", "must not be empty")


@pytest.mark.parametrize("value", [5, 2.5, True, None, ["a"], {"a": "b"}], ids=repr)
def test_non_string_dimension_value_is_refused(emulator, session, ingest_url, value):
    response = post_json(session, ingest_url, batch_with(meter_record(2, dimensions={"n": value})))
    assert_rejected(emulator, response, "record 2: field 'dimensions.n'", "must be a string")


def test_empty_dimension_name_is_refused(emulator, session, ingest_url):
    response = post_json(session, ingest_url, batch_with(meter_record(2, dimensions={"": "x"})))
    assert_rejected(emulator, response, "record 2: field 'dimensions'", "names must not be empty")


@pytest.mark.parametrize("value", [["a"], "a", 1, None], ids=repr)
def test_dimensions_that_are_not_an_object_are_refused(emulator, session, ingest_url, value):
    bad = meter_record(2)
    bad["dimensions"] = value
    response = post_json(session, ingest_url, batch_with(bad))
    assert_rejected(emulator, response, "record 2: field 'dimensions'", "must be an object")


@pytest.mark.parametrize(
    "field", ["uniqueId", "customerId", "meterApiName", "meterValue", "meterTimeInMillis"]
)
def test_missing_required_field_is_refused(emulator, session, ingest_url, field):
    response = post_json(session, ingest_url, batch_with(meter_record(2, **{field: None})))
    assert_rejected(emulator, response, f"record 2: field '{field}'", "is required")


@pytest.mark.parametrize("field", ["uniqueId", "customerId", "meterApiName"])
def test_empty_string_identifier_is_refused(emulator, session, ingest_url, field):
    response = post_json(session, ingest_url, batch_with(meter_record(2, **{field: ""})))
    assert_rejected(emulator, response, f"record 2: field '{field}'", "must not be empty")


@pytest.mark.parametrize("field", ["uniqueId", "customerId", "meterApiName"])
def test_non_string_identifier_is_refused(emulator, session, ingest_url, field):
    response = post_json(session, ingest_url, batch_with(meter_record(2, **{field: 7})))
    assert_rejected(emulator, response, f"record 2: field '{field}'", "must be a string")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_meter_value_is_refused(emulator, session, ingest_url, literal):
    body = (
        '[{"uniqueId": "m-0", "customerId": "c", "meterApiName": "m", "meterValue": 1,'
        ' "meterTimeInMillis": 1},'
        f' {{"uniqueId": "m-1", "customerId": "c", "meterApiName": "m", "meterValue": {literal},'
        ' "meterTimeInMillis": 1}]'
    )
    response = post_raw(session, ingest_url, body)
    assert_rejected(emulator, response, "record 1: field 'meterValue'", "finite")


@pytest.mark.parametrize("value", [True, False], ids=repr)
def test_boolean_meter_value_is_refused(emulator, session, ingest_url, value):
    response = post_json(session, ingest_url, batch_with(meter_record(2, meterValue=value)))
    assert_rejected(emulator, response, "record 2: field 'meterValue'", "must be a number")


def test_string_meter_value_is_refused(emulator, session, ingest_url):
    response = post_json(session, ingest_url, batch_with(meter_record(2, meterValue="2")))
    assert_rejected(emulator, response, "record 2: field 'meterValue'", "must be a number")


def test_negative_and_zero_meter_values_are_accepted(emulator, session, ingest_url):
    records = [meter_record(1, meterValue=-3), meter_record(2, meterValue=0)]
    assert post_json(session, ingest_url, records).status_code == 200


def test_float_meter_time_is_refused(emulator, session, ingest_url):
    bad = meter_record(2, meterTimeInMillis=1619445706909.5)
    response = post_json(session, ingest_url, batch_with(bad))
    assert_rejected(emulator, response, "record 2: field 'meterTimeInMillis'", "integer")


def test_integral_float_meter_time_is_refused(emulator, session, ingest_url):
    bad = meter_record(2, meterTimeInMillis=1619445706909.0)
    response = post_json(session, ingest_url, batch_with(bad))
    assert_rejected(emulator, response, "record 2: field 'meterTimeInMillis'", "integer")


@pytest.mark.parametrize("value", [-1619445706909, 0], ids=["negative", "zero"])
def test_non_positive_meter_time_is_refused(emulator, session, ingest_url, value):
    response = post_json(session, ingest_url, batch_with(meter_record(2, meterTimeInMillis=value)))
    assert_rejected(emulator, response, "record 2: field 'meterTimeInMillis'", "positive")


@pytest.mark.parametrize("value", [True, "1619445706909"], ids=repr)
def test_non_integer_meter_time_is_refused(emulator, session, ingest_url, value):
    response = post_json(session, ingest_url, batch_with(meter_record(2, meterTimeInMillis=value)))
    assert_rejected(emulator, response, "record 2: field 'meterTimeInMillis'", "integer")


def test_array_element_that_is_not_an_object_is_refused(emulator, session, ingest_url):
    response = post_json(session, ingest_url, [meter_record(0), 42])
    assert_rejected(emulator, response, "record 1: field '(record)'", "must be a JSON object")


def test_single_object_body_errors_name_record_zero(emulator, session, ingest_url):
    response = post_json(session, ingest_url, meter_record(customerId=None))
    assert_rejected(emulator, response, "record 0: field 'customerId'")


def test_the_first_invalid_record_is_the_one_reported(emulator, session, ingest_url):
    records = [
        meter_record(0),
        meter_record(1, dimensions={"path": "/a"}),  # a dimension problem first…
        meter_record(2, customerId=None),  # …then a scalar one
    ]
    response = post_json(session, ingest_url, records)
    assert_rejected(emulator, response, "record 1: field 'dimensions.path'")


def test_the_first_invalid_field_of_a_record_is_the_one_reported(emulator, session, ingest_url):
    bad = meter_record(0, customerId="", meterTimeInMillis=0, dimensions={"p": "/"})
    response = post_json(session, ingest_url, bad)
    assert_rejected(emulator, response, "record 0: field 'customerId'")


def test_one_bad_record_rejects_the_whole_request(emulator, session, ingest_url):
    records = [meter_record(i) for i in range(499)] + [meter_record(499, dimensions={"p": "a|b"})]
    response = post_json(session, ingest_url, records, gzipped=True)
    assert_rejected(emulator, response, "record 499: field 'dimensions.p'")
    assert emulator.stats()["received"] == 0


def test_rejected_request_does_not_poison_de_duplication(emulator, session, ingest_url):
    post_json(session, ingest_url, [meter_record(1), meter_record(2, meterValue="x")])
    post_json(session, ingest_url, meter_record(1))
    assert emulator.stats()["distinct"] == 1 and emulator.stats()["duplicates"] == 0
