"""The ``reconciliation`` state table: one row per run × meter × customer × hour.

It lives next to the other state tables (``StateStore.engine`` and ``StateStore.schema``) but is
owned here, so that the state store's own bookkeeping can change without touching it. Identifiers
are TEXT (customer ids and meter names have no length Segment or Amberflo promise), hours are ISO-8601
UTC text like the watermarks' cursor values, so the table reads the same on every engine.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from amberflo_sync.reconciliation.window import ReconciliationWindow

log = logging.getLogger(__name__)

COLUMNS = ("run_id", "interval_start", "interval_end", "meter", "customer_id", "hour", "expected_sum",
           "expected_count", "billed_sum", "billed_count", "status", "status_before_repair", "checked_at")


def iso_hour(seconds: int) -> str:
    return dt.datetime.fromtimestamp(int(seconds), dt.timezone.utc).strftime("%Y-%m-%dT%H:00:00Z")


class ReconciliationTable:
    """Reads and writes ``<schema>.reconciliation``.

    :param engine: the state database (``StateStore.engine``).
    :param schema: its schema (``StateStore.schema``; ``None`` on SQLite).
    """

    def __init__(self, engine: Engine, schema: str | None) -> None:
        self.engine = engine
        quote = engine.dialect.identifier_preparer.quote_identifier
        self._schema = quote(schema) if schema else None
        self.name = f"{self._schema}.reconciliation" if schema else "reconciliation"

    def create(self) -> None:
        """Create the table when missing (idempotent; tolerates a concurrent creator)."""
        statements = []
        if self._schema:
            statements.append(f"CREATE SCHEMA IF NOT EXISTS {self._schema}")
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {self.name} ("
            " run_id TEXT NOT NULL,"
            " interval_start TEXT NOT NULL,"
            " interval_end TEXT NOT NULL,"
            " meter TEXT NOT NULL,"
            " customer_id TEXT NOT NULL,"
            " hour TEXT NOT NULL,"
            " expected_sum DOUBLE PRECISION NOT NULL,"
            " expected_count BIGINT NOT NULL,"
            " billed_sum DOUBLE PRECISION NOT NULL,"
            " billed_count BIGINT NOT NULL,"
            " status TEXT NOT NULL,"
            " status_before_repair TEXT,"
            " checked_at TIMESTAMP NOT NULL,"
            " PRIMARY KEY (run_id, meter, customer_id, hour))"
        )
        for attempt in range(5):
            try:
                with self.engine.begin() as conn:
                    for statement in statements:
                        conn.execute(sa.text(statement))
                return
            except (sa.exc.IntegrityError, sa.exc.ProgrammingError, sa.exc.OperationalError):
                if attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))

    def write(self, run_id: str, window: ReconciliationWindow, cells: pd.DataFrame,
              before: pd.DataFrame | None = None) -> int:
        """Replace this run's rows with ``cells`` (a retried task rewrites, never duplicates).

        :param before: the cells before a repair, whose status lands in ``status_before_repair``.
        """
        checked_at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        previous: dict[tuple[str, str, int], str] = {}
        if before is not None and len(before):
            previous = dict(zip(zip(before["meter"], before["customer"], before["hour"].astype("int64")),
                                before["status"]))
        start, end = iso_hour(window.start_seconds), iso_hour(window.end_seconds)
        rows: list[dict[str, Any]] = [
            {"run_id": run_id, "interval_start": start, "interval_end": end, "meter": meter, "customer_id": customer,
             "hour": iso_hour(hour), "expected_sum": float(e_sum), "expected_count": int(e_count),
             "billed_sum": float(b_sum), "billed_count": int(b_count), "status": status,
             "status_before_repair": previous.get((meter, customer, int(hour))) if previous else None,
             "checked_at": checked_at}
            for meter, customer, hour, e_sum, e_count, b_sum, b_count, status in zip(
                cells["meter"], cells["customer"], cells["hour"], cells["expected_sum"], cells["expected_count"],
                cells["billed_sum"], cells["billed_count"], cells["status"])
        ]
        insert = sa.text(f"INSERT INTO {self.name} ({', '.join(COLUMNS)}) VALUES ({', '.join(':' + c for c in COLUMNS)})")
        with self.engine.begin() as conn:
            conn.execute(sa.text(f"DELETE FROM {self.name} WHERE run_id = :run_id"), {"run_id": run_id})
            for begin in range(0, len(rows), 10_000):
                conn.execute(insert, rows[begin : begin + 10_000])
        return len(rows)

    def rows(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Stored rows (of one run), ordered by meter, customer, hour."""
        sql = f"SELECT {', '.join(COLUMNS)} FROM {self.name}"
        params: dict[str, Any] = {}
        if run_id is not None:
            sql += " WHERE run_id = :run_id"
            params["run_id"] = run_id
        with self.engine.connect() as conn:
            result = conn.execute(sa.text(sql + " ORDER BY meter, customer_id, hour"), params)
            return [dict(row._mapping) for row in result]
