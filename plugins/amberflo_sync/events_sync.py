"""Events sync: one stream (pages, screens or a track table) from the warehouse into Amberflo.

``extract_window()`` → ``to_meter_records()`` → ``ingest_batches()``, with the bookkeeping rules that
make billing exactly-once:

* the window is ``(watermark - overlap, MAX(cursor) at start]`` on the load-time cursor
  (``uuid_ts``), so late-loaded rows are caught and in-flight loads are re-read by the next run;
* records are deterministic, so re-reading the overlap re-sends identical bytes that Amberflo drops;
* a slice's outcome is recorded in the ledger (:mod:`amberflo_sync.ledger`), which alone moves a
  watermark — to the end of a stream's succeeded slices, once the run finishes; a slice that fails
  moves nothing.

The three stages overlap (issue 6): a reader thread fetches the next chunk while the calling thread
renders the current one and a sender thread ships the previous one — the warehouse driver, pyarrow and
gzip release the GIL, so on two cores the stages run side by side. Both hand-offs are bounded (one
chunk read ahead, two chunks being sent), so memory stays flat whatever the window; a send failure
stops the run, and the watermark moves only after every send returned.

No Airflow import here: the DAG task (``amberflo_sync.tasks``) only builds the parts and calls in.
"""

from __future__ import annotations

import datetime as dt
import itertools
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

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from amberflo_sync.config import SyncConfig
from amberflo_sync.isolation import RETRYABLE_REASONS, IsolatingSender
from amberflo_sync.ledger import Ledger, RunStats, bound_text
from amberflo_sync.planning import INCREMENTAL, Slice
from amberflo_sync.redaction import error_text
from amberflo_sync.reader import EventStream, WarehouseReader, Window
from amberflo_sync.state import encode_cursor
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


def sync_stream(
    stream: EventStream,
    *,
    reader: WarehouseReader,
    ledger: Ledger,
    send: Sender,
    config: SyncConfig,
    run_id: str,
    window: Window | None,
    dry_run: DryRun | None = None,
    timings: StageTimings | None = None,
    allow_old_events: bool = False,
    retry_ids: Sequence[str] = (),
) -> RunStats:
    """Bill one window of one stream into Amberflo; the caller records the outcome in the ledger.

    Moves no watermark and writes no run row (:func:`sync_slice` and the ledger do): it reads,
    renders, sends, and keeps the rejected rows' life cycle — new rejections recorded, rows now sent
    resolved, rows refused too often abandoned.

    :param send: callable that ingests a sequence of rendered records (batched by the client); it is
        called from a background thread, with at most :data:`SENDS_IN_FLIGHT` chunks outstanding.
    :param window: the window to bill (a slice of the cursor window, or a backfill interval); None =
        only the ``retry_ids`` rows (an operator's replay).
    :param dry_run: when given, nothing is sent and nothing is written.
    :param timings: when given, receives the busy seconds of each stage (see :class:`StageTimings`).
    :param allow_old_events: send events older than ``max_event_age_days`` too (a backfill Amberflo
        support agreed to); otherwise they are rejected as ``event_too_old``.
    :param retry_ids: ids of rejected rows to try again. They are read by id through the reader's
        own typed path and rendered by the same renderer under the same rules as the window's rows
        (same bytes, same 60-day limit); rows the window itself holds are left to the window.
    :returns: the counts; ``status`` is ``success`` or ``dry_run``.
    :raises Exception: whatever stopped the run (the caller records it as ``failed``).
    """
    started = time.monotonic()
    stats = RunStats(run_id=run_id, stream=stream.key, started_at=dt.datetime.now(dt.timezone.utc))
    statements_before = getattr(reader, "statements", 0)
    books = _RejectedBooks(ledger, stream, run_id, config) if dry_run is None else None
    retried = _Counter()
    if window is None:
        log.info("%s: replaying %d rejected rows by id", stream.key, len(retry_ids))
        source: Iterator[pd.DataFrame] = _counted(reader.extract_ids(stream, list(retry_ids)), retried)
    else:
        stats.window_lower = None if window.lower is None else encode_cursor(window.lower)
        stats.window_upper = None if window.upper is None else encode_cursor(window.upper)
        log.info(
            "%s: reading %s in (%s, %s]%s%s",
            stream.key,
            window.cursor or "the whole table",
            bound_text(window.lower, "beginning"),
            bound_text(window.upper, "end"),
            f" and {len(retry_ids)} rejected rows to retry" if retry_ids else "",
            " [dry run: nothing is sent]" if dry_run else "",
        )
        source = reader.extract_window(stream, window)
        # a window from the beginning (or over a table without cursor) re-sends these rows itself
        if retry_ids and dry_run is None and window.cursor is not None and window.lower is not None:
            retries = _outside_window(reader.extract_ids(stream, list(retry_ids)), window)
            source = itertools.chain(source, _counted(retries, retried))
    try:
        with _Progress(stream, stats, config.progress_every_seconds), _ReadAhead(source, timings) as chunks, \
                _Sender(send, timings) as sender, \
                _Renderer(stream, timings, _min_event_millis(config, stats, allow_old_events)) as renderer:
            for read, batch, retried_rows in renderer.map(chunks):
                stats.read += read
                stats.duplicates += batch.duplicates
                stats.rejected += batch.rejected_count
                if batch.rejected_count:
                    _count_reasons(stats, batch.rejected["reason"].tolist())
                if dry_run is not None:
                    dry_run.take(batch.rendered)
                    stats.sent += len(batch.rendered)
                else:
                    books.saw(batch)
                    # retried rows are refused one by one, never as a systemic refusal: a row refused
                    # again must not block the window it is sent with
                    stats.sent += sender.submit(batch.rendered, lenient=retried_rows)
            stats.sent += sender.finish()
        drain = getattr(send, "drain_rejected", None)
        if drain is not None and books is not None:  # records Amberflo refused (amberflo_sync.isolation)
            refused = drain()
            stats.rejected += len(refused)
            books.refused(refused)
            _count_reasons(stats, [r["reason"] for r in refused])
        if books is not None:
            stats.abandoned = books.close(success=True)
        if not stats.balanced:
            raise RuntimeError(f"{stream.key}: row accounting does not balance: {stats}")
    except BaseException as exc:
        stats.status = "failed"
        stats.error = error_text(exc)
        _finish(stats, started, reader, statements_before)
        if books is not None:
            try:  # rejected rows found before the failure are recorded all the same
                stats.abandoned = books.close(success=False)
            except Exception:  # noqa: BLE001 - the run's own failure is the one to report
                log.exception("%s: could not record the rejected rows", stream.key)
        log.error("%s", stats.summary())
        try:  # the counts so far travel with the error, for the ledger's slice row
            exc.slice_stats = stats  # type: ignore[attr-defined]
        except AttributeError:  # pragma: no cover - exceptions without a __dict__
            pass
        raise
    if retried.value:
        stats.details = {**(stats.details or {}), "rejected_retried": retried.value}
    if books is not None and books.resolved:
        stats.details = {**(stats.details or {}), "rejected_resolved": books.resolved}
    stats.status = "dry_run" if dry_run is not None else "success"
    if dry_run is not None:
        dry_run.finish(stream)
    _finish(stats, started, reader, statements_before)
    log.info("%s", stats.summary())
    return stats


def sync_slice(
    plan_id: str,
    part: Slice,
    *,
    reader: WarehouseReader,
    ledger: Ledger,
    send: Sender,
    config: SyncConfig,
    run_id: str,
    dry_run: DryRun | None = None,
    allow_old_events: bool = False,
    retries_rejected: bool = True,
    worker: str | None = None,
    timings: StageTimings | None = None,
) -> RunStats:
    """Run one planned slice and record its outcome, bound to its plan and window, in the ledger.

    The first slice of an incremental stream also tries the stream's open retryable rejected rows
    again (those outside the window; rows inside it are re-sent by the window itself).
    """
    ledger.slice_started(plan_id, part, worker=worker)
    retry_ids: list[str] = []
    if retries_rejected and dry_run is None and part.mode == INCREMENTAL and part.index == 0:
        retry_ids = [str(r["row_id"]) for r in ledger.open_rejected(part.stream.key, RETRYABLE_REASONS)
                     if not str(r["row_id"]).startswith("sha1:")]
    try:
        stats = sync_stream(part.stream, reader=reader, ledger=ledger, send=send, config=config, run_id=run_id,
                            window=part.window, dry_run=dry_run, allow_old_events=allow_old_events,
                            retry_ids=retry_ids, timings=timings)
    except BaseException as exc:
        failed = getattr(exc, "slice_stats", None) or RunStats(run_id, part.stream.key,
                                                               finished_at=dt.datetime.now(dt.timezone.utc))
        failed.status, failed.error = "failed", error_text(exc)
        ledger.slice_finished(plan_id, part, failed)
        raise
    ledger.slice_finished(plan_id, part, stats)  # the slice row holds its key, mode and worker
    return stats


class _Counter:
    value = 0


#: ``DataFrame.attrs`` flag of chunks holding rejected rows read again by id.
RETRIED_ROWS = "amberflo_sync_retried_rows"


def _counted(chunks: Iterator[pd.DataFrame], counter: _Counter) -> Iterator[pd.DataFrame]:
    """Chunks of retried rows, counted and flagged (:data:`RETRIED_ROWS`)."""
    for chunk in chunks:
        if len(chunk):
            counter.value += len(chunk)
            chunk.attrs[RETRIED_ROWS] = True
            yield chunk


def _outside_window(chunks: Iterator[pd.DataFrame], window: Window) -> Iterator[pd.DataFrame]:
    """Retried rows the window does not hold (cursor at or below its lower bound)."""
    assert window.cursor is not None and window.lower is not None
    for chunk in chunks:
        column = next((c for c in chunk.columns if c.lower() == window.cursor.lower()), None)
        if column is not None:
            cursor = pd.to_datetime(chunk[column], utc=True, errors="coerce") if isinstance(
                window.lower, dt.datetime) else chunk[column]
            lower = pd.Timestamp(window.lower).tz_localize("UTC") if (
                isinstance(window.lower, dt.datetime) and window.lower.tzinfo is None) else window.lower
            chunk = chunk.loc[(cursor <= lower).fillna(False).to_numpy(dtype=bool)]
        yield chunk


class _RejectedBooks:
    """The rejected rows' life cycle during one slice, written through the ledger.

    New rejections are buffered and recorded in transactions of :data:`REJECTED_FLUSH_ROWS`; rows of
    the stream with an unresolved rejection that this slice sends are resolved once every send was
    accepted.
    """

    def __init__(self, ledger: Ledger, stream: EventStream, run_id: str, config: SyncConfig) -> None:
        self.ledger, self.stream, self.run_id, self.config = ledger, stream, run_id, config
        self.buffer: list[dict[str, Any]] = []
        unresolved = ledger.unresolved_ids(stream.key)
        self.unresolved = pa.array(sorted(unresolved), type=pa.large_string()) if unresolved else None
        self.sent_ids: set[str] = set()
        self.rejected_ids: dict[str, str] = {}
        self.abandoned = 0
        self.resolved = 0

    def saw(self, batch: Any) -> None:
        if batch.rejected_count:
            rows = batch.rejected.to_dict("records")
            self.buffer.extend(rows)
            if self.unresolved is not None:
                self.rejected_ids.update((str(r["id"]), str(r["reason"])) for r in rows if r.get("id") is not None)
            if len(self.buffer) >= REJECTED_FLUSH_ROWS:
                self._flush()
        if self.unresolved is not None and len(batch.unique_ids):
            ids = batch.unique_ids.cast(pa.large_string())
            hits = ids.filter(pc.is_in(ids, value_set=self.unresolved))
            self.sent_ids.update(hits.to_pylist())

    def refused(self, rows: list[dict[str, Any]]) -> None:
        self.buffer.extend(rows)
        for row in rows:
            self.sent_ids.discard(str(row.get("id")))
            self.rejected_ids[str(row.get("id"))] = str(row["reason"])

    def close(self, *, success: bool) -> int:
        self._flush()
        if success:
            sent = self.sent_ids - set(self.rejected_ids)
            self.resolved = self.ledger.resolve_rejected(self.stream.key, sent, run_id=self.run_id)
            moved = [i for i, reason in self.rejected_ids.items() if reason not in RETRYABLE_REASONS]
            self.ledger.resolve_rejected(self.stream.key, moved, run_id=self.run_id, reasons=RETRYABLE_REASONS)
        return self.abandoned

    def _flush(self) -> None:
        if self.buffer:
            self.abandoned += len(self.ledger.record_rejected(
                self.stream.key, self.buffer, run_id=self.run_id, max_attempts=self.config.rejected_max_attempts,
                retryable=RETRYABLE_REASONS))
            self.buffer.clear()


class _Progress:
    """Logs a slice's progress (rows read, records accepted, rate) every ``every`` seconds from a
    timer thread, so a slow chunk or a slow Amberflo still shows signs of life."""

    def __init__(self, stream: EventStream, stats: RunStats, every: float) -> None:
        self.stream, self.stats, self.every = stream, stats, max(1.0, min(float(every), 30.0))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="amberflo-sync-progress", daemon=True)
        self._began = time.monotonic()

    def __enter__(self) -> _Progress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            elapsed = time.monotonic() - self._began
            log.info("%s: %d rows read, %d records accepted so far, %.0f rows/s", self.stream.key,
                     self.stats.read, self.stats.sent, self.stats.read / max(elapsed, 1e-9))


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

    def map(self, chunks: Iterator[Any]) -> Iterator[tuple[int, Any, bool]]:
        """``(rows read, MeterBatch, retried rows?)`` per chunk, in order, at most RENDER_THREADS chunks
        ahead."""
        pending: list[Future[tuple[int, Any, bool]]] = []
        for chunk in chunks:
            pending.append(self._executor.submit(self._render, chunk))
            del chunk
            if len(pending) >= RENDER_THREADS:
                yield pending.pop(0).result()
        while pending:
            yield pending.pop(0).result()

    def _render(self, chunk: Any) -> tuple[int, Any, bool]:
        began = time.perf_counter()
        batch = to_meter_records(chunk, kind=self._stream.kind, table=self._stream.table,
                                 min_event_millis=self._min_event_millis)
        if self._timings is not None:
            self._timings.add("transform", time.perf_counter() - began)
            self._timings.add("chunks", 1)
        return len(chunk), batch, bool(chunk.attrs.get(RETRIED_ROWS))


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

    def submit(self, records: Sequence[str], *, lenient: bool = False) -> int:
        """Queue ``records``; ``lenient`` sends them with ``fail_fast=False`` (isolating senders only)."""
        accepted = self._collect(block=False)
        while len(self._pending) >= SENDS_IN_FLIGHT:
            accepted += self._collect(block=True)
        self._pending.append(self._executor.submit(self._timed_send, records, lenient))
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

    def _timed_send(self, records: Sequence[str], lenient: bool = False) -> int:
        began = time.perf_counter()
        try:
            if lenient and isinstance(self._send, IsolatingSender):
                return self._send(records, fail_fast=False)
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


def _finish(stats: RunStats, started: float, reader: Any, statements_before: int) -> None:
    stats.seconds = time.monotonic() - started
    stats.finished_at = dt.datetime.now(dt.timezone.utc)
    stats.statements = getattr(reader, "statements", 0) - statements_before


def stats_to_dict(stats: RunStats) -> dict[str, Any]:
    """JSON-safe dict of a run (XCom-friendly)."""
    return stats.to_dict()
