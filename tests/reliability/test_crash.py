"""Workers killed on the events DAG's own path (SIGKILL: no ``except``, no ``finally``) lose and duplicate
nothing.

The mapped ``sync_slices`` task of a run over ``prod.pages`` runs in its own process
(``run_dag_task.py``) with 10 records a request. Two kills:

* **mid-stream** — killed once ``k`` requests reached Amberflo; Airflow retries the mapped task (same
  plan), then ``finish`` runs;
* **after Amberflo accepted everything, before the outcome was recorded** — the state database is
  held busy once every record arrived, the worker is killed while it waits to record its slice;
  ``finish`` must not count the slice, and the cleared run (a new plan) re-sends identical bytes.

Afterwards Amberflo must hold exactly what a fault-free run leaves, no watermark may have moved while
a slice was unrecorded, and everything re-sent must have arrived as the same bytes.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from amberflo_sync.emulator import EmulatorServer, FaultConfig
from amberflo_sync.ledger import Ledger, Watermark
from amberflo_sync.state import StateStore
from tests.reliability.rig import PYTHON, emulator_state, subprocess_env

API_KEY = "reliability-crash-key"
SCRIPT = Path(__file__).with_name("run_dag_task.py")
METER, STREAM_KEY = "page", "prod.pages"
#: A few milliseconds per request keep the killed run alive long enough to be killed where we want.
LATENCY = FaultConfig(latency_ms=5)


@dataclass
class CrashScenario:
    """What a killed task and the attempts after it left behind."""

    kill_after: int
    killed_returncode: int
    watermark_after_kill: Watermark | None
    slice_status_after_kill: str
    after_kill: dict[str, int]
    finish_output: str
    final: dict[str, int]
    final_state: frozenset[str]
    expected_state: frozenset[str]
    watermark: Watermark | None


def _task(task: str, warehouse: Path, state_url: str, emulator: EmulatorServer, run_id: str, plan: Path,
          **popen) -> subprocess.Popen[str]:
    command = [PYTHON, str(SCRIPT), task, "--warehouse", f"duckdb:///{warehouse}", "--state", state_url,
               "--run-id", run_id, "--plan", str(plan)]
    env = subprocess_env(AIRFLOW_CONN_AMBERFLO_DEFAULT=json.dumps(
        {"conn_type": "amberflo", "host": emulator.url, "password": API_KEY,
         "extra": {"batch_size": 10, "retry_base_delay": 0.01, "retry_max_delay": 0.05, "retry_min_delay": 0.01,
                   "retry_give_up_after": 10}}))
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def _run(*args, **kw) -> str:
    process = _task(*args, **kw)
    output, _ = process.communicate(timeout=180)
    assert process.returncode == 0, output[-3000:]
    return output


def _quiet(emulator: EmulatorServer, settle: float = 0.2) -> dict[str, int]:
    """Counters once the emulator has stopped changing (a request in flight at the kill may still land)."""
    last = emulator.stats()
    while True:
        time.sleep(settle)
        now = emulator.stats()
        if now == last:
            return now
        last = now


def _kill_when(process: subprocess.Popen[str], ready) -> int:
    try:
        while not ready():
            if process.poll() is not None:
                pytest.fail(f"the task ended before it could be killed: {process.stdout.read()}")  # type: ignore[union-attr]
            time.sleep(0.001)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        code = process.wait(timeout=30)
        process.stdout.close()  # type: ignore[union-attr]
    return code


@pytest.fixture(scope="module", params=["mid-stream-1", "mid-stream-40", "accepted-not-recorded"])
def crash(request: pytest.FixtureRequest, demo_file: Path, fault_free: frozenset[str],
          tmp_path_factory: pytest.TempPathFactory) -> CrashScenario:
    work = tmp_path_factory.mktemp("crash")
    state_path = work / "state.sqlite"
    state_url = f"sqlite:///{state_path}"
    plan_file = work / "plan.json"
    expected = frozenset(r for r in fault_free if json.loads(r)["meterApiName"] == METER)
    ledger = Ledger(StateStore.from_url(state_url))
    with EmulatorServer(api_key=API_KEY, faults=LATENCY) as emulator:
        _run("plan", demo_file, state_url, emulator, "killed", plan_file)
        plan = json.loads(plan_file.read_text())
        busy = None
        if request.param.startswith("mid-stream"):
            kill_after = int(request.param.rsplit("-", 1)[1])
            process = _task("slices", demo_file, state_url, emulator, "killed", plan_file)
            code = _kill_when(process, lambda: emulator.stats()["ingest_requests"] >= kill_after)
        else:
            kill_after = 0
            process = _task("slices", demo_file, state_url, emulator, "killed", plan_file)

            def everything_accepted() -> bool:
                nonlocal busy
                if emulator.stats()["distinct"] < len(expected):
                    return False
                busy = sqlite3.connect(state_path, timeout=30)
                busy.execute("BEGIN EXCLUSIVE")  # the worker cannot record its outcome now
                return True

            code = _kill_when(process, everything_accepted)
            time.sleep(0.3)  # it is blocked on the state database (or in its last send)
        if busy is not None:
            busy.rollback()
            busy.close()
        after_kill = _quiet(emulator)
        watermark_after_kill = ledger.watermark(STREAM_KEY)
        [row] = ledger.slices(plan["plan_id"])
        slice_status = row["status"]
        if request.param.startswith("mid-stream"):
            _run("slices", demo_file, state_url, emulator, "killed", plan_file)  # Airflow retries the task
            finish = _task("finish", demo_file, state_url, emulator, "killed", plan_file)
            finish_output, _ = finish.communicate(timeout=60)
            assert finish.returncode == 0, finish_output
        else:
            finish = _task("finish", demo_file, state_url, emulator, "killed", plan_file)
            finish_output, _ = finish.communicate(timeout=60)
            assert finish.returncode != 0 and "did not finish" in finish_output, finish_output
            assert ledger.watermark(STREAM_KEY) is None
            # the user clears the run: plan, slices and finish again, with a new plan
            _run("plan", demo_file, state_url, emulator, "killed", plan_file)
            _run("slices", demo_file, state_url, emulator, "killed", plan_file)
            finish_output = _run("finish", demo_file, state_url, emulator, "killed", plan_file)
        final = emulator.stats()
        final_state = emulator_state(emulator)
    watermark = ledger.watermark(STREAM_KEY)
    ledger.engine.dispose()
    return CrashScenario(kill_after, code, watermark_after_kill, slice_status, after_kill, finish_output, final,
                         final_state, expected, watermark)


def test_the_killed_task_died_where_it_was_meant_to(crash: CrashScenario) -> None:
    """Guards the test itself: a mid-stream kill lands after ``k`` batches and before the end of the
    stream; the other one after every record was accepted."""
    assert crash.killed_returncode == -signal.SIGKILL
    assert crash.after_kill["ingest_requests"] >= crash.kill_after
    if crash.kill_after:
        assert 0 < crash.after_kill["distinct"] < len(crash.expected_state)
    else:
        assert crash.after_kill["distinct"] == len(crash.expected_state)


def test_the_killed_task_moved_no_watermark_and_left_its_slice_unfinished(crash: CrashScenario) -> None:
    """Fails if the watermark is advanced before the outcome is recorded, or if a dead slice counts."""
    assert crash.watermark_after_kill is None
    assert crash.slice_status_after_kill == "running"


def test_the_attempts_after_the_crash_leave_the_fault_free_state(crash: CrashScenario) -> None:
    """Fails if a later attempt skips what the killed one had not sent, or bills a row as a new record."""
    assert "1 streams" in crash.finish_output and "failed=" not in crash.finish_output.splitlines()[-1]
    assert crash.final_state == crash.expected_state
    assert crash.watermark is not None


def test_rows_resent_after_the_crash_arrive_as_identical_bytes(crash: CrashScenario) -> None:
    """Fails if rendering is not deterministic (a re-sent row would then be a second, billed record):
    every record stored before the kill comes again and is absorbed as a duplicate."""
    resent = crash.final["received"] - crash.after_kill["received"]
    absorbed = crash.final["duplicates"] - crash.after_kill["duplicates"]
    assert resent == len(crash.expected_state)
    assert absorbed == crash.after_kill["distinct"] > 0
    assert crash.final["distinct"] == len(crash.expected_state)

