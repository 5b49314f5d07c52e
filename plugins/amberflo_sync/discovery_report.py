"""Which configured sources bill nothing: what was looked for and not found.

A schema that does not exist, or holds no table the events DAG bills, makes runs succeed having
sent nothing — for days, if nobody looks. This module says so from the discovery answer alone
(:meth:`amberflo_sync.reader.WarehouseReader.catalog_to_dict`, the JSON the plan hands to the
slices), so the planning or the finishing task can log it, put it in the run outcome, or fail the
run when nothing at all was found. Pure: no I/O.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from amberflo_sync.config import EventsConfig
from amberflo_sync.segment import NON_EVENT_TABLES


@dataclass(frozen=True)
class MissingSource:
    """One thing the configuration asked for that the warehouse does not have.

    :ivar schema: the configured schema name.
    :ivar looked_for: what was looked for (``schema prod``, ``pages, screens or a track event
        table``, ``a track event table matching 'api_*'``).
    :ivar found: the tables that were there (lower-case; empty when the schema is absent).
    """

    schema: str
    looked_for: str
    found: tuple[str, ...] = ()

    def __str__(self) -> str:
        where = f"schema {self.schema!r}"
        if self.looked_for == "schema":
            return f"{where} does not exist (or holds no table the sync can read)"
        seen = ", ".join(self.found) or "no table"
        return f"{where} has no {self.looked_for} (found: {seen})"


def _tables(catalog: Mapping[str, Any], schema: str) -> list[str] | None:
    found = (catalog.get("schemas") or {}).get(schema.lower())
    if found is None:
        return None
    return sorted(name.lower() for name in found.get("tables", {}))


def missing_event_sources(catalog: Mapping[str, Any], schemas: Iterable[str],
                          events: EventsConfig) -> list[MissingSource]:
    """Every configured source schema that bills nothing, and every ``include`` pattern that
    matches no table, with what was looked for. Empty = every configured source has a stream.

    :param catalog: :meth:`WarehouseReader.catalog_to_dict` after discovery of ``schemas``.
    :param schemas: ``config.source_schemas``.
    :param events: ``config.events`` (which kinds are billed, include/exclude patterns).
    """
    missing: list[MissingSource] = []
    for schema in schemas:
        tables = _tables(catalog, schema)
        if tables is None:
            missing.append(MissingSource(schema, "schema"))
            continue
        tracks = [t for t in tables if t not in NON_EVENT_TABLES]
        billed = [t for t in tracks if events.tracks and events.wants_event_table(t)]
        billed += [t for t in ("pages", "screens") if t in tables and getattr(events, t)]
        if not billed:
            kinds = [k for k, on in (("pages", events.pages), ("screens", events.screens)) if on]
            if events.tracks:
                kinds.append("a track event table" + (f" matching {list(events.include)}" if events.include else ""))
            missing.append(MissingSource(schema, " or ".join(kinds) or "billed stream kind", tuple(tables)))
            continue
        for pattern in events.include if events.tracks else ():
            if not any(fnmatch.fnmatchcase(t, pattern.lower()) for t in tracks):
                missing.append(MissingSource(schema, f"track event table matching {pattern!r}", tuple(tables)))
    return missing


def missing_schemas(catalog: Mapping[str, Any], schemas: Iterable[str]) -> list[MissingSource]:
    """Configured schemas (e.g. Engage spaces) that discovery did not find."""
    return [MissingSource(s, "schema") for s in schemas if _tables(catalog, s) is None]
