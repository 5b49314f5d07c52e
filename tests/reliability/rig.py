"""The reliability suite's rig: the events sync wired like the DAG task wires it, minus Airflow.

Every reliability claim is "the final Amberflo state equals the fault-free one", so the rig also gives
the one way to compare states: each distinct record the emulator holds as canonical JSON (sorted keys),
compared as sets — order of arrival and batching are free to differ, content is not.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amberflo_sync.client import AmberfloClient, ClientSettings
from amberflo_sync.config import SyncConfig
from amberflo_sync.emulator import EmulatorServer, FaultConfig
from amberflo_sync.events_sync import sync_stream
from amberflo_sync.reader import EventStream, WarehouseReader, create_engine
from amberflo_sync.retry import RetryPolicy
from amberflo_sync.state import RunStats, StateStore

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
    """Reader, state store and Amberflo client for one warehouse, one state database and one emulator.

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
        self.reader = WarehouseReader(create_engine(self.warehouse_url, read_only=True),
                                      chunk_rows=self.config.chunk_rows)
        self.state = StateStore.from_url(self.state_url)
        self.state.create()

    def close(self) -> None:
        """Release the warehouse file (DuckDB admits one writing process) and the state database."""
        self.reader.engine.dispose()
        self.state.engine.dispose()

    def __enter__(self) -> SyncRig:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def streams(self) -> list[EventStream]:
        """The streams the DAG's ``discover_streams`` would map over."""
        return self.reader.event_streams(self.config.source_schemas, self.config.events)

    def client(self) -> AmberfloClient:
        settings = ClientSettings(base_url=self.amberflo_url, api_key=self.api_key,
                                  batch_size=self.config.batch_size, read_timeout=self.read_timeout,
                                  connect_timeout=2.0)
        return AmberfloClient(settings, retry=self.retry)

    def sync(self, stream: EventStream, run_id: str | None = None) -> RunStats:
        """Sync one stream with a fresh client (as one DAG task does); raises what stopped it."""
        self._runs += 1
        with self.client() as client:
            try:
                return sync_stream(stream, reader=self.reader, state=self.state, send=client.ingest_records,
                                   config=self.config, run_id=run_id or f"run-{self._runs}")
            finally:
                self.retries += client.stats.retries
                self.requests += client.stats.requests

    def sync_all(self, run_id: str | None = None,
                 streams: Iterable[EventStream] | None = None) -> dict[str, RunStats | BaseException]:
        """Sync every stream (like one DAG run: a failing stream does not stop the others)."""
        self._runs += 1
        run_id = run_id or f"run-{self._runs}"
        outcome: dict[str, RunStats | BaseException] = {}
        for stream in streams if streams is not None else self.streams():
            try:
                outcome[stream.key] = self.sync(stream, run_id)
            except Exception as exc:  # noqa: BLE001 - recorded per stream, asserted by the caller
                outcome[stream.key] = exc
        return outcome


def fault_free_state(warehouse_url: str, state_url: str, api_key: str) -> frozenset[str]:
    """What Amberflo holds after one fault-free sync of every stream of ``warehouse_url``."""
    with EmulatorServer(api_key=api_key) as emulator, SyncRig(warehouse_url, state_url, emulator.url, api_key) as rig:
        outcome = rig.sync_all("fault-free")
        failed = {k: v for k, v in outcome.items() if not isinstance(v, RunStats)}
        assert not failed, f"the fault-free sync failed: {failed}"
        return emulator_state(emulator)
