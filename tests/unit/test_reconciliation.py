"""Pure rules of the reconciliation: which hours, which status, which config."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from amberflo_sync.config import ConfigError, config_from_dict
from amberflo_sync.reconciliation import ReconciliationRefused, resolve_window
from amberflo_sync.reconciliation.compare import compare_cells
from amberflo_sync.reconciliation.drilldown import _drill_cell, cancellation_json

NOW = dt.datetime(2026, 12, 7, 10, 30, tzinfo=dt.timezone.utc)


def test_default_window_is_the_seven_days_ending_settle_hours_ago():
    window = resolve_window(settle_hours=27, days=7, now=NOW)
    assert window.end == dt.datetime(2026, 12, 6, 7, tzinfo=dt.timezone.utc)
    assert window.start == window.end - dt.timedelta(days=7) and window.hours == 168
    assert window.settled_before == NOW - dt.timedelta(hours=27)


def test_explicit_window_is_widened_to_whole_hours():
    window = resolve_window(start="2026-12-01T10:15:00Z", end="2026-12-01T12:00:01Z", now=NOW)
    assert (window.start.hour, window.end.hour) == (10, 13)


@pytest.mark.parametrize("start,end", [("2026-10-01T00:00:00Z", "2026-10-02T00:00:00Z"),
                                       ("2026-12-02T00:00:00Z", "2026-12-01T00:00:00Z")])
def test_old_or_empty_intervals_are_refused(start, end):
    with pytest.raises(ReconciliationRefused):
        resolve_window(start=start, end=end, now=NOW)


def test_start_without_end_is_refused():
    with pytest.raises(ReconciliationRefused, match="both"):
        resolve_window(start="2026-12-01T00:00:00Z", now=NOW)


def cells(rows):
    return pd.DataFrame(rows, columns=["meter", "customer", "hour", "expected_sum", "expected_count"])


def billed(rows):
    return pd.DataFrame(rows, columns=["meter", "customer", "hour", "billed_sum", "billed_count"])


def test_status_of_each_cell():
    expected = cells([("m", "a", 0, 3.0, 3), ("m", "b", 0, 2.0, 2), ("m", "c", 0, 5.0, 1), ("m", "d", 7200, 1.0, 1),
                      ("m", "f", 0, 0.1 + 0.2, 2)])
    amberflo = billed([("m", "a", 0, 3.0, 3), ("m", "b", 0, 1.0, 1), ("m", "c", 0, 6.0, 1), ("m", "e", 0, 1.0, 1),
                       ("m", "f", 0, 0.3, 2)])
    out = compare_cells(expected, amberflo, settled_seconds=7200).set_index("customer")["status"].to_dict()
    assert out == {"a": "match", "b": "missing", "c": "excess", "d": "pending", "e": "excess", "f": "match"}


def test_tolerance_accepts_small_relative_differences():
    expected, amberflo = cells([("m", "a", 0, 1000.0, 100)]), billed([("m", "a", 0, 1001.0, 100)])
    assert compare_cells(expected, amberflo, settled_seconds=10**9)["status"].tolist() == ["excess"]
    assert compare_cells(expected, amberflo, settled_seconds=10**9, tolerance=0.01)["status"].tolist() == ["match"]


def test_drill_down_sorts_records_into_missing_unexpected_and_different_bytes():
    r1 = '{"uniqueId":"u1","customerId":"a","meterApiName":"m","meterValue":1.0,"meterTimeInMillis":1000}'
    r2 = '{"uniqueId":"u2","customerId":"a","meterApiName":"m","meterValue":2.0,"meterTimeInMillis":1000}'
    billed_records = [
        {"uniqueId": "u1", "customerId": "a", "meterApiName": "m", "meterValue": 1, "meterTimeInMillis": 1000,
         "dimensions": None},
        {"uniqueId": "u1", "customerId": "a", "meterApiName": "m", "meterValue": 1, "meterTimeInMillis": 1000,
         "dimensions": {"x": "y"}},
        {"uniqueId": "u3", "customerId": "a", "meterApiName": "m", "meterValue": 4, "meterTimeInMillis": 1000},
    ]
    drill = _drill_cell(("m", "a", 0), "excess", [r1, r2], billed_records)
    assert (drill.missing_ids, drill.unexpected_ids, drill.different_bytes_ids) == (["u2"], ["u3"], ["u1"])
    assert drill.to_resend == [r2]
    assert [r["uniqueId"] for r in drill.to_cancel] == ["u1", "u3"]
    assert '"aflo.cancel_previous_resource_event":"true","x":"y"' in cancellation_json(drill.to_cancel[0])


def test_reconciliation_config_defaults_and_validation(tmp_path):
    config = config_from_dict({}, config_dir=tmp_path)
    assert config.reconciliation.settle_hours == 27 and config.reconciliation.days == 7
    assert config.reconciliation.reports_dir == str(tmp_path / "reconciliation_reports")
    custom = config_from_dict({"reconciliation": {"settle_hours": 0, "reports_dir": "{config_dir}/r"}}, config_dir=tmp_path)
    assert custom.reconciliation.settle_hours == 0 and custom.reconciliation.reports_dir == f"{tmp_path}/r"
    with pytest.raises(ConfigError, match="unknown reconciliation"):
        config_from_dict({"reconciliation": {"settle_hour": 1}})
