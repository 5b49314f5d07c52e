"""Isolate the records Amberflo refuses instead of failing the whole window — unless the refusal is
systemic.

Amberflo answers 400 for a batch that holds one invalid record (``shared/spec/amberflo-api.md``:
whether a bad value rejects the whole batch or only the record is unknown). :class:`IsolatingSender`
finds the refused records, keeps them with Amberflo's message as rejected rows (reason
:data:`REFUSED_BY_AMBERFLO`), and sends everything else. Records already accepted are re-sent as
identical bytes and de-duplicated there.

Finding them costs requests, sent one after another. Plain bisection costs about ``2·k·log2(n/k)``
sends for ``k`` refused records among ``n`` — fine for a few bad rows, but about two sends per row
when *every* record is refused for one reason (all of them for a customer Amberflo does not know
yet): thousands of sequential requests, a run that ends ``success`` with the whole window "rejected",
and rows that quietly run out of retries. So a refused batch is first *probed*: about
``log2(n) + 1`` records spread evenly over it are sent alone. When every probe is refused for the
same reason, the refusal is systemic: :class:`~amberflo_sync.client.AmberfloSystemicRefusal` fails
the run at once with Amberflo's message (cost: ``1 + log2(n) + 1`` sends). Otherwise the refused
probes are recorded and the gaps between the probes are bisected as before. A second bound catches
a systemic refusal that only part of the batch has (one customer's block of records among good ones):
once more than ``max_refused_per_reason`` records of one batch are refused for one reason, that is
raised too, so isolating never costs more than about ``probes + 2·max_refused_per_reason·log2(n)``
sends. Reasons are compared with their numbers masked (Amberflo's message names the record's index).

The sends spent isolating are counted (:attr:`IsolatingSender.isolation_requests`) and logged, for
the run summary.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from amberflo_sync.client import AmberfloAuthError, AmberfloRejectedError, AmberfloSystemicRefusal

log = logging.getLogger(__name__)

#: Rejected-row reason for a meter record Amberflo refused (it can go away: retried on later runs).
REFUSED_BY_AMBERFLO = "amberflo_rejected"
#: Reasons that may go away on their own (Amberflo's answer, a customer not there yet): rejected rows
#: with these are tried again on later runs, up to ``rejected_max_attempts``.
RETRYABLE_REASONS = frozenset({REFUSED_BY_AMBERFLO, "amberflo_rejected_customer"})
#: Statuses that say "this payload", not "this key" or "this endpoint": worth splitting.
SPLITTABLE_STATUSES = frozenset({400, 413, 422})
#: Default of ``max_refused_per_reason``: this many records of one batch refused for one reason are
#: not bad rows but a systemic problem (a missing customer, a meter that does not exist).
DEFAULT_MAX_REFUSED_PER_REASON = 100

_NUMBERS = re.compile(r"\d+")


def refusal_reason(exc: AmberfloRejectedError) -> str:
    """What a refusal says, without the numbers that differ from record to record (its index)."""
    return f"{exc.status}:{_NUMBERS.sub('#', exc.detail)}"


def probe_positions(n: int) -> list[int]:
    """Indices of the records probed alone in a refused batch of ``n``: ``ceil(log2 n) + 1`` of them
    (all of them when ``n`` is that small), evenly spread and including the first and the last."""
    if n <= 0:
        return []
    count = min(n, max(2, math.ceil(math.log2(n)) + 1)) if n > 1 else 1
    if count == 1:
        return [0]
    return sorted({round(i * (n - 1) / (count - 1)) for i in range(count)})


class IsolatingSender:
    """A sender (``records → accepted count``) that isolates refused records, or fails fast when the
    refusal is systemic (see the module docstring).

    :param send: the underlying sender, e.g. ``AmberfloClient.ingest_records``.
    :param max_refused_per_reason: more records of one batch refused for one reason than this raise
        :class:`~amberflo_sync.client.AmberfloSystemicRefusal`.
    :ivar isolation_requests: sends made to isolate refused records (probes and bisection; each one
        HTTP request when it holds at most ``batch_size`` records), over this sender's life.
    :ivar isolated_batches: refused batches isolated (or found systemic) over this sender's life.
    """

    def __init__(self, send: Callable[[Sequence[str]], int], *,
                 max_refused_per_reason: int = DEFAULT_MAX_REFUSED_PER_REASON) -> None:
        if max_refused_per_reason < 1:
            raise ValueError("max_refused_per_reason must be at least 1")
        self._send = send
        self.max_refused_per_reason = max_refused_per_reason
        self._lock = threading.Lock()
        self._refused: list[dict[str, Any]] = []
        self.isolation_requests = 0
        self.isolated_batches = 0

    def __call__(self, records: Sequence[str], *, fail_fast: bool = True) -> int:
        """Send ``records``; isolate what Amberflo refuses.

        :param fail_fast: raise :class:`~amberflo_sync.client.AmberfloSystemicRefusal` for a systemic
            refusal (the window's rows). ``False`` isolates every refused record whatever the cost:
            for retries of rows Amberflo already refused, which are expected to be refused together
            (one missing customer) and must stay rejected rows rather than fail the window's run.
        """
        if not len(records):
            return 0
        try:
            return self._send(records)
        except AmberfloRejectedError as exc:
            if not _splittable(exc):
                raise
            return _Isolation(self, records, exc, fail_fast=fail_fast).run()

    def drain_rejected(self) -> list[dict[str, Any]]:
        """The refused records since the last call, as rejected rows (``id``, ``reason``, ``row``)."""
        with self._lock:
            refused, self._refused = self._refused, []
        return refused

    def _keep(self, rows: list[dict[str, Any]], requests: int) -> None:
        with self._lock:
            self._refused.extend(rows)
            self.isolation_requests += requests
            self.isolated_batches += 1

    def _count_failed(self, requests: int) -> None:
        with self._lock:
            self.isolation_requests += requests
            self.isolated_batches += 1


def _splittable(exc: AmberfloRejectedError) -> bool:
    return not isinstance(exc, AmberfloAuthError) and exc.status in SPLITTABLE_STATUSES


class _Isolation:
    """The isolation of one refused batch: its refused rows, cost and per-reason counts stay local
    until it ends, so a systemic refusal leaves nothing behind as rejected."""

    def __init__(self, owner: IsolatingSender, records: Sequence[str], first: AmberfloRejectedError, *,
                 fail_fast: bool = True) -> None:
        self.owner = owner
        self.fail_fast = fail_fast
        self.records = records
        self.first = first
        self.requests = 0
        self.rows: list[dict[str, Any]] = []
        self.by_reason: Counter[str] = Counter()
        self.first_of_reason: dict[str, AmberfloRejectedError] = {}

    def run(self) -> int:
        n = len(self.records)
        try:
            accepted = self._isolate()
        except AmberfloSystemicRefusal as exc:
            self.owner._count_failed(self.requests)
            log.error("Amberflo refused a batch of %d records systemically after %d isolating sends: %s",
                      n, self.requests, exc.detail)
            raise
        self.owner._keep(self.rows, self.requests)
        log.warning("isolated %d record(s) Amberflo refused in a batch of %d with %d sends (%s)",
                    len(self.rows), n, self.requests,
                    "; ".join(f"{count}× {reason[:120]}" for reason, count in self.by_reason.most_common(3)))
        return accepted

    def _isolate(self) -> int:
        records, n = self.records, len(self.records)
        if n == 1:
            self._refuse(0, self.first)
            return 0
        positions = probe_positions(n)
        accepted = 0
        refused: list[tuple[int, AmberfloRejectedError]] = []
        for index in positions:
            outcome = self._try(records[index : index + 1])
            if isinstance(outcome, AmberfloRejectedError):
                refused.append((index, outcome))
            else:
                accepted += outcome
        reasons = {refusal_reason(exc) for _, exc in refused}
        if self.fail_fast and len(refused) == len(positions) and len(reasons) == 1:
            self._systemic(refused[0][1], len(refused), "every record probed alone was refused for it")
        for index, exc in refused:
            self._refuse(index, exc)
        bounds = [-1, *positions, n]
        for before, after in zip(bounds, bounds[1:]):
            if after - before > 1:
                accepted += self._bisect(before + 1, after)
        return accepted

    def _bisect(self, start: int, stop: int) -> int:
        outcome = self._try(self.records[start:stop])
        if not isinstance(outcome, AmberfloRejectedError):
            return outcome
        if stop - start == 1:
            self._refuse(start, outcome)
            return 0
        middle = (start + stop) // 2
        return self._bisect(start, middle) + self._bisect(middle, stop)

    def _try(self, records: Sequence[str]) -> int | AmberfloRejectedError:
        self.requests += 1
        try:
            return self.owner._send(records)
        except AmberfloRejectedError as exc:
            if not _splittable(exc):
                raise
            return exc

    def _refuse(self, index: int, exc: AmberfloRejectedError) -> None:
        reason = refusal_reason(exc)
        self.first_of_reason.setdefault(reason, exc)
        self.by_reason[reason] += 1
        if self.fail_fast and self.by_reason[reason] > self.owner.max_refused_per_reason:
            self._systemic(self.first_of_reason[reason], self.by_reason[reason],
                           f"more than {self.owner.max_refused_per_reason} records were refused for it")
        record = self.records[index]
        try:
            parsed = orjson.loads(record)
        except orjson.JSONDecodeError:
            parsed = {"raw": record}
        self.rows.append({"id": parsed.get("uniqueId"), "reason": REFUSED_BY_AMBERFLO,
                          "row": {"record": parsed, "status": exc.status, "error": exc.detail}})

    def _systemic(self, exc: AmberfloRejectedError, refused: int, why: str) -> None:
        n = len(self.records)
        raise AmberfloSystemicRefusal(
            f"Amberflo refused a batch of {n} records for one reason ({why}; {refused} refused, "
            f"{self.requests} isolating sends): HTTP {exc.status}: {exc.detail}. Not isolating it row by "
            "row: fix the cause (e.g. create the customer) and the next run sends the window again",
            status=exc.status, detail=exc.detail, reason=refusal_reason(exc), records=n, refused=refused,
            isolation_requests=self.requests,
        )
