"""Vectorized building blocks: seeded random streams, string columns, ids and Segment's clock.

Every function draws whole columns at once with numpy and builds Arrow arrays from buffers (no Python
loop per row), so the generator scales to millions of rows.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

MS = 1_000  # microseconds
SECOND = 1_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR

_HEX_LOWER = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_HEX_UPPER = np.frombuffer(b"0123456789ABCDEF", dtype=np.uint8)


def stream(seed: int, *labels: str | int) -> np.random.Generator:
    """An independent random stream for ``labels`` (e.g. ``("prod", "pages")``).

    Keyed streams keep tables independent: adding a table or a column to one table does not change
    the values of any other.
    """
    key = [int(seed) & 0xFFFFFFFF]
    for label in labels:
        key.append(label & 0xFFFFFFFF if isinstance(label, int) else zlib.crc32(str(label).encode()))
    return np.random.default_rng(key)


def _weights(weights: Sequence[float] | None, size: int) -> np.ndarray | None:
    if weights is None:
        return None
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (size,):
        raise ValueError(f"{size} values but {w.shape[0]} weights")
    return w / w.sum()


def pick(rng: np.random.Generator, size: int, n: int, weights: Sequence[float] | None = None) -> np.ndarray:
    """``n`` indices into a pool of ``size`` values, uniform or by ``weights``."""
    if weights is None:
        return rng.integers(0, size, n)
    return rng.choice(size, n, p=_weights(weights, size))


def take(pool: Sequence[str | None] | pa.Array, idx: np.ndarray, null_mask: np.ndarray | None = None) -> pa.Array:
    """``pool[idx]`` as an Arrow string array; ``None`` entries and ``null_mask`` rows are null."""
    values = pool if isinstance(pool, pa.Array) else pa.array(list(pool), pa.large_string())
    indices = pa.array(np.asarray(idx, dtype=np.int64), mask=null_mask)
    return values.take(indices)


def choice(rng: np.random.Generator, pool: Sequence[str | None], n: int,
           weights: Sequence[float] | None = None, null_rate: float = 0.0) -> pa.Array:
    """``n`` values drawn from ``pool`` (by ``weights``), with an extra share ``null_rate`` of nulls."""
    idx = pick(rng, len(pool), n, weights)
    return take(pool, idx, rng.random(n) < null_rate if null_rate else None)


def null_out(rng: np.random.Generator, values: np.ndarray | pa.Array, rate: float) -> pa.Array:
    """``values`` as Arrow with a random share ``rate`` of nulls."""
    mask = rng.random(len(values)) < rate
    if isinstance(values, pa.Array):
        return pc.if_else(pa.array(mask), pa.nulls(len(values), values.type), values)
    return pa.array(values, mask=mask)


def ascii_strings(chars: np.ndarray) -> pa.Array:
    """An ``(n, w)`` matrix of ASCII codes as ``n`` Arrow strings of width ``w`` (zero-copy build)."""
    n, width = chars.shape
    data = pa.py_buffer(np.ascontiguousarray(chars, dtype=np.uint8).tobytes())
    offsets = pa.py_buffer(np.arange(n + 1, dtype=np.int64) * width)
    return pa.LargeStringArray.from_buffers(n, offsets, data)


def hex_chars(rng: np.random.Generator, n: int, digits: int, *, upper: bool = False) -> np.ndarray:
    """An ``(n, digits)`` matrix of random hex digit codes."""
    table = _HEX_UPPER if upper else _HEX_LOWER
    return table[rng.integers(0, 16, (n, digits), dtype=np.uint8)]


def _with_prefix(prefix: str, chars: np.ndarray) -> np.ndarray:
    if not prefix:
        return chars
    head = np.broadcast_to(np.frombuffer(prefix.encode("ascii"), dtype=np.uint8), (chars.shape[0], len(prefix)))
    return np.concatenate([head, chars], axis=1)


def hex_ids(rng: np.random.Generator, n: int, digits: int = 32, *, prefix: str = "", upper: bool = False) -> pa.Array:
    """``n`` random ids ``<prefix><digits hex>`` (e.g. analytics.js ``ajs-next-…`` message ids)."""
    return ascii_strings(_with_prefix(prefix, hex_chars(rng, n, digits, upper=upper)))


def uuid4s(rng: np.random.Generator, n: int, *, prefix: str = "", upper: bool = False) -> pa.Array:
    """``n`` random version-4 UUID strings (``8-4-4-4-12``), optionally prefixed."""
    digits = hex_chars(rng, n, 32, upper=upper)
    digits[:, 12] = ord("4")
    digits[:, 16] = (_HEX_UPPER if upper else _HEX_LOWER)[8 + rng.integers(0, 4, n)]
    dash = np.full((n, 1), ord("-"), dtype=np.uint8)
    chars = np.concatenate(
        [digits[:, :8], dash, digits[:, 8:12], dash, digits[:, 12:16], dash, digits[:, 16:20], dash, digits[:, 20:]],
        axis=1,
    )
    return ascii_strings(_with_prefix(prefix, chars))


def join(*parts: pa.Array | str, sep: str = "") -> pa.Array:
    """Element-wise concatenation of string arrays and literals (null if any array part is null)."""
    arrays = [p if isinstance(p, (pa.Array, pa.ChunkedArray)) else pa.scalar(p, pa.large_string()) for p in parts]
    return pc.binary_join_element_wise(*arrays, pa.scalar(sep, pa.large_string()))


def numbers(values: np.ndarray, width: int = 0) -> pa.Array:
    """Integers as strings, zero-padded to ``width``."""
    text = pa.array(np.asarray(values, dtype=np.int64)).cast(pa.large_string())
    return pc.utf8_lpad(text, width=width, padding="0") if width else text


def timestamps(us: np.ndarray, null_mask: np.ndarray | None = None) -> pa.Array:
    """Epoch microseconds as a UTC Arrow timestamp array."""
    return pa.array(np.asarray(us, dtype=np.int64), pa.int64(), mask=null_mask).cast(pa.timestamp("us", tz="UTC"))


# --- Segment's clock ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadSchedule:
    """When the warehouse was loaded: Segment loads in batches and stamps ``uuid_ts`` at load time.

    :param now_us: the generator's "now" (epoch µs); no ``uuid_ts`` is later.
    :param loads_us: load times, most recent first. Rows received in
        ``[loads_us[k+1] - cutoff, loads_us[k] - cutoff)`` are loaded by load ``k``.
    :param weights: relative traffic of each load window (daily rhythm), one per window.
    :param row_jitter_us: spread of ``uuid_ts`` within one load.
    """

    now_us: int
    loads_us: np.ndarray
    weights: np.ndarray
    row_jitter_us: int
    cutoff_us: int = MINUTE

    @property
    def windows(self) -> int:
        return len(self.loads_us) - 1

    @classmethod
    def hourly(cls, seed: int, now_us: int, hours: int = 48) -> LoadSchedule:
        """Hourly loads over the last ``hours``, each a few minutes before the hour mark."""
        rng = stream(seed, "load-schedule")
        offsets = np.arange(hours + 1, dtype=np.int64) * HOUR
        jitter = rng.integers(3 * MINUTE, 15 * MINUTE, hours + 1)
        loads = now_us - offsets - jitter
        mid = (loads[:-1] + loads[1:]) // 2
        hour_of_day = (mid // HOUR) % 24
        # more traffic during the US/EU working day (peak around 15:00 UTC)
        weights = 0.35 + 0.65 * (1 + np.cos(2 * np.pi * (hour_of_day - 15) / 24)) / 2
        return cls(now_us=now_us, loads_us=loads, weights=weights / weights.sum(), row_jitter_us=90 * SECOND)

    @classmethod
    def single(cls, now_us: int, window_us: int = HOUR) -> LoadSchedule:
        """One load at exactly ``now`` of the rows received during the preceding ``window_us``."""
        return cls(
            now_us=now_us,
            loads_us=np.array([now_us, now_us - window_us], dtype=np.int64),
            weights=np.array([1.0]),
            row_jitter_us=0,
        )


@dataclass(frozen=True)
class CallTimes:
    """Segment's timestamps of ``n`` calls (epoch µs, ms precision except ``uuid_ts``).

    ``timestamp = received_at - (sent_at - original_timestamp)``, as Segment computes it;
    ``original_timestamp`` and ``sent_at`` carry the device's clock skew.
    """

    received_at: np.ndarray
    sent_at: np.ndarray
    timestamp: np.ndarray
    original_timestamp: np.ndarray
    uuid_ts: np.ndarray
    load: np.ndarray
    timestamp_null: np.ndarray
    late: np.ndarray

    def __len__(self) -> int:
        return len(self.received_at)

    def take(self, idx: np.ndarray) -> CallTimes:
        """The times of the calls at ``idx``, in that order."""
        return CallTimes(**{f: getattr(self, f)[idx] for f in self.__dataclass_fields__})


@dataclass(frozen=True)
class Quirks:
    """Shares of rows with Segment's rarer behaviours.

    :param late: rows received days ago but loaded recently (retried or replayed loads).
    :param null_timestamp: rows whose ``timestamp`` is null (``received_at`` is set).
    :param duplicate: extra rows repeating an ``id`` (same content, later ``received_at``/``uuid_ts``).
    :param late_loads: how many of the most recent loads carry the late rows.
    """

    late: float = 0.01
    null_timestamp: float = 0.002
    duplicate: float = 0.005
    late_loads: int = 6


#: No late, null-timestamp or duplicate rows (small side tables such as ``groups``).
NO_QUIRKS = Quirks(late=0.0, null_timestamp=0.0, duplicate=0.0)


def sample_call_times(rng: np.random.Generator, n: int, schedule: LoadSchedule, quirks: Quirks,
                      *, skewed_clocks: bool = True, offline_rate: float = 0.0) -> CallTimes:
    """Times of ``n`` calls spread over the schedule's windows, ``uuid_ts`` at their load.

    :param skewed_clocks: client devices whose clocks are off (seconds, sometimes hours).
    :param offline_rate: share of calls queued offline on the device for minutes to hours.
    """
    loads = schedule.loads_us
    k = rng.choice(schedule.windows, n, p=schedule.weights) if schedule.windows > 1 else np.zeros(n, np.int64)
    lo = loads[k + 1] - schedule.cutoff_us
    hi = loads[k] - schedule.cutoff_us
    received = lo + (rng.random(n) * (hi - lo)).astype(np.int64)

    late = rng.random(n) < quirks.late
    n_late = int(late.sum())
    received[late] = schedule.now_us - rng.integers(2 * DAY, 9 * DAY, n_late)
    k[late] = rng.integers(0, max(1, min(quirks.late_loads, schedule.windows)), n_late)
    received = received // MS * MS

    uuid_ts = loads[k] + rng.integers(0, schedule.row_jitter_us + 1, n)
    network = rng.integers(20, 400, n) * MS
    queued = np.minimum(rng.exponential(1.5, n), 30.0) * SECOND
    if offline_rate:
        offline = rng.random(n) < offline_rate
        queued[offline] = rng.integers(10 * MINUTE, 6 * HOUR, int(offline.sum()))
    queued = queued.astype(np.int64) // MS * MS
    skew = np.zeros(n, dtype=np.int64)
    if skewed_clocks:
        u = rng.random(n)
        small, large = u < 0.15, u > 0.95
        skew[small] = (rng.normal(0, 1.5, int(small.sum())) * SECOND).astype(np.int64) // MS * MS
        skew[large] = rng.integers(-3 * HOUR, 3 * HOUR, int(large.sum())) // MS * MS
    sent_true = received - network
    original = sent_true - queued + skew
    sent = sent_true + skew
    timestamp = received - (sent - original)
    return CallTimes(
        received_at=received,
        sent_at=sent,
        timestamp=timestamp,
        original_timestamp=original,
        uuid_ts=uuid_ts,
        load=k,
        timestamp_null=rng.random(n) < quirks.null_timestamp,
        late=late,
    )


@dataclass(frozen=True)
class Duplicates:
    """Rows to repeat: ``source`` row indices and the repeats' own ``received_at`` / ``uuid_ts``."""

    source: np.ndarray
    received_at: np.ndarray
    uuid_ts: np.ndarray


def sample_duplicates(rng: np.random.Generator, times: CallTimes, schedule: LoadSchedule, rate: float) -> Duplicates:
    """Pick ~``rate`` of the calls to appear twice: the same message delivered again a few seconds
    later (a client retry) and loaded by the same load or the next one."""
    n = len(times)
    source = np.flatnonzero(rng.random(n) < rate)
    k = times.load[source]
    later_load = np.maximum(k - rng.integers(0, 2, len(source)), 0)
    received = times.received_at[source] + rng.integers(200, 50_000, len(source)) * MS
    uuid_ts = schedule.loads_us[later_load] + rng.integers(0, schedule.row_jitter_us + 1, len(source))
    return Duplicates(source=source, received_at=received, uuid_ts=np.maximum(uuid_ts, received))
