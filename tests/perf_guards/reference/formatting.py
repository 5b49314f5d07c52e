"""The one sanitizer: how any warehouse value becomes an Amberflo dimension or trait string.

Rules (``shared/spec/mapping.md``, "Dimension and trait values"), versioned by
:data:`amberflo_sync.MAPPING_VERSION` because Amberflo only de-duplicates byte-identical records:

* booleans → ``"true"``/``"false"``; integral numbers without a decimal point; other floats in the
  shortest round-trip form; timestamps as ISO-8601 UTC with milliseconds (``…T13:41:46.909Z``);
* every character outside ``A–Z a–z 0–9``, space and ``_ - ! . * ' ( ) & $ @ = ; : + , ?`` → ``_``;
* cut to 200 characters; null and empty values → omitted (``<NA>``).

:func:`format_column` is the vectorized path used on the hot path; :func:`format_value` is the same
rule for one value (customer traits, slow-path mixed columns). Tests keep the two in agreement.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import re
from typing import Any

import numpy as np
import orjson
import pandas as pd

#: Characters Amberflo accepts in a dimension value or trait, as a regex character class body.
ALLOWED_CHARACTER_CLASS = r"A-Za-z0-9 _\-!.*'()&$@=;:+,?"
DISALLOWED_PATTERN = rf"[^{ALLOWED_CHARACTER_CLASS}]"
ALLOWED_VALUE_RE = re.compile(rf"[{ALLOWED_CHARACTER_CLASS}]{{1,200}}")
MAX_VALUE_LENGTH = 200
REPLACEMENT = "_"

#: The string dtype every formatted column uses: pyarrow-backed, ``pd.NA`` for missing.
TEXT = pd.StringDtype("pyarrow")

_DISALLOWED_RE = re.compile(DISALLOWED_PATTERN)
_INT64_LIMIT = float(2**63)


# ---------------------------------------------------------------------------------------------
# one value
# ---------------------------------------------------------------------------------------------
def sanitize_value(text: str) -> str | None:
    """Replace characters Amberflo refuses, cut to 200 characters; ``None`` when nothing is left."""
    cleaned = _DISALLOWED_RE.sub(REPLACEMENT, text)[:MAX_VALUE_LENGTH]
    return cleaned or None


def value_to_text(value: Any) -> str | None:
    """Render one value as text by the mapping rules, without sanitizing (``None`` = missing)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, decimal.Decimal):
        if value.is_nan():
            return None
        value = float(value)
    if isinstance(value, (float, np.floating)):
        return _float_to_text(float(value))
    if isinstance(value, dt.datetime):
        return _datetime_to_text(pd.Timestamp(value))
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple, dict)):
        return orjson.dumps(value, default=str, option=orjson.OPT_SORT_KEYS).decode()
    return str(value)


def format_value(value: Any) -> str | None:
    """One value → sanitized dimension/trait string, or ``None`` when it must be omitted."""
    text = value_to_text(value)
    return None if text is None else sanitize_value(text)


def _float_to_text(number: float) -> str | None:
    if math.isnan(number):
        return None
    if math.isfinite(number) and number.is_integer() and abs(number) < _INT64_LIMIT:
        return str(int(number))
    return repr(number)


def _datetime_to_text(ts: pd.Timestamp) -> str:
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


# ---------------------------------------------------------------------------------------------
# a whole column (hot path)
# ---------------------------------------------------------------------------------------------
def column_to_text(column: pd.Series) -> pd.Series:
    """A column rendered as text by the mapping rules (not sanitized), dtype :data:`TEXT`.

    Dispatches on the column's dtype so each rule runs as one vectorized operation; object columns
    are classified with :func:`pandas.api.types.infer_dtype` and only truly mixed columns fall back
    to :func:`value_to_text` per value.
    """
    dtype = column.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return _bool_to_text(column)
    if pd.api.types.is_integer_dtype(dtype):
        return column.astype(TEXT)
    if pd.api.types.is_float_dtype(dtype):
        return _floats_to_text(column)
    if isinstance(dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(dtype):
        return _datetimes_to_text(column)
    if isinstance(dtype, pd.StringDtype):
        return column.astype(TEXT)
    kind = pd.api.types.infer_dtype(column, skipna=True)
    if kind in ("string", "empty"):
        return column.astype(TEXT)
    if kind == "boolean":
        return _bool_to_text(column)
    if kind == "integer":
        try:
            return column.astype("Int64").astype(TEXT)
        except (OverflowError, TypeError, ValueError):
            pass
    elif kind in ("floating", "mixed-integer-float", "decimal"):
        return _floats_to_text(pd.to_numeric(column, errors="coerce"))
    elif kind in ("datetime", "datetime64"):
        return _datetimes_to_text(pd.to_datetime(column, utc=True))
    return column.map(value_to_text, na_action="ignore").astype(TEXT)


def format_column(column: pd.Series) -> pd.Series:
    """A column → sanitized dimension/trait strings (dtype :data:`TEXT`), ``<NA>`` = omit."""
    text = column_to_text(column)
    cleaned = text.str.replace(DISALLOWED_PATTERN, REPLACEMENT, regex=True).str.slice(0, MAX_VALUE_LENGTH)
    return cleaned.mask(cleaned == "")


def _bool_to_text(column: pd.Series) -> pd.Series:
    flags = column.astype("boolean")
    out = pd.Series(
        np.where(flags.fillna(False).to_numpy(dtype=bool), "true", "false"), index=column.index, dtype=TEXT
    )
    return out.mask(flags.isna())


def _floats_to_text(column: pd.Series) -> pd.Series:
    numbers = column.astype("float64").to_numpy(dtype="float64", na_value=np.nan)
    finite = np.isfinite(numbers)
    integral = np.zeros(len(numbers), dtype=bool)
    integral[finite] = (np.floor(numbers[finite]) == numbers[finite]) & (np.abs(numbers[finite]) < _INT64_LIMIT)
    text = np.asarray(pd.Series(numbers).astype(str).to_numpy(dtype=object))
    if integral.any():
        text[integral] = numbers[integral].astype(np.int64).astype(str)
    out = pd.Series(text, index=column.index, dtype=TEXT)
    return out.mask(np.isnan(numbers))


def _datetimes_to_text(column: pd.Series) -> pd.Series:
    times = to_utc(column)
    millis = (times.dt.microsecond // 1000).astype("Int64").astype(TEXT).str.pad(3, fillchar="0")
    out = times.dt.strftime("%Y-%m-%dT%H:%M:%S").astype(TEXT) + "." + millis + "Z"
    return out.mask(times.isna())


def to_utc(column: pd.Series) -> pd.Series:
    """A column of event times as tz-aware UTC datetimes; naive values are taken as UTC
    (Redshift stores UTC without a zone); unparseable text becomes ``NaT``."""
    dtype = column.dtype
    if isinstance(dtype, pd.DatetimeTZDtype):
        return column.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_dtype(dtype):
        return column.dt.tz_localize("UTC")
    return pd.to_datetime(column, utc=True, errors="coerce", format="ISO8601")


# ---------------------------------------------------------------------------------------------
# JSON building blocks
# ---------------------------------------------------------------------------------------------
_NEEDS_JSON_ESCAPE = r'["\\\x00-\x1f]'


def json_strings(text: pd.Series) -> pd.Series:
    """Each string as a JSON string literal, vectorized; only values that need escaping
    (quotes, backslashes, control characters) go through :mod:`orjson`, which renders them the
    same way every time."""
    text = text.astype(TEXT)
    quoted = '"' + text + '"'
    needs_escape = text.str.contains(_NEEDS_JSON_ESCAPE, regex=True).fillna(False).to_numpy(dtype=bool)
    if needs_escape.any():
        escaped = [orjson.dumps(v).decode() for v in text[needs_escape].tolist()]
        quoted = quoted.copy()
        quoted[needs_escape] = escaped
    return quoted
