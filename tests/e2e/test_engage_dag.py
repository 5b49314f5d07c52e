"""Real ``airflow dags test engage_audiences_to_amberflo`` on generated Engage data (both shapes)."""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest

from amberflo_sync.formatting import format_value

pytestmark = pytest.mark.airflow


def expected_traits(path: str) -> dict[str, dict[str, str]]:
    """What Amberflo must hold after a first sync: every member's audiences "true", every computed
    trait with its value — computed straight from ``engage_default.users``."""
    con = duckdb.connect(path, read_only=True)
    try:
        frame = con.execute("SELECT * FROM engage_default.users").df()
        types = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                                 "WHERE table_schema = 'engage_default' AND table_name = 'users'").fetchall())
    finally:
        con.close()
    out: dict[str, dict[str, str]] = {}
    for row in frame.to_dict("records"):
        traits = {}
        for column, sql_type in types.items():
            if column in ("id", "received_at", "uuid_ts"):
                continue
            value = row[column]
            if sql_type == "BOOLEAN":
                if value is True:
                    traits[column] = "true"
            elif value is not None and value == value:
                traits[column] = format_value(value)
        if traits:
            out[row["id"]] = traits
    return out


def test_engage_dag_sends_first_sync_then_nothing(tmp_path, airflow, emulator):
    from amberflo_sync.demo.generate import generate_warehouse
    from tests.warehouse import Warehouse

    path = tmp_path / "demo.duckdb"
    generate_warehouse(f"duckdb:///{path}", events=2000, seed=3, now=dt.datetime(2026, 11, 28, 12, tzinfo=dt.timezone.utc))
    runner = airflow(Warehouse(f"duckdb:///{path}"))
    first = runner.dags_test("engage_audiences_to_amberflo")
    assert first.succeeded, first.output[-5000:]
    assert "engage_default: status=success" in first.output and "personas_legacy: status=success" in first.output
    held = {k: c["traits"] for k, c in emulator.customers().items()}
    assert held == expected_traits(str(path))
    calls = emulator.stats()["requests"]
    second = runner.dags_test("engage_audiences_to_amberflo")
    assert second.succeeded, second.output[-5000:]
    assert emulator.stats()["requests"] == calls
