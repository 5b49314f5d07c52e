"""A duplicate delivery is billed exactly once, whatever order the warehouse returns its copies in.

The reader ranks the copies of an ``id`` in SQL (``ROW_NUMBER() OVER (PARTITION BY id ORDER BY
uuid_ts, …)``) but a window query does not order its output: the rank-2 copy may come back before the
rank-1 copy in the same chunk. Dropping both would lose the unit without a trace — the run still
"balances" (both rows count as duplicates), so only an id-level check sees it.
"""

from __future__ import annotations

import pandas as pd

from amberflo_sync.segment import PAGE
from amberflo_sync.transform import DUP_RANK_COLUMN, to_meter_records

T = pd.Timestamp("2026-11-27T14:03:50Z")



def chunk(ranks: list[int], ids: list[str]) -> pd.DataFrame:
    """Page rows in the order given, as the reader would hand them over (with the rank column)."""
    return pd.DataFrame({
        "id": ids,
        "user_id": ["u-1"] * len(ids),
        "timestamp": [T] * len(ids),
        "uuid_ts": [T + pd.Timedelta(seconds=r) for r in ranks],
        DUP_RANK_COLUMN: ranks,
    })


def test_first_copy_before_its_duplicate_is_billed_once() -> None:
    batch = to_meter_records(chunk([1, 2, 1], ["m-1", "m-1", "m-2"]), kind=PAGE, table="pages")
    assert sorted(batch.ids) == ["m-1", "m-2"] and batch.duplicates == 1


def test_duplicate_returned_before_its_first_copy_is_still_billed_once() -> None:
    """Fails if a chunk-local "first seen" overrides the window-wide SQL rank."""
    batch = to_meter_records(chunk([2, 1, 1], ["m-1", "m-1", "m-2"]), kind=PAGE, table="pages")
    assert sorted(batch.ids) == ["m-1", "m-2"] and batch.duplicates == 1


def test_copies_in_a_chunk_without_rank_are_still_deduplicated() -> None:
    """Rows without the reader's rank (e.g. a caller outside the reader) fall back to first-seen."""
    rows = chunk([1, 1, 1], ["m-1", "m-1", "m-2"]).drop(columns=[DUP_RANK_COLUMN])
    batch = to_meter_records(rows, kind=PAGE, table="pages")
    assert sorted(batch.ids) == ["m-1", "m-2"] and batch.duplicates == 1
