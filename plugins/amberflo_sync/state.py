"""The one state store: watermarks, rejected rows and run history, over SQLAlchemy.

By default the tables live in the warehouse database under a configurable schema; a separate
database (``state.url``) is better when several workers write at once — e.g. SQLite or PostgreSQL
next to a DuckDB warehouse, which allows only one writing process. Plain portable SQL
(``CREATE TABLE IF NOT EXISTS``, update-then-insert) keeps it working on PostgreSQL, DuckDB, SQLite
and the cloud warehouses alike. Cursor values are stored as ISO-8601 text because their type
follows the warehouse column (with or without a time zone).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from amberflo_sync.customers import CustomerState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Watermark:
    """How far a stream is billed: every row with ``cursor <= value`` was accepted by Amberflo."""

    stream: str
    value: Any
    updated_at: dt.datetime


@dataclass
class RunStats:
    """One row of ``sync_runs``: what a run did to one stream. ``read`` always equals
    ``sent + duplicates + rejected + skipped`` on success (checked by :meth:`balanced`)."""

    run_id: str
    stream: str
    status: str = "running"
    read: int = 0
    sent: int = 0
    duplicates: int = 0
    rejected: int = 0
    skipped: int = 0
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
        """The one-line summary a task ends with."""
        rate = self.read / self.seconds if self.seconds > 0 else 0.0
        extra = "".join(
            f" {k}={','.join(f'{r}:{n}' for r, n in v.items()) if isinstance(v, dict) else v}"
            for k, v in sorted((self.details or {}).items())
        )
        return (
            f"{self.stream}: status={self.status} read={self.read} sent={self.sent} "
            f"duplicates={self.duplicates} rejected={self.rejected} skipped={self.skipped}{extra} "
            f"seconds={self.seconds:.2f} rows/s={rate:,.0f}"
        )


@contextmanager
def recorded_run(state: StateStore, stats: RunStats, *, record: bool = True) -> Iterator[RunStats]:
    """Time a run, then write its ``sync_runs`` row (failed or not) and log its summary line.

    The body sets ``stats.status`` on success; an exception marks the run ``failed`` with the error
    (API keys never reach it: the client scrubs them) and is re-raised after the row is written.

    :param record: False for dry runs, which write nothing.
    """
    started = time.monotonic()

    def close() -> None:
        stats.seconds = time.monotonic() - started
        stats.finished_at = dt.datetime.now(dt.timezone.utc)
        if record:
            state.record_run(stats)

    try:
        yield stats
    except BaseException as exc:
        stats.status = "failed"
        stats.error = f"{type(exc).__name__}: {exc}"[:2000]
        close()
        log.error("%s", stats.summary())
        raise
    close()
    log.info("%s", stats.summary())


def encode_cursor(value: Any) -> str:
    """A cursor value as text that :func:`decode_cursor` turns back into the same value."""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return orjson.dumps(value, default=str).decode()


def decode_cursor(text: str) -> Any:
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        return orjson.loads(text)


def utcnow() -> dt.datetime:
    """Naive UTC now: the state tables store UTC without a zone, portable to every engine."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class StateStore:
    """Watermarks, ``rejected_rows`` and ``sync_runs`` in one database.

    :param engine: engine of the state database.
    :param schema: schema of the state tables; ignored on SQLite.
    """

    def __init__(self, engine: Engine, *, schema: str | None = "amberflo_sync") -> None:
        self.engine = engine
        quote = engine.dialect.identifier_preparer.quote_identifier
        self.schema = None if engine.dialect.name == "sqlite" else schema
        prefix = f"{quote(self.schema)}." if self.schema else ""
        self._watermarks = f"{prefix}watermarks"
        self._rejected = f"{prefix}rejected_rows"
        self._runs = f"{prefix}sync_runs"
        self._customers = f"{prefix}customers"
        self._locks = f"{prefix}locks"
        self._fingerprints = f"{prefix}engage_fingerprints"
        self._quoted_schema = quote(self.schema) if self.schema else None

    @classmethod
    def from_url(cls, url: str, *, schema: str | None = "amberflo_sync") -> StateStore:
        connect_args = {"timeout": 60} if url.startswith("sqlite") else {}
        _make_parent_dir(url)
        return cls(sa.create_engine(url, connect_args=connect_args), schema=schema)

    def create(self) -> None:
        """Create the schema and tables when missing (idempotent, safe to call every run)."""
        statements = []
        if self._quoted_schema:
            statements.append(f"CREATE SCHEMA IF NOT EXISTS {self._quoted_schema}")
        statements += [
            f"CREATE TABLE IF NOT EXISTS {self._watermarks} ("
            " stream VARCHAR(512) NOT NULL PRIMARY KEY,"
            " cursor_value VARCHAR(128) NOT NULL,"
            " run_id VARCHAR(512),"
            " updated_at TIMESTAMP NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {self._rejected} ("
            " stream VARCHAR(512) NOT NULL,"
            " row_id VARCHAR(1024) NOT NULL,"
            " reason VARCHAR(256) NOT NULL,"
            " row_json TEXT,"
            " first_seen TIMESTAMP NOT NULL,"
            " last_seen TIMESTAMP NOT NULL,"
            " attempts INTEGER NOT NULL,"
            " PRIMARY KEY (stream, row_id, reason))",
            f"CREATE TABLE IF NOT EXISTS {self._runs} ("
            " run_id VARCHAR(512) NOT NULL,"
            " stream VARCHAR(512) NOT NULL,"
            " status VARCHAR(32) NOT NULL,"
            " rows_read BIGINT NOT NULL,"
            " rows_sent BIGINT NOT NULL,"
            " duplicates BIGINT NOT NULL,"
            " rejected BIGINT NOT NULL,"
            " skipped BIGINT NOT NULL,"
            " seconds DOUBLE PRECISION NOT NULL,"
            " window_lower VARCHAR(128),"
            " window_upper VARCHAR(128),"
            " started_at TIMESTAMP,"
            " finished_at TIMESTAMP,"
            " error TEXT,"
            " details TEXT,"
            " PRIMARY KEY (run_id, stream))",
            f"CREATE TABLE IF NOT EXISTS {self._customers} ("
            " customer_id VARCHAR(1024) NOT NULL PRIMARY KEY,"
            " values_json TEXT NOT NULL,"
            " times_json TEXT NOT NULL,"
            " record_json TEXT,"
            " fingerprint VARCHAR(64) NOT NULL,"
            " updated_at TIMESTAMP NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {self._fingerprints} ("
            " space VARCHAR(512) NOT NULL,"
            " customer_id VARCHAR(1024) NOT NULL,"
            " fingerprint BIGINT NOT NULL,"
            " PRIMARY KEY (space, customer_id))",
            f"CREATE TABLE IF NOT EXISTS {self._locks} ("
            " name VARCHAR(256) NOT NULL PRIMARY KEY,"
            " holder VARCHAR(512) NOT NULL,"
            " acquired_at TIMESTAMP NOT NULL)",
        ]
        for attempt in range(5):
            try:
                with self.engine.begin() as conn:
                    for statement in statements:
                        conn.execute(sa.text(statement))
                return
            except (sa.exc.IntegrityError, sa.exc.ProgrammingError, sa.exc.OperationalError) as exc:
                # Two workers creating the same schema/table at the same moment: PostgreSQL reports a
                # duplicate key in its catalog even with IF NOT EXISTS. The other one won; try again.
                if attempt == 4:
                    raise
                log.info("state tables are being created concurrently (%s); retrying", type(exc).__name__)
                time.sleep(0.2 * (attempt + 1))

    # -- watermarks -----------------------------------------------------------------------------
    def get_watermark(self, stream: str) -> Watermark | None:
        sql = f"SELECT cursor_value, updated_at FROM {self._watermarks} WHERE stream = :stream"
        with self.engine.connect() as conn:
            row = conn.execute(sa.text(sql), {"stream": stream}).first()
        return None if row is None else Watermark(stream, decode_cursor(row[0]), row[1])

    def set_watermark(self, stream: str, value: Any, *, run_id: str) -> None:
        """Move ``stream``'s watermark to ``value``. Callers do this only after Amberflo accepted
        every record up to it."""
        params = {"stream": stream, "value": encode_cursor(value), "run_id": run_id, "now": utcnow()}
        self._upsert(
            f"UPDATE {self._watermarks} SET cursor_value = :value, run_id = :run_id, updated_at = :now "
            "WHERE stream = :stream",
            f"INSERT INTO {self._watermarks} (stream, cursor_value, run_id, updated_at) "
            "VALUES (:stream, :value, :run_id, :now)",
            params,
        )

    def delete_watermark(self, stream: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.text(f"DELETE FROM {self._watermarks} WHERE stream = :stream"), {"stream": stream})

    # -- rejected rows --------------------------------------------------------------------------
    def record_rejected(self, stream: str, rejected: Iterable[Mapping[str, Any]]) -> int:
        """Upsert rejected rows (``id``, ``reason``, ``row``): first_seen stays, last_seen and
        attempts move. Rows without an id are keyed by a hash of their content."""
        now = utcnow()
        count = 0
        with self.engine.begin() as conn:
            for item in rejected:
                row_json = orjson.dumps(item.get("row") or {}, default=str, option=orjson.OPT_SORT_KEYS).decode()
                row_id = item.get("id")
                if row_id is None or row_id != row_id or str(row_id) == "":
                    row_id = "sha1:" + hashlib.sha1(row_json.encode()).hexdigest()
                params = {
                    "stream": stream,
                    "row_id": str(row_id),
                    "reason": str(item["reason"]),
                    "row_json": row_json,
                    "now": now,
                }
                updated = conn.execute(
                    sa.text(
                        f"UPDATE {self._rejected} SET last_seen = :now, attempts = attempts + 1, "
                        "row_json = :row_json WHERE stream = :stream AND row_id = :row_id AND reason = :reason"
                    ),
                    params,
                ).rowcount
                if not updated:
                    conn.execute(
                        sa.text(
                            f"INSERT INTO {self._rejected} "
                            "(stream, row_id, reason, row_json, first_seen, last_seen, attempts) "
                            "VALUES (:stream, :row_id, :reason, :row_json, :now, :now, 1)"
                        ),
                        params,
                    )
                count += 1
        return count

    def resolve_rejected(self, stream: str, row_ids: Iterable[str], reasons: Iterable[str]) -> int:
        """Forget rejected rows that have now been sent (or re-rejected for another reason)."""
        ids, reasons = list(dict.fromkeys(row_ids)), list(reasons)
        if not ids or not reasons:
            return 0
        sql = sa.text(
            f"DELETE FROM {self._rejected} WHERE stream = :stream AND row_id IN :ids AND reason IN :reasons"
        ).bindparams(sa.bindparam("ids", expanding=True), sa.bindparam("reasons", expanding=True))
        removed = 0
        with self.engine.begin() as conn:
            for start in range(0, len(ids), 1000):
                removed += conn.execute(sql, {"stream": stream, "ids": ids[start : start + 1000],
                                              "reasons": reasons}).rowcount or 0
        return removed

    def rejected_rows(self, stream: str | None = None) -> list[dict[str, Any]]:
        sql = f"SELECT stream, row_id, reason, row_json, first_seen, last_seen, attempts FROM {self._rejected}"
        params: dict[str, Any] = {}
        if stream is not None:
            sql += " WHERE stream = :stream"
            params["stream"] = stream
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text(sql + " ORDER BY stream, row_id, reason"), params).mappings().all()
        return [dict(r) for r in rows]

    # -- run history ----------------------------------------------------------------------------
    def record_run(self, stats: RunStats) -> None:
        """Insert or update the ``sync_runs`` row of ``(run_id, stream)``."""
        values = asdict(stats)
        params = {
            "run_id": values["run_id"],
            "stream": values["stream"],
            "status": values["status"],
            "rows_read": values["read"],
            "rows_sent": values["sent"],
            "duplicates": values["duplicates"],
            "rejected": values["rejected"],
            "skipped": values["skipped"],
            "seconds": float(values["seconds"]),
            "window_lower": values["window_lower"],
            "window_upper": values["window_upper"],
            "started_at": _naive(values["started_at"]),
            "finished_at": _naive(values["finished_at"]),
            "error": values["error"],
            "details": None if values["details"] is None else orjson.dumps(values["details"], option=orjson.OPT_SORT_KEYS).decode(),
        }
        columns = [k for k in params if k not in ("run_id", "stream")]
        self._upsert(
            f"UPDATE {self._runs} SET "
            + ", ".join(f"{c} = :{c}" for c in columns)
            + " WHERE run_id = :run_id AND stream = :stream",
            f"INSERT INTO {self._runs} ({', '.join(params)}) VALUES ({', '.join(':' + k for k in params)})",
            params,
        )

    def runs(self, stream: str | None = None) -> list[dict[str, Any]]:
        sql = f"SELECT * FROM {self._runs}"
        params: dict[str, Any] = {}
        if stream is not None:
            sql += " WHERE stream = :stream"
            params["stream"] = stream
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.text(sql + " ORDER BY started_at, stream"), params).mappings()]

    # -- customers ------------------------------------------------------------------------------
    def load_customers(self, customer_ids: Iterable[str]) -> dict[str, CustomerState]:
        """The stored state of each given customer that the project has written before."""
        ids = list(dict.fromkeys(customer_ids))
        found: dict[str, CustomerState] = {}
        sql = sa.text(
            f"SELECT customer_id, values_json, times_json, record_json FROM {self._customers} "
            "WHERE customer_id IN :ids"
        ).bindparams(sa.bindparam("ids", expanding=True))
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 1000):
                for row in conn.execute(sql, {"ids": ids[start : start + 1000]}):
                    found[row[0]] = CustomerState(
                        row[0],
                        orjson.loads(row[1]),
                        orjson.loads(row[2]),
                        None if row[3] is None else orjson.loads(row[3]),
                    )
        return found

    def all_customer_ids(self) -> list[str]:
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(sa.text(f"SELECT customer_id FROM {self._customers}"))]

    def save_customers(self, states: Iterable[CustomerState]) -> int:
        """Replace the stored state of the given customers (one transaction)."""
        rows = [
            {
                "customer_id": s.customer_id,
                "values_json": orjson.dumps(s.values, option=orjson.OPT_SORT_KEYS).decode(),
                "times_json": orjson.dumps(s.times, option=orjson.OPT_SORT_KEYS).decode(),
                "record_json": None if s.record is None else orjson.dumps(s.record, option=orjson.OPT_SORT_KEYS).decode(),
                "fingerprint": s.fingerprint(),
                "updated_at": utcnow(),
            }
            for s in states
        ]
        if not rows:
            return 0
        delete = sa.text(f"DELETE FROM {self._customers} WHERE customer_id IN :ids").bindparams(
            sa.bindparam("ids", expanding=True)
        )
        insert = sa.text(
            f"INSERT INTO {self._customers} (customer_id, values_json, times_json, record_json, fingerprint, updated_at) "
            "VALUES (:customer_id, :values_json, :times_json, :record_json, :fingerprint, :updated_at)"
        )
        with self.engine.begin() as conn:
            for start in range(0, len(rows), 1000):
                part = rows[start : start + 1000]
                conn.execute(delete, {"ids": [r["customer_id"] for r in part]})
                conn.execute(insert, part)
        return len(rows)

    # -- Engage snapshot fingerprints ----------------------------------------------------------
    def load_fingerprints(self, space: str, customer_ids: Iterable[str]) -> dict[str, int]:
        """Fingerprint of each customer's Engage values at its last successful sync."""
        ids = list(dict.fromkeys(customer_ids))
        sql = sa.text(
            f"SELECT customer_id, fingerprint FROM {self._fingerprints} WHERE space = :space AND customer_id IN :ids"
        ).bindparams(sa.bindparam("ids", expanding=True))
        found: dict[str, int] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 1000):
                found.update((r[0], int(r[1])) for r in conn.execute(sql, {"space": space, "ids": ids[start : start + 1000]}))
        return found

    def save_fingerprints(self, space: str, fingerprints: Mapping[str, int]) -> None:
        items = list(fingerprints.items())
        delete = sa.text(
            f"DELETE FROM {self._fingerprints} WHERE space = :space AND customer_id IN :ids"
        ).bindparams(sa.bindparam("ids", expanding=True))
        insert = sa.text(f"INSERT INTO {self._fingerprints} (space, customer_id, fingerprint) VALUES (:space, :id, :fp)")
        with self.engine.begin() as conn:
            for start in range(0, len(items), 1000):
                part = items[start : start + 1000]
                conn.execute(delete, {"space": space, "ids": [k for k, _ in part]})
                conn.execute(insert, [{"space": space, "id": k, "fp": int(v)} for k, v in part])

    def forget_fingerprints(self, space: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.text(f"DELETE FROM {self._fingerprints} WHERE space = :space"), {"space": space})

    # -- locks ----------------------------------------------------------------------------------
    @contextmanager
    def lock(self, name: str, *, holder: str, timeout: float = 3600.0, stale_after: float = 6 * 3600.0,
             poll: float = 2.0) -> Iterator[None]:
        """A cross-process mutex in the state database (works with any executor).

        The identify and Engage syncs both write full customer records; holding ``customers`` while
        writing guarantees they never write the same customer at the same time. A lock older than
        ``stale_after`` seconds (a killed worker) is broken.

        :raises TimeoutError: the lock was not obtained within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while not self._try_lock(name, holder, stale_after):
            if time.monotonic() >= deadline:
                raise TimeoutError(f"state lock {name!r} is held by another run; gave up after {timeout:.0f}s")
            time.sleep(poll)
        try:
            yield
        finally:
            with self.engine.begin() as conn:
                conn.execute(
                    sa.text(f"DELETE FROM {self._locks} WHERE name = :name AND holder = :holder"),
                    {"name": name, "holder": holder},
                )

    def _try_lock(self, name: str, holder: str, stale_after: float) -> bool:
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(
                sa.text(f"DELETE FROM {self._locks} WHERE name = :name AND acquired_at < :stale"),
                {"name": name, "stale": now - dt.timedelta(seconds=stale_after)},
            )
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    sa.text(f"INSERT INTO {self._locks} (name, holder, acquired_at) VALUES (:name, :holder, :now)"),
                    {"name": name, "holder": holder, "now": now},
                )
            return True
        except sa.exc.IntegrityError:
            return False
        except sa.exc.DBAPIError as exc:  # DuckDB reports a duplicate key as a ConstraintException
            if "constraint" in str(exc).lower() or "duplicate" in str(exc).lower():
                return False
            raise

    # -- internals ------------------------------------------------------------------------------
    def _upsert(self, update_sql: str, insert_sql: str, params: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            if not conn.execute(sa.text(update_sql), params).rowcount:
                conn.execute(sa.text(insert_sql), params)


def _naive(value: dt.datetime | None) -> dt.datetime | None:
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(dt.timezone.utc).replace(tzinfo=None)


def _make_parent_dir(url: str) -> None:
    """SQLite and DuckDB create the database file but not its folder."""
    from pathlib import Path

    for prefix in ("sqlite:///", "duckdb:///"):
        if url.startswith(prefix):
            path = url[len(prefix) :].split("?", 1)[0]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
