"""Pure mapping rules: a DataFrame of warehouse rows → Amberflo meter records (JSON text).

No I/O and no Airflow here (``shared/style.md``: pure core, thin edges). Every rule of
``shared/spec/mapping.md`` for page, screen and track is implemented as vectorized pandas; rows that
cannot be billed come back as rejected rows with a reason code instead of being dropped.

Records are rendered straight to JSON text with a fixed key order and sorted dimension keys, so the
same warehouse row always yields the same bytes — the property Amberflo's de-duplication relies on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import orjson
import pandas as pd

from tests.perf_guards.reference.formatting import TEXT, column_to_text, format_column, json_strings, to_utc
from amberflo_sync.segment import PAGE, SCREEN, TRACK, find_column, property_columns

#: Column the reader adds: 1 for the first copy of an ``id`` in the window, 2+ for duplicates.
DUP_RANK_COLUMN = "__amberflo_sync_dup_rank"

# Reason codes stored in ``rejected_rows.reason``.
MISSING_UNIQUE_ID = "missing_unique_id"
MISSING_CUSTOMER_ID = "missing_customer_id"
MISSING_EVENT_TIME = "missing_event_time"
INVALID_EVENT_TIME = "invalid_event_time"
INVALID_METER_VALUE = "invalid_meter_value"

REJECTED_COLUMNS = ["id", "reason", "row"]


@dataclass
class MeterBatch:
    """What one chunk of rows became.

    :ivar records: one JSON object (text) per billable row, in input order.
    :ivar ids: the ``uniqueId`` of each record (aligned with ``records``).
    :ivar rejected: DataFrame with columns ``id``, ``reason``, ``row`` (the original row as a dict).
    :ivar duplicates: rows dropped because an earlier row had the same ``id``.
    """

    records: list[str]
    ids: list[str]
    rejected: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=REJECTED_COLUMNS))
    duplicates: int = 0

    @property
    def rejected_count(self) -> int:
        return len(self.rejected)


def to_meter_records(rows: pd.DataFrame, *, kind: str, table: str) -> MeterBatch:
    """Map warehouse rows of one stream to Amberflo meter records.

    :param rows: rows as read from ``<source>.<table>`` (any identifier case, any column subset).
    :param kind: :data:`~amberflo_sync.segment.PAGE`, ``SCREEN`` or ``TRACK``.
    :param table: the table name; the meter name of last resort for track rows without
        ``event_text``/``event``.
    """
    if kind not in (PAGE, SCREEN, TRACK):
        raise ValueError(f"unknown stream kind {kind!r}")
    rows, duplicates = drop_duplicate_ids(rows)
    columns = list(rows.columns)
    n = len(rows)
    reasons = pd.Series(pd.NA, index=rows.index, dtype=TEXT)

    def reject(mask: np.ndarray | pd.Series, reason: str) -> None:
        mask = np.asarray(mask, dtype=bool) & reasons.isna().to_numpy()
        reasons[mask] = reason

    unique_id = _text_or_missing(rows, find_column(columns, "id"))
    reject(unique_id.isna(), MISSING_UNIQUE_ID)

    customer_id = customer_ids(rows)
    reject(customer_id.isna(), MISSING_CUSTOMER_ID)

    millis, time_reason = event_millis(rows)
    reject(time_reason == MISSING_EVENT_TIME, MISSING_EVENT_TIME)
    reject(time_reason == INVALID_EVENT_TIME, INVALID_EVENT_TIME)

    value_column = find_column(columns, "value") if kind == TRACK else None
    values, value_ok = meter_values(rows[value_column] if value_column else None, n)
    reject(~value_ok, INVALID_METER_VALUE)

    accepted = reasons.isna().to_numpy()
    rejected = _rejected_frame(rows, unique_id, reasons, ~accepted)
    if not accepted.any():
        return MeterBatch([], [], rejected, duplicates)

    good = rows.loc[accepted]
    names = meter_names(good, kind=kind, table=table)
    dims = dimensions_json(good, exclude=("value",) if kind == TRACK else ())
    value_text = pd.Series(values[accepted], index=good.index).astype(str).astype(TEXT)
    millis_text = pd.Series(millis[accepted], index=good.index).astype(str).astype(TEXT)
    records = (
        '{"uniqueId":'
        + json_strings(unique_id[accepted])
        + ',"customerId":'
        + json_strings(customer_id[accepted])
        + ',"meterApiName":'
        + json_strings(names)
        + ',"meterValue":'
        + value_text
        + ',"meterTimeInMillis":'
        + millis_text
        + dims
        + "}"
    )
    return MeterBatch(records.tolist(), unique_id[accepted].tolist(), rejected, duplicates)


def drop_duplicate_ids(rows: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Keep the first row per ``id``. The reader's window-wide rank is authoritative when present
    (the de-duplication fix made alongside issue 6, mirrored here so that the oracle and the hot
    path differ only in how they render); otherwise ``duplicated`` within the chunk."""
    id_column = find_column(rows.columns, "id")
    if DUP_RANK_COLUMN in rows.columns:
        dup = (pd.to_numeric(rows[DUP_RANK_COLUMN], errors="coerce").fillna(1) > 1).to_numpy()
        rows = rows.drop(columns=[DUP_RANK_COLUMN])
    elif id_column is not None:
        ids = rows[id_column]
        dup = (ids.duplicated(keep="first") & ids.notna()).to_numpy()
    else:
        dup = np.zeros(len(rows), dtype=bool)
    if dup.any():
        return rows.loc[~dup], int(dup.sum())
    return rows, 0


def customer_ids(rows: pd.DataFrame) -> pd.Series:
    """``user_id``; when null or blank, ``anonymous_id``; ``<NA>`` when both are missing."""
    columns = list(rows.columns)
    user = _text_or_missing(rows, find_column(columns, "user_id"))
    anonymous = _text_or_missing(rows, find_column(columns, "anonymous_id"))
    return user.fillna(anonymous)


def event_millis(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Event time as epoch milliseconds (UTC) from ``timestamp``, falling back to ``received_at``.

    :returns: ``(millis, reasons)`` — ``reasons`` holds ``None``, :data:`MISSING_EVENT_TIME` or
        :data:`INVALID_EVENT_TIME` (not a positive epoch time) per row.
    """
    columns = list(rows.columns)
    n = len(rows)
    times = pd.Series(pd.NaT, index=rows.index, dtype="datetime64[us, UTC]")
    for name in ("timestamp", "received_at"):
        column = find_column(columns, name)
        if column is not None:
            times = times.fillna(to_utc(rows[column]).astype("datetime64[us, UTC]"))
    micros = times.dt.tz_convert(None).to_numpy(dtype="datetime64[us]").view("int64")
    missing = times.isna().to_numpy()
    millis = np.where(missing, 0, micros // 1000)
    reasons = np.full(n, None, dtype=object)
    reasons[missing] = MISSING_EVENT_TIME
    reasons[~missing & (millis <= 0)] = INVALID_EVENT_TIME
    return millis, reasons


def meter_values(value: pd.Series | None, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``meterValue`` per row and whether it is billable.

    No ``value`` column or a null value → ``1``. A present value must be a finite number (numeric
    column, or text that parses as one); ``"abc"``, blank text, NaN, ±inf and booleans are not.
    """
    if value is None:
        return np.ones(n, dtype="float64"), np.ones(n, dtype=bool)
    if pd.api.types.is_bool_dtype(value.dtype):
        present = value.notna().to_numpy()
        return np.ones(n, dtype="float64"), ~present
    if pd.api.types.is_numeric_dtype(value.dtype):
        numbers = value.astype("float64").to_numpy(dtype="float64", na_value=np.nan)
        present = value.notna().to_numpy()
        if pd.api.types.is_float_dtype(value.dtype) and not isinstance(value.dtype, pd.api.extensions.ExtensionDtype):
            # a float64 column cannot tell NULL from NaN: pandas reads both as NaN → null → 1
            present = ~np.isnan(numbers)
    else:
        present = value.notna().to_numpy()
        kind = pd.api.types.infer_dtype(value, skipna=True)
        if kind in ("decimal", "mixed"):
            # pandas reads Decimal('NaN') (PostgreSQL numeric 'NaN') as missing; it is a present,
            # non-finite value and must reject the row, not bill 1.
            raw = value.to_numpy(dtype=object).astype(str)
            present = present | np.isin(raw, ["NaN", "sNaN", "-NaN", "-sNaN"])
        if kind == "boolean" or kind == "mixed":
            is_bool = value.map(lambda v: isinstance(v, (bool, np.bool_)), na_action="ignore").fillna(False)
            as_text = value.where(~is_bool.astype(bool))
        else:
            as_text = value
        text = column_to_text(as_text).str.strip()
        numbers = pd.to_numeric(text, errors="coerce").astype("float64").to_numpy(dtype="float64", na_value=np.nan)
    ok = ~present | np.isfinite(numbers)
    # + 0.0 turns -0.0 into 0.0: "-0" parses to 0 or -0.0 depending on what else its chunk holds
    # (pandas picks int64 or float64 per chunk), and a row must render the same bytes in any chunk
    return np.where(present & ok, numbers, 1.0) + 0.0, ok


def meter_names(rows: pd.DataFrame, *, kind: str, table: str) -> pd.Series:
    """``page`` / ``screen``; for track the original event name (``event_text``, then ``event``,
    then the table name)."""
    if kind in (PAGE, SCREEN):
        return pd.Series(kind, index=rows.index, dtype=TEXT)
    columns = list(rows.columns)
    names = pd.Series(pd.NA, index=rows.index, dtype=TEXT)
    for candidate in ("event_text", "event"):
        names = names.fillna(_text_or_missing(rows, find_column(columns, candidate)))
    return names.fillna(table)


def dimensions_json(rows: pd.DataFrame, *, exclude: tuple[str, ...] = ()) -> pd.Series:
    """The ``,"dimensions":{…}`` fragment of each record (empty when no dimension is left).

    Keys are the lower-cased property column names in sorted order; values are formatted and
    sanitized by :func:`~amberflo_sync.formatting.format_column`; nulls are omitted.
    """
    keyed: dict[str, str] = {}
    for column in property_columns(rows.columns, exclude=exclude):
        keyed.setdefault(column.lower(), column)
    body = pd.Series("", index=rows.index, dtype=TEXT)
    for key in sorted(keyed):
        prefix = orjson.dumps(key).decode() + ':"'
        fragment = (prefix + format_column(rows[keyed[key]]) + '",').fillna("")
        body = body + fragment
    has_dims = body != ""
    wrapped = ',"dimensions":{' + body.str.slice(0, -1) + "}"
    return wrapped.where(has_dims, "")


def _text_or_missing(rows: pd.DataFrame, column: str | None) -> pd.Series:
    """A column as text with null and blank (whitespace-only) values as ``<NA>``."""
    if column is None:
        return pd.Series(pd.NA, index=rows.index, dtype=TEXT)
    text = column_to_text(rows[column])
    return text.mask(text.str.strip() == "")


def _rejected_frame(
    rows: pd.DataFrame, unique_id: pd.Series, reasons: pd.Series, mask: np.ndarray
) -> pd.DataFrame:
    if not mask.any():
        return pd.DataFrame(columns=REJECTED_COLUMNS)
    bad = rows.loc[mask]
    return pd.DataFrame(
        {
            "id": unique_id[mask].astype(object).where(unique_id[mask].notna(), None).tolist(),
            "reason": reasons[mask].tolist(),
            "row": bad.astype(object).where(bad.notna(), None).to_dict("records"),
        }
    )
