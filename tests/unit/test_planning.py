"""Fan-out and backfill planning rules (pure parts)."""

from __future__ import annotations

import datetime as dt

import pytest

from amberflo_sync.planning import (
    INCREMENTAL,
    BackfillRefused,
    Slice,
    check_backfill_interval,
    split_range,
    work_units,
)
from amberflo_sync.reader import EventStream, Window

T0 = dt.datetime(2026, 11, 20, tzinfo=dt.timezone.utc)
STREAM = EventStream("prod", "api_calls", "track")


def slices(n: int, stream: EventStream = STREAM) -> list[Slice]:
    bounds = split_range(T0, T0 + dt.timedelta(hours=n), n)
    return [Slice(stream, INCREMENTAL, Window("uuid_ts", lo, hi, include_null=i == 0), i, n)
            for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:]))]


def test_split_range_covers_the_window_in_equal_steps():
    bounds = split_range(T0, T0 + dt.timedelta(hours=3), 3)
    assert bounds == [T0 + dt.timedelta(hours=h) for h in range(4)]
    assert split_range(0, 10, 3) == [0, 3, 6, 10]


def test_slices_survive_the_trip_through_xcom():
    for part in slices(3):
        again = Slice.from_dict(part.to_dict())
        assert again == part and again.key == part.key
        bound = part.bound_to("p1")
        assert Slice.from_dict(bound.to_dict()).plan_id == "p1"


def test_work_units_stay_under_max_map_length():
    units = work_units(slices(10), max_map_length=4)
    assert len(units) <= 4 and sum(len(u) for u in units) == 10


def test_backfills_older_than_60_days_are_refused_unless_allowed():
    now = T0
    check_backfill_interval(now - dt.timedelta(days=10), now - dt.timedelta(days=9), now=now)
    with pytest.raises(BackfillRefused, match="more than 60 days ago"):
        check_backfill_interval(now - dt.timedelta(days=61), now - dt.timedelta(days=60), now=now)
    check_backfill_interval(now - dt.timedelta(days=61), now - dt.timedelta(days=60), now=now, allow_older=True)
    with pytest.raises(BackfillRefused, match="empty"):
        check_backfill_interval(now, now, now=now)
