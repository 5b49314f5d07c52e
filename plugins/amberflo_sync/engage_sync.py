"""Engage sync: audiences and computed traits of one Engage space → Amberflo customer traits.

Identify-shaped spaces are diffed against the last synced snapshot (a fingerprint per user in the
state table ``engage_fingerprints``), scanning ``engage_<space>.users`` in chunks, so memory holds
only the users that changed. Track-shaped spaces read their three tables incrementally with the
events rules (cursor, overlap, watermark last). Updates are merged into the same full customer
records as identify traits, under the ``customers`` lock, so neither sync erases the other's traits.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import sqlalchemy as sa

from amberflo_sync.config import SyncConfig
from amberflo_sync.customer_writer import AMBERFLO_REJECTED_CUSTOMER, CustomerWriter
from amberflo_sync.customers import group_updates, latest_updates
from amberflo_sync.engage import (
    AUDIENCE,
    TRACK_TABLES,
    KeyFilter,
    drop_unneeded_exits,
    ended_memberships,
    fingerprints,
    snapshot_updates,
    track_updates,
    user_values,
)
from amberflo_sync.engage_membership import SeenIds, SpaceMembership
from amberflo_sync.events_sync import DryRun
from amberflo_sync.identifies_sync import _json, write_customers
from amberflo_sync.ledger import Ledger, RunStats
from amberflo_sync.planning import BACKFILL, INCREMENTAL, Slice, plan_window
from amberflo_sync.reader import EventStream, WarehouseReader, Window
from amberflo_sync.run_kinds import RunRules
from amberflo_sync.state import StateStore

log = logging.getLogger(__name__)

IDENTIFY_SHAPE, TRACK_SHAPE = "identify", "track"
#: Slice mode of an Engage space's own run (no watermark: a snapshot diff, or the track tables' slices).
SNAPSHOT = "snapshot"


@dataclass(frozen=True)
class EngageSpace:
    """One Engage schema and the shape of its warehouse output."""

    schema: str
    shape: str

    @property
    def key(self) -> str:
        return self.schema.lower()


def engage_spaces(reader: WarehouseReader, config: SyncConfig) -> list[EngageSpace]:
    """The configured Engage schemas (or every ``engage_*``/``personas_*`` one) with their shapes."""
    if config.engage.spaces:
        schemas = [reader.actual_schema(s) for s in config.engage.spaces]
        missing = [w for w, s in zip(config.engage.spaces, schemas) if s is None]
        for wanted in missing:
            log.warning("Engage schema %r does not exist in the warehouse; skipping it", wanted)
        found = [s for s in schemas if s is not None]
    else:
        with reader.engine.connect() as conn:
            names = [r[0] for r in conn.execute(sa.text("SELECT schema_name FROM information_schema.schemata"))]
        found = sorted(n for n in names if n.lower().startswith(("engage_", "personas_")))
    spaces = []
    for schema in found:
        shape = config.engage.shape_of(schema) or detect_shape(reader, schema)
        if shape is None:
            log.warning("Engage schema %s has neither a users table nor audience/trait track tables", schema)
            continue
        spaces.append(EngageSpace(schema, shape))
    return spaces


def detect_shape(reader: WarehouseReader, schema: str) -> str | None:
    tables = reader.tables(schema)
    if "users" in tables:
        return IDENTIFY_SHAPE
    if any(t in tables for t in TRACK_TABLES):
        return TRACK_SHAPE
    return None


def sync_engage_space(
    space: EngageSpace,
    *,
    reader: WarehouseReader,
    ledger: Ledger,
    writer: CustomerWriter,
    config: SyncConfig,
    run_id: str,
    rules: RunRules | None = None,
    dry_run: DryRun | None = None,
    full_resync: bool = False,
    lock_timeout: float = 3600.0,
) -> RunStats:
    """Send the audience and trait changes of one space; see the module docstring.

    The run is one plan in the ledger: a ``snapshot`` slice for the space and, for a track-shaped
    space, one incremental slice per table whose watermark the ledger moves when the plan closes.
    """
    rules = rules or RunRules("manual", dry_run=dry_run is not None)
    statements_before = getattr(reader, "statements", 0)
    keys = KeyFilter(config.engage.include, config.engage.exclude)
    log.info("%s: %s-shaped Engage space%s", space.key, space.shape, " [dry run]" if dry_run else "")
    slices = [Slice(EventStream(space.schema, "users", "engage"), SNAPSHOT, Window(cursor=None))]
    if space.shape == TRACK_SHAPE:
        marks = ledger.watermarks()
        tables = reader.tables(space.schema)
        mode = INCREMENTAL if rules.moves_watermarks else BACKFILL
        for table in TRACK_TABLES:
            if table in tables:
                stream = EventStream(space.schema, tables[table], "engage")
                mark = None if full_resync else marks.get(stream.key)
                window = plan_window(reader, None if mark is None else mark.value, stream, config)
                slices.append(Slice(stream, mode, window))
    with ledger.recorded_plan(run_id, rules.label, slices, stream=space.key, dry_run=dry_run is not None) as (_, stats):
        if space.shape == IDENTIFY_SHAPE:
            updates, new_fingerprints = _snapshot_diff(space, reader, writer.state, keys, stats, full_resync,
                                                       config.engage.snapshot_complete, dry_run is not None)
        else:
            updates = _track_events(space, reader, writer.state, [s for s in slices if s.mode != SNAPSHOT], keys,
                                    stats)
            new_fingerprints = {}
        grouped = group_updates(updates)
        stats.statements = getattr(reader, "statements", 0) - statements_before
        stats.details = {"users_changed": len(grouped), "trait_updates": len(updates)}
        if dry_run is not None:
            result = writer.write(grouped, dry_run_limit=dry_run.limit)
            dry_run.take([_json(body) for body in result.planned])
            stats.status = "dry_run"
            dry_run.finish(EventStream(space.schema, "users", "engage"))
            return stats
        write_customers(space.key, grouped, set(), writer=writer, ledger=ledger, config=config, run_id=run_id,
                        stats=stats, lock_timeout=lock_timeout)
        refused = {str(r["row_id"]) for r in ledger.open_rejected(space.key, [AMBERFLO_REJECTED_CUSTOMER])}
        # remembered only after Amberflo accepted the customers: a failed run re-diffs them next time
        writer.state.save_fingerprints(space.key, {k: v for k, v in new_fingerprints.items() if k not in refused})
        stats.status = "success"
    return stats


def _snapshot_diff(space: EngageSpace, reader: WarehouseReader, state: StateStore, keys: KeyFilter,
                   stats: RunStats, full_resync: bool, complete: bool = False,
                   dry_run: bool = False) -> tuple[pd.DataFrame, dict[str, int]]:
    """Updates of the users whose values changed since the last sync (by fingerprint), and their new
    fingerprints. With ``complete`` (``engage.snapshot_complete``) the table is a full snapshot:
    audience columns it no longer has, and users it no longer has, end the memberships stored as
    ``"true"`` (see :mod:`amberflo_sync.engage_membership`); a dry run reads that state, never writes it."""
    tables = reader.tables(space.schema)
    users_stream = EventStream(space.schema, tables.get("users", "users"), "engage")
    parts: list[pd.DataFrame] = []
    changed_fingerprints: dict[str, int] = {}
    # users holds the current state: its values are the newest the project knows, whatever the row's
    # own timestamps say (an exit must win over the entry it ends)
    now_ms = int(time.time() * 1000)
    sql_types = {c.name: c.data_type for c in reader.columns(users_stream.schema, users_stream.table)}
    membership = SpaceMembership(state, space.key) if complete else None
    had = {k for k in membership.audience_keys() if keys.wants(k)} if membership is not None else set()
    seen, audiences = SeenIds(), set()
    dropped: list[str] = []
    for chunk in reader.extract_window(users_stream, Window(cursor=None)):
        chunk = chunk.drop(columns=[c for c in chunk.columns if c.startswith("__amberflo_sync")])
        stats.read += len(chunk)
        ids, values, kinds, _ = user_values(chunk, keys, sql_types)
        millis = np.full(len(ids), now_ms, dtype=np.int64)
        has_id = ids.notna().to_numpy()
        stats.skipped += int((~has_id).sum())
        ids, values, millis = ids[has_id], values.loc[has_id], millis[has_id]
        prints = fingerprints(values)
        id_list = ids.astype(object).tolist()
        if membership is not None:
            seen.add(id_list)
            audiences.update(k for k, kind in kinds.items() if kind == AUDIENCE)
            # a dropped audience column changes every fingerprint: its members get false with the rest
            dropped = sorted(had - set(kinds))
        stored = {} if full_resync else state.load_fingerprints(space.key, id_list)
        changed = np.fromiter((stored.get(c) != int(p) for c, p in zip(id_list, prints)), bool, len(id_list))
        stats.sent += len(id_list)
        if not changed.any():
            continue
        changed_ids = [c for c, flag in zip(id_list, changed) if flag]
        known = {cid: s.values for cid, s in state.load_customers(changed_ids).items()}
        if dropped:
            values = values.assign(**{k: pd.Series(pd.NA, index=values.index, dtype=values.dtypes.get(k, "string"))
                                      for k in dropped})
            kinds = {**kinds, **dict.fromkeys(dropped, AUDIENCE)}
        parts.append(snapshot_updates(ids[changed], values.loc[changed], kinds, millis[changed], known))
        changed_fingerprints.update(zip(changed_ids, (int(p) for p in prints[changed])))
    if membership is not None and len(seen):
        parts.append(_departed_users(membership, seen, sorted(had | audiences), now_ms, state, dry_run))
        if dropped:
            log.info("%s: audience column(s) no longer in the snapshot: %s", space.key, ", ".join(dropped))
        if not dry_run:
            membership.remember_audience_keys(audiences)
    elif membership is not None:
        log.warning("%s: the users table is empty; not taking that as every user leaving the space", space.key)
    return latest_updates(parts), changed_fingerprints


def _departed_users(membership: SpaceMembership, seen: SeenIds, audience_keys: list[str], now_ms: int,
                    state: StateStore, dry_run: bool) -> pd.DataFrame:
    """``false`` for the memberships held ``"true"`` by users the space had but the snapshot no longer
    has; users gone with nothing to end are forgotten (their fingerprint rows dropped)."""
    parts, ended, forgotten = [], 0, 0
    for page in membership.stored_user_ids():
        departed = seen.missing(page)
        if not departed:
            continue
        known = {cid: s.values for cid, s in state.load_customers(departed).items()}
        updates = ended_memberships(departed, audience_keys, known, now_ms)
        holding = set(updates["customer_id"].tolist())
        gone = [cid for cid in departed if cid not in holding]
        if gone and not dry_run:
            membership.forget_users(gone)
        ended, forgotten = ended + len(holding), forgotten + len(gone)
        parts.append(updates)
    if ended or forgotten:
        log.info("%s: %d user(s) left the snapshot holding a membership (false sent), %d forgotten",
                 membership.space, ended, forgotten)
    return latest_updates(parts)


def _track_events(space: EngageSpace, reader: WarehouseReader, state: StateStore, slices: list[Slice],
                  keys: KeyFilter, stats: RunStats) -> pd.DataFrame:
    parts: list[pd.DataFrame] = []
    for part in slices:
        table = part.stream.table.lower()
        for chunk in reader.extract_window(part.stream, part.window):
            stats.read += len(chunk)
            parts.append(track_updates(chunk, table, keys))
            if len(parts) >= 8:
                parts = [latest_updates(parts)]
    updates = latest_updates(parts)
    stats.sent = stats.read
    known = {cid: s.values for cid, s in state.load_customers(updates["customer_id"].unique().tolist()).items()}
    return drop_unneeded_exits(updates, known)
