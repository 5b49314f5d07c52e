"""The one sanitizer: how any warehouse value becomes an Amberflo dimension or trait string.

Rules (``shared/spec/mapping.md``, "Dimension and trait values"), versioned by
:data:`amberflo_sync.MAPPING_VERSION` because Amberflo only de-duplicates byte-identical records:

* booleans → ``"true"``/``"false"``; integral numbers without a decimal point; other floats in the
  shortest round-trip form; timestamps as ISO-8601 UTC with milliseconds (``…T13:41:46.909Z``);
* every character outside ``A–Z a–z 0–9``, space and ``_ - ! . * ' ( ) & $ @ = ; : + , ?`` → ``_``;
* cut to 200 characters; null and empty values → omitted (``<NA>``).

:func:`format_column` is the vectorized path used on the hot path; :func:`format_value` is the same
rule for one value (customer traits, slow-path mixed columns). Tests keep the two in agreement.

The column path works on Arrow arrays (:func:`column_text`, :func:`format_column_arrow`,
:func:`json_strings_arrow`): every step is one pyarrow kernel over the whole column, which releases
the GIL and builds no Python object per value, so the events sync can render records while other
threads read and send. The pandas functions (:func:`column_to_text`, :func:`format_column`,
:func:`json_strings`) wrap the same code and return the same values as always.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import re
from typing import Any, Callable

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

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
# a whole column (hot path, Arrow)
# ---------------------------------------------------------------------------------------------
#: The Arrow type of every text array built here: 64-bit offsets, so no chunk size can overflow it.
ARROW_TEXT = pa.large_string()

#: Columns at least this long are first reduced to their distinct values when few enough are
#: distinct (Segment properties are mostly enums, paths and names): the regex and JSON work then
#: runs once per distinct value instead of once per row.
_DISTINCT_MIN_ROWS = 256
_DISTINCT_SAMPLE_ROWS = 1024

# Year range in which Arrow's and Python's ``%Y`` agree (Python does not zero-pad years < 1000).
_MIN_ISO_SECONDS = -30_610_224_000  # 1000-01-01T00:00:00Z
_MAX_ISO_SECONDS = 253_402_300_800  # 10000-01-01T00:00:00Z
# Python's repr() prints a float positionally (not ``1e-05``/``1e+16``) exactly in this range.
_REPR_POSITIONAL_MIN = 1e-4
_REPR_POSITIONAL_MAX = 1e16


def column_text(column: pd.Series) -> pa.Array:
    """A column rendered as text by the mapping rules (not sanitized), as Arrow; null = missing."""
    return _column_text(column)[0]


def format_column_arrow(column: pd.Series, *, then: Callable[[pa.Array], pa.Array] | None = None) -> pa.Array:
    """A column → sanitized dimension/trait strings as Arrow; null = omit.

    :param then: an element-wise step applied to the sanitized strings (e.g. wrapping them in JSON);
        it runs once per distinct value along with sanitizing when that pays off.
    """
    text, may_need_sanitizing = _column_text(column)
    if not may_need_sanitizing:
        return text if then is None else then(text)
    if then is None:
        return map_distinct(text, _sanitize_plain)
    return map_distinct(text, lambda values: then(_sanitize_plain(values)))


def sanitize_text(text: pa.Array) -> pa.Array:
    """Replace characters Amberflo refuses, cut to 200 characters, empty → null (vectorized
    :func:`sanitize_value`)."""
    return map_distinct(text, _sanitize_plain)


def json_strings_arrow(text: pa.Array, *, distinct: bool = False) -> pa.Array:
    """Each string as a JSON string literal (null stays null); see :func:`json_strings`.

    :param distinct: work per distinct value (worth it for low-cardinality columns such as
        customer ids and meter names, not for unique ids).
    """
    return map_distinct(text, _json_quote) if distinct else _json_quote(text)


def map_distinct(values: pa.Array, transform: Callable[[pa.Array], pa.Array]) -> pa.Array:
    """``transform(values)`` for an element-wise ``transform``, computed once per distinct value when
    at most half the values are distinct; nulls stay null.

    A sample decides first, so unique columns (ids, free text) do not pay for a dictionary they
    would not use.
    """
    if len(values) >= _DISTINCT_MIN_ROWS:
        sample = values.slice(0, _DISTINCT_SAMPLE_ROWS)
        if pc.count_distinct(sample).as_py() * 2 <= len(sample):
            encoded = pc.dictionary_encode(values)
            if len(encoded.dictionary) * 2 <= len(values):
                return pc.take(transform(encoded.dictionary), encoded.indices)
    return transform(values)


def float_repr_text(numbers: np.ndarray) -> pa.Array:
    """``repr(float(x))`` of every value, vectorized (``2.0``, ``0.1``, ``1e+16``, ``-0.0``, ``inf``).

    Whole numbers below 1e16 are printed from their integer digits plus ``.0``; other values in
    Python's positional range take Arrow's shortest round-trip digits (the same digits repr() picks),
    and whatever is left (exponent forms, -0.0, ±inf, nan) goes through :func:`repr` one by one.
    """
    numbers = np.asarray(numbers, dtype="float64")
    magnitude = np.abs(numbers)
    with np.errstate(invalid="ignore"):
        integral = np.isfinite(numbers) & (np.floor(numbers) == numbers)
    small_int = integral & (magnitude < _REPR_POSITIONAL_MAX) & ~((numbers == 0) & np.signbit(numbers))
    int_text = _int_text(np.where(small_int, numbers, 0).astype(np.int64))
    text = pc.if_else(pa.array(small_int), concat_text(int_text, ".0"), _arrow_float_text(numbers))
    exact = small_int | _arrow_positional(numbers, text, ~integral)
    return _patch(text, ~exact, lambda positions: [repr(float(x)) for x in numbers[positions]])


def _column_text(column: pd.Series) -> tuple[pa.Array, bool]:
    """``(text, may_need_sanitizing)``: booleans, numbers and timestamps only ever print allowed
    characters in fewer than 200 of them, so sanitizing them is skipped."""
    dtype = column.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return _bool_text(column), False
    if pd.api.types.is_integer_dtype(dtype):
        return pc.cast(_arrow(column), ARROW_TEXT), False
    if pd.api.types.is_float_dtype(dtype):
        return _floats_text(column.astype("float64").to_numpy(dtype="float64", na_value=np.nan)), False
    if isinstance(dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(dtype):
        return _datetimes_text(column), False
    if isinstance(dtype, pd.StringDtype):
        return _arrow(column), True  # already text: its Arrow data as it is
    kind = pd.api.types.infer_dtype(column, skipna=True)
    if kind in ("string", "empty"):
        return _arrow(column.astype(TEXT)), True
    if kind == "boolean":
        return _bool_text(column), False
    if kind == "integer":
        try:
            return pc.cast(_arrow(column.astype("Int64")), ARROW_TEXT), False
        except (OverflowError, TypeError, ValueError):
            pass
    elif kind in ("floating", "mixed-integer-float", "decimal"):
        numbers = pd.to_numeric(column, errors="coerce").astype("float64").to_numpy(dtype="float64", na_value=np.nan)
        return _floats_text(numbers), False
    elif kind in ("datetime", "datetime64"):
        return _datetimes_text(pd.to_datetime(column, utc=True)), False
    return _arrow(column.map(value_to_text, na_action="ignore").astype(TEXT)), True


def _arrow(values: pd.Series | pd.api.extensions.ExtensionArray) -> pa.Array:
    """A pandas column as one Arrow array (zero-copy for Arrow-backed strings); text as
    :data:`ARROW_TEXT`."""
    array = pa.array(values.array if isinstance(values, pd.Series) else values, from_pandas=True)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_string(array.type):
        array = array.cast(ARROW_TEXT)
    return array


def concat_text(*parts: pa.Array | str) -> pa.Array:
    """Row-wise concatenation of text arrays and literals in one kernel; a null part makes the row
    null."""
    arrays = [pa.scalar(p, ARROW_TEXT) if isinstance(p, str) else p for p in parts]
    return pc.binary_join_element_wise(*arrays, pa.scalar("", ARROW_TEXT))


def _int_text(integers: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(integers), ARROW_TEXT)


def _arrow_float_text(numbers: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(numbers), ARROW_TEXT)


def _arrow_positional(numbers: np.ndarray, text: pa.Array, candidates: np.ndarray) -> np.ndarray:
    """Where Arrow's text of a non-integral float is exactly repr(): both print the shortest
    round-trip digits, and agree on the layout when repr() is positional and Arrow did not switch
    to an exponent."""
    magnitude = np.abs(numbers)
    with np.errstate(invalid="ignore"):
        positional = candidates & (magnitude >= _REPR_POSITIONAL_MIN) & (magnitude < _REPR_POSITIONAL_MAX)
    if not positional.any():
        return positional
    has_exponent = _mask(pc.match_substring(text, "e"))
    return positional & ~has_exponent


def _patch(text: pa.Array, mask: np.ndarray, replacements: Callable[[np.ndarray], list[str | None]]) -> pa.Array:
    """``text`` with the masked positions replaced by ``replacements(positions)`` (the rare slow
    path: only those values ever become Python objects)."""
    if not mask.any():
        return text
    values = pa.array(replacements(np.flatnonzero(mask)), type=text.type)
    return pc.replace_with_mask(text, pa.array(mask), values)


def _mask(flags: pa.Array) -> np.ndarray:
    """A boolean Arrow array as a numpy mask, null → False."""
    return pc.fill_null(flags, False).to_numpy(zero_copy_only=False)


def _bool_text(column: pd.Series) -> pa.Array:
    flags = _arrow(column.astype("boolean"))
    return pc.if_else(flags, pa.scalar("true", ARROW_TEXT), pa.scalar("false", ARROW_TEXT))


def _floats_text(numbers: np.ndarray) -> pa.Array:
    """Dimension rule for floats: NaN → null; whole numbers within int64 → their digits (``5``,
    ``0`` for -0.0); everything else → repr() (``2.5``, ``1e+20``, ``inf``)."""
    with np.errstate(invalid="ignore"):
        integral = np.isfinite(numbers) & (np.floor(numbers) == numbers) & (np.abs(numbers) < _INT64_LIMIT)
    int_text = _int_text(np.where(integral, numbers, 0).astype(np.int64))
    text = pc.if_else(pa.array(integral), int_text, _arrow_float_text(numbers))
    missing = np.isnan(numbers)
    exact = integral | missing | _arrow_positional(numbers, text, ~integral)
    text = _patch(text, ~exact, lambda positions: [repr(float(x)) for x in numbers[positions]])
    if missing.any():
        text = pc.if_else(pa.array(missing), pa.scalar(None, ARROW_TEXT), text)
    return text


def _datetimes_text(column: pd.Series) -> pa.Array:
    """ISO-8601 UTC with milliseconds (``2026-04-26T13:41:46.909Z``), from the floored epoch
    microseconds; years outside 1000–9999 take the pandas path (Python does not zero-pad them)."""
    times = to_utc(column)
    local = times.dt.tz_convert(None).to_numpy()
    unit, _ = np.datetime_data(local.dtype)
    raw = local.view("int64")
    missing = np.isnat(local)
    micros = {"s": raw * 1_000_000, "ms": raw * 1_000, "us": raw, "ns": raw // 1_000}.get(unit)
    if micros is None:
        return _arrow(_datetimes_to_text(column))
    seconds = micros // 1_000_000
    present = seconds[~missing]
    if present.size and (present.min() < _MIN_ISO_SECONDS or present.max() >= _MAX_ISO_SECONDS):
        return _arrow(_datetimes_to_text(column))
    seconds = np.where(missing, 0, seconds)
    millis = (micros - seconds * 1_000_000) // 1_000
    stamp = pc.strftime(pa.array(seconds.astype("datetime64[s]")), format="%Y-%m-%dT%H:%M:%S")
    digits = pc.utf8_lpad(_int_text(np.where(missing, 0, millis)), width=3, padding="0")
    text = concat_text(stamp.cast(ARROW_TEXT), ".", digits.cast(ARROW_TEXT), "Z")
    if missing.any():
        text = pc.if_else(pa.array(missing), pa.scalar(None, ARROW_TEXT), text)
    return text


def _sanitize_plain(text: pa.Array) -> pa.Array:
    cleaned = pc.utf8_slice_codeunits(pc.replace_substring_regex(text, DISALLOWED_PATTERN, REPLACEMENT), 0, MAX_VALUE_LENGTH)
    return pc.if_else(pc.equal(cleaned, ""), pa.scalar(None, cleaned.type), cleaned)


# ---------------------------------------------------------------------------------------------
# a whole column (pandas face of the same code)
# ---------------------------------------------------------------------------------------------
def column_to_text(column: pd.Series) -> pd.Series:
    """A column rendered as text by the mapping rules (not sanitized), dtype :data:`TEXT`.

    Dispatches on the column's dtype so each rule runs as one vectorized operation; object columns
    are classified with :func:`pandas.api.types.infer_dtype` and only truly mixed columns fall back
    to :func:`value_to_text` per value.
    """
    return text_series(column_text(column), column.index)


def format_column(column: pd.Series) -> pd.Series:
    """A column → sanitized dimension/trait strings (dtype :data:`TEXT`), ``<NA>`` = omit."""
    return text_series(format_column_arrow(column), column.index)


def text_series(text: pa.Array, index: pd.Index) -> pd.Series:
    """An Arrow text array as a :data:`TEXT` Series on ``index`` (zero-copy)."""
    if not pa.types.is_large_string(text.type):
        text = text.cast(ARROW_TEXT)
    return pd.Series(pd.arrays.ArrowStringArray(text), index=index, copy=False)


def _datetimes_to_text(column: pd.Series) -> pd.Series:
    """The pandas rendering of timestamps, kept for years Arrow would pad differently."""
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
    return text_series(json_strings_arrow(_arrow(text.astype(TEXT))), text.index)


def _json_quote(text: pa.Array) -> pa.Array:
    quoted = concat_text('"', text, '"')
    needs_escape = _mask(pc.match_substring_regex(text, _NEEDS_JSON_ESCAPE))
    return _patch(
        quoted, needs_escape, lambda positions: [orjson.dumps(v).decode() for v in text.take(positions).to_pylist()]
    )
