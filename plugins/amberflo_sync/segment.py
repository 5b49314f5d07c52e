"""What the Segment warehouse layout means: standard columns, table kinds, property columns.

Facts from ``shared/spec/warehouse.md``. Everything compares identifiers case-insensitively, because
Snowflake upper-cases them (``UUID_TS``) while Postgres, Redshift and BigQuery keep them lower-case.
"""

from __future__ import annotations

from collections.abc import Iterable

#: Columns Segment writes on every event table; never billed as dimensions.
STANDARD_COLUMNS: frozenset[str] = frozenset(
    {
        "id",
        "received_at",
        "sent_at",
        "timestamp",
        "original_timestamp",
        "uuid_ts",
        "uuid",
        "loaded_at",
        "anonymous_id",
        "user_id",
        "event",
        "event_text",
    }
)

#: Tables in a source schema that are not per-event track tables.
NON_EVENT_TABLES: frozenset[str] = frozenset(
    {"pages", "screens", "tracks", "identifies", "users", "groups", "aliases", "accounts"}
)

#: Stream kinds this project bills as meters.
PAGE, SCREEN, TRACK = "page", "screen", "track"


def is_standard_column(name: str) -> bool:
    """True for Segment's own columns (including every flattened ``context_*`` column)."""
    lowered = name.lower()
    return lowered in STANDARD_COLUMNS or lowered.startswith("context_")


def property_columns(columns: Iterable[str], *, exclude: Iterable[str] = ()) -> list[str]:
    """The columns that carry call properties (or traits), in the order given.

    :param columns: warehouse column names, any case.
    :param exclude: lower-case names to leave out as well (``value`` on track tables).
    """
    excluded = {e.lower() for e in exclude}
    return [c for c in columns if not is_standard_column(c) and c.lower() not in excluded]


def find_column(columns: Iterable[str], wanted: str) -> str | None:
    """The actual spelling of ``wanted`` among ``columns`` (case-insensitive), or None."""
    wanted = wanted.lower()
    for column in columns:
        if column.lower() == wanted:
            return column
    return None
