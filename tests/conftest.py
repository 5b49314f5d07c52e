"""Shared fixtures: the emulator over real HTTP, real DuckDB files and a real PostgreSQL.

PostgreSQL tests skip with a reason when 127.0.0.1:5432 is unreachable — unless
``AMBERFLO_SYNC_REQUIRE_SERVICES=1`` (set by ``.ci/run``), where an unreachable server is a failure:
CI must never skip them.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from amberflo_sync.emulator import EmulatorServer
from tests.warehouse import Warehouse

API_KEY = "test-key-" + uuid.uuid4().hex
PG_URL = os.environ.get("AMBERFLO_SYNC_TEST_PG_URL", "postgresql+psycopg2://root@127.0.0.1:5432/test")
REQUIRE_SERVICES = os.environ.get("AMBERFLO_SYNC_REQUIRE_SERVICES") == "1"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip (laptop) or fail (CI) when a service the test needs is not listening."""
    if _reachable(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if REQUIRE_SERVICES:
        pytest.fail(message + " and AMBERFLO_SYNC_REQUIRE_SERVICES=1 forbids skipping")
    pytest.skip(message + " (start it to run this test)")


@pytest.fixture
def api_key() -> str:
    return API_KEY


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(api_key=API_KEY) as server:
        yield server


@pytest.fixture
def pg_url() -> str:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    return PG_URL


@pytest.fixture
def duckdb_warehouse(tmp_path) -> Iterator[Warehouse]:
    warehouse = Warehouse(f"duckdb:///{tmp_path / 'warehouse.duckdb'}", prefix="")
    yield warehouse
    warehouse.dispose()


@pytest.fixture
def pg_warehouse(pg_url) -> Iterator[Warehouse]:
    """A PostgreSQL warehouse whose schemas carry a unique suffix, dropped afterwards."""
    warehouse = Warehouse(pg_url, prefix=f"t{uuid.uuid4().hex[:8]}_")
    yield warehouse
    warehouse.drop_all()
    warehouse.dispose()


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse(request) -> Warehouse:
    """Each test using it runs on a DuckDB file and on PostgreSQL."""
    return request.getfixturevalue("duckdb_warehouse" if request.param == "duckdb" else "pg_warehouse")


@pytest.fixture
def sqlite_state_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'state.sqlite'}"


def scalar(url: str, sql: str):
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(sql)).scalar()
    finally:
        engine.dispose()
