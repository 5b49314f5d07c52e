"""Isolate the records Amberflo refuses instead of failing the whole window.

Amberflo answers 400 for a batch that holds one invalid record (``shared/spec/amberflo-api.md``:
whether a bad value rejects the whole batch or only the record is unknown). :class:`IsolatingSender`
splits a refused batch in halves until the refused records are alone, keeps them with Amberflo's
message as rejected rows (reason :data:`REFUSED_BY_AMBERFLO`), and sends everything else. Halves
that Amberflo had already accepted are re-sent as identical bytes and de-duplicated there.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from amberflo_sync.client import AmberfloAuthError, AmberfloRejectedError

#: Rejected-row reason for a meter record Amberflo refused (it can go away: retried on later runs).
REFUSED_BY_AMBERFLO = "amberflo_rejected"
#: Reasons that may go away on their own (Amberflo's answer, a customer not there yet): rejected rows
#: with these are tried again on later runs, up to ``rejected_max_attempts``.
RETRYABLE_REASONS = frozenset({REFUSED_BY_AMBERFLO, "amberflo_rejected_customer"})
#: Statuses that say "this payload", not "this key" or "this endpoint": worth splitting.
SPLITTABLE_STATUSES = frozenset({400, 413, 422})


class IsolatingSender:
    """A sender (``records → accepted count``) that isolates refused records by bisection.

    :param send: the underlying sender, e.g. ``AmberfloClient.ingest_records``.
    """

    def __init__(self, send: Callable[[Sequence[str]], int]) -> None:
        self._send = send
        self._lock = threading.Lock()
        self._refused: list[dict[str, Any]] = []

    def __call__(self, records: Sequence[str]) -> int:
        if not len(records):
            return 0
        try:
            return self._send(records)
        except AmberfloRejectedError as exc:
            if isinstance(exc, AmberfloAuthError) or exc.status not in SPLITTABLE_STATUSES:
                raise
            if len(records) == 1:
                self._refuse(records[0], exc)
                return 0
            middle = len(records) // 2
            return self(records[:middle]) + self(records[middle:])

    def drain_rejected(self) -> list[dict[str, Any]]:
        """The refused records since the last call, as rejected rows (``id``, ``reason``, ``row``)."""
        with self._lock:
            refused, self._refused = self._refused, []
        return refused

    def _refuse(self, record: str, exc: AmberfloRejectedError) -> None:
        try:
            parsed = orjson.loads(record)
        except orjson.JSONDecodeError:
            parsed = {"raw": record}
        row = {"id": parsed.get("uniqueId"), "reason": REFUSED_BY_AMBERFLO,
               "row": {"record": parsed, "status": exc.status, "error": exc.detail}}
        with self._lock:
            self._refused.append(row)
