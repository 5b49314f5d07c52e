"""The one sanitizer: vectorized and single-value paths agree and follow mapping.md."""

from __future__ import annotations

import datetime as dt
import decimal

import numpy as np
import pandas as pd
import pytest

from amberflo_sync.formatting import ALLOWED_VALUE_RE, format_column, format_value, json_strings

CASES = [
    ("Welcome | Initech", "Welcome _ Initech"),
    ("/home", "_home"),
    ("https://segment.com", "https:__segment.com"),
    ("é", "_"),
    ("paper,comedy", "paper,comedy"),
    ("", None),
    (None, None),
    (True, "true"),
    (False, "false"),
    (5, "5"),
    (5.0, "5"),
    (-0.0, "0"),
    (2.5, "2.5"),
    (0.1, "0.1"),
    (1e18, "1000000000000000000"),
    (1e20, "1e+20"),  # beyond int64: shortest round-trip form
    (1e300, "1e+300"),
    (float("nan"), None),
    (decimal.Decimal("2.50"), "2.5"),
    (dt.datetime(2026, 4, 26, 13, 41, 46, 909000, tzinfo=dt.timezone.utc), "2026-04-26T13:41:46.909Z"),
    (dt.datetime(2026, 4, 26, 13, 41, 46), "2026-04-26T13:41:46.000Z"),
    ("x" * 300, "x" * 200),
    ("tab\there", "tab_here"),
]


@pytest.mark.parametrize("value, expected", CASES)
def test_single_value_rules(value, expected):
    assert format_value(value) == expected


@pytest.mark.parametrize("value, expected", CASES)
def test_column_path_agrees_with_single_value_path(value, expected):
    column = pd.Series([value, None], dtype=object)
    got = format_column(column).tolist()[0]
    assert (None if got is pd.NA else got) == expected


@pytest.mark.parametrize(
    "column",
    [
        pd.Series([1.5, 2.0, np.nan, 1e21]),
        pd.Series([1, 2, 3], dtype="int64"),
        pd.Series([1, None], dtype="Int64"),
        pd.Series([True, False, None], dtype="boolean"),
        pd.Series(pd.to_datetime(["2026-01-01T00:00:00.123Z", None], utc=True)),
        pd.Series(["a/b", None, "ok"], dtype="str"),
        pd.Series([1, "two", 3.5, None], dtype=object),
    ],
)
def test_typed_columns_format_like_their_values(column):
    got = [None if v is pd.NA else v for v in format_column(column).tolist()]
    assert got == [format_value(None if pd.isna(v) else v) for v in column.astype(object).tolist()]


def test_every_output_is_a_valid_amberflo_value():
    values = pd.Series(["".join(chr(c) for c in range(32, 400)), "😀" * 250, " spaced "], dtype=object)
    for value in format_column(values).tolist():
        assert ALLOWED_VALUE_RE.fullmatch(value)


def test_json_strings_escape_only_what_needs_it():
    got = json_strings(pd.Series(["plain", 'q"uote', "back\\slash", "new\nline", "ünï"])).tolist()
    assert got == ['"plain"', '"q\\"uote"', '"back\\\\slash"', '"new\\nline"', '"ünï"']
