"""The reliability suite's rig: the events DAG's own task functions (plan → slices → finish), minus
the scheduler.

Every reliability claim is "the final Amberflo state equals the fault-free one", so the rig also gives
the one way to compare states: each distinct record the emulator holds as canonical JSON (sorted keys),
compared as sets — order of arrival and batching are free to differ, content is not.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amberflo_sync.config import SyncConfig
from amberflo_sync.emulator import EmulatorServer, FaultConfig
from amberflo_sync.ledger import RunStats
from amberflo_sync.reader import EventStream
from amberflo_sync.retry import RetryPolicy
from tests.dag_path import DagPath, RunResult, amberflo_connection

REPO = Path(__file__).resolve().parents[2]
#: End of the generated demo period (fixed, so the data and thus the records are reproducible).
NOW = dt.datetime(2026, 11, 28, 12, tzinfo=dt.timezone.utc)
DEMO_EVENTS = 3000
SOURCE_SCHEMAS = ("prod", "ios_app")
#: Many small requests, so that faults and kills land in the middle of a stream.
CONFIG = SyncConfig(source_schemas=SOURCE_SCHEMAS, chunk_rows=500, batch_size=25, progress_every_seconds=3600)
#: Back-off in milliseconds instead of seconds: the suite must stay fast, the logic is the same.
FAST_RETRY = RetryPolicy(base_delay=0.01, max_delay=0.05, give_up_after=10.0)
#: ~31% of API requests fail, in every way the client must survive; 429s ask for no wait at all.
MIXED_FAULTS = FaultConfig(
    rate_429=0.08,
    rate_500=0.06,
    rate_502=0.05,
    rate_503=0.05,
    rate_drop=0.04,
    rate_slow=0.03,
    slow_ms=900,
    retry_after=0,
    seed=20261128,
)
#: Below ``MIXED_FAULTS.slow_ms`` (a slow answer times out) and far above a normal answer (~ms).
READ_TIMEOUT = 0.3
FAULT_COUNTERS = ("fault_429", "fault_500", "fault_502", "fault_503", "fault_drop", "fault_slow", "fault_outage",
                  "fault_wrong_key")


def canonical(record: Mapping[str, Any]) -> str:
    """A record as canonical JSON: two records are the same Amberflo record iff these are equal."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def emulator_state(emulator: EmulatorServer) -> frozenset[str]:
    """The distinct records Amberflo holds, canonicalized; asserts no record is stored twice."""
    records = [canonical(r) for r in emulator.records()]
    assert len(records) == len(set(records)), "the emulator stored one record twice"
    return frozenset(records)


def injected_faults(emulator: EmulatorServer) -> dict[str, int]:
    stats = emulator.stats()
    return {name: stats[name] for name in FAULT_COUNTERS if stats[name]}


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment of a child Python process that imports the project like the tests do.

    An inherited ``PYTHONPATH`` is kept (after the project's folders), so whatever the parent test run
    put there reaches the child too.
    """
    env = dict(os.environ)
    paths = [str(REPO / "plugins"), str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.update(extra)
    return env


PYTHON = sys.executable


@dataclass
class SyncRig:
    """The events DAG's own task functions (plan → slices → finish, :mod:`tests.dag_path`) over one
    warehouse, one state database and one emulator.

    :param warehouse_url: SQLAlchemy URL of the warehouse (a DuckDB file is opened read-only, as the DAG
        opens it when state lives elsewhere).
    :param state_url: SQLAlchemy URL of the state database.
    :param amberflo_url: base URL of the emulator (or any server).
    :param api_key: the key to send.
    """

    warehouse_url: str
    state_url: str
    amberflo_url: str
    api_key: str
    config: SyncConfig = CONFIG
    retry: RetryPolicy = FAST_RETRY
    read_timeout: float = 5.0
    retries: int = 0
    requests: int = 0
    _runs: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        self.dag = DagPath(self.warehouse_url, self.state_url, self.config)
        self.reader, self.state, self.ledger = self.dag.reader, self.dag.state, self.dag.ledger

    def close(self) -> None:
        """Release the warehouse file (DuckDB admits one writing process) and the state database."""
        self.dag.close()

    def __enter__(self) -> SyncRig:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def streams(self) -> list[EventStream]:
        """The streams the DAG's plan would find."""
        return self.reader.event_streams(self.config.source_schemas, self.config.events)

    def connection(self) -> Any:
        """``amberflo_default`` as the DAG's tasks read it, with this rig's retry policy and timeouts."""
        return amberflo_connection(
            self.amberflo_url, self.api_key, batch_size=self.config.batch_size, read_timeout=self.read_timeout,
            connect_timeout=2.0, retry_base_delay=self.retry.base_delay, retry_max_delay=self.retry.max_delay,
            retry_min_delay=self.retry.min_delay, retry_give_up_after=self.retry.give_up_after)

    def run(self, run_id: str | None = None) -> RunResult:
        """One whole DAG run (manual)."""
        self._runs += 1
        context = self.dag.context(run_id or f"run-{self._runs}")
        with self.connection():
            result = self.dag.run(context)
        for unit in result.slices:
            if isinstance(unit, list) and unit:
                self.requests += max(int(r.get("http_requests") or 0) for r in unit)
                self.retries += max(int(r.get("http_retries") or 0) for r in unit)
        return result

    def sync_all(self, run_id: str | None = None) -> dict[str, RunStats | BaseException]:
        """One DAG run over every stream; each stream's outcome (its run row, or why it failed)."""
        run_id = run_id or f"run-{uuid.uuid4().hex[:8]}"
        result = self.run(run_id)
        outcome: dict[str, RunStats | BaseException] = {}
        for row in self.ledger.runs(run_id=run_id):
            stats = RunStats(row["run_id"], row["stream"], status=row["status"], read=row["rows_read"],
                             sent=row["rows_sent"], duplicates=row["duplicates"], rejected=row["rejected"],
                             skipped=row["skipped"], abandoned=row["abandoned"] or 0, error=row["error"],
                             details=json.loads(row["details"]) if row["details"] else None)
            outcome[row["stream"]] = stats if row["status"] == "success" else RuntimeError(row["error"])
        if result.plan_error is not None and not outcome:
            outcome["(plan)"] = result.plan_error
        return outcome


def fault_free_state(warehouse_url: str, state_url: str, api_key: str) -> frozenset[str]:
    """What Amberflo holds after one fault-free sync of every stream of ``warehouse_url``."""
    with EmulatorServer(api_key=api_key) as emulator, SyncRig(warehouse_url, state_url, emulator.url, api_key) as rig:
        outcome = rig.sync_all("fault-free")
        failed = {k: v for k, v in outcome.items() if not isinstance(v, RunStats)}
        assert not failed, f"the fault-free sync failed: {failed}"
        return emulator_state(emulator)
