"""Pure Engage rules: audiences and computed traits → customer trait updates.

``shared/spec/mapping.md`` (Engage): each audience is a trait named with its key set to ``"true"`` /
``"false"``; each computed trait is a trait with its value; the first sync of an audience sends every
member ``true``; later syncs send only customers whose membership or value changed (entered →
``true``, exited → ``false``).

Both shapes Engage writes to a warehouse end in the same long updates
``(customer_id, key, value, time_ms)`` that :mod:`amberflo_sync.customer_writer` merges into full
customer records:

* identify-shaped ``engage_<space>.users`` (one row per user): each row gets a fingerprint of its
  formatted audience/trait values; only rows whose fingerprint changed since the last sync are
  diffed, against the customer's stored values (so a new audience column is a first sync of just
  that audience, and ``true`` → ``false``/null sends ``false``);
* track-shaped ``audience_entered`` / ``audience_exited`` / ``trait_computed``: the latest event per
  user and key wins (duplicate "entered" events collapse to one change).

When an identify-shaped ``users`` table is a full snapshot (``engage.snapshot_complete``), absence is
information too: a user no longer in it, or an audience column no longer in it, ends the memberships
the project stored as ``"true"`` (:func:`ended_memberships`). Computed traits are left as they are in
both cases: the mapping keeps a known trait value when the source has none (null keeps what is
known), and a trait has no "not a member" value to send; clearing it would erase what another source
(an identify call) may have set under the same name.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from amberflo_sync.customers import TRAIT_PREFIX, empty_updates, latest_updates
from amberflo_sync.formatting import TEXT, column_to_text, format_column
from amberflo_sync.segment import find_column, property_columns
from amberflo_sync.transform import drop_duplicate_ids, event_millis

AUDIENCE, TRAIT = "audience", "trait"
ENTERED, EXITED, COMPUTED = "audience_entered", "audience_exited", "trait_computed"
TRACK_TABLES = (ENTERED, EXITED, COMPUTED)
#: Columns of Engage tables that are bookkeeping, not audience or trait keys.
ENGAGE_BOOKKEEPING = ("audience_key", "trait_key")


@dataclass(frozen=True)
class KeyFilter:
    """Include/exclude glob lists of audience and trait keys (case-insensitive; exclude wins)."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def wants(self, key: str) -> bool:
        key = key.lower()
        if any(fnmatch.fnmatchcase(key, p.lower()) for p in self.exclude):
            return False
        return not self.include or any(fnmatch.fnmatchcase(key, p.lower()) for p in self.include)


def key_columns(
    columns: list[str], dtypes: Mapping[str, object], keys: KeyFilter, sql_types: Mapping[str, str] | None = None
) -> dict[str, tuple[str, str]]:
    """``{key: (column, kind)}`` for the audience (boolean) and computed-trait columns of a table.

    The warehouse's own column type decides when known (``sql_types``): a column that is entirely
    NULL in a chunk has no boolean values for pandas to see.
    """
    out: dict[str, tuple[str, str]] = {}
    sql_types = {k.lower(): v for k, v in (sql_types or {}).items()}
    for column in property_columns(columns, exclude=ENGAGE_BOOKKEEPING):
        key = column.lower()
        if not keys.wants(key) or key in out:
            continue
        sql_type = sql_types.get(key, "").upper()
        if sql_type:
            is_audience = sql_type in ("BOOLEAN", "BOOL")
        else:
            is_audience = pd.api.types.is_bool_dtype(dtypes[column]) or str(dtypes[column]).lower() == "boolean"
        out[key] = (column, AUDIENCE if is_audience else TRAIT)
    return dict(sorted(out.items()))


def user_values(
    users: pd.DataFrame, keys: KeyFilter, sql_types: Mapping[str, str] | None = None
) -> tuple[pd.Series, pd.DataFrame, dict[str, str], np.ndarray]:
    """One chunk of ``engage_<space>.users`` → formatted values.

    :returns: ``(customer_ids, values, kinds, time_ms)``: ``values`` has one column per key holding
        ``"true"``/``"false"`` (audiences) or the formatted trait value, ``<NA>`` when unset.
    """
    columns = list(users.columns)
    id_column = find_column(columns, "id") or find_column(columns, "user_id")
    ids = column_to_text(users[id_column]) if id_column else pd.Series(pd.NA, index=users.index, dtype=TEXT)
    ids = ids.mask(ids.str.strip() == "")
    mapping = key_columns(columns, users.dtypes.to_dict(), keys, sql_types)
    values = pd.DataFrame({key: format_column(users[column]) for key, (column, _) in mapping.items()}, index=users.index)
    millis, _ = event_millis(users)
    return ids, values, {k: kind for k, (_, kind) in mapping.items()}, millis


def fingerprints(values: pd.DataFrame) -> np.ndarray:
    """A stable 64-bit fingerprint per row of formatted values; the key names are part of it, so a new
    audience column changes every row's fingerprint (a first sync of that audience)."""
    if values.shape[1] == 0:
        return np.zeros(len(values), dtype=np.int64)
    ordered = values[sorted(values.columns)].astype(object).where(values.notna(), "\x00null")
    row_hash = pd.util.hash_pandas_object(ordered, index=False).to_numpy(dtype=np.uint64)
    names = pd.util.hash_pandas_object(pd.Series(["\x1f".join(sorted(values.columns))]), index=False).to_numpy()[0]
    return (row_hash ^ np.uint64(names)).view(np.int64)


def snapshot_updates(
    customer_ids: pd.Series,
    values: pd.DataFrame,
    kinds: Mapping[str, str],
    time_ms: np.ndarray,
    known: Mapping[str, Mapping[str, str]],
) -> pd.DataFrame:
    """Updates for changed users of an identify-shaped space.

    :param known: the project's stored trait values per customer (``{id: {"traits.<key>": value}}``).
    Audiences: set → ``"true"``; unset or false while known ``"true"`` → ``"false"``; unset and never a
    member → nothing. Traits: a non-null value → that value; null keeps what is known.
    """
    parts = []
    ids = customer_ids.astype(object).to_numpy()
    has_id = customer_ids.notna().to_numpy()
    for key, kind in kinds.items():
        column = values[key]
        field = TRAIT_PREFIX + key
        if kind == AUDIENCE:
            was_member = np.fromiter(((known.get(c) or {}).get(field) == "true" for c in ids), bool, len(ids))
            is_member = (column == "true").fillna(False).to_numpy(dtype=bool)
            send = is_member | was_member
            value = np.where(is_member, "true", "false").astype(object)
        else:
            send = column.notna().to_numpy()
            value = column.astype(object).to_numpy()
        send = send & has_id
        if send.any():
            parts.append(pd.DataFrame({"customer_id": ids[send], "field": field, "value": value[send],
                                       "time_ms": time_ms[send]}))
    return latest_updates(parts)


def track_updates(rows: pd.DataFrame, table: str, keys: KeyFilter) -> pd.DataFrame:
    """Rows of ``audience_entered`` / ``audience_exited`` / ``trait_computed`` → latest update per
    user and key (entered → ``"true"``, exited → ``"false"``, computed → the value in the column named
    after ``trait_key``)."""
    rows, _ = drop_duplicate_ids(rows)
    columns = list(rows.columns)
    user_column = find_column(columns, "user_id")
    key_column = find_column(columns, "trait_key" if table == COMPUTED else "audience_key")
    if user_column is None or key_column is None or rows.empty:
        return empty_updates()
    users = column_to_text(rows[user_column])
    users = users.mask(users.str.strip() == "")
    key_text = column_to_text(rows[key_column]).str.strip().str.lower()
    millis, _ = event_millis(rows)
    usable = (users.notna() & key_text.notna()).to_numpy()
    parts = []
    for key in sorted(set(key_text[usable].tolist())):
        if not keys.wants(key):
            continue
        mask = usable & (key_text == key).to_numpy()
        if table == COMPUTED:
            column = find_column(columns, key)
            if column is None:
                continue
            value = format_column(rows[column]).to_numpy(dtype=object)[mask]
        else:
            value = np.full(int(mask.sum()), "true" if table == ENTERED else "false", dtype=object)
        present = pd.notna(value)
        parts.append(pd.DataFrame({"customer_id": users.to_numpy(dtype=object)[mask][present],
                                   "field": TRAIT_PREFIX + key, "value": value[present],
                                   "time_ms": millis[mask][present]}))
    return latest_updates(parts)


def drop_unneeded_exits(updates: pd.DataFrame, known: Mapping[str, Mapping[str, str]]) -> pd.DataFrame:
    """``"false"`` for an audience the customer was never known to be in is not a change worth a
    write: Engage's exit of a non-member (e.g. the first sync) leaves the customer untouched."""
    if updates.empty:
        return updates
    is_false = (updates["value"] == "false").to_numpy()
    if not is_false.any():
        return updates
    keep = np.ones(len(updates), dtype=bool)
    ids = updates["customer_id"].to_numpy(dtype=object)
    fields = updates["field"].to_numpy(dtype=object)
    for i in np.flatnonzero(is_false):
        keep[i] = (known.get(ids[i]) or {}).get(fields[i]) is not None
    return updates.loc[keep].reset_index(drop=True)


def ended_memberships(
    customer_ids: list[str], audience_keys: list[str], known: Mapping[str, Mapping[str, str]], time_ms: int
) -> pd.DataFrame:
    """``"false"`` for each of ``audience_keys`` that the project's stored values of each customer
    hold as ``"true"`` — the memberships a full snapshot no longer shows (a user gone from it, or an
    audience column dropped from it). Nothing for customers never known as members."""
    rows = [
        (cid, TRAIT_PREFIX + key)
        for cid in customer_ids
        for key in audience_keys
        if (known.get(cid) or {}).get(TRAIT_PREFIX + key) == "true"
    ]
    if not rows:
        return empty_updates()
    frame = pd.DataFrame(rows, columns=["customer_id", "field"])
    frame["value"] = "false"
    frame["time_ms"] = np.int64(time_ms)
    return latest_updates([frame])
