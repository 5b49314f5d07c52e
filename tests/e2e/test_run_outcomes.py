"""A run's outcome is the truth (issue 16), through real ``airflow dags test`` runs: a plan that fails,
a stream that fails, and a run that finds none of its streams end the run ``failed``."""

from __future__ import annotations

import pytest

from amberflo_sync.emulator import FaultConfig
from amberflo_sync.ledger import Ledger
from amberflo_sync.state import StateStore
from tests.segment_rows import event_rows

pytestmark = pytest.mark.airflow


class Unreachable:
    """A warehouse whose database does not exist: every statement fails."""

    url = "postgresql+psycopg2://root@127.0.0.1:5432/amberflo_sync_no_such_database"

    def dispose(self) -> None:
        pass


def test_a_plan_that_fails_fails_the_run_and_moves_nothing(airflow, emulator):
    runner = airflow(Unreachable())
    result = runner.dags_test("segment_events_to_amberflo")
    assert not result.succeeded
    assert "the plan task produced no plan" in result.output
    assert Ledger(StateStore.from_url(runner.state_url)).watermarks() == {}
    assert emulator.stats()["requests"] == 0


def test_one_failing_stream_fails_the_run_after_the_others_are_delivered(duckdb_warehouse, airflow, emulator):
    duckdb_warehouse.write("prod", "pages", event_rows(3, prefix="p"))
    calls = event_rows(6, prefix="a", event_text="ApiCalls")
    calls["user_id"] = "user_unknown"  # Amberflo refuses every record of this stream for one reason
    duckdb_warehouse.write("prod", "api_calls", calls)
    emulator.set_faults(FaultConfig(refuse_customers=("user_unknown",)))
    runner = airflow(duckdb_warehouse)
    result = runner.dags_test("segment_events_to_amberflo")
    assert not result.succeeded
    assert "prod.api_calls" in result.output and "AmberfloSystemicRefusal" in result.output
    ledger = Ledger(StateStore.from_url(runner.state_url))
    assert ledger.watermark("prod.pages") is not None and ledger.watermark("prod.api_calls") is None
    assert sorted(r["uniqueId"] for r in emulator.records()) == ["p-0", "p-1", "p-2"]
    runs = {r["stream"]: r for r in ledger.runs()}
    assert runs["prod.pages"]["status"] == "success" and runs["prod.api_calls"]["status"] == "failed"
    assert "does not exist" in runs["prod.api_calls"]["error"]


def test_a_run_that_finds_none_of_its_streams_fails_and_lists_what_it_looked_for(duckdb_warehouse, airflow,
                                                                              emulator):
    duckdb_warehouse.write("prod", "identifies", event_rows(1, prefix="i"))  # a source, but nothing billable
    runner = airflow(duckdb_warehouse)
    result = runner.dags_test("segment_events_to_amberflo")
    assert not result.succeeded
    assert "none of the configured streams exists" in result.output
    assert "prod.pages" in result.output and "ios_app.screens" in result.output
