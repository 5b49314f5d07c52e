"""Pure customer rules: identify rows → per-customer field updates → one full customer record.

Amberflo's ``PUT /customers`` replaces the whole customer, traits included, so the project always
sends complete records, built by merging updates over what it knows (``shared/spec/mapping.md``,
customer records):

* every value carries the event time of the call that set it; a value replaces the known one only
  when it is at least as recent, so late-loaded old identifies never overwrite newer traits and
  chunks/runs can be merged in any order;
* a null leaves the known value alone; ``name`` → ``customerName`` (else the ``customerId``),
  ``email`` → ``customerEmail``; every other non-standard column is a trait, formatted and sanitized
  by the one sanitizer;
* traits (and fields) the project never set — Amberflo's own ``stripeId``, a name typed in Amberflo's
  UI — are taken from Amberflo's live record and preserved.

Updates travel as a long DataFrame ``(customer_id, field, value, time_ms)``; fields are ``name``,
``email`` and ``traits.<key>``. No I/O here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pandas as pd

from amberflo_sync.formatting import TEXT, column_to_text, format_column
from amberflo_sync.segment import find_column, property_columns
from amberflo_sync.transform import drop_duplicate_ids, event_millis

NAME, EMAIL, TRAIT_PREFIX = "name", "email", "traits."
UPDATE_COLUMNS = ["customer_id", "field", "value", "time_ms"]
#: Fields of Amberflo's customer object the project never sets but must carry through a PUT.
SERVER_FIELDS = ("createTime", "updateTime")


def empty_updates() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="int64" if c == "time_ms" else TEXT) for c in UPDATE_COLUMNS})


@dataclass
class IdentifyBatch:
    """What a chunk of identify rows became.

    :ivar updates: latest value per ``(customer_id, field)`` in the chunk (long format).
    :ivar customers: every customer id seen (also those whose calls carried no traits).
    :ivar skipped: rows without a ``user_id`` (counted, not an error).
    :ivar duplicates: rows dropped because an earlier row had the same ``id``.
    """

    updates: pd.DataFrame
    customers: set[str]
    skipped: int = 0
    duplicates: int = 0


def identify_updates(rows: pd.DataFrame) -> IdentifyBatch:
    """Identify rows → the latest non-null value (and its event time) per customer and field."""
    rows, duplicates = drop_duplicate_ids(rows)
    columns = list(rows.columns)
    user_column = find_column(columns, "user_id")
    if user_column is None:
        return IdentifyBatch(empty_updates(), set(), skipped=len(rows), duplicates=duplicates)
    users = column_to_text(rows[user_column])
    users = users.mask(users.str.strip() == "")
    has_user = users.notna().to_numpy()
    skipped = int((~has_user).sum())
    rows, users = rows.loc[has_user], users[has_user]
    millis, _ = event_millis(rows)  # rows without any time sort first (time 0)
    fields: dict[str, pd.Series] = {}
    for column in property_columns(columns):
        key = column.lower()
        if key == NAME or key == EMAIL:
            text = column_to_text(rows[column]).str.strip()
            fields.setdefault(key, text.mask(text == ""))
        else:
            fields.setdefault(TRAIT_PREFIX + key, format_column(rows[column]))
    parts = []
    for name, values in fields.items():
        present = values.notna().to_numpy()
        if present.any():
            parts.append(
                pd.DataFrame(
                    {
                        "customer_id": users[present].astype(TEXT).to_numpy(),
                        "field": name,
                        "value": values[present].astype(TEXT).to_numpy(),
                        "time_ms": millis[present],
                    }
                )
            )
    updates = latest_updates(parts)
    return IdentifyBatch(updates, set(users.tolist()), skipped=skipped, duplicates=duplicates)


def latest_updates(parts: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Keep the latest value per ``(customer_id, field)``; ties go to the larger value so the
    result never depends on input order."""
    frames = [p for p in parts if len(p)]
    if not frames:
        return empty_updates()
    updates = pd.concat(frames, ignore_index=True)
    updates = updates.astype({"customer_id": TEXT, "field": TEXT, "value": TEXT, "time_ms": "int64"})
    updates = updates.sort_values(["customer_id", "field", "time_ms", "value"], kind="mergesort")
    return updates.drop_duplicates(["customer_id", "field"], keep="last").reset_index(drop=True)


@dataclass
class CustomerState:
    """What the project knows of one customer: the values it set (with their event times) and the
    full record it last sent (``record``, including fields and traits it does not own)."""

    customer_id: str
    values: dict[str, str] = field(default_factory=dict)
    times: dict[str, int] = field(default_factory=dict)
    record: dict[str, Any] | None = None

    @property
    def owned_traits(self) -> set[str]:
        return {f[len(TRAIT_PREFIX) :] for f in self.values if f.startswith(TRAIT_PREFIX)}

    def fingerprint(self) -> str:
        """Hash of what the project owns: unchanged fingerprint → nothing to send."""
        payload = orjson.dumps({"id": self.customer_id, "values": self.values}, option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(payload).hexdigest()


def apply_updates(state: CustomerState, updates: Mapping[str, tuple[str, int]]) -> CustomerState:
    """Merge ``field → (value, time_ms)`` over ``state``: a value wins when it is at least as recent
    as the one the project holds. Returns a new state; ``state`` is not mutated."""
    values, times = dict(state.values), dict(state.times)
    for name, (value, time_ms) in updates.items():
        if name not in times or time_ms >= times[name]:
            values[name], times[name] = value, int(time_ms)
    return CustomerState(state.customer_id, values, times, state.record)


def customer_body(state: CustomerState, live: Mapping[str, Any] | None) -> dict[str, Any]:
    """The full customer object to send: Amberflo's live record with the project's fields on top.

    Fields the project never set (``enabled``, ``address``, a hand-typed name) and traits it does not
    own (``stripeId``) come from ``live``; ``customerName`` falls back to the ``customerId``.
    """
    body: dict[str, Any] = {k: v for k, v in (live or {}).items() if k not in SERVER_FIELDS}
    body["customerId"] = state.customer_id
    if NAME in state.values:
        body["customerName"] = state.values[NAME]
    elif not body.get("customerName"):
        body["customerName"] = state.customer_id
    if EMAIL in state.values:
        body["customerEmail"] = state.values[EMAIL]
    owned = state.owned_traits
    traits = {k: v for k, v in dict((live or {}).get("traits") or {}).items() if k not in owned}
    traits.update({f[len(TRAIT_PREFIX) :]: v for f, v in state.values.items() if f.startswith(TRAIT_PREFIX)})
    body["traits"] = dict(sorted(traits.items()))
    return body


def same_customer(body: Mapping[str, Any], live: Mapping[str, Any] | None) -> bool:
    """True when sending ``body`` would not change ``live`` (server timestamps ignored)."""
    if not live:
        return False
    strip = lambda r: {k: v for k, v in r.items() if k not in SERVER_FIELDS and v not in (None, {})}  # noqa: E731
    return strip(dict(body)) == strip(dict(live))


def group_updates(updates: pd.DataFrame) -> dict[str, dict[str, tuple[str, int]]]:
    """Long updates → ``{customer_id: {field: (value, time_ms)}}`` (one pass, no per-row pandas)."""
    grouped: dict[str, dict[str, tuple[str, int]]] = {}
    ids = updates["customer_id"].to_numpy(dtype=object)
    fields = updates["field"].to_numpy(dtype=object)
    values = updates["value"].to_numpy(dtype=object)
    times = updates["time_ms"].to_numpy(dtype=np.int64)
    for customer_id, name, value, time_ms in zip(ids, fields, values, times):
        grouped.setdefault(customer_id, {})[name] = (value, int(time_ms))
    return grouped
