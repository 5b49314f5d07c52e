"""A worker killed mid-stream (SIGKILL: no ``except``, no ``finally``) loses and duplicates nothing.

The sync of ``prod.pages`` runs in its own process (``sync_one_stream.py``) with 10 records a request;
the test kills it once ``k`` requests reached Amberflo, then runs it again to completion. Afterwards
Amberflo must hold exactly what a fault-free run leaves, the killed run must not have moved the
watermark, and everything the second run re-sent must have arrived as the same bytes (absorbed as
duplicates, not billed again).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from amberflo_sync.emulator import EmulatorServer, FaultConfig
from amberflo_sync.state import StateStore, Watermark
from tests.reliability.rig import PYTHON, emulator_state, subprocess_env

API_KEY = "reliability-crash-key"
SCRIPT = Path(__file__).with_name("sync_one_stream.py")
SCHEMA, TABLE, KIND, METER, STREAM_KEY = "prod", "pages", "page", "page", "prod.pages"
BATCH_SIZE = 10
#: A few milliseconds per request keep the killed run alive long enough to be killed where we want.
LATENCY = FaultConfig(latency_ms=5)


@dataclass
class CrashScenario:
    """What a killed run and the run after it left behind."""

    kill_after: int
    killed_returncode: int
    watermark_at_kill: Watermark | None
    watermark_after_kill: Watermark | None
    runs_after_kill: list[dict]
    after_kill: dict[str, int]
    rerun_returncode: int
    rerun_output: str
    final: dict[str, int]
    final_state: frozenset[str]
    expected_state: frozenset[str]


def _start(warehouse: Path, state_url: str, emulator: EmulatorServer, run_id: str) -> subprocess.Popen[str]:
    command = [PYTHON, str(SCRIPT), "--warehouse", f"duckdb:///{warehouse}", "--state", state_url,
               "--amberflo", emulator.url, "--schema", SCHEMA, "--table", TABLE, "--kind", KIND,
               "--batch-size", str(BATCH_SIZE), "--run-id", run_id]
    return subprocess.Popen(command, env=subprocess_env(RELIABILITY_API_KEY=API_KEY), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _quiet(emulator: EmulatorServer, settle: float = 0.2) -> dict[str, int]:
    """Counters once the emulator has stopped changing (a request in flight at the kill may still land)."""
    last = emulator.stats()
    while True:
        time.sleep(settle)
        now = emulator.stats()
        if now == last:
            return now
        last = now


@pytest.fixture(scope="module", params=[1, 40], ids=["kill-after-1-batch", "kill-after-40-batches"])
def crash(request: pytest.FixtureRequest, demo_file: Path, fault_free: frozenset[str],
          tmp_path_factory: pytest.TempPathFactory) -> CrashScenario:
    kill_after: int = request.param
    state_url = f"sqlite:///{tmp_path_factory.mktemp('crash') / 'state.sqlite'}"
    expected = frozenset(r for r in fault_free if json.loads(r)["meterApiName"] == METER)
    state = StateStore.from_url(state_url)
    with EmulatorServer(api_key=API_KEY, faults=LATENCY) as emulator:
        process = _start(demo_file, state_url, emulator, "killed")
        try:
            while emulator.stats()["ingest_requests"] < kill_after:
                if process.poll() is not None:
                    pytest.fail(f"the sync ended before it could be killed: {process.stdout.read()}")  # type: ignore[union-attr]
                time.sleep(0.001)
            state.create()  # (idempotent) the child may not have created the tables yet on a fast kill
            watermark_at_kill = state.get_watermark(STREAM_KEY)
            os.kill(process.pid, signal.SIGKILL)
        finally:
            killed_returncode = process.wait(timeout=30)
            process.stdout.close()  # type: ignore[union-attr]
        after_kill = _quiet(emulator)
        watermark_after_kill = state.get_watermark(STREAM_KEY)
        runs_after_kill = state.runs(STREAM_KEY)

        rerun = _start(demo_file, state_url, emulator, "rerun")
        output, _ = rerun.communicate(timeout=120)
        final = emulator.stats()
        final_state = emulator_state(emulator)
    state.engine.dispose()
    print(f"\nkilled after {after_kill['ingest_requests']} requests ({after_kill['distinct']} records stored); "
          f"rerun re-sent {final['duplicates'] - after_kill['duplicates']} of them as duplicates")
    return CrashScenario(kill_after, killed_returncode, watermark_at_kill, watermark_after_kill, runs_after_kill,
                         after_kill, rerun.returncode, output, final, final_state, expected)


def test_the_killed_run_died_mid_stream(crash: CrashScenario) -> None:
    """Guards the test itself: the kill must land after ``k`` batches and before the end of the stream."""
    assert crash.killed_returncode == -signal.SIGKILL
    assert crash.after_kill["ingest_requests"] >= crash.kill_after
    assert 0 < crash.after_kill["distinct"] < len(crash.expected_state)


def test_the_killed_run_did_not_move_the_watermark(crash: CrashScenario) -> None:
    """Fails if the watermark is advanced before (or while) the window is sent: the rows not yet sent
    when the worker died would then never be billed."""
    assert crash.watermark_at_kill is None
    assert crash.watermark_after_kill is None
    assert not [r for r in crash.runs_after_kill if r["status"] == "success"]


def test_the_run_after_the_crash_leaves_the_fault_free_state(crash: CrashScenario) -> None:
    """Fails if the re-run skips what the killed run had not sent, or bills a row as a new record."""
    assert crash.rerun_returncode == 0, crash.rerun_output
    assert "status=success" in crash.rerun_output
    assert crash.final_state == crash.expected_state


def test_rows_resent_after_the_crash_arrive_as_identical_bytes(crash: CrashScenario) -> None:
    """Fails if rendering is not deterministic (a re-sent row would then be a second, billed record):
    every record stored before the kill comes again and is absorbed as a duplicate."""
    resent = crash.final["received"] - crash.after_kill["received"]
    absorbed = crash.final["duplicates"] - crash.after_kill["duplicates"]
    assert resent == len(crash.expected_state)
    assert absorbed == crash.after_kill["distinct"] > 0
    assert crash.final["distinct"] == len(crash.expected_state)
