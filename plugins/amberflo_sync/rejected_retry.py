"""Try rejected rows again: the ones whose reason can go away, and any an operator replays.

Rows Amberflo refused (``amberflo_rejected``) may be accepted later (a customer that now exists, a
validation Amberflo relaxed). Each incremental run re-reads them from the warehouse by ``id`` — the
same bytes as the first time — and sends them through the isolating sender; accepted ones leave
``rejected_rows``, refused ones count one more attempt, up to ``rejected_max_attempts``. Operators
replay any reason (after fixing the data, or once Amberflo support allowed old events) with
``python -m amberflo_sync.replay``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from amberflo_sync.config import SyncConfig
from amberflo_sync.events_sync import Sender
from amberflo_sync.isolation import RETRYABLE_REASONS, IsolatingSender
from amberflo_sync.reader import EventStream, WarehouseReader
from amberflo_sync.state import StateStore
from amberflo_sync.transform import to_meter_records

log = logging.getLogger(__name__)


@dataclass
class RetryResult:
    """What a retry pass did: rows tried, sent (and resolved), rejected again (any reason)."""

    tried: int = 0
    sent: int = 0
    rejected: int = 0


def retry_rejected(
    stream: EventStream,
    *,
    reader: WarehouseReader,
    state: StateStore,
    send: Sender,
    config: SyncConfig,
    reasons: Iterable[str] = RETRYABLE_REASONS,
    max_attempts: int | None = None,
    min_event_millis: int | None = None,
) -> RetryResult:
    """Send the rejected rows of ``stream`` with one of ``reasons`` again.

    :param max_attempts: skip rows tried this often already (default ``config.rejected_max_attempts``;
        ``0`` = no limit, for operator replays).
    """
    reasons = set(reasons)
    limit = config.rejected_max_attempts if max_attempts is None else max_attempts
    candidates = [
        r for r in state.rejected_rows(stream.key)
        if r["reason"] in reasons and not str(r["row_id"]).startswith("sha1:") and (not limit or r["attempts"] < limit)
    ]
    result = RetryResult()
    if not candidates:
        return result
    ids = [str(r["row_id"]) for r in candidates]
    isolating = send if isinstance(send, IsolatingSender) else IsolatingSender(send)
    seen: set[str] = set()
    for chunk in reader.extract_ids(stream, ids):
        batch = to_meter_records(chunk, kind=stream.kind, table=stream.table, min_event_millis=min_event_millis)
        result.tried += len(chunk)
        result.sent += isolating(batch.rendered, fail_fast=False)  # rows refused before: keep, not fail
        refused = isolating.drain_rejected()
        again = batch.rejected.to_dict("records") + refused
        if again:
            state.record_rejected(stream.key, again)
        result.rejected += len(again)
        seen |= set(chunk[[c for c in chunk.columns if c.lower() == "id"][0]].astype(str))
        # a row now sent, or rejected for another reason, no longer has its old reason
        still = {str(r["id"]) for r in again if r.get("reason") in reasons}
        state.resolve_rejected(stream.key, [i for i in ids if i in seen and i not in still], reasons)
    log.info("%s: retried %d rejected rows: %d sent, %d rejected again", stream.key, result.tried, result.sent,
             result.rejected)
    return result
