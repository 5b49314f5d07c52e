"""The events DAG's own path — its task functions plan → slices → finish — without a scheduler.

Tests drive exactly the functions the DAG's tasks call (``amberflo_sync.tasks``), with the parts a
task would build from its connections (reader, state store, ledger) handed in, and the Amberflo
connection given the way Airflow gives it (``AIRFLOW_CONN_AMBERFLO_DEFAULT``). A run can be taken
apart the way Airflow takes it apart: plan once, run (or clear and re-run) any mapped task, finish.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from amberflo_sync.config import SyncConfig
from amberflo_sync.ledger import Ledger
from amberflo_sync.reader import WarehouseReader, create_engine
from amberflo_sync.state import StateStore
from amberflo_sync.tasks import Runtime, finish_event_run, plan_event_slices, run_event_slices

#: Fast retries (milliseconds instead of seconds): the policy is the same, the suite stays quick.
FAST_RETRY_EXTRAS = {"retry_base_delay": 0.01, "retry_max_delay": 0.05, "retry_min_delay": 0.01,
                     "retry_give_up_after": 10}


@contextlib.contextmanager
def amberflo_connection(url: str, api_key: str, **extras: Any) -> Iterator[None]:
    """``amberflo_default`` as an ``AIRFLOW_CONN_*`` JSON connection for the duration of the block."""
    name = "AIRFLOW_CONN_AMBERFLO_DEFAULT"
    before = os.environ.get(name)
    os.environ[name] = json.dumps({"conn_type": "amberflo", "host": url, "password": api_key,
                                   "extra": {**FAST_RETRY_EXTRAS, **extras}})
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


class FakeTI:
    """The parts of a task instance the events tasks use: the plan task's XCom, and DAG-run counts."""

    def __init__(self) -> None:
        self.plan: dict[str, Any] | None = None

    def xcom_pull(self, task_ids: str, key: str = "return_value") -> Any:
        return self.plan if (task_ids, key) == ("plan_slices", "plan") else None

    def get_dr_count(self, **_: Any) -> int:  # pragma: no cover - scheduled runs only
        return 0


@dataclass
class RunResult:
    """What one DAG run did: the plan, each mapped task's result or error, finish's line or error."""

    plan: dict[str, Any] | None
    plan_error: BaseException | None = None
    slices: list[list[dict[str, Any]] | BaseException] = field(default_factory=list)
    finish: str | BaseException | None = None

    @property
    def succeeded(self) -> bool:
        return isinstance(self.finish, str)


class DagPath:
    """One warehouse, one state database, one Amberflo: runs the events DAG's task functions.

    :param warehouse_url: SQLAlchemy URL of the warehouse (opened read-only when ``state_url`` is
        separate, as the DAG opens it).
    :param state_url: SQLAlchemy URL of the state database; None = state in the warehouse.
    """

    def __init__(self, warehouse_url: str, state_url: str | None, config: SyncConfig, *,
                 state_schema: str = "amberflo_sync", read_only: bool | None = None) -> None:
        self.config = config
        read_only = state_url is not None if read_only is None else read_only
        self.reader = WarehouseReader(create_engine(warehouse_url, read_only=read_only),
                                      chunk_rows=config.chunk_rows)
        self.state = (StateStore.from_url(state_url, schema=state_schema) if state_url
                      else StateStore(self.reader.engine, schema=state_schema))
        self.ledger = Ledger(self.state)
        self.runtime = Runtime(config, self.reader, self.state, self.ledger)
        self.count = 0

    def close(self) -> None:
        self.reader.engine.dispose()
        self.state.engine.dispose()

    def __enter__(self) -> DagPath:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def context(self, run_id: str | None = None, *, run_type: str = "manual",
                params: Mapping[str, Any] | None = None,
                interval: tuple[dt.datetime, dt.datetime] | None = None) -> dict[str, Any]:
        """A task context as Airflow gives it to the events tasks."""
        if run_id is None:
            self.count += 1
            run_id = f"{run_type}__run-{self.count}"
        start, end = interval or (None, None)
        return {"run_id": run_id, "params": {"dry_run": False, **dict(params or {})},
                "dag_run": type("DagRun", (), {"run_type": run_type})(), "ti": FakeTI(),
                "data_interval_start": start, "data_interval_end": end, "logical_date": end}

    def _task_runtime(self) -> Runtime:
        """The parts one task builds: a new reader each time (a reader keeps its catalog for its life)."""
        self.reader = WarehouseReader(self.reader.engine, chunk_rows=self.config.chunk_rows)
        self.runtime = Runtime(self.config, self.reader, self.state, self.ledger)
        return self.runtime

    def plan(self, context: Mapping[str, Any]) -> dict[str, Any]:
        plan = plan_event_slices(context, self._task_runtime())
        context["ti"].plan = plan  # as the DAG's plan task pushes it (key "plan")
        return plan

    def run_unit(self, unit: list[dict[str, Any]], context: Mapping[str, Any]) -> list[dict[str, Any]]:
        return run_event_slices(unit, context, self._task_runtime())

    def finish(self, plan: dict[str, Any] | None, context: Mapping[str, Any]) -> str:
        return finish_event_run(plan, context, self._task_runtime())

    def run(self, context: Mapping[str, Any] | None = None) -> RunResult:
        """A whole DAG run: plan, every mapped task (a failing one does not stop the others), finish
        (``trigger_rule="all_done"``)."""
        context = context or self.context()
        plan_error = None
        try:
            plan = self.plan(context)
        except Exception as exc:  # noqa: BLE001 - the plan task failed: finish still runs, with no plan
            plan, plan_error = None, exc
        result = RunResult(plan, plan_error)
        for unit in (plan or {}).get("units", []):
            try:
                result.slices.append(self.run_unit(unit, context))
            except Exception as exc:  # noqa: BLE001 - a failed mapped task, as Airflow records it
                result.slices.append(exc)
        try:
            result.finish = self.finish(plan, context)
        except Exception as exc:  # noqa: BLE001
            result.finish = exc
        return result
