"""Engage (Personas) schemas: audiences and computed traits, in both shapes Engage writes.

- identify-shaped (``engage_default``): ``identifies`` has one row per change, a boolean column per
  audience key and a column per computed trait (only the changed key is set on a row) plus
  ``context_personas_computation_class`` / ``_key`` / ``space_id``; ``users`` has the latest value of
  every key per ``user_id``.
- track-shaped (legacy ``personas_legacy``): ``audience_entered`` / ``audience_exited`` with
  ``audience_key`` and the boolean column named after it, ``trait_computed`` with ``trait_key`` and the
  value column, and ``tracks``.

Both shapes are rendered from the same list of changes: users entering an audience (some twice, as
after a profile merge), some of them exiting later, trait values computed and later recomputed, and a
few profiles without a ``user_id``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from amberflo_sync.demo import vocabulary as vocab
from amberflo_sync.demo.calls import event_columns
from amberflo_sync.demo.population import Population
from amberflo_sync.demo.random_columns import (
    MS,
    SECOND,
    LoadSchedule,
    hex_ids,
    pick,
    stream,
    take,
    timestamps,
)
from amberflo_sync.demo.table_model import Columns, WarehouseTable, make_table

IDENTIFY_SCHEMA = "engage_default"
TRACK_SCHEMA = "personas_legacy"
AUDIENCE_KEYS = tuple(a[0] for a in vocab.AUDIENCES)
TRAIT_KEYS = tuple(t[0] for t in vocab.COMPUTED_TRAITS)
KEYS = AUDIENCE_KEYS + TRAIT_KEYS


@dataclass(frozen=True)
class Changes:
    """Engage changes, one per row.

    :param user: customer index, or -1 for a profile without a user id.
    :param key: index into ``KEYS``.
    :param member: audience membership after the change (audience rows).
    :param lifetime_value: new value of ``lifetime_value`` (NaN on other rows).
    :param category: index into ``vocabulary.FAVORITE_CATEGORIES`` (-1 on other rows).
    """

    user: np.ndarray
    key: np.ndarray
    member: np.ndarray
    lifetime_value: np.ndarray
    category: np.ndarray
    received_at: np.ndarray
    uuid_ts: np.ndarray

    def __len__(self) -> int:
        return len(self.user)


def _times(rng: np.random.Generator, k: np.ndarray, schedule: LoadSchedule) -> tuple[np.ndarray, np.ndarray]:
    lo = schedule.loads_us[k + 1] - schedule.cutoff_us
    hi = schedule.loads_us[k] - schedule.cutoff_us - 60 * SECOND
    received = (lo + rng.random(len(k)) * np.maximum(hi - lo, 0)).astype(np.int64) // MS * MS
    uuid_ts = schedule.loads_us[k] + rng.integers(0, schedule.row_jitter_us + 1, len(k))
    return received, uuid_ts


def _assemble(parts: list[dict[str, np.ndarray]], rng: np.random.Generator, schedule: LoadSchedule) -> Changes:
    merged = {f: np.concatenate([p[f] for p in parts]) for f in ("user", "key", "member", "ltv", "category", "k")}
    received, uuid_ts = _times(rng, merged["k"], schedule)
    order = np.lexsort((merged["key"], merged["user"], received))
    return Changes(user=merged["user"][order], key=merged["key"][order], member=merged["member"][order],
                   lifetime_value=merged["ltv"][order], category=merged["category"][order],
                   received_at=received[order], uuid_ts=uuid_ts[order])


def _rows(user: np.ndarray, key: int, k: np.ndarray, *, member: np.ndarray | None = None,
          ltv: np.ndarray | None = None, category: np.ndarray | None = None) -> dict[str, np.ndarray]:
    n = len(user)
    return {
        "user": user.astype(np.int64), "key": np.full(n, key, np.int64), "k": k.astype(np.int64),
        "member": member if member is not None else np.zeros(n, bool),
        "ltv": ltv if ltv is not None else np.full(n, np.nan),
        "category": category if category is not None else np.full(n, -1, np.int64),
    }


def _older_half(rng: np.random.Generator, windows: int, n: int) -> np.ndarray:
    """Load windows in the older half of the schedule (so later changes can follow)."""
    if windows <= 1:
        return np.zeros(n, np.int64)
    return rng.integers(max(1, windows // 2), windows, n)


def initial_changes(seed: int, population: Population, schedule: LoadSchedule) -> Changes:
    """The changes Engage sent over the schedule's windows, from the first sync of every audience."""
    rng = stream(seed, "engage", "changes")
    n_users, windows = population.n_users, schedule.windows
    parts: list[dict[str, np.ndarray]] = []
    for key, (_, _, share) in enumerate(vocab.AUDIENCES):
        members = np.flatnonzero(rng.random(n_users) < share)
        entered = _older_half(rng, windows, len(members))
        parts.append(_rows(members, key, entered, member=np.ones(len(members), bool)))
        twice = rng.random(len(members)) < 0.08
        parts.append(_rows(members[twice], key, entered[twice], member=np.ones(int(twice.sum()), bool)))
        exits = (rng.random(len(members)) < 0.2) & (entered > 0)
        exited_at = (rng.random(int(exits.sum())) * entered[exits]).astype(np.int64)
        parts.append(_rows(members[exits], key, exited_at, member=np.zeros(int(exits.sum()), bool)))
        anonymous = max(1, len(members) // 20)
        parts.append(_rows(np.full(anonymous, -1), key, rng.integers(0, windows, anonymous),
                           member=np.ones(anonymous, bool)))
    for t, (trait, _, _, share) in enumerate(vocab.COMPUTED_TRAITS):
        key = len(AUDIENCE_KEYS) + t
        holders = np.flatnonzero(rng.random(n_users) < share)
        first = _older_half(rng, windows, len(holders))
        again = (rng.random(len(holders)) < 0.3) & (first > 0)
        later = (rng.random(int(again.sum())) * first[again]).astype(np.int64)
        if trait == "lifetime_value":
            value = np.round(rng.lognormal(np.log(200), 1.0, len(holders)), 2)
            parts.append(_rows(holders, key, first, ltv=value))
            parts.append(_rows(holders[again], key, later,
                               ltv=np.round(value[again] + rng.lognormal(np.log(50), 1.0, int(again.sum())), 2)))
        else:
            n_cat = len(vocab.FAVORITE_CATEGORIES)
            value = pick(rng, n_cat, len(holders), vocab.FAVORITE_CATEGORY_WEIGHTS)
            parts.append(_rows(holders, key, first, category=value))
            parts.append(_rows(holders[again], key, later, category=(value[again] + 1) % n_cat))
    return _assemble(parts, rng, schedule)


def later_changes(seed: int, population: Population, schedule: LoadSchedule, state: pd.DataFrame | None,
                  count: int) -> Changes:
    """Changes of one later sync: ~``count`` customers per audience flip membership (members exit,
    others enter) and ~``count`` get a recomputed ``lifetime_value``.

    :param state: the current ``users`` table (columns ``id`` and the keys, lower-case), or None.
    """
    rng = stream(seed, "engage", "later", int(schedule.now_us // SECOND))
    n_users = population.n_users
    ids = population.user_ids.to_pylist()
    current = pd.DataFrame(index=pd.Index(ids, name="id"))
    if state is not None and "id" in state:
        current = current.join(state.set_index("id"), how="left")
    parts: list[dict[str, np.ndarray]] = []
    zero = lambda n: np.zeros(n, np.int64)  # noqa: E731 - single load window
    for key, audience in enumerate(AUDIENCE_KEYS):
        chosen = np.sort(rng.choice(n_users, min(count, n_users), replace=False))
        if audience in current:
            was_member = current[audience].eq(True).fillna(False).to_numpy(dtype=bool)[chosen]
        else:
            was_member = np.zeros(len(chosen), bool)
        parts.append(_rows(chosen, key, zero(len(chosen)), member=~was_member))
    holders = np.sort(rng.choice(n_users, min(count, n_users), replace=False))
    parts.append(_rows(holders, KEYS.index("lifetime_value"), zero(len(holders)),
                       ltv=np.round(rng.lognormal(np.log(250), 1.0, len(holders)), 2)))
    return _assemble(parts, rng, schedule)


# --- rendering -------------------------------------------------------------------------------------------


def _key_values(changes: Changes) -> Columns:
    """One column per audience key (boolean) and computed trait, set only on that key's rows."""
    columns: Columns = {}
    for i, key in enumerate(KEYS):
        on_key = changes.key == i
        if key in AUDIENCE_KEYS:
            columns[key] = ("boolean", pa.array(changes.member, mask=~on_key))
        elif key == "lifetime_value":
            columns[key] = ("double", pa.array(changes.lifetime_value, mask=~on_key))
        else:
            columns[key] = ("text", take(vocab.FAVORITE_CATEGORIES, np.maximum(changes.category, 0), ~on_key))
    return columns


def _common(rng: np.random.Generator, changes: Changes, population: Population, space_id: str,
            id_prefix: str) -> Columns:
    n = len(changes)
    known = changes.user >= 0
    user_index = np.maximum(changes.user, 0)
    anonymous_index = np.where(known, population.web.first[user_index],
                               population.web.anonymous_start + rng.integers(0, population.web.anonymous_count, n))
    anonymous_missing = known & (rng.random(n) < 0.7)
    is_audience = changes.key < len(AUDIENCE_KEYS)
    key_prefix = np.where(is_audience, 0, 1)
    computation_ids = [f"{'aud' if k in AUDIENCE_KEYS else 'tra'}_{space_id[4:12]}{i:02d}" for i, k in enumerate(KEYS)]
    timestamp = changes.received_at - rng.integers(0, 2000, n) * MS
    zeros = np.zeros(n, np.int64)
    return {
        "id": ("text", hex_ids(rng, n, 32, prefix=id_prefix)),
        "received_at": ("timestamp", timestamps(changes.received_at)),
        "sent_at": ("timestamp", timestamps(changes.received_at - rng.integers(5, 80, n) * MS)),
        "timestamp": ("timestamp", timestamps(timestamp)),
        "original_timestamp": ("timestamp", timestamps(timestamp)),
        "uuid_ts": ("timestamp", timestamps(changes.uuid_ts)),
        "anonymous_id": ("text", take(population.web.anonymous_id, anonymous_index, anonymous_missing)),
        "user_id": ("text", take(population.user_ids, user_index, ~known)),
        "context_library_name": ("text", take(["unknown"], zeros)),
        "context_library_version": ("text", take(["unknown"], zeros)),
        "context_personas_computation_class": ("text", take(["audience", "trait"], key_prefix)),
        "context_personas_computation_id": ("text", take(computation_ids, changes.key)),
        "context_personas_computation_key": ("text", take(KEYS, changes.key)),
        "context_personas_space_id": ("text", take([space_id], zeros)),
    }


def engage_users_table(schema: str, identifies: WarehouseTable) -> WarehouseTable | None:
    """``users``: per ``user_id`` (as ``id``) the latest value of every audience and trait."""
    keys = [c for c in identifies.column_names if c in KEYS]
    frame = identifies.to_pandas()[["user_id", "received_at", "uuid_ts", "timestamp", *keys]]
    frame = frame[frame["user_id"].notna()].sort_values(["timestamp", "received_at"], kind="stable")
    if frame.empty:
        return None
    grouped = frame.groupby("user_id", sort=True)
    merged = grouped[keys].last()
    merged.insert(0, "uuid_ts", grouped["uuid_ts"].max())
    merged.insert(0, "received_at", grouped["received_at"].max())
    merged = merged.reset_index().rename(columns={"user_id": "id"})
    types = {"id": "text", "received_at": "timestamp", "uuid_ts": "timestamp", **{k: identifies.types[k] for k in keys}}
    return make_table(schema, "users", {c: (types[c], pa.array(merged[c], from_pandas=True)) for c in merged.columns})


def identify_shaped(seed: int, label: str, changes: Changes, population: Population,
                    schema: str = IDENTIFY_SCHEMA) -> list[WarehouseTable]:
    """``<schema>.identifies`` and ``<schema>.users``."""
    rng = stream(seed, label, "engage", schema)
    columns = {**_common(rng, changes, population, "spa_9aQ1bC2dE3fG4hI5jK6lM", "personas_"), **_key_values(changes)}
    identifies = make_table(schema, "identifies", columns)
    users = engage_users_table(schema, identifies)
    return [identifies] + ([users] if users is not None else [])


EVENTS = (("audience_entered", "Audience Entered"), ("audience_exited", "Audience Exited"),
          ("trait_computed", "Trait Computed"))


def track_shaped(seed: int, label: str, changes: Changes, population: Population,
                 schema: str = TRACK_SCHEMA) -> list[WarehouseTable]:
    """``audience_entered``, ``audience_exited``, ``trait_computed`` and ``tracks`` in ``schema``."""
    from amberflo_sync.demo.event_sources import tracks_table

    rng = stream(seed, label, "engage", schema)
    common = _common(rng, changes, population, "spa_LeGaCy0PeRsOnAs1SpAcE", "personas_")
    values = _key_values(changes)
    is_audience = changes.key < len(AUDIENCE_KEYS)
    masks = (is_audience & changes.member, is_audience & ~changes.member, ~is_audience)
    tables = []
    for (event, event_text), mask in zip(EVENTS, masks):
        n = int(mask.sum())
        if not n:
            continue
        keep = pa.array(mask)
        key_name = "audience_key" if event != "trait_computed" else "trait_key"
        columns: Columns = {name: (ctype, arr.filter(keep)) for name, (ctype, arr) in common.items()}
        columns.update(event_columns(n, event, event_text))
        columns[key_name] = ("text", take(KEYS, changes.key[mask]))
        columns.update({name: (ctype, arr.filter(keep)) for name, (ctype, arr) in values.items()})
        tables.append(make_table(schema, event, columns))
    tracks = tracks_table(schema, tables)
    return tables + ([tracks] if tracks is not None else [])


def engage_tables(seed: int, label: str, changes: Changes, population: Population) -> list[WarehouseTable]:
    """Both Engage schemas for ``changes``."""
    return identify_shaped(seed, label, changes, population) + track_shaped(seed, label, changes, population)


