"""Events sync: one stream (pages, screens or a track table) from the warehouse into Amberflo.

``extract_window()`` → ``to_meter_records()`` → ``ingest_batches()``, with the bookkeeping rules that
make billing exactly-once:

* the window is ``(watermark - overlap, MAX(cursor) at start]`` on the load-time cursor
  (``uuid_ts``), so late-loaded rows are caught and in-flight loads are re-read by the next run;
* records are deterministic, so re-reading the overlap re-sends identical bytes that Amberflo drops;
* the watermark moves to the window's upper bound only after every record in it was accepted
  (rejected rows are stored with their reason); a run that fails moves nothing.

The three stages overlap (issue 6): a reader thread fetches the next chunk while the calling thread
renders the current one and a sender thread ships the previous one — the warehouse driver, pyarrow and
gzip release the GIL, so on two cores the stages run side by side. Both hand-offs are bounded (one
chunk read ahead, two chunks being sent), so memory stays flat whatever the window; a send failure
stops the run, and the watermark moves only after every send returned.

No Airflow import here: the DAG task (``amberflo_sync.tasks``) only builds the parts and calls in.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from amberflo_sync.config import SyncConfig
from amberflo_sync.reader import EventStream, WarehouseReader, Window
from amberflo_sync.state import RunStats, StateStore, encode_cursor
from amberflo_sync.transform import to_meter_records

log = logging.getLogger(__name__)

#: Sends rendered records; returns how many were accepted. ``AmberfloClient.ingest_records`` fits.
#: It is called from a background thread, one chunk at a time.
Sender = Callable[[Sequence[str]], int]

#: Chunks read ahead of the one being rendered, and chunks handed to the sender but not yet
#: accepted. Small on purpose: they bound memory, and one of each already keeps every stage busy.
READ_AHEAD_CHUNKS = 1
SENDS_IN_FLIGHT = 2
#: Chunks rendered at once: two where a core is left for compression, HTTP and the warehouse
#: driver, else one (on 2 cores a second renderer gained nothing measurable and held ~100 MiB more).
RENDER_THREADS = 2 if (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1) >= 3 else 1
#: Rejected rows are written to the state store in transactions of up to this many rows (and at the
#: end of the run, failed or not): one commit per chunk would stall the pipeline on ``fsync``.
REJECTED_FLUSH_ROWS = 10_000

T = TypeVar("T")


@dataclass
class StageTimings:
    """Busy seconds of each stage of the events sync, summed over chunks and streams.

    Pass one to :func:`sync_stream` to see where the time goes (the benchmark does); stages overlap,
    so they add up to more than the wall time. ``extract`` = waiting on the warehouse driver and
    building DataFrames (reader thread), ``transform`` = mapping and rendering records (calling
    thread), ``send`` = the sender thread inside ``send`` (the client's own stats split that into
    building bodies and HTTP).
    """

    extract: float = 0.0
    transform: float = 0.0
    send: float = 0.0
    chunks: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            setattr(self, stage, getattr(self, stage) + seconds)

    def as_dict(self) -> dict[str, float]:
        return {"extract": self.extract, "transform": self.transform, "send": self.send, "chunks": self.chunks}


@dataclass
class DryRun:
    """Send nothing, move nothing: keep the first ``limit`` records, log them, write them to ``path``."""

    limit: int = 20
    path: Path | None = None
    records: list[str] = field(default_factory=list)

    def take(self, records: Sequence[str]) -> None:
        room = self.limit - len(self.records)
        if room > 0:
            self.records.extend(records[:room])

    def finish(self, stream: EventStream) -> None:
        for record in self.records:
            log.info("dry run %s: %s", stream.key, record)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("".join(r + "\n" for r in self.records), encoding="utf-8")
            log.info("dry run %s: wrote %d records to %s", stream.key, len(self.records), self.path)


def plan_window(reader: WarehouseReader, state: StateStore, stream: EventStream, config: SyncConfig) -> Window:
    """The cursor window this run owns for ``stream`` (see the module docstring)."""
    cursor = reader.cursor_column(stream, config.cursor_column)
    if cursor is None:
        log.warning(
            "%s has no %r column: reading the whole table (identical re-sends are de-duplicated by Amberflo)",
            stream.key,
            config.cursor_column,
        )
        return Window(cursor=None)
    upper = reader.max_cursor(stream, cursor.name)
    watermark = state.get_watermark(stream.key)
    lower = None if watermark is None else watermark.value - config.overlap
    return Window(cursor=cursor.name, lower=lower, upper=upper)


def sync_stream(
    stream: EventStream,
    *,
    reader: WarehouseReader,
    state: StateStore,
    send: Sender,
    config: SyncConfig,
    run_id: str,
    dry_run: DryRun | None = None,
    timings: StageTimings | None = None,
    window: Window | None = None,
    move_watermark: bool = True,
    allow_old_events: bool = False,
) -> RunStats:
    """Bill one stream's window into Amberflo and record what happened.

    :param send: callable that ingests a sequence of rendered records (batched by the client); it is
        called from a background thread, with at most :data:`SENDS_IN_FLIGHT` chunks outstanding.
    :param dry_run: when given, nothing is sent and no state is written.
    :param timings: when given, receives the busy seconds of each stage (see :class:`StageTimings`).
    :param window: the window to bill (a fan-out slice or a backfill interval); default: this run's
        cursor window from the watermark (:func:`plan_window`).
    :param move_watermark: False for slices and backfills: the caller decides what the watermark may
        cover (:func:`amberflo_sync.planning.committable_watermarks`).
    :param allow_old_events: send events older than ``max_event_age_days`` too (a backfill Amberflo
        support agreed to); otherwise they are rejected as ``event_too_old``.
    :returns: the run's counts; ``status`` is ``success`` or ``dry_run``.
    :raises Exception: whatever stopped the run, after recording it as ``failed`` (watermark unmoved).
    """
    started = time.monotonic()
    stats = RunStats(run_id=run_id, stream=stream.key, started_at=dt.datetime.now(dt.timezone.utc))
    if window is None:
        window = plan_window(reader, state, stream, config)
    stats.window_lower = None if window.lower is None else encode_cursor(window.lower)
    stats.window_upper = None if window.upper is None else encode_cursor(window.upper)
    log.info(
        "%s: reading %s in (%s, %s]%s",
        stream.key,
        window.cursor or "the whole table",
        stats.window_lower or "beginning",
        stats.window_upper or "end",
        " [dry run: nothing is sent]" if dry_run else "",
    )
    last_progress = started
    rejected: list[dict[str, Any]] = []
    try:
        with _ReadAhead(reader.extract_window(stream, window), timings) as chunks, _Sender(
            send, timings
        ) as sender, _Renderer(stream, timings, _min_event_millis(config, stats, allow_old_events)) as renderer:
            for read, batch in renderer.map(chunks):
                stats.read += read
                stats.duplicates += batch.duplicates
                stats.rejected += batch.rejected_count
                if batch.rejected_count:
                    _count_reasons(stats, batch.rejected["reason"].tolist())
                if dry_run is not None:
                    dry_run.take(batch.rendered)
                    stats.sent += len(batch.rendered)
                else:
                    if batch.rejected_count:
                        rejected.extend(batch.rejected.to_dict("records"))
                        if len(rejected) >= REJECTED_FLUSH_ROWS:
                            _flush_rejected(state, stream, rejected)
                    stats.sent += sender.submit(batch.rendered)
                now = time.monotonic()
                if now - last_progress >= config.progress_every_seconds:
                    last_progress = now
                    log.info(
                        "%s: %d rows so far (%s sent), %.0f rows/s",
                        stream.key,
                        stats.read,
                        stats.sent,
                        stats.read / max(now - started, 1e-9),
                    )
            stats.sent += sender.finish()
        drain = getattr(send, "drain_rejected", None)
        if drain is not None:  # records Amberflo refused, isolated by amberflo_sync.isolation
            refused = drain()
            stats.rejected += len(refused)
            rejected.extend(refused)
            _count_reasons(stats, [r["reason"] for r in refused])
        _flush_rejected(state, stream, rejected)
        if not stats.balanced:
            raise RuntimeError(f"{stream.key}: row accounting does not balance: {stats}")
    except BaseException as exc:
        stats.status = "failed"
        stats.error = f"{type(exc).__name__}: {exc}"[:2000]
        _finish(stats, started)
        if dry_run is None:
            try:  # rejected rows found before the failure are recorded all the same
                _flush_rejected(state, stream, rejected)
            except Exception:  # noqa: BLE001 - the run's own failure is the one to report
                log.exception("%s: could not record %d rejected rows", stream.key, len(rejected))
            state.record_run(stats)
        log.error("%s", stats.summary())
        raise
    if dry_run is not None:
        stats.status = "dry_run"
        dry_run.finish(stream)
    else:
        if move_watermark and window.upper is not None:
            state.set_watermark(stream.key, _max_cursor(state, stream, window.upper), run_id=run_id)
        stats.status = "success"
    _finish(stats, started)
    if dry_run is None:
        state.record_run(stats)
    log.info("%s", stats.summary())
    return stats


class _Renderer:
    """Maps chunks to records on :data:`RENDER_THREADS` threads, results in chunk order.

    Rendering is the critical path of the sync and its Arrow kernels release the GIL, so with cores
    to spare two chunks render at once; either way the calling thread only keeps the books.
    """

    def __init__(self, stream: EventStream, timings: StageTimings | None, min_event_millis: int | None = None) -> None:
        self._min_event_millis = min_event_millis
        self._stream = stream
        self._timings = timings
        self._executor = ThreadPoolExecutor(RENDER_THREADS, thread_name_prefix="amberflo-sync-render")

    def __enter__(self) -> _Renderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def map(self, chunks: Iterator[Any]) -> Iterator[tuple[int, Any]]:
        """``(rows read, MeterBatch)`` per chunk, in order, at most RENDER_THREADS chunks ahead."""
        pending: list[Future[tuple[int, Any]]] = []
        for chunk in chunks:
            pending.append(self._executor.submit(self._render, chunk))
            del chunk
            if len(pending) >= RENDER_THREADS:
                yield pending.pop(0).result()
        while pending:
            yield pending.pop(0).result()

    def _render(self, chunk: Any) -> tuple[int, Any]:
        began = time.perf_counter()
        batch = to_meter_records(chunk, kind=self._stream.kind, table=self._stream.table,
                                 min_event_millis=self._min_event_millis)
        if self._timings is not None:
            self._timings.add("transform", time.perf_counter() - began)
            self._timings.add("chunks", 1)
        return len(chunk), batch


class _ReadAhead(Generic[T]):
    """Iterates ``source`` on a reader thread, at most :data:`READ_AHEAD_CHUNKS` items ahead.

    The source generator is advanced and closed on that thread only (its database cursor never
    changes threads). Leaving the ``with`` block early stops and joins the thread; an exception
    raised by the source is re-raised in the consuming thread.
    """

    _END = object()

    def __init__(self, source: Iterator[T], timings: StageTimings | None) -> None:
        self._source = source
        self._timings = timings
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=READ_AHEAD_CHUNKS)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="amberflo-sync-reader", daemon=True)

    def __enter__(self) -> Iterator[T]:
        self._thread.start()
        return self._iterate()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        while self._thread.is_alive():
            try:  # unblock a reader waiting for room
                self._queue.get(timeout=0.05)
            except queue.Empty:
                pass
        self._thread.join()

    def _iterate(self) -> Iterator[T]:
        while True:
            item = self._queue.get()
            if item is self._END:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item

    def _run(self) -> None:
        outcome: Any = self._END
        try:
            while not self._stop.is_set():
                began = time.perf_counter()
                try:
                    item = next(self._source)
                except StopIteration:
                    break
                if self._timings is not None:
                    self._timings.add("extract", time.perf_counter() - began)
                if not self._put(item):
                    break
                del item
        except BaseException as error:  # noqa: BLE001 - handed to the consuming thread
            outcome = _Failure(error)
        finally:
            close = getattr(self._source, "close", None)
            if close is not None:
                try:
                    close()
                except Exception as error:  # noqa: BLE001
                    outcome = outcome if isinstance(outcome, _Failure) else _Failure(error)
        self._put(outcome)

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False


@dataclass
class _Failure:
    error: BaseException


class _Sender:
    """Runs ``send`` on one background thread, at most :data:`SENDS_IN_FLIGHT` chunks at a time.

    :meth:`submit` blocks while that many are pending and returns the records accepted by sends
    that completed meanwhile; :meth:`finish` waits for the rest. The first failure is raised by the
    next call. Leaving the ``with`` block cancels what has not started and waits for what has, so no
    send outlives the run that made it.
    """

    def __init__(self, send: Sender, timings: StageTimings | None) -> None:
        self._send = send
        self._timings = timings
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="amberflo-sync-sender")
        self._pending: list[Future[int]] = []

    def __enter__(self) -> _Sender:
        return self

    def __exit__(self, *exc: object) -> None:
        for future in self._pending:
            future.cancel()
        self._executor.shutdown(wait=True)

    def submit(self, records: Sequence[str]) -> int:
        accepted = self._collect(block=False)
        while len(self._pending) >= SENDS_IN_FLIGHT:
            accepted += self._collect(block=True)
        self._pending.append(self._executor.submit(self._timed_send, records))
        return accepted

    def finish(self) -> int:
        accepted = 0
        while self._pending:
            accepted += self._collect(block=True)
        return accepted

    def _collect(self, *, block: bool) -> int:
        """Records accepted by the oldest sends that are done (waiting for the oldest if ``block``)."""
        accepted = 0
        while self._pending and (block or self._pending[0].done()):
            accepted += self._pending.pop(0).result()  # raises the send's failure
            block = False
        return accepted

    def _timed_send(self, records: Sequence[str]) -> int:
        began = time.perf_counter()
        try:
            return self._send(records)
        finally:
            if self._timings is not None:
                self._timings.add("send", time.perf_counter() - began)


def _count_reasons(stats: RunStats, reasons: list[str]) -> None:
    """Rejected rows by reason, shown in the run's summary line and ``sync_runs.details``."""
    if not reasons:
        return
    counts = dict((stats.details or {}).get("rejected_by_reason") or {})
    for reason in reasons:
        counts[reason] = counts.get(reason, 0) + 1
    stats.details = {**(stats.details or {}), "rejected_by_reason": dict(sorted(counts.items()))}


def _min_event_millis(config: SyncConfig, stats: RunStats, allow_old_events: bool) -> int | None:
    """The oldest event time Amberflo takes, fixed at the run's start so every chunk agrees."""
    if allow_old_events or not config.max_event_age_days:
        return None
    started = stats.started_at or dt.datetime.now(dt.timezone.utc)
    return int((started - dt.timedelta(days=config.max_event_age_days)).timestamp() * 1000)


def _flush_rejected(state: StateStore, stream: EventStream, rejected: list[dict[str, Any]]) -> None:
    """Write the buffered rejected rows in one transaction and empty the buffer."""
    if rejected:
        state.record_rejected(stream.key, rejected)
        rejected.clear()


def _max_cursor(state: StateStore, stream: EventStream, upper: Any) -> Any:
    """Never move a watermark backwards (e.g. rows deleted from the warehouse)."""
    current = state.get_watermark(stream.key)
    if current is None:
        return upper
    try:
        return max(current.value, upper)
    except TypeError:
        return upper


def _finish(stats: RunStats, started: float) -> None:
    stats.seconds = time.monotonic() - started
    stats.finished_at = dt.datetime.now(dt.timezone.utc)


def stats_to_dict(stats: RunStats) -> dict[str, Any]:
    """JSON-safe dict of a run (XCom-friendly)."""
    out = {}
    for key, value in stats.__dict__.items():
        out[key] = value.isoformat() if isinstance(value, dt.datetime) else value
    return json.loads(json.dumps(out, default=str))
