"""The ledger: every piece of exactly-once bookkeeping, for the events, identify and Engage syncs.

Nothing else writes a watermark, a run row or a rejected row's life cycle. The rules, in one place
(modelled on the Singer SDK's ``helpers/_state.py``, whose "signpost" is our planned upper bound):

* **A plan fixes the work.** :meth:`Ledger.open_plan` records, under a fresh ``plan_id``, every slice
  of a run with the window it must cover (bounds fixed at plan time). A cleared or re-planned run
  gets a new plan; nothing of an older plan can count for it.
* **Slice outcomes are bound to their plan and window.** :meth:`Ledger.slice_started` marks a slice
  ``running`` (so a worker that dies leaves a slice that did not succeed), :meth:`Ledger.slice_finished`
  records its counts and status, refusing a slice whose window is not the one planned.
* **Watermarks move last, forward only, over the succeeded prefix.** :meth:`Ledger.close_plan` moves
  each stream's watermark to the upper bound of the longest run of consecutive succeeded slices from
  its first one — never backwards, never for backfills or dry runs — and writes one ``sync_runs`` row
  per stream with the run's totals, the failing slices and why.
* **A rejected row has a life.** Recorded (``open``) with its reason; retried while its reason may go
  away; ``resolved`` once the row was sent; ``abandoned`` after ``rejected_max_attempts`` tries of a
  retryable reason — counted in the run's summary and logged as a warning, never silent.

Lookups by run or plan use indexed columns, never a scan of the history.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa

from amberflo_sync.redaction import error_text, redact
from amberflo_sync.state import StateStore, decode_cursor, encode_cursor, id_key, naive_utc, utcnow

if TYPE_CHECKING:  # pragma: no cover
    from amberflo_sync.planning import Slice

log = logging.getLogger(__name__)

#: Rejected-row statuses.
OPEN, RESOLVED, ABANDONED = "open", "resolved", "abandoned"
#: Slice and run statuses.
PLANNED, RUNNING, SUCCESS, FAILED, DRY_RUN, SKIPPED = "planned", "running", "success", "failed", "dry_run", "skipped"
#: Slice modes whose succeeded prefix moves a watermark.
WATERMARK_MODES = frozenset({"incremental"})


@dataclass(frozen=True)
class Watermark:
    """How far a stream is billed: every row with ``cursor <= value`` was accepted by Amberflo."""

    stream: str
    value: Any
    updated_at: dt.datetime


@dataclass
class RunStats:
    """What a run (or one slice of it) did to one stream. ``read`` always equals
    ``sent + duplicates + rejected + skipped`` on success (checked by :attr:`balanced`)."""

    run_id: str
    stream: str
    status: str = RUNNING
    read: int = 0
    sent: int = 0
    duplicates: int = 0
    rejected: int = 0
    skipped: int = 0
    abandoned: int = 0
    statements: int = 0
    seconds: float = 0.0
    window_lower: str | None = None
    window_upper: str | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    error: str | None = None
    details: dict[str, Any] | None = None

    @property
    def balanced(self) -> bool:
        return self.read == self.sent + self.duplicates + self.rejected + self.skipped

    def summary(self) -> str:
        """The one-line summary a task ends with. A dry run says ``would send``: it sent nothing."""
        rate = self.read / self.seconds if self.seconds > 0 else 0.0
        extra = "".join(
            f" {k}={','.join(f'{r}:{n}' for r, n in v.items()) if isinstance(v, dict) else v}"
            for k, v in sorted((self.details or {}).items())
        )
        sent = f"would send={self.sent}" if self.status == DRY_RUN else f"sent={self.sent}"
        abandoned = f" abandoned={self.abandoned}" if self.abandoned else ""
        return (
            f"{self.stream}: status={self.status} read={self.read} {sent} "
            f"duplicates={self.duplicates} rejected={self.rejected} skipped={self.skipped}{abandoned}{extra} "
            f"statements={self.statements} seconds={self.seconds:.2f} rows/s={rate:,.0f}"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (XCom-friendly)."""
        out = {}
        for key, value in asdict(self).items():
            out[key] = value.isoformat() if isinstance(value, dt.datetime) else value
        return orjson.loads(orjson.dumps(out, default=str))


@dataclass
class StreamOutcome:
    """One stream's result in a closed plan."""

    stream: str
    status: str
    stats: RunStats
    watermark: Any = None
    failed_slices: list[str] = field(default_factory=list)


@dataclass
class PlanOutcome:
    """What :meth:`Ledger.close_plan` found and did."""

    plan_id: str
    run_id: str
    run_kind: str
    streams: dict[str, StreamOutcome] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)
    looked_for: list[str] = field(default_factory=list)
    plan_statements: int = 0

    @property
    def failed(self) -> dict[str, str]:
        """Streams that did not succeed, with why (plan-time problems included)."""
        out = dict(self.problems)
        for key, result in self.streams.items():
            if result.status == FAILED:
                out[key] = result.stats.error or "slices did not finish: " + ", ".join(result.failed_slices)
        return out

    def totals(self) -> dict[str, int]:
        keys = ("read", "sent", "duplicates", "rejected", "skipped", "abandoned", "statements")
        return {k: sum(int(getattr(r.stats, k) or 0) for r in self.streams.values()) for k in keys}

    def summary(self, dry_run: bool = False) -> str:
        t = self.totals()
        slices = sum(int((r.stats.details or {}).get("slices", 1)) for r in self.streams.values())
        succeeded = sum(int((r.stats.details or {}).get("slices_succeeded", 0)) for r in self.streams.values())
        sent = f"would send={t['sent']}" if dry_run else f"sent={t['sent']}"
        line = (f"{len(self.streams)} streams: read={t['read']} {sent} duplicates={t['duplicates']} "
                f"rejected={t['rejected']} skipped={t['skipped']} slices={slices} succeeded={succeeded}")
        if t["abandoned"]:
            line += f" abandoned={t['abandoned']}"
        line += f" statements={t['statements'] + self.plan_statements} (plan {self.plan_statements})"
        if self.failed:
            line += f" failed={len(self.failed)}"
        return line


class Ledger:
    """The bookkeeping of exactly-once, over the state database's tables (see the module docstring)."""

    def __init__(self, state: StateStore) -> None:
        state.create()
        self.state = state
        self.engine = state.engine
        self._t = state.table

    # -- watermarks -----------------------------------------------------------------------------
    def watermark(self, stream: str) -> Watermark | None:
        sql = f"SELECT cursor_value, updated_at FROM {self._t('watermarks')} WHERE stream = :stream"
        with self.engine.connect() as conn:
            row = conn.execute(sa.text(sql), {"stream": stream}).first()
        return None if row is None else Watermark(stream, decode_cursor(row[0]), row[1])

    def watermarks(self) -> dict[str, Watermark]:
        """Every stream's watermark, in one statement (a plan reads them all at once)."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text(f"SELECT stream, cursor_value, updated_at FROM {self._t('watermarks')}"))
            return {r[0]: Watermark(r[0], decode_cursor(r[1]), r[2]) for r in rows}

    def _commit_watermark(self, conn: sa.Connection, stream: str, value: Any, *, run_id: str,
                          plan_id: str | None) -> bool:
        """Move ``stream``'s watermark to ``value`` unless it is already at or past it."""
        row = conn.execute(sa.text(f"SELECT cursor_value FROM {self._t('watermarks')} WHERE stream = :stream"),
                           {"stream": stream}).first()
        if row is not None and not _later(value, decode_cursor(row[0])):
            return False
        params = {"stream": stream, "value": encode_cursor(value), "run_id": run_id, "plan_id": plan_id,
                  "now": utcnow()}
        if row is None:
            conn.execute(sa.text(f"INSERT INTO {self._t('watermarks')} (stream, cursor_value, run_id, plan_id, "
                                 "updated_at) VALUES (:stream, :value, :run_id, :plan_id, :now)"), params)
        else:
            conn.execute(sa.text(f"UPDATE {self._t('watermarks')} SET cursor_value = :value, run_id = :run_id, "
                                 "plan_id = :plan_id, updated_at = :now WHERE stream = :stream"), params)
        return True

    def forget_watermark(self, stream: str) -> None:
        """Drop a stream's watermark (its next run reads the whole table; used by full resyncs)."""
        with self.engine.begin() as conn:
            conn.execute(sa.text(f"DELETE FROM {self._t('watermarks')} WHERE stream = :stream"), {"stream": stream})

    # -- plans and slices -----------------------------------------------------------------------
    def open_plan(self, run_id: str, run_kind: str, slices: Sequence[Slice], *, dag_id: str | None = None,
                  looked_for: Sequence[str] = (), problems: Mapping[str, str] | None = None,
                  statements: int = 0) -> str:
        """Record a run's planned slices with their fixed windows; returns the new plan's id.

        :param looked_for: what the run was configured for (stream keys or patterns), for its summary.
        :param problems: streams that could not even be planned (``{stream: error}``): the run fails
            after delivering the others.
        :param statements: warehouse statements the planning sent (discovery, window bounds).
        """
        plan_id = uuid.uuid4().hex
        now = utcnow()
        rows = [self._slice_row(plan_id, s, now) for s in slices]
        with self.engine.begin() as conn:
            conn.execute(sa.text(
                f"INSERT INTO {self._t('plans')} (plan_id, run_id, dag_id, run_kind, status, streams_json, "
                "problems_json, statements, created_at) VALUES (:plan_id, :run_id, :dag_id, :kind, :status, "
                ":streams, :problems, :statements, :now)"),
                {"plan_id": plan_id, "run_id": run_id, "dag_id": dag_id, "kind": run_kind, "status": PLANNED,
                 "streams": orjson.dumps(list(looked_for)).decode(),
                 "problems": orjson.dumps(dict(problems or {})).decode(), "statements": statements, "now": now})
            if rows:
                conn.execute(sa.text(
                    f"INSERT INTO {self._t('slices')} (plan_id, stream, slice_index, slice_count, mode, "
                    "cursor_column, window_lower, window_upper, status) VALUES (:plan_id, :stream, :slice_index, "
                    ":slice_count, :mode, :cursor_column, :window_lower, :window_upper, :status)"), rows)
        return plan_id

    @staticmethod
    def _slice_row(plan_id: str, part: Slice, now: dt.datetime) -> dict[str, Any]:
        w = part.window
        return {"plan_id": plan_id, "stream": part.stream.key, "slice_index": part.index,
                "slice_count": part.count, "mode": part.mode, "cursor_column": w.cursor,
                "window_lower": None if w.lower is None else encode_cursor(w.lower),
                "window_upper": None if w.upper is None else encode_cursor(w.upper), "status": PLANNED}

    def slice_started(self, plan_id: str, part: Slice, *, worker: str | None = None) -> None:
        """Mark a slice ``running`` (an attempt that dies leaves it so: not succeeded)."""
        self._check_window(plan_id, part)
        with self.engine.begin() as conn:
            conn.execute(sa.text(
                f"UPDATE {self._t('slices')} SET status = :status, worker = :worker, started_at = :now, "
                "finished_at = NULL, error = NULL WHERE plan_id = :plan_id AND stream = :stream "
                "AND slice_index = :idx"),
                {"status": RUNNING, "worker": worker, "now": utcnow(), "plan_id": plan_id,
                 "stream": part.stream.key, "idx": part.index})

    def slice_finished(self, plan_id: str, part: Slice, stats: RunStats) -> None:
        """Record a slice's counts and status (``success``, ``failed`` or ``dry_run``)."""
        self._check_window(plan_id, part)
        with self.engine.begin() as conn:
            conn.execute(sa.text(
                f"UPDATE {self._t('slices')} SET status = :status, rows_read = :read, rows_sent = :sent, "
                "duplicates = :duplicates, rejected = :rejected, skipped = :skipped, statements = :statements, "
                "error = :error, details = :details, started_at = COALESCE(started_at, :started), "
                "finished_at = :finished WHERE plan_id = :plan_id AND stream = :stream AND slice_index = :idx"),
                {"status": stats.status, "read": stats.read, "sent": stats.sent, "duplicates": stats.duplicates,
                 "rejected": stats.rejected, "skipped": stats.skipped, "statements": stats.statements,
                 "error": _redacted(stats.error), "started": naive_utc(stats.started_at),
                 "details": _json({**(stats.details or {}), "seconds": round(stats.seconds, 3),
                                   "abandoned": stats.abandoned}),
                 "finished": naive_utc(stats.finished_at) or utcnow(), "plan_id": plan_id,
                 "stream": part.stream.key, "idx": part.index})

    def _check_window(self, plan_id: str, part: Slice) -> None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.text(
                f"SELECT window_lower, window_upper FROM {self._t('slices')} WHERE plan_id = :plan_id "
                "AND stream = :stream AND slice_index = :idx"),
                {"plan_id": plan_id, "stream": part.stream.key, "idx": part.index}).first()
        planned = self._slice_row(plan_id, part, utcnow())
        if row is None:
            raise LedgerError(f"slice {part.key} is not part of plan {plan_id}: it cannot be recorded")
        if (row[0], row[1]) != (planned["window_lower"], planned["window_upper"]):
            raise LedgerError(f"slice {part.key} ran for ({planned['window_lower']}, {planned['window_upper']}] "
                              f"but plan {plan_id} fixed ({row[0]}, {row[1]}]")

    def slices(self, plan_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text(f"SELECT * FROM {self._t('slices')} WHERE plan_id = :plan_id "
                                        "ORDER BY stream, slice_index"), {"plan_id": plan_id}).mappings().all()
        return [dict(r) for r in rows]

    def plan(self, plan_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.text(f"SELECT * FROM {self._t('plans')} WHERE plan_id = :plan_id"),
                               {"plan_id": plan_id}).mappings().first()
        return None if row is None else dict(row)

    @contextmanager
    def recorded_plan(self, run_id: str, run_kind: str, slices: Sequence[Slice], *, stream: str,
                      dry_run: bool = False, worker: str | None = None) -> Iterator[tuple[str, RunStats]]:
        """Plan, run and close a run that does all its slices in one task (identify, Engage).

        Yields ``(plan_id, stats)``; the body fills ``stats`` (and sets its status). On exit every
        slice is finished with the body's outcome (the counts go to the first), the plan is closed
        under ``stream`` and the run's summary line is logged; an exception marks everything
        ``failed`` and is re-raised once recorded.
        """
        plan_id = self.open_plan(run_id, run_kind, slices, looked_for=[stream])
        bound = [s.bound_to(plan_id) for s in slices]
        stats = RunStats(run_id, stream, started_at=dt.datetime.now(dt.timezone.utc))
        began = time.monotonic()
        for part in bound:
            self.slice_started(plan_id, part, worker=worker)
        try:
            yield plan_id, stats
        except BaseException as exc:
            stats.status = FAILED
            stats.error = error_text(exc)
            self._finish_all(plan_id, bound, stats, began)
            outcome = self.close_plan(plan_id, run_stream=stream, dry_run=dry_run)
            log.error("%s", outcome.streams[stream].stats.summary())
            raise
        self._finish_all(plan_id, bound, stats, began)
        outcome = self.close_plan(plan_id, run_stream=stream, dry_run=dry_run)
        closed = outcome.streams[stream].stats
        log.info("%s", closed.summary())
        stats.statements, stats.seconds, stats.finished_at = closed.statements, closed.seconds, closed.finished_at

    def _finish_all(self, plan_id: str, bound: Sequence[Slice], stats: RunStats, began: float) -> None:
        stats.seconds = time.monotonic() - began
        stats.finished_at = dt.datetime.now(dt.timezone.utc)
        for i, part in enumerate(bound):
            self.slice_finished(plan_id, part, stats if i == 0 else RunStats(
                stats.run_id, part.stream.key, status=stats.status, error=stats.error,
                finished_at=stats.finished_at))

    def close_plan(self, plan_id: str, *, run_stream: str | None = None, dry_run: bool = False) -> PlanOutcome:
        """Commit what a plan's succeeded slices cover and write its ``sync_runs`` rows.

        Each stream's watermark moves to the upper bound of the longest run of consecutive succeeded
        incremental slices from its first one (never backwards; nothing for backfills, snapshots or dry
        runs). One ``sync_runs`` row per stream (or one for the whole plan under ``run_stream``, as an
        Engage space is one run over several tables) sums its slices and says which failed and why.
        """
        plan = self.plan(plan_id)
        if plan is None:
            raise LedgerError(f"plan {plan_id} was never recorded")
        rows = self.slices(plan_id)
        outcome = PlanOutcome(plan_id, plan["run_id"], plan["run_kind"],
                              problems=orjson.loads(plan["problems_json"] or "{}"),
                              looked_for=orjson.loads(plan["streams_json"] or "[]"),
                              plan_statements=int(plan["statements"] or 0))
        by_stream: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_stream.setdefault(row["stream"], []).append(row)
        marks: dict[str, Any] = {}
        for stream, parts in by_stream.items():
            reached = None
            for part in sorted(parts, key=lambda r: r["slice_index"]):
                if part["mode"] not in WATERMARK_MODES or part["status"] != SUCCESS or part["window_upper"] is None:
                    break
                reached = decode_cursor(part["window_upper"])
            if reached is not None and not dry_run:
                marks[stream] = reached
        groups = {run_stream: rows} if run_stream else by_stream
        now = utcnow()
        with self.engine.begin() as conn:
            for stream, mark in marks.items():
                if self._commit_watermark(conn, stream, mark, run_id=plan["run_id"], plan_id=plan_id):
                    log.info("%s: watermark → %s", stream, bound_text(mark))
            for stream, parts in groups.items():
                stats = _sum_slices(plan["run_id"], stream, parts, dry_run)
                result = StreamOutcome(stream, stats.status, stats, marks.get(stream),
                                       [f"{p['stream']}#{p['slice_index'] + 1}/{p['slice_count']}" for p in parts
                                        if p["status"] not in (SUCCESS, DRY_RUN)])
                outcome.streams[stream] = result
                self._write_run(conn, stats, plan_id)
            for stream, error in outcome.problems.items():
                stats = RunStats(plan["run_id"], stream, status=FAILED, error=error, started_at=naive_utc(plan["created_at"]),
                                 finished_at=now)
                self._write_run(conn, stats, plan_id)
            conn.execute(sa.text(f"UPDATE {self._t('plans')} SET status = :status, finished_at = :now "
                                 "WHERE plan_id = :plan_id"),
                         {"status": FAILED if outcome.failed else SUCCESS, "now": now, "plan_id": plan_id})
        return outcome

    # -- run rows -------------------------------------------------------------------------------
    def record_run(self, stats: RunStats, *, plan_id: str | None = None) -> None:
        """Insert or update the ``sync_runs`` row of ``(run_id, stream)`` (a run that never planned
        anything, e.g. one refused before its plan)."""
        with self.engine.begin() as conn:
            self._write_run(conn, stats, plan_id)

    def _write_run(self, conn: sa.Connection, stats: RunStats, plan_id: str | None) -> None:
        params = {
            "run_id": stats.run_id, "stream": stats.stream, "plan_id": plan_id, "status": stats.status,
            "rows_read": stats.read, "rows_sent": stats.sent, "duplicates": stats.duplicates,
            "rejected": stats.rejected, "skipped": stats.skipped, "abandoned": stats.abandoned,
            "statements": stats.statements, "seconds": float(stats.seconds),
            "window_lower": stats.window_lower, "window_upper": stats.window_upper,
            "started_at": naive_utc(stats.started_at), "finished_at": naive_utc(stats.finished_at),
            "error": _redacted(stats.error), "details": _json(stats.details),
        }
        columns = [k for k in params if k not in ("run_id", "stream")]
        updated = conn.execute(sa.text(
            f"UPDATE {self._t('sync_runs')} SET " + ", ".join(f"{c} = :{c}" for c in columns)
            + " WHERE run_id = :run_id AND stream = :stream"), params).rowcount
        if not updated:
            conn.execute(sa.text(f"INSERT INTO {self._t('sync_runs')} ({', '.join(params)}) "
                                 f"VALUES ({', '.join(':' + k for k in params)})"), params)

    def runs(self, stream: str | None = None, *, run_id: str | None = None) -> list[dict[str, Any]]:
        """``sync_runs`` rows (of a stream, of a run: both indexed lookups), oldest first."""
        return self._select("*", "sync_runs", {"stream": stream, "run_id": run_id}, "started_at, stream")

    def _select(self, columns: str, table: str, equal: Mapping[str, Any], order: str) -> list[dict[str, Any]]:
        """Rows of a ledger table whose columns equal the given values (None = any), in ``order``."""
        params = {k: v for k, v in equal.items() if v is not None}
        where = " WHERE " + " AND ".join(f"{k} = :{k}" for k in params) if params else ""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text(f"SELECT {columns} FROM {self._t(table)}{where} ORDER BY {order}"), params)
            return [dict(r) for r in rows.mappings()]

    def quiet_runs(self, streams: Sequence[str], runs: int) -> int:
        """How many of the last ``runs`` runs over ``streams`` read no row at all (newest first, stopping
        at the first run that read something)."""
        sql = sa.text(f"SELECT run_id, SUM(rows_read), MAX(finished_at) FROM {self._t('sync_runs')} "
                      "WHERE stream IN :streams GROUP BY run_id ORDER BY MAX(finished_at) DESC"
                      ).bindparams(sa.bindparam("streams", expanding=True))
        quiet = 0
        with self.engine.connect() as conn:
            for _, read, _ in conn.execute(sql, {"streams": list(streams)}).fetchmany(runs):
                if int(read or 0):
                    break
                quiet += 1
        return quiet

    # -- rejected rows --------------------------------------------------------------------------
    def record_rejected(self, stream: str, rejected: Iterable[Mapping[str, Any]], *, run_id: str | None = None,
                        max_attempts: int | None = None, retryable: Iterable[str] = ()) -> list[dict[str, Any]]:
        """Record rejected rows (``id``, ``reason``, ``row``): first_seen stays, last_seen and attempts
        move. A row with a ``retryable`` reason that reached ``max_attempts`` is ``abandoned``; those are
        returned so the run can say so. Rows without an id are keyed by a hash of their content."""
        now = utcnow()
        retryable = set(retryable)
        abandoned: list[dict[str, Any]] = []
        update = sa.text(
            f"UPDATE {self._t('rejected_rows')} SET last_seen = :now, attempts = attempts + 1, row_json = :row_json, "
            "run_id = :run_id, status = CASE WHEN :limit > 0 AND attempts + 1 >= :limit THEN :abandoned "
            "ELSE :open END, resolved_at = NULL WHERE stream = :stream AND row_key = :row_key AND reason = :reason")
        insert = sa.text(
            f"INSERT INTO {self._t('rejected_rows')} (stream, row_key, row_id, reason, status, row_json, first_seen, "
            "last_seen, attempts, run_id) VALUES (:stream, :row_key, :row_id, :reason, :status, :row_json, :now, "
            ":now, 1, :run_id)")
        select = sa.text(f"SELECT status, attempts FROM {self._t('rejected_rows')} WHERE stream = :stream "
                         "AND row_key = :row_key AND reason = :reason")
        with self.engine.begin() as conn:
            for item in rejected:
                row_json = orjson.dumps(item.get("row") or {}, default=str, option=orjson.OPT_SORT_KEYS).decode()
                row_id = item.get("id")
                if row_id is None or row_id != row_id or str(row_id) == "":
                    row_id = "sha1:" + id_key(row_json)[:40]
                reason = str(item["reason"])
                limit = int(max_attempts or 0) if reason in retryable else 0
                params = {"stream": stream, "row_key": id_key(row_id), "row_id": str(row_id), "reason": reason,
                          "row_json": row_json, "now": now, "run_id": run_id, "limit": limit,
                          "abandoned": ABANDONED, "open": OPEN,
                          "status": ABANDONED if limit == 1 else OPEN}
                if conn.execute(update, params).rowcount:
                    # only a retryable reason can be abandoned: the others need no look back
                    status, attempts = conn.execute(select, params).first() if limit else (OPEN, 0)
                else:
                    conn.execute(insert, params)
                    status, attempts = params["status"], 1
                if status == ABANDONED:
                    abandoned.append({"id": str(row_id), "reason": reason, "attempts": attempts})
        if abandoned:
            log.warning("%s: %d rejected rows abandoned after %s attempts (%s); they stay in rejected_rows with "
                        "status abandoned — replay them with python -m amberflo_sync.replay once the cause is fixed",
                        stream, len(abandoned), max_attempts, ", ".join(sorted({a["reason"] for a in abandoned})))
        return abandoned

    def resolve_rejected(self, stream: str, row_ids: Iterable[str], *, run_id: str | None = None,
                         reasons: Iterable[str] | None = None) -> int:
        """Mark rejected rows that have now been sent as ``resolved`` (all reasons, or ``reasons``)."""
        keys = [id_key(i) for i in dict.fromkeys(str(i) for i in row_ids)]
        if not keys:
            return 0
        sql = (f"UPDATE {self._t('rejected_rows')} SET status = :resolved, resolved_at = :now, run_id = :run_id "
               "WHERE stream = :stream AND row_key IN :keys AND status <> :resolved")
        params: dict[str, Any] = {"resolved": RESOLVED, "now": utcnow(), "run_id": run_id, "stream": stream}
        binds = [sa.bindparam("keys", expanding=True)]
        if reasons is not None:
            sql += " AND reason IN :reasons"
            params["reasons"] = list(reasons)
            binds.append(sa.bindparam("reasons", expanding=True))
        statement = sa.text(sql).bindparams(*binds)
        removed = 0
        with self.engine.begin() as conn:
            for start in range(0, len(keys), 1000):
                removed += conn.execute(statement, params | {"keys": keys[start : start + 1000]}).rowcount or 0
        return removed

    def open_rejected(self, stream: str, reasons: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Open rejected rows of ``stream`` (of ``reasons``), oldest first: what a run may retry."""
        sql = (f"SELECT row_id, reason, attempts, row_json FROM {self._t('rejected_rows')} "
               "WHERE stream = :stream AND status = :open")
        params: dict[str, Any] = {"stream": stream, "open": OPEN}
        binds = []
        if reasons is not None:
            sql += " AND reason IN :reasons"
            params["reasons"] = list(reasons)
            binds.append(sa.bindparam("reasons", expanding=True))
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text(sql + " ORDER BY first_seen").bindparams(*binds), params).mappings()
            return [dict(r) for r in rows]

    def unresolved_ids(self, stream: str) -> set[str]:
        """Ids of the rows of ``stream`` with an open or abandoned rejection (sending one resolves it)."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text(f"SELECT DISTINCT row_id FROM {self._t('rejected_rows')} WHERE stream = "
                                        ":stream AND status <> :resolved"), {"stream": stream, "resolved": RESOLVED})
            return {r[0] for r in rows}

    def rejected_rows(self, stream: str | None = None, *, status: str | None = OPEN) -> list[dict[str, Any]]:
        """Rejected rows (default: the open ones; ``status=None`` = all, whatever their status)."""
        return self._select("stream, row_id, reason, status, row_json, first_seen, last_seen, attempts, run_id, "
                            "resolved_at", "rejected_rows", {"stream": stream, "status": status},
                            "stream, row_id, reason")


class LedgerError(RuntimeError):
    """A bookkeeping step that would be unsafe (a slice outside its plan, a plan never recorded)."""


def _sum_slices(run_id: str, stream: str, parts: list[dict[str, Any]], dry_run: bool) -> RunStats:
    stats = RunStats(run_id, stream)
    details: dict[str, Any] = {}
    errors = []
    for part in parts:
        stats.read += int(part["rows_read"] or 0)
        stats.sent += int(part["rows_sent"] or 0)
        stats.duplicates += int(part["duplicates"] or 0)
        stats.rejected += int(part["rejected"] or 0)
        stats.skipped += int(part["skipped"] or 0)
        stats.statements += int(part["statements"] or 0)
        for key, value in orjson.loads(part["details"] or "{}").items():
            if isinstance(value, dict):
                merged = details.setdefault(key, {})
                for k, v in value.items():
                    merged[k] = merged.get(k, 0) + v if isinstance(v, (int, float)) else v
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                details[key] = details.get(key, 0) + value
            else:
                details[key] = value
        if part["error"]:
            errors.append(f"{part['stream']}#{part['slice_index'] + 1}/{part['slice_count']}: {part['error']}")
    stats.abandoned = int(details.pop("abandoned", 0) or 0)
    starts = [naive_utc(p["started_at"]) for p in parts if p["started_at"] is not None]
    ends = [naive_utc(p["finished_at"]) for p in parts if p["finished_at"] is not None]
    stats.started_at = min(starts) if starts else None
    stats.finished_at = max(ends) if ends else utcnow()
    stats.seconds = float(details.pop("seconds", 0) or 0) or (
        (stats.finished_at - stats.started_at).total_seconds() if stats.started_at else 0.0)
    ordered = sorted(parts, key=lambda p: (p["stream"], p["slice_index"]))
    stats.window_lower = ordered[0]["window_lower"] if ordered else None
    stats.window_upper = ordered[-1]["window_upper"] if ordered else None
    statuses = {p["status"] for p in parts}
    succeeded = sum(1 for p in parts if p["status"] in (SUCCESS, DRY_RUN))
    details["slices"] = len(parts)
    details["slices_succeeded"] = succeeded
    if statuses <= {DRY_RUN} and parts:
        stats.status = DRY_RUN
    elif statuses <= {SUCCESS} and parts:
        stats.status = SUCCESS
    elif not parts:
        stats.status = SKIPPED
    else:
        stats.status = FAILED
        unfinished = [f"{p['stream']}#{p['slice_index'] + 1}/{p['slice_count']} ({p['status']})" for p in ordered
                      if p["status"] in (PLANNED, RUNNING)]
        if unfinished:
            errors.append("did not finish: " + ", ".join(unfinished))
        stats.error = "; ".join(errors)[:4000] or None
    stats.details = details
    return stats


def _redacted(text: str | None) -> str | None:
    """Every error text the ledger stores goes through the one redaction (API keys removed)."""
    return None if text is None else redact(text)[:4000]


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value, default=str, option=orjson.OPT_SORT_KEYS).decode()


def _later(a: Any, b: Any) -> bool:
    try:
        return a > b
    except TypeError:
        return True


def bound_text(value: Any, missing: str = "") -> str:
    """A window bound or watermark as logged: datetimes with their time zone (naive warehouse columns
    are UTC); ``missing`` for an open bound."""
    if value is None:
        return missing
    if isinstance(value, dt.datetime):
        return value.isoformat() + ("" if value.tzinfo else " UTC")
    return str(value)
