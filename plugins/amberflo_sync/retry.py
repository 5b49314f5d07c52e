"""The one retry policy for every Amberflo call (ingestion and customers).

Retries 429, every 5xx, connection errors and timeouts with exponential back-off and jitter, and
honours ``Retry-After`` (seconds or an HTTP date) between a floor and a ceiling, as dlt's
``wait_exponential_retry_after`` clamps it — but the floor is never 0: ``Retry-After: 0``, a negative
or unreadable value, or an HTTP date in the past would otherwise retry at once, in a tight loop
(2,660 requests in 2 s were seen before the floor, issue 11). It keeps trying until
``give_up_after`` seconds have passed since the first failure — Amberflo asks that "a couple of
attempts happen more than 20 s after the first failure", so the default is 60 s. Any other status
fails at once: retrying a 400 cannot make it succeed.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import math
import random
import time
from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before trying a request again.

    :param base_delay: first back-off in seconds; doubles per attempt.
    :param max_delay: cap on one wait (also caps ``Retry-After``).
    :param min_delay: floor on one back-off wait.
    :param retry_after_floor: the least wait after an answer that carried a ``Retry-After`` header,
        whatever its value (0, negative, garbled, a past date). Must be > 0. When ``max_delay`` is
        below it (tests with very short delays), ``max_delay`` wins — still above 0.
    :param give_up_after: stop retrying once this many seconds have passed since the first failure.
    :param max_attempts: optional hard cap on attempts (``None`` = time-bounded only).
    :param jitter: fraction of each back-off that is randomised (0 = none, 1 = full jitter).
    """

    base_delay: float = 1.0
    max_delay: float = 30.0
    min_delay: float = 0.0
    retry_after_floor: float = 0.5
    give_up_after: float = 60.0
    max_attempts: int | None = None
    jitter: float = 0.5
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)

    def __post_init__(self) -> None:
        # a zero wait after a 429 is a tight loop against a rate-limited API: refuse it up front
        if not self.retry_after_floor > 0:
            raise ValueError(f"retry_after_floor must be > 0 seconds, got {self.retry_after_floor!r}")
        if not self.max_delay > 0:
            raise ValueError(f"max_delay must be > 0 seconds, got {self.max_delay!r}")
        if not self.base_delay > 0:
            raise ValueError(f"base_delay must be > 0 seconds, got {self.base_delay!r}")

    @staticmethod
    def is_retryable_status(status: int) -> bool:
        return status == 429 or status >= 500

    def backoff(self, attempt: int, retry_after: str | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based).

        A readable ``Retry-After`` is the wait, clamped to ``[retry_after_floor, max_delay]``; an
        unreadable one (garbage, negative) falls back to the exponential back-off, still floored at
        ``retry_after_floor`` because the server did ask us to wait. ``max_delay`` caps everything.
        """
        honoured = parse_retry_after(retry_after)
        if honoured is not None:
            return min(max(honoured, self.retry_after_floor), self.max_delay)
        delay = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        spread = delay * self.jitter
        delay = delay - spread + (rng or random).random() * spread
        floor = self.min_delay if retry_after is None else max(self.min_delay, self.retry_after_floor)
        return min(max(delay, floor), self.max_delay)

    def may_retry(self, attempt: int, first_failure: float, next_delay: float) -> bool:
        """True when another attempt fits the budget."""
        if self.max_attempts is not None and attempt >= self.max_attempts:
            return False
        return (self.clock() - first_failure) < self.give_up_after


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """``Retry-After`` as seconds to wait: delta-seconds or an HTTP date (a past date is 0); None if
    absent, garbled, negative or not finite (RFC 9110 delta-seconds are non-negative integers; a
    decimal is tolerated)."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    now = now or dt.datetime.now(dt.timezone.utc)
    return max(0.0, (when - now).total_seconds())
