"""The state database on SQLite, DuckDB and PostgreSQL: tables, in-place upgrade, ids of any length, locks."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from amberflo_sync.customers import CustomerState
from amberflo_sync.ledger import Ledger
from amberflo_sync.reader import create_engine
from amberflo_sync.state import SCHEMA_VERSION, StateStore
from tests.locks import contend

LONG_ID = "u" * 5000  # longer than any VARCHAR(1024) and than PostgreSQL's btree entry limit


def make_store(kind: str, tmp_path, request) -> StateStore:
    if kind == "sqlite":
        return StateStore.from_url(f"sqlite:///{tmp_path / 'sub' / 'state.sqlite'}")
    if kind == "duckdb":
        return StateStore(create_engine(f"duckdb:///{tmp_path / 'w.duckdb'}"), schema="amberflo_sync")
    url = request.getfixturevalue("pg_url")
    return StateStore(sa.create_engine(url), schema=f"state_{uuid.uuid4().hex[:8]}")


@pytest.fixture(params=["sqlite", "duckdb", "postgres"])
def state(request, tmp_path):
    store = make_store(request.param, tmp_path, request)
    store.create()
    store.create()  # idempotent
    yield store
    if request.param == "postgres":
        with store.engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{store.schema}" CASCADE'))
    store.engine.dispose()


def test_customers_and_fingerprints_take_ids_of_any_length(state):
    state.save_customers([CustomerState(LONG_ID, {"name": "Long"}, {"name": 1}, {"customerId": LONG_ID})])
    assert state.load_customers([LONG_ID])[LONG_ID].values == {"name": "Long"}
    state.save_fingerprints("engage_x", {LONG_ID: 42})
    assert state.load_fingerprints("engage_x", [LONG_ID]) == {LONG_ID: 42}
    ledger = Ledger(state)
    ledger.record_rejected("prod.pages", [{"id": LONG_ID, "reason": "missing_customer_id", "row": {}}])
    assert ledger.rejected_rows("prod.pages")[0]["row_id"] == LONG_ID


def test_the_state_schema_is_written_unquoted_so_the_warehouse_folds_it(state):
    if state.dialect == "sqlite":
        assert state.table("watermarks") == "watermarks"
    else:
        assert state.table("watermarks").startswith(f"{state.schema}.")  # no quotes: AMBERFLO_SYNC on Snowflake


def test_two_concurrent_lock_holders_exactly_one_wins(state):
    won = contend(state)
    assert len(won) == 1
    assert not state.try_lock("customers", "third")
    state.release_lock("customers", won[0])
    assert state.try_lock("customers", "third")


def test_a_lock_whose_holder_died_is_taken_over_after_its_lease(state):
    assert state.try_lock("customers", "killed-worker", stale_after=0.0)
    assert state.try_lock("customers", "next-run")


def test_a_lock_holds_even_with_a_duplicate_lock_row(state):
    """Warehouses that do not enforce primary keys may hold two rows for one lock name."""
    with state.engine.begin() as conn:
        conn.execute(sa.text(f"INSERT INTO {state.table('locks')} (name) SELECT 'other' "))
    try:  # engines that enforce the primary key refuse the duplicate; the lock must hold either way
        with state.engine.begin() as conn:
            conn.execute(sa.text(f"INSERT INTO {state.table('locks')} (name) SELECT 'other' "))
    except sa.exc.DBAPIError:
        pass
    assert state.try_lock("other", "a")
    assert not state.try_lock("other", "b")


def test_tables_of_the_first_layout_are_upgraded_in_place(tmp_path):
    """A state database written by the first release (VARCHAR(1024) ids, primary-key lock) is upgraded on
    first use, keeping watermarks, rejected rows, runs and customers."""
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for statement in V1_TABLES:
            conn.execute(sa.text(statement))
        conn.execute(sa.text("INSERT INTO watermarks VALUES ('prod.pages', '2026-11-20T10:00:00+00:00', 'r1', "
                             "'2026-11-20 10:00:00')"))
        conn.execute(sa.text("INSERT INTO rejected_rows VALUES ('prod.pages', 'm-1', 'amberflo_rejected', '{}', "
                             "'2026-11-20 10:00:00', '2026-11-20 10:00:00', 2)"))
        conn.execute(sa.text("INSERT INTO customers VALUES ('c-1', '{\"name\": \"A\"}', '{\"name\": 1}', NULL, 'f', "
                             "'2026-11-20 10:00:00')"))
        conn.execute(sa.text("INSERT INTO sync_runs (run_id, stream, status, rows_read, rows_sent, duplicates, "
                             "rejected, skipped, seconds) VALUES ('r1', 'prod.pages', 'success', 3, 3, 0, 0, 0, 1.0)"))
        conn.execute(sa.text("INSERT INTO locks VALUES ('customers', 'dead', '2026-11-20 10:00:00')"))
    store = StateStore(engine)
    store.create()
    ledger = Ledger(store)
    assert str(ledger.watermark("prod.pages").value).startswith("2026-11-20 10:00:00")
    [rejected] = ledger.rejected_rows("prod.pages")
    assert (rejected["row_id"], rejected["attempts"], rejected["status"]) == ("m-1", 2, "open")
    assert store.load_customers(["c-1"])["c-1"].values == {"name": "A"}
    assert ledger.runs("prod.pages")[0]["rows_read"] == 3
    assert store.try_lock("customers", "new-holder")  # the old layout's held row does not block
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version FROM state_schema")).scalar() == SCHEMA_VERSION
    store.create()  # and again: nothing left to do


V1_TABLES = (
    "CREATE TABLE watermarks (stream VARCHAR(512) NOT NULL PRIMARY KEY, cursor_value VARCHAR(128) NOT NULL, "
    "run_id VARCHAR(512), updated_at TIMESTAMP NOT NULL)",
    "CREATE TABLE rejected_rows (stream VARCHAR(512) NOT NULL, row_id VARCHAR(1024) NOT NULL, reason VARCHAR(256) "
    "NOT NULL, row_json TEXT, first_seen TIMESTAMP NOT NULL, last_seen TIMESTAMP NOT NULL, attempts INTEGER NOT NULL, "
    "PRIMARY KEY (stream, row_id, reason))",
    "CREATE TABLE sync_runs (run_id VARCHAR(512) NOT NULL, stream VARCHAR(512) NOT NULL, status VARCHAR(32) NOT NULL, "
    "rows_read BIGINT NOT NULL, rows_sent BIGINT NOT NULL, duplicates BIGINT NOT NULL, rejected BIGINT NOT NULL, "
    "skipped BIGINT NOT NULL, seconds DOUBLE PRECISION NOT NULL, window_lower VARCHAR(128), window_upper VARCHAR(128), "
    "started_at TIMESTAMP, finished_at TIMESTAMP, error TEXT, details TEXT, PRIMARY KEY (run_id, stream))",
    "CREATE TABLE customers (customer_id VARCHAR(1024) NOT NULL PRIMARY KEY, values_json TEXT NOT NULL, "
    "times_json TEXT NOT NULL, record_json TEXT, fingerprint VARCHAR(64) NOT NULL, updated_at TIMESTAMP NOT NULL)",
    "CREATE TABLE engage_fingerprints (space VARCHAR(512) NOT NULL, customer_id VARCHAR(1024) NOT NULL, "
    "fingerprint BIGINT NOT NULL, PRIMARY KEY (space, customer_id))",
    "CREATE TABLE locks (name VARCHAR(256) NOT NULL PRIMARY KEY, holder VARCHAR(512) NOT NULL, "
    "acquired_at TIMESTAMP NOT NULL)",
)


def test_postgres_state_of_the_first_layout_takes_long_ids_after_the_upgrade(pg_url):
    """On PostgreSQL the first layout's VARCHAR(1024) refused a 1,025-character id on every run."""
    schema = f"state_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
        conn.execute(sa.text(f"SET search_path TO {schema}"))
        for statement in V1_TABLES:
            conn.execute(sa.text(statement))
    try:
        store = StateStore(engine, schema=schema)
        store.create()
        ledger = Ledger(store)
        ledger.record_rejected("prod.pages", [{"id": "x" * 1025, "reason": "missing_customer_id", "row": {}}])
        assert len(ledger.rejected_rows("prod.pages")[0]["row_id"]) == 1025
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()
