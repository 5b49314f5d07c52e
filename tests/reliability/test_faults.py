"""Under API faults every unit still reaches Amberflo exactly once.

The oracle is a fault-free sync of the same warehouse into a second emulator: whatever happens on the
wire (429 with ``Retry-After: 0``, 500/502/503, dropped connections, answers slower than the read
timeout, a total outage longer than the retry budget), the final set of distinct records must be the
same — no lost record (lost revenue), no record stored twice with different bytes (a double charge).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from amberflo_sync.client import AmberfloUnavailableError
from amberflo_sync.demo.generate import load_new_batch
from amberflo_sync.emulator import EmulatorServer, FaultConfig
from amberflo_sync.ledger import RunStats, Watermark
from tests.airflow_runner import AirflowRunner
from tests.reliability.rig import (
    FAST_RETRY,
    MIXED_FAULTS,
    NOW,
    READ_TIMEOUT,
    SyncRig,
    emulator_state,
    fault_free_state,
    injected_faults,
)

API_KEY = "reliability-faults-key"


# --------------------------------------------------------------------------------------------------
# ~30% of requests fail in mixed ways
# --------------------------------------------------------------------------------------------------
@dataclass
class FaultyRun:
    """What one sync of every stream through :data:`MIXED_FAULTS` left behind."""

    outcome: dict[str, RunStats | BaseException]
    state: frozenset[str]
    stats: dict[str, int]
    faults: dict[str, int]
    client_retries: int
    client_requests: int
    watermarks: dict[str, Watermark | None]


@pytest.fixture(scope="module")
def faulty_run(demo_file: Path, tmp_path_factory: pytest.TempPathFactory) -> FaultyRun:
    """Sync every stream of the demo warehouse while ~31% of requests fail (run once per module)."""
    state_url = f"sqlite:///{tmp_path_factory.mktemp('faulty') / 'state.sqlite'}"
    with EmulatorServer(api_key=API_KEY, faults=MIXED_FAULTS) as emulator, SyncRig(
        f"duckdb:///{demo_file}", state_url, emulator.url, API_KEY, read_timeout=READ_TIMEOUT
    ) as rig:
        outcome = rig.sync_all("faulty")
        run = FaultyRun(
            outcome=outcome,
            state=emulator_state(emulator),
            stats=emulator.stats(),
            faults=injected_faults(emulator),
            client_retries=rig.retries,
            client_requests=rig.requests,
            watermarks={key: rig.ledger.watermark(key) for key in outcome},
        )
    print(
        f"\nmixed faults: {run.client_requests} requests, {run.client_retries} retries; injected {run.faults}; "
        f"emulator received={run.stats['received']} distinct={run.stats['distinct']} "
        f"duplicates={run.stats['duplicates']}"
    )
    return run


def test_every_stream_succeeds_through_mixed_faults(faulty_run: FaultyRun) -> None:
    """Guards: retrying 429/5xx/drops/timeouts at all (fails if any of them is treated as final)."""
    failed = {k: v for k, v in faulty_run.outcome.items() if not isinstance(v, RunStats)}
    assert not failed
    assert all(s.status == "success" and s.balanced for s in faulty_run.outcome.values())  # type: ignore[union-attr]


def test_mixed_faults_leave_exactly_the_fault_free_state(faulty_run: FaultyRun, fault_free: frozenset[str]) -> None:
    """Guards exactly-once under faults: fails if a failed batch is skipped (a lost record) or if a
    retried batch is re-rendered differently (a second, different record for the same row)."""
    assert faulty_run.state == fault_free
    assert faulty_run.stats["distinct"] == len(fault_free)


def test_every_kind_of_fault_was_injected_and_retried(faulty_run: FaultyRun) -> None:
    """Guards the test itself: a fault mix that silently stopped injecting would prove nothing.
    Every injected fault costs the client at least one retry."""
    for kind in ("fault_429", "fault_500", "fault_502", "fault_503", "fault_drop", "fault_slow"):
        assert faulty_run.faults.get(kind, 0) > 0, f"{kind} never happened: {faulty_run.faults}"
    assert faulty_run.client_retries >= sum(faulty_run.faults.values())


def test_batches_answered_too_slowly_are_resent_and_absorbed(faulty_run: FaultyRun) -> None:
    """A slow answer is stored by Amberflo but times out at the client: the re-send must be byte-identical
    (counted as duplicates, never as new records). Fails if the client does not retry read timeouts."""
    assert faulty_run.stats["duplicates"] >= faulty_run.faults["fault_slow"]
    assert faulty_run.stats["received"] == faulty_run.stats["distinct"] + faulty_run.stats["duplicates"]


def test_watermarks_move_after_a_run_that_rode_out_the_faults(faulty_run: FaultyRun) -> None:
    """Faults that were retried successfully must not hold a stream back."""
    assert all(mark is not None for mark in faulty_run.watermarks.values())


# --------------------------------------------------------------------------------------------------
# a total outage longer than the retry budget
# --------------------------------------------------------------------------------------------------
#: Retries stop after 0.3 s: an outage of an hour is far beyond the budget.
SHORT_BUDGET = replace(FAST_RETRY, give_up_after=0.3)
OUTAGE = FaultConfig(outage_seconds=3600)


@dataclass
class OutageScenario:
    """A first run, a new Segment load, a run during an outage, and a run after it."""

    before: dict[str, Watermark | None]
    during_outcome: dict[str, RunStats | BaseException]
    during: dict[str, Watermark | None]
    failed_runs: list[dict]
    after_outcome: dict[str, RunStats | BaseException]
    after: dict[str, Watermark | None]
    final_state: frozenset[str]
    expected_state: frozenset[str]


@pytest.fixture(scope="module")
def outage(demo_file: Path, tmp_path_factory: pytest.TempPathFactory) -> OutageScenario:
    work = tmp_path_factory.mktemp("outage")
    path = work / "demo.duckdb"
    shutil.copy(demo_file, path)
    url = f"duckdb:///{path}"
    state_url = f"sqlite:///{work / 'state.sqlite'}"
    with EmulatorServer(api_key=API_KEY) as emulator:
        with SyncRig(url, state_url, emulator.url, API_KEY) as rig:
            first = rig.sync_all("first")
            assert all(isinstance(s, RunStats) for s in first.values())
            before = {key: rig.ledger.watermark(key) for key in first}
        load_new_batch(url, events=600, seed=9, now=NOW + dt.timedelta(hours=2))

        emulator.set_faults(OUTAGE)
        with SyncRig(url, state_url, emulator.url, API_KEY, retry=SHORT_BUDGET) as rig:
            during_outcome = rig.sync_all("during-outage")
            during = {key: rig.ledger.watermark(key) for key in during_outcome}
            failed_runs = [r for r in rig.ledger.runs() if r["run_id"] == "during-outage"]

        emulator.set_faults(None)
        with SyncRig(url, state_url, emulator.url, API_KEY) as rig:
            after_outcome = rig.sync_all("after-outage")
            after = {key: rig.ledger.watermark(key) for key in after_outcome}
        final_state = emulator_state(emulator)
    expected_state = fault_free_state(url, f"sqlite:///{work / 'expected.sqlite'}", API_KEY)
    return OutageScenario(before, during_outcome, during, failed_runs, after_outcome, after, final_state,
                          expected_state)


def test_outage_beyond_the_retry_budget_fails_each_stream_with_unavailable_error(outage: OutageScenario) -> None:
    """Guards giving up: fails if the client retries forever or reports the outage as something else
    (or as success)."""
    errors = list(outage.during_outcome.values())
    assert errors and all(AmberfloUnavailableError.__name__ in str(e) for e in errors), errors
    assert all("failed after" in str(e) and "HTTP 503" in str(e) for e in errors)


def test_outage_moves_no_watermark(outage: OutageScenario) -> None:
    """Guards "watermark moves last": fails if a watermark is advanced before (or despite) the send."""
    assert outage.during == outage.before
    assert outage.after != outage.before  # the new load did move them once Amberflo was back


def test_outage_records_a_failed_sync_runs_row_with_the_error(outage: OutageScenario) -> None:
    """Guards the run history: a failed run must be visible in ``sync_runs`` with its cause."""
    assert {r["stream"] for r in outage.failed_runs} == set(outage.during_outcome)
    for run in outage.failed_runs:
        assert run["status"] == "failed"
        assert f"{AmberfloUnavailableError.__name__}: " in run["error"]
        assert run["rows_read"] > 0


def test_run_after_the_outage_completes_the_window_with_the_fault_free_state(outage: OutageScenario) -> None:
    """Guards re-sending the failed window: fails if rows of the failed run are skipped afterwards."""
    assert all(isinstance(s, RunStats) and s.status == "success" for s in outage.after_outcome.values())
    assert outage.final_state == outage.expected_state


# --------------------------------------------------------------------------------------------------
# the same through a real `airflow dags test`
# --------------------------------------------------------------------------------------------------
#: The DAG keeps its production retry policy (back-off from 1 s, doubling), so this run makes fewer
#: requests and leans on 429s (``Retry-After: 0``, no wait); slow answers are covered in-process above.
DAG_FAULTS = FaultConfig(rate_429=0.2, rate_500=0.04, rate_502=0.04, rate_503=0.04, rate_drop=0.03,
                         retry_after=0, seed=10)


#: Three streams instead of nine: each mapped task costs Airflow seconds of its own.
DAG_EVENTS = {"screens": False, "include": ["api_calls"]}
DAG_METERS = {"page", "ApiCalls"}


@pytest.mark.airflow
def test_dag_run_under_mixed_faults_bills_the_fault_free_state(
    demo_copy: Path, fault_free: frozenset[str], airflow_home: Path, tmp_path: Path
) -> None:
    """Guards the production wiring (hook → client → retry policy): fails if the DAG's client does not
    retry, or retries in a way that loses or changes records."""
    expected = frozenset(r for r in fault_free if json.loads(r)["meterApiName"] in DAG_METERS)
    with EmulatorServer(api_key=API_KEY, faults=DAG_FAULTS) as emulator:
        runner = AirflowRunner(airflow_home, tmp_path, warehouse_url=f"duckdb:///{demo_copy}",
                               amberflo_url=emulator.url, api_key=API_KEY, config={"events": DAG_EVENTS})
        result = runner.dags_test("segment_events_to_amberflo")
        faults = injected_faults(emulator)
        print(f"\nairflow dags test under faults: injected {faults}; emulator {emulator.stats()}")
        assert result.succeeded, result.output[-5000:]
        assert sum(faults.values()) > 0
        assert emulator_state(emulator) == expected
