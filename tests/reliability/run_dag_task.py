"""Run one task function of the events DAG in a process of its own, so that a test can SIGKILL it.

A killed worker runs no ``except``/``finally``: whatever the task wrote before the kill is all the
next attempt has to go on. The parts are built the way ``amberflo_sync.tasks`` builds them (warehouse
read-only, state in its own database), and the Amberflo connection comes from
``AIRFLOW_CONN_AMBERFLO_DEFAULT`` as in Airflow — the key never on the command line.

Usage::

    python tests/reliability/run_dag_task.py slices --warehouse duckdb:////tmp/w.duckdb \\
        --state sqlite:////tmp/state.sqlite --run-id run-1 --plan /tmp/plan.json --unit 0
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from amberflo_sync.config import EventsConfig, SyncConfig
from tests.dag_path import DagPath


def pages_only(schema: str, *, chunk_rows: int = 200, batch_size: int = 10) -> SyncConfig:
    """The config of the crash tests: ``<schema>.pages`` only, many small requests."""
    return SyncConfig(source_schemas=(schema,), chunk_rows=chunk_rows, batch_size=batch_size,
                      events=EventsConfig(screens=False, tracks=False), progress_every_seconds=3600)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=("plan", "slices", "finish"))
    parser.add_argument("--warehouse", required=True, help="SQLAlchemy URL of the warehouse")
    parser.add_argument("--state", required=True, help="SQLAlchemy URL of the state database")
    parser.add_argument("--schema", default="prod")
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--plan", required=True, help="file the plan is written to / read from")
    parser.add_argument("--unit", type=int, default=0)
    args = parser.parse_args(argv)
    with DagPath(args.warehouse, args.state, pages_only(args.schema)) as dag:
        context = dag.context(args.run_id)
        if args.task == "plan":
            with open(args.plan, "w", encoding="utf-8") as out:
                json.dump(dag.plan(context), out)
            return 0
        with open(args.plan, encoding="utf-8") as source:
            plan = json.load(source)
        if args.task == "slices":
            results = dag.run_unit(plan["units"][args.unit], context)
            print(json.dumps(results, default=str), flush=True)
        else:
            print(dag.finish(plan, context), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
