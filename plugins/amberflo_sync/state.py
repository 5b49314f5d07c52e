"""The state database: its tables (created and upgraded in place), customers, Engage fingerprints, locks.

By default the tables live in the warehouse database under a configurable schema; a separate
database (``state.url``) is better when several workers write at once — e.g. SQLite or PostgreSQL
next to a DuckDB warehouse, which allows only one writing process. Plain portable SQL
(``CREATE TABLE IF NOT EXISTS``, update-then-insert) keeps it working on PostgreSQL, DuckDB, SQLite
and the cloud warehouses alike.

The bookkeeping of exactly-once — plans, slice outcomes, watermarks, run rows and rejected rows —
lives in :mod:`amberflo_sync.ledger`; this module only owns the tables' shape.

Values taken from the warehouse (a customer id, a row id) can be of any length, so tables keyed by
them use a fixed-size hash key (:func:`id_key`) next to the full value in a ``TEXT`` column; a
database whose tables predate that is upgraded on first use (:meth:`StateStore.create`), with no
manual step.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import random
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from amberflo_sync.customers import CustomerState

log = logging.getLogger(__name__)

#: Version of the state tables' layout; bumped by every change that needs an upgrade.
#: 1 = the first release (VARCHAR(1024) ids, primary-key lock); 2 = hash keys, plans and slices,
#: rejected-row life cycle, conditional-update lock.
SCHEMA_VERSION = 2


@dataclass(frozen=True)
class Table:
    """One state table: its columns (portable SQL types), primary key, indexes, and how rows of the
    previous layout become rows of this one (``upgrade``; None = copy the common columns)."""

    name: str
    columns: tuple[tuple[str, str], ...]
    primary_key: tuple[str, ...]
    indexes: tuple[tuple[str, ...], ...] = ()

    def ddl(self, qualified: str) -> str:
        cols = ", ".join(f"{n} {t}" for n, t in self.columns)
        return f"CREATE TABLE IF NOT EXISTS {qualified} ({cols}, PRIMARY KEY ({', '.join(self.primary_key)}))"

    @property
    def column_names(self) -> list[str]:
        return [n for n, _ in self.columns]


TS = "TIMESTAMP"
TABLES: tuple[Table, ...] = (
    Table("watermarks", (("stream", "VARCHAR(512) NOT NULL"), ("cursor_value", "TEXT NOT NULL"),
                         ("run_id", "TEXT"), ("plan_id", "VARCHAR(64)"), ("updated_at", f"{TS} NOT NULL")),
          ("stream",)),
    Table("plans", (("plan_id", "VARCHAR(64) NOT NULL"), ("run_id", "TEXT NOT NULL"), ("dag_id", "TEXT"),
                    ("run_kind", "VARCHAR(32) NOT NULL"), ("status", "VARCHAR(32) NOT NULL"),
                    ("streams_json", "TEXT"), ("problems_json", "TEXT"), ("statements", "BIGINT"),
                    ("created_at", f"{TS} NOT NULL"),
                    ("finished_at", TS)),
          ("plan_id",), (("run_id",),)),
    Table("slices", (("plan_id", "VARCHAR(64) NOT NULL"), ("stream", "VARCHAR(512) NOT NULL"),
                     ("slice_index", "INTEGER NOT NULL"), ("slice_count", "INTEGER NOT NULL"),
                     ("mode", "VARCHAR(32) NOT NULL"), ("cursor_column", "TEXT"), ("window_lower", "TEXT"),
                     ("window_upper", "TEXT"), ("status", "VARCHAR(32) NOT NULL"), ("rows_read", "BIGINT"),
                     ("rows_sent", "BIGINT"), ("duplicates", "BIGINT"), ("rejected", "BIGINT"),
                     ("skipped", "BIGINT"), ("statements", "BIGINT"), ("worker", "TEXT"), ("error", "TEXT"),
                     ("details", "TEXT"), ("started_at", TS), ("finished_at", TS)),
          ("plan_id", "stream", "slice_index")),
    Table("sync_runs", (("run_id", "VARCHAR(512) NOT NULL"), ("stream", "VARCHAR(512) NOT NULL"),
                        ("plan_id", "VARCHAR(64)"), ("status", "VARCHAR(32) NOT NULL"),
                        ("rows_read", "BIGINT NOT NULL"), ("rows_sent", "BIGINT NOT NULL"),
                        ("duplicates", "BIGINT NOT NULL"), ("rejected", "BIGINT NOT NULL"),
                        ("skipped", "BIGINT NOT NULL"), ("abandoned", "BIGINT"), ("statements", "BIGINT"),
                        ("seconds", "DOUBLE PRECISION NOT NULL"), ("window_lower", "TEXT"),
                        ("window_upper", "TEXT"), ("started_at", TS), ("finished_at", TS), ("error", "TEXT"),
                        ("details", "TEXT")),
          ("run_id", "stream"), (("stream", "started_at"),)),
    Table("rejected_rows", (("stream", "VARCHAR(512) NOT NULL"), ("row_key", "VARCHAR(64) NOT NULL"),
                            ("row_id", "TEXT NOT NULL"), ("reason", "VARCHAR(256) NOT NULL"),
                            ("status", "VARCHAR(32) NOT NULL"), ("row_json", "TEXT"),
                            ("first_seen", f"{TS} NOT NULL"), ("last_seen", f"{TS} NOT NULL"),
                            ("attempts", "INTEGER NOT NULL"), ("run_id", "TEXT"), ("resolved_at", TS)),
          ("stream", "row_key", "reason"), (("stream", "status"),)),
    Table("customers", (("customer_key", "VARCHAR(64) NOT NULL"), ("customer_id", "TEXT NOT NULL"),
                        ("values_json", "TEXT NOT NULL"), ("times_json", "TEXT NOT NULL"), ("record_json", "TEXT"),
                        ("fingerprint", "VARCHAR(64) NOT NULL"), ("updated_at", f"{TS} NOT NULL")),
          ("customer_key",)),
    Table("engage_fingerprints", (("space", "VARCHAR(512) NOT NULL"), ("customer_key", "VARCHAR(64) NOT NULL"),
                                  ("customer_id", "TEXT NOT NULL"), ("fingerprint", "BIGINT NOT NULL")),
          ("space", "customer_key")),
    Table("engage_audience_keys", (("space", "VARCHAR(512) NOT NULL"), ("audience_key", "VARCHAR(512) NOT NULL")),
          ("space", "audience_key")),
    Table("locks", (("name", "VARCHAR(256) NOT NULL"), ("holder", "TEXT"), ("acquired_at", TS),
                    ("expires_at", TS)),
          ("name",)),
    Table("state_schema", (("component", "VARCHAR(64) NOT NULL"), ("version", "INTEGER NOT NULL")),
          ("component",)),
)
TABLE_BY_NAME = {t.name: t for t in TABLES}
#: Names of the locks rows created with the tables (a lock is claimed by updating its row).
LOCK_NAMES = ("customers",)
#: Dialects whose tables take ``CREATE INDEX`` (the cloud warehouses have none to create).
INDEXED_DIALECTS = frozenset({"postgresql", "sqlite", "duckdb", "mysql"})


def id_key(value: Any) -> str:
    """Fixed-size key of a value taken from the warehouse (any length): SHA-256 hex of its text."""
    return hashlib.sha256(str(value).encode("utf-8", "surrogatepass")).hexdigest()


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


def naive_utc(value: dt.datetime | str | None) -> dt.datetime | None:
    """A timestamp as the state tables store it: naive UTC (SQLite hands timestamps back as text)."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(dt.timezone.utc).replace(tzinfo=None)


class StateStore:
    """The state database: one engine, the qualified names of its tables, and their creation.

    :param engine: engine of the state database.
    :param schema: schema of the state tables; ignored on SQLite. Written unquoted when it needs no
        quotes, so the warehouse folds it as it folds any name (``amberflo_sync`` is
        ``AMBERFLO_SYNC`` on Snowflake, queryable without quotes).
    """

    def __init__(self, engine: Engine, *, schema: str | None = "amberflo_sync") -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.schema = None if self.dialect == "sqlite" else schema
        preparer = engine.dialect.identifier_preparer
        self._quoted_schema = preparer.quote_schema(self.schema) if self.schema else None
        self._ready = False

    @classmethod
    def from_url(cls, url: str, *, schema: str | None = "amberflo_sync") -> StateStore:
        connect_args = {"timeout": 60} if url.startswith("sqlite") else {}
        _make_parent_dir(url)
        return cls(sa.create_engine(url, connect_args=connect_args), schema=schema)

    def table(self, name: str) -> str:
        """The qualified name of state table ``name`` to put in SQL."""
        return f"{self._quoted_schema}.{name}" if self._quoted_schema else name

    # -- creation and upgrade ---------------------------------------------------------------------
    def create(self) -> None:
        """Create the tables, or upgrade those of an earlier layout in place (idempotent; one
        statement when everything is current, so it is cheap to call every run)."""
        if self._ready:
            return
        for attempt in range(6):
            try:
                if self._version() != SCHEMA_VERSION:
                    self._create_or_upgrade()
                self._ready = True
                return
            except (sa.exc.IntegrityError, sa.exc.ProgrammingError, sa.exc.OperationalError) as exc:
                # Two workers creating the same schema/table at the same moment: PostgreSQL reports a
                # duplicate key in its catalog even with IF NOT EXISTS. The other one won; try again.
                if attempt == 5:
                    raise
                log.info("state tables are being created concurrently (%s); retrying", type(exc).__name__)
                time.sleep(0.2 * (attempt + 1) + random.random() * 0.2)

    def _version(self) -> int | None:
        try:
            with self.engine.connect() as conn:
                row = conn.execute(sa.text(
                    f"SELECT version FROM {self.table('state_schema')} WHERE component = 'tables'")).first()
        except sa.exc.DBAPIError:
            return None
        return None if row is None else int(row[0])

    def _columns(self, name: str) -> list[str] | None:
        """The columns of an existing table (lower case), None when it does not exist."""
        try:
            with self.engine.connect() as conn:
                result = conn.execute(sa.text(f"SELECT * FROM {self.table(name)} WHERE 1 = 0"))
                return [str(k).lower() for k in result.keys()]
        except sa.exc.DBAPIError:
            return None

    def _create_or_upgrade(self) -> None:
        legacy = {}
        for table in TABLES:
            existing = self._columns(table.name)
            if existing is not None and set(table.column_names) - set(existing):
                legacy[table.name] = existing
        with self.engine.begin() as conn:
            if self._quoted_schema:
                conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {self._quoted_schema}"))
            for name in legacy:
                log.warning("upgrading state table %s to layout %d (ids of any length)", self.table(name),
                            SCHEMA_VERSION)
                conn.execute(sa.text(f"ALTER TABLE {self.table(name)} RENAME TO {self._renamed(name)}"))
            for table in TABLES:
                conn.execute(sa.text(table.ddl(self.table(table.name))))
                if self.dialect in INDEXED_DIALECTS:
                    for columns in table.indexes:
                        index = f"{table.name}_{'_'.join(columns)}_idx"
                        conn.execute(sa.text(
                            f"CREATE INDEX IF NOT EXISTS {index} ON {self.table(table.name)} ({', '.join(columns)})"))
            for name, old_columns in legacy.items():
                _copy_legacy_rows(conn, TABLE_BY_NAME[name], self.table(f"{name}_v1"), self.table(name), old_columns)
                conn.execute(sa.text(f"DROP TABLE {self.table(f'{name}_v1')}"))
            for lock in LOCK_NAMES:
                conn.execute(sa.text(
                    f"INSERT INTO {self.table('locks')} (name) SELECT :name WHERE NOT EXISTS "
                    f"(SELECT 1 FROM {self.table('locks')} WHERE name = :name)"), {"name": lock})
            updated = conn.execute(sa.text(
                f"UPDATE {self.table('state_schema')} SET version = :v WHERE component = 'tables'"),
                {"v": SCHEMA_VERSION}).rowcount
            if not updated:
                conn.execute(sa.text(
                    f"INSERT INTO {self.table('state_schema')} (component, version) VALUES ('tables', :v)"),
                    {"v": SCHEMA_VERSION})

    def _renamed(self, name: str) -> str:
        # Snowflake renames into the current schema unless the new name is qualified; the others
        # refuse a qualified new name.
        return self.table(f"{name}_v1") if self.dialect == "snowflake" else f"{name}_v1"

    # -- customers ------------------------------------------------------------------------------
    def load_customers(self, customer_ids: Iterable[str]) -> dict[str, CustomerState]:
        """The stored state of each given customer that the project has met before."""
        ids = list(dict.fromkeys(customer_ids))
        found: dict[str, CustomerState] = {}
        sql = sa.text(
            f"SELECT customer_id, values_json, times_json, record_json FROM {self.table('customers')} "
            "WHERE customer_key IN :keys"
        ).bindparams(sa.bindparam("keys", expanding=True))
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 1000):
                keys = [id_key(i) for i in ids[start : start + 1000]]
                for row in conn.execute(sql, {"keys": keys}):
                    found[row[0]] = CustomerState(
                        row[0],
                        orjson.loads(row[1]),
                        orjson.loads(row[2]),
                        None if row[3] is None else orjson.loads(row[3]),
                    )
        return found

    def all_customer_ids(self) -> list[str]:
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(sa.text(f"SELECT customer_id FROM {self.table('customers')}"))]

    def save_customers(self, states: Iterable[CustomerState]) -> int:
        """Replace the stored state of the given customers (one transaction). A state whose
        ``record`` is None was never accepted by Amberflo: the next run writes it again."""
        rows = [
            {
                "customer_key": id_key(s.customer_id),
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
        delete = sa.text(f"DELETE FROM {self.table('customers')} WHERE customer_key IN :keys").bindparams(
            sa.bindparam("keys", expanding=True)
        )
        insert = sa.text(
            f"INSERT INTO {self.table('customers')} (customer_key, customer_id, values_json, times_json, "
            "record_json, fingerprint, updated_at) "
            "VALUES (:customer_key, :customer_id, :values_json, :times_json, :record_json, :fingerprint, :updated_at)"
        )
        with self.engine.begin() as conn:
            for start in range(0, len(rows), 1000):
                part = rows[start : start + 1000]
                conn.execute(delete, {"keys": [r["customer_key"] for r in part]})
                conn.execute(insert, part)
        return len(rows)

    # -- Engage snapshot fingerprints ----------------------------------------------------------
    def load_fingerprints(self, space: str, customer_ids: Iterable[str]) -> dict[str, int]:
        """Fingerprint of each customer's Engage values at its last successful sync."""
        ids = list(dict.fromkeys(customer_ids))
        sql = sa.text(
            f"SELECT customer_id, fingerprint FROM {self.table('engage_fingerprints')} "
            "WHERE space = :space AND customer_key IN :keys"
        ).bindparams(sa.bindparam("keys", expanding=True))
        found: dict[str, int] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 1000):
                keys = [id_key(i) for i in ids[start : start + 1000]]
                found.update((r[0], int(r[1])) for r in conn.execute(sql, {"space": space, "keys": keys}))
        return found

    def save_fingerprints(self, space: str, fingerprints: Mapping[str, int]) -> None:
        items = list(fingerprints.items())
        delete = sa.text(
            f"DELETE FROM {self.table('engage_fingerprints')} WHERE space = :space AND customer_key IN :keys"
        ).bindparams(sa.bindparam("keys", expanding=True))
        insert = sa.text(f"INSERT INTO {self.table('engage_fingerprints')} (space, customer_key, customer_id, "
                         "fingerprint) VALUES (:space, :key, :id, :fp)")
        with self.engine.begin() as conn:
            for start in range(0, len(items), 1000):
                part = items[start : start + 1000]
                conn.execute(delete, {"space": space, "keys": [id_key(k) for k, _ in part]})
                conn.execute(insert, [{"space": space, "key": id_key(k), "id": k, "fp": int(v)} for k, v in part])

    def forget_fingerprints(self, space: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.text(f"DELETE FROM {self.table('engage_fingerprints')} WHERE space = :space"),
                         {"space": space})

    # -- locks ----------------------------------------------------------------------------------
    @contextmanager
    def lock(self, name: str, *, holder: str, timeout: float = 3600.0, stale_after: float = 6 * 3600.0,
             poll: float = 2.0) -> Iterator[None]:
        """A cross-process mutex in the state database (works with any executor and any store).

        The identify and Engage syncs both write full customer records; holding ``customers`` while
        writing guarantees they never write the same customer at the same time. The lock is claimed
        by one atomic conditional ``UPDATE … WHERE holder IS NULL OR expires_at < now`` whose row
        count decides the holder — never by a unique constraint, which Snowflake, BigQuery, Redshift
        and Databricks accept but do not enforce. A holder killed without releasing is taken over
        once its lease (``stale_after`` seconds) expired.

        :raises TimeoutError: the lock was not obtained within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while not self.try_lock(name, holder, stale_after):
            if time.monotonic() >= deadline:
                raise TimeoutError(f"state lock {name!r} is held by another run; gave up after {timeout:.0f}s")
            time.sleep(poll * (0.5 + random.random()))
        try:
            yield
        finally:
            self.release_lock(name, holder)

    def try_lock(self, name: str, holder: str, stale_after: float = 6 * 3600.0) -> bool:
        """One attempt to take ``name`` for ``holder``; True when it is now held by ``holder``."""
        self.create()
        now = utcnow()
        params = {"name": name, "holder": holder, "now": now, "expires": now + dt.timedelta(seconds=stale_after)}
        try:
            claimed = self._claim(params)
        except sa.exc.DBAPIError as exc:
            if "conflict" in str(exc).lower() or "serializ" in str(exc).lower():
                return False  # another holder updated the row at the same moment (DuckDB, serializable stores)
            raise
        if claimed is None:
            return False
        # A warehouse that does not enforce the primary key may hold two rows for one name (two
        # first-time creators): the holder must hold every live row, else it lets go and retries.
        with self.engine.connect() as conn:
            others = conn.execute(sa.text(
                f"SELECT COUNT(*) FROM {self.table('locks')} WHERE name = :name AND holder IS NOT NULL "
                "AND holder <> :holder AND expires_at >= :now"), params).scalar()
        if others:
            self.release_lock(name, holder)
            return False
        return True

    def _claim(self, params: dict[str, Any]) -> int | None:
        """The conditional update; None when the lock is held by someone else."""
        with self.engine.begin() as conn:
            claimed = conn.execute(sa.text(
                f"UPDATE {self.table('locks')} SET holder = :holder, acquired_at = :now, expires_at = :expires "
                "WHERE name = :name AND (holder IS NULL OR expires_at < :now)"), params).rowcount
            if claimed == 0:
                exists = conn.execute(sa.text(f"SELECT 1 FROM {self.table('locks')} WHERE name = :name"),
                                      params).first()
                if exists is None:  # a lock name not created with the tables: its row, free
                    conn.execute(sa.text(f"INSERT INTO {self.table('locks')} (name) VALUES (:name)"), params)
                return None
        return claimed

    def release_lock(self, name: str, holder: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.text(
                f"UPDATE {self.table('locks')} SET holder = NULL, acquired_at = NULL, expires_at = NULL "
                "WHERE name = :name AND holder = :holder"), {"name": name, "holder": holder})


def _copy_legacy_rows(conn: sa.Connection, table: Table, old: str, new: str, old_columns: list[str]) -> None:
    """Copy the rows of a table of the previous layout into its new table, filling the new columns
    (hash keys, statuses) in Python, a chunk at a time."""
    wanted = [c for c in table.column_names if c in old_columns]
    result = conn.execute(sa.text(f"SELECT {', '.join(wanted)} FROM {old}"))
    insert = sa.text(f"INSERT INTO {new} ({', '.join(table.column_names)}) "
                     f"VALUES ({', '.join(':' + c for c in table.column_names)})")
    while True:
        rows = result.mappings().fetchmany(5000)
        if not rows:
            break
        upgraded = [_upgrade_row(table.name, dict(r), table.column_names) for r in rows]
        upgraded = [r for r in upgraded if r is not None]
        if upgraded:
            conn.execute(insert, upgraded)


def _upgrade_row(table: str, row: dict[str, Any], columns: list[str]) -> dict[str, Any] | None:
    out = {c: row.get(c) for c in columns}
    if table == "rejected_rows":
        out["row_key"] = id_key(row["row_id"])
        out["status"] = "open"
    elif table in ("customers", "engage_fingerprints"):
        out["customer_key"] = id_key(row["customer_id"])
    elif table == "locks":
        return None  # a lock of the old layout is a held row; the new layout starts free
    return out


def _make_parent_dir(url: str) -> None:
    """SQLite and DuckDB create the database file but not its folder."""
    from pathlib import Path

    for prefix in ("sqlite:///", "duckdb:///"):
        if url.startswith(prefix):
            path = url[len(prefix) :].split("?", 1)[0]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
