"""Fault injection: what can go wrong between the sync and Amberflo, on demand and reproducibly.

The sync's retry, timeout and resume logic is only trustworthy if it has been seen to survive each
failure Amberflo's clients must handle (``shared/spec/amberflo-api.md``: retry 429 and 5xx, honour
``Retry-After``, survive network errors). :class:`FaultConfig` says how often each one happens;
:class:`FaultInjector` decides, per request, which one (if any) this request gets. Decisions come from
a seeded :class:`random.Random` under a lock so that a failing test can be replayed exactly.
"""

from __future__ import annotations

import dataclasses
import math
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

#: Fault kinds, in the order a request is checked for them; stats count each as ``fault_<kind>``.
#: ``short_ingest`` is decided apart (:meth:`FaultInjector.short_ingest_by`), once a batch is valid.
FAULT_KINDS = ("wrong_key", "outage", "429", "500", "502", "503", "drop", "slow", "short_ingest")

# Kinds decided by one uniform draw, with the FaultConfig field holding each one's rate. One draw (not
# one per kind) keeps them mutually exclusive, so ``rate_429=0.2, rate_503=0.1`` means exactly that.
_DRAWN_KINDS = (
    ("429", "rate_429"),
    ("500", "rate_500"),
    ("502", "rate_502"),
    ("503", "rate_503"),
    ("drop", "rate_drop"),
    ("slow", "rate_slow"),
)
# The HTTP status each response-replacing kind answers with.
_STATUS = {"wrong_key": 401, "outage": 503, "429": 429, "500": 500, "502": 502, "503": 503}


@dataclass(frozen=True)
class FaultConfig:
    """How often each fault happens. All defaults mean "no faults".

    :param rate_429: fraction of API requests answered 429 Too Many Requests.
    :param rate_500: fraction answered 500.
    :param rate_502: fraction answered 502.
    :param rate_503: fraction answered 503.
    :param retry_after: ``Retry-After`` header of 429s: seconds (0 allowed), or a string sent verbatim
        (``"-1"``, ``"soon"``, an HTTP date in the past: the malformed values a client must survive
        without a tight loop); ``None`` sends no header, to exercise the client's own back-off.
    :param latency_ms: delay added before every API request is handled.
    :param rate_slow: fraction of requests that are processed and stored normally but answered only
        after ``slow_ms`` — to outlast the client's read timeout and make it resend a stored batch.
    :param slow_ms: the delay of a slow response.
    :param rate_drop: fraction of requests whose connection is closed without any response. The body
        is read but not processed: nothing is stored.
    :param outage_seconds: for this long after the faults are set, every API request gets 503.
    :param wrong_key_seconds: for this long after the faults are set, every API request gets 401 (a
        rotated key); checked before the outage.
    :param throttle_seconds: for this long after the faults are set, every API request gets 429 with
        ``retry_after`` (a rate-limit period); checked after the outage, counted as ``fault_429``.
    :param short_ingest_by: ingestion stores all but the last this-many records of a batch and answers
        ``N records were ingested`` with the smaller count (an answer short of the batch).
    :param short_ingest_requests: only the first this-many ingestion requests after the faults are set
        are answered short; ``None`` = every one.
    :param refuse_customers: customer ids whose meter records are answered 400 ("customer ... does
        not exist"), like an Amberflo account that refuses meters of unknown customers; the whole
        request is refused, so a client must isolate the record to send the rest.
    :param refuse_customer_writes: customer ids whose ``POST``/``PUT /customers`` is answered 400 (a
        customer Amberflo refuses, e.g. a rule of the account).
    :param rate_lose: fraction of accepted meter records silently *not* stored (the request is
        answered 200 as usual): usage drift of the "missing" kind, for reconciliation tests.
    :param rate_double: fraction of accepted meter records stored a second time with different
        bytes (a copy with the extra dimension ``emulator_copy: "true"``): a double bill, the
        "excess" kind of drift. Per-record draws for both come from their own seeded sequence, and
        the affected records are listed by ``GET /__emulator/drift``.
    :param seed: seed of the random draws, so that a run can be replayed.

    The six rates are fractions of the same draw and must add up to at most 1.
    """

    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_502: float = 0.0
    rate_503: float = 0.0
    retry_after: int | str | None = None
    latency_ms: float = 0.0
    rate_slow: float = 0.0
    slow_ms: float = 0.0
    rate_drop: float = 0.0
    outage_seconds: float = 0.0
    wrong_key_seconds: float = 0.0
    throttle_seconds: float = 0.0
    short_ingest_by: int = 0
    short_ingest_requests: int | None = None
    refuse_customers: tuple[str, ...] = ()
    refuse_customer_writes: tuple[str, ...] = ()
    rate_lose: float = 0.0
    rate_double: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        total = 0.0
        for _, field in _DRAWN_KINDS:
            rate = getattr(self, field)
            _require_number(field, rate)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{field} must be between 0 and 1, got {rate}")
            total += rate
        if total > 1.0 + 1e-9:
            raise ValueError(f"the fault rates add up to {total:g}, more than 1")
        for field in ("rate_lose", "rate_double"):
            rate = getattr(self, field)
            _require_number(field, rate)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{field} must be between 0 and 1, got {rate}")
        if self.rate_lose + self.rate_double > 1.0 + 1e-9:
            raise ValueError("rate_lose and rate_double add up to more than 1")
        for field in ("latency_ms", "slow_ms", "outage_seconds", "wrong_key_seconds", "throttle_seconds"):
            value = getattr(self, field)
            _require_number(field, value)
            if value < 0:
                raise ValueError(f"{field} must not be negative, got {value}")
        if isinstance(self.retry_after, str):
            if not self.retry_after.isprintable() or len(self.retry_after) > 200:
                raise ValueError("a retry_after string must be printable and at most 200 characters")
        elif self.retry_after is not None and (
            not isinstance(self.retry_after, int)
            or isinstance(self.retry_after, bool)
            or self.retry_after < 0
        ):
            raise ValueError("retry_after must be a non-negative integer number of seconds, a string or None")
        for field in ("short_ingest_by", "short_ingest_requests"):
            value = getattr(self, field)
            if value is None and field == "short_ingest_requests":
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{field} must be a non-negative integer")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError("seed must be an integer")

    @property
    def active(self) -> bool:
        """Whether this configuration injects anything at all."""
        return self != FaultConfig(seed=self.seed)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as a JSON-ready dict (``GET /__emulator/faults``)."""
        data = dataclasses.asdict(self)
        data["refuse_customers"] = list(self.refuse_customers)  # JSON has lists, not tuples
        data["refuse_customer_writes"] = list(self.refuse_customer_writes)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FaultConfig:
        """Build from a JSON object; missing fields take their defaults, unknown ones are refused.

        :raises ValueError: for an unknown field or an invalid value.
        """
        if not isinstance(data, Mapping):
            raise ValueError("the fault configuration must be a JSON object")
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fault setting(s): {', '.join(unknown)}")
        data = dict(data)
        for field in ("refuse_customers", "refuse_customer_writes"):
            if field in data:
                data[field] = tuple(data[field] or ())
        return cls(**data)


def _require_number(field: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{field} must be a finite number")


@dataclass(frozen=True)
class FaultDecision:
    """What to do to one API request.

    :param kind: the injected fault (one of :data:`FAULT_KINDS`) or ``None``.
    :param status: HTTP status replacing the normal answer, or ``None`` to process the request.
    :param drop: close the connection without answering (nothing processed).
    :param delay_after_s: seconds to wait after processing, before answering (a slow response).
    :param retry_after: value of the ``Retry-After`` header to send, or ``None``.
    """

    kind: str | None = None
    status: int | None = None
    drop: bool = False
    delay_after_s: float = 0.0
    retry_after: int | str | None = None


_NO_FAULT = FaultDecision()


class FaultInjector:
    """Holds the current :class:`FaultConfig` and decides each request's fate, thread-safely.

    :param config: initial configuration; ``None`` means no faults.
    :param clock: monotonic clock in seconds, injectable so that time windows can be tested.
    """

    def __init__(
        self, config: FaultConfig | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.configure(config or FaultConfig())

    def configure(self, config: FaultConfig) -> None:
        """Replace the configuration; time windows and the random sequence restart now."""
        with self._lock:
            self._config = config
            self._active = config.active
            self._random = random.Random(config.seed)
            self._drift_random = random.Random(f"drift-{config.seed}")
            self._since = self._clock()
            self._short_answers = 0

    @property
    def config(self) -> FaultConfig:
        """The configuration in force."""
        return self._config

    @property
    def latency_s(self) -> float:
        """Delay to add before handling any API request."""
        return self._config.latency_ms / 1000.0

    def record_drift(self, count: int) -> tuple[list[int], list[int]] | None:
        """Which of ``count`` accepted records to lose and which to store twice (indexes), or
        ``None`` when no drift fault is configured (the usual case: no draw at all)."""
        config = self._config
        if not (config.rate_lose or config.rate_double):
            return None
        with self._lock:
            draws = [self._drift_random.random() for _ in range(count)]
        lose = [i for i, draw in enumerate(draws) if draw < config.rate_lose]
        double = [i for i, draw in enumerate(draws)
                  if config.rate_lose <= draw < config.rate_lose + config.rate_double]
        return lose, double

    def decide(self) -> FaultDecision:
        """Pick the fault (or none) for one API request."""
        with self._lock:
            config = self._config
            if not self._active:
                return _NO_FAULT
            elapsed = self._clock() - self._since
            if elapsed < config.wrong_key_seconds:
                return FaultDecision(kind="wrong_key", status=_STATUS["wrong_key"])
            if elapsed < config.outage_seconds:
                return FaultDecision(kind="outage", status=_STATUS["outage"])
            if elapsed < config.throttle_seconds:
                return FaultDecision(kind="429", status=_STATUS["429"], retry_after=config.retry_after)
            draw = self._random.random()
        threshold = 0.0
        for kind, field in _DRAWN_KINDS:
            rate = getattr(config, field)
            threshold += rate
            if rate and draw < threshold:
                if kind == "drop":
                    return FaultDecision(kind=kind, drop=True)
                if kind == "slow":
                    return FaultDecision(kind=kind, delay_after_s=config.slow_ms / 1000.0)
                return FaultDecision(
                    kind=kind,
                    status=_STATUS[kind],
                    retry_after=config.retry_after if kind == "429" else None,
                )
        return _NO_FAULT

    def short_ingest_by(self) -> int:
        """How many records short of its batch this ingestion request's answer is (0 = a true count);
        counts the request against ``short_ingest_requests``."""
        with self._lock:
            config = self._config
            if not config.short_ingest_by:
                return 0
            limit = config.short_ingest_requests
            if limit is not None and self._short_answers >= limit:
                return 0
            self._short_answers += 1
            return config.short_ingest_by
