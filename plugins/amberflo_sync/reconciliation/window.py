"""Which hours a reconciliation covers, which of them are settled, and which intervals it refuses.

Amberflo's usage figures lag: records older than 24 hours can take up to 24 hours to show, and the
"3-hour delayed" figures are the ones that account for de-duplication. An hour is therefore
*settled* only when it ended ``settle_hours`` ago (default 27 = 24 + 3); younger hours are compared
all the same but reported ``pending``, never as drift. The default interval is the 7 days that end
at the settle cutoff; intervals reaching back more than 60 days are refused (Amberflo's history
horizon: the project never billed such records, and repairing them needs Amberflo support).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

HOUR = dt.timedelta(hours=1)
#: Amberflo accepts (and the project bills) records up to 60 days old.
MAX_AGE = dt.timedelta(days=60)


class ReconciliationRefused(ValueError):
    """An interval the reconciliation will not check (empty, or older than 60 days)."""


@dataclass(frozen=True)
class ReconciliationWindow:
    """Whole UTC hours ``[start, end)`` to reconcile; hours ending after ``settled_before`` are pending.

    :ivar start: first hour (inclusive).
    :ivar end: end of the last hour (exclusive).
    :ivar settled_before: an hour is settled when it ends at or before this moment.
    :ivar now: the moment the window was resolved (for messages and the report).
    """

    start: dt.datetime
    end: dt.datetime
    settled_before: dt.datetime
    now: dt.datetime

    @property
    def start_seconds(self) -> int:
        return int(self.start.timestamp())

    @property
    def end_seconds(self) -> int:
        return int(self.end.timestamp())

    @property
    def settled_seconds(self) -> int:
        return int(self.settled_before.timestamp())

    @property
    def hours(self) -> int:
        return int((self.end - self.start) / HOUR)

    def describe(self) -> str:
        return f"[{self.start.isoformat()}, {self.end.isoformat()})"


def floor_hour(moment: dt.datetime) -> dt.datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def ceil_hour(moment: dt.datetime) -> dt.datetime:
    floored = floor_hour(moment)
    return floored if floored == moment else floored + HOUR


def utc(value: dt.datetime | str) -> dt.datetime:
    """An aware UTC datetime from a datetime (naive = UTC) or an ISO-8601 string (``Z`` allowed)."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)


def resolve_window(
    *,
    start: dt.datetime | str | None = None,
    end: dt.datetime | str | None = None,
    settle_hours: float = 27.0,
    days: float = 7.0,
    now: dt.datetime | None = None,
) -> ReconciliationWindow:
    """The hours to reconcile: ``[start, end)`` widened to whole hours, or by default the ``days``
    days that end ``settle_hours`` ago.

    :raises ReconciliationRefused: the interval is empty, or starts more than 60 days ago.
    """
    now = utc(now or dt.datetime.now(dt.timezone.utc))
    if settle_hours < 0:
        raise ReconciliationRefused("settle_hours must not be negative")
    settled_before = now - dt.timedelta(hours=settle_hours)
    if (start is None) != (end is None):
        raise ReconciliationRefused("give both start and end (ISO-8601, UTC), or neither for the default interval")
    if start is None or end is None:
        last = floor_hour(settled_before)
        first = last - dt.timedelta(days=days)
    else:
        first, last = floor_hour(utc(start)), ceil_hour(utc(end))
    if last <= first:
        raise ReconciliationRefused(f"the interval [{first.isoformat()}, {last.isoformat()}) is empty")
    horizon = now - MAX_AGE
    if first < horizon:
        raise ReconciliationRefused(
            f"the interval starts {first.isoformat()}, more than 60 days ago ({horizon.date()}): the project never "
            "bills records that old (Amberflo's 60-day horizon), so there is nothing it could prove or repair there"
        )
    return ReconciliationWindow(first, last, settled_before, now)
