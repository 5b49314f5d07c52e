"""The one retry policy for every Amberflo call (ingestion and customers).

Retries 429, every 5xx, connection errors and timeouts with exponential back-off and jitter, and
honours ``Retry-After`` (seconds or an HTTP date) within bounds. It keeps trying until
``give_up_after`` seconds have passed since the first failure — Amberflo asks that "a couple of
attempts happen more than 20 s after the first failure", so the default is 60 s. Any other status
fails at once: retrying a 400 cannot make it succeed.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import random
import time
from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before trying a request again.

    :param base_delay: first back-off in seconds; doubles per attempt.
    :param max_delay: cap on one wait (also caps ``Retry-After``).
    :param min_delay: floor on one wait (also floors ``Retry-After``).
    :param give_up_after: stop retrying once this many seconds have passed since the first failure.
    :param max_attempts: optional hard cap on attempts (``None`` = time-bounded only).
    :param jitter: fraction of each back-off that is randomised (0 = none, 1 = full jitter).
    """

    base_delay: float = 1.0
    max_delay: float = 30.0
    min_delay: float = 0.0
    give_up_after: float = 60.0
    max_attempts: int | None = None
    jitter: float = 0.5
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)

    @staticmethod
    def is_retryable_status(status: int) -> bool:
        return status == 429 or status >= 500

    def backoff(self, attempt: int, retry_after: str | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        honoured = parse_retry_after(retry_after)
        if honoured is not None:
            return min(max(honoured, self.min_delay), self.max_delay)
        delay = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        spread = delay * self.jitter
        delay = delay - spread + (rng or random).random() * spread
        return min(max(delay, self.min_delay), self.max_delay)

    def may_retry(self, attempt: int, first_failure: float, next_delay: float) -> bool:
        """True when another attempt fits the budget."""
        if self.max_attempts is not None and attempt >= self.max_attempts:
            return False
        return (self.clock() - first_failure) < self.give_up_after


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """``Retry-After`` as seconds to wait: delta-seconds or an HTTP date; None if absent/garbled."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    now = now or dt.datetime.now(dt.timezone.utc)
    return max(0.0, (when - now).total_seconds())
