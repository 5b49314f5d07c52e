"""A ``value`` of -0 renders the same whatever else its chunk holds (issue 12)."""

from __future__ import annotations

import decimal

import pandas as pd
import pytest

from amberflo_sync.transform import to_meter_records

TIME = pd.Timestamp("2026-11-20T10:00:00Z")


def first_record(values: list) -> str:
    frame = pd.DataFrame({"id": [f"r-{i}" for i in range(len(values))], "user_id": "u", "timestamp": TIME,
                          "value": values})
    return to_meter_records(frame, kind="track", table="api_calls").rendered[0]


@pytest.mark.parametrize("neighbour", ["5", "1.5", None, "x"])
def test_text_minus_zero_renders_the_same_next_to_anything(neighbour):
    """pandas parsed "-0" as int 0 next to "5" and as -0.0 next to "1.5": ``0.0`` or ``-0.0``."""
    assert '"meterValue":0.0,' in first_record(["-0", neighbour])


@pytest.mark.parametrize("zero", [-0.0, 0.0, "-0", "-0.0", decimal.Decimal("-0"), decimal.Decimal("-0.000")])
def test_every_spelling_of_zero_renders_one_way(zero):
    assert '"meterValue":0.0,' in first_record([zero, 2.5])
