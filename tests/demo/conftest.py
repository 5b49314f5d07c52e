"""Fixtures for the demo warehouse generator: DuckDB files in tmp dirs, isolated PostgreSQL schemas.

``pg_url`` comes from ``tests/conftest.py``: it skips (or, in CI, fails) when PostgreSQL is down.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from amberflo_sync.demo.generate import generate_warehouse
from tests.demo.demo_helpers import EVENTS, NOW, duckdb_url, pg_connect


@pytest.fixture(scope="session")
def demo_warehouse(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    """One 20k-event demo warehouse (DuckDB file), shared read-only by the layout and quirk tests."""
    path = tmp_path_factory.mktemp("demo") / "warehouse.duckdb"
    summary = generate_warehouse(duckdb_url(path), events=EVENTS, seed=42, now=NOW)
    return path, summary


@pytest.fixture
def pg_suffix(pg_url: str) -> Iterator[str]:
    """A schema suffix of this test alone; every schema carrying it is dropped afterwards."""
    suffix = f"_t{uuid.uuid4().hex[:8]}"
    yield suffix
    con = pg_connect(pg_url)
    try:
        with con.cursor() as cur:
            cur.execute("SELECT schema_name FROM information_schema.schemata WHERE lower(schema_name) LIKE %s",
                        (f"%{suffix.lower()}",))
            for (schema,) in cur.fetchall():
                cur.execute('DROP SCHEMA "{}" CASCADE'.format(schema.replace('"', '""')))
        con.commit()
    finally:
        con.close()
