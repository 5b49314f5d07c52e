"""The registry of benchmark cases: what runs, against which warehouse and sink, at which sizes.

A case is one measured run in a fresh process (so its peak RSS is its own). To add one — the
customers sync, the Engage diff — write a runner with the :data:`Runner` signature and register a
:class:`Case`; ``bench_events.py`` picks it up (``--cases`` filters by name, glob patterns allowed).

A runner receives a :class:`CaseContext` and returns at least ``rows`` and ``seconds``; ``stages``
(busy seconds per stage) and anything else are printed when present.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class CaseContext:
    """Everything a runner needs: where the rows are and where to send them."""

    warehouse_url: str
    schema: str
    sink_url: str
    api_key: str
    work_dir: str
    client_overrides: dict[str, Any] = field(default_factory=dict)
    config_overrides: dict[str, Any] = field(default_factory=dict)


Runner = Callable[[CaseContext], dict[str, Any]]


@dataclass(frozen=True)
class Case:
    """One benchmark case.

    :param name: ``<what>/<warehouse>/<sink>[/<implementation>]``, e.g. ``events/duckdb/null``.
    :param warehouse: ``duckdb`` or ``postgres`` (which generated warehouse it reads).
    :param sink: ``null`` (the null HTTP sink) or ``emulator`` (validation on).
    :param runner: key of its :data:`Runner` in :data:`RUNNERS` (looked up in the child process).
    :param max_rows: largest size the case runs at by default (bigger sizes skip it).
    :param peer_of: for a peer case, the case whose rows/s it is compared with (``ours/peer``).
    """

    name: str
    warehouse: str
    sink: str
    runner: str
    max_rows: int
    peer_of: str | None = None


def _events_ours(context: CaseContext) -> dict[str, Any]:
    from benchkit.ours import run_events_sync

    with tempfile.TemporaryDirectory(dir=context.work_dir) as tmp:
        return run_events_sync(context.warehouse_url, context.sink_url, context.api_key,
                               str(Path(tmp) / "state.sqlite"), context.schema,
                               context.client_overrides, **context.config_overrides)


def _events_ours_connection(context: CaseContext) -> dict[str, Any]:
    from benchkit.ours import run_events_sync

    with tempfile.TemporaryDirectory(dir=context.work_dir) as tmp:
        return run_events_sync(context.warehouse_url, context.sink_url, context.api_key,
                               str(Path(tmp) / "state.sqlite"), context.schema,
                               context.client_overrides, via_connection=True, **context.config_overrides)


def _events_sdk(context: CaseContext) -> dict[str, Any]:
    from benchkit.peer import run_sdk_peer

    return run_sdk_peer(context.warehouse_url, context.sink_url, context.api_key, context.schema)


RUNNERS: dict[str, Runner] = {"events_ours": _events_ours, "events_sdk": _events_sdk,
                              "events_ours_connection": _events_ours_connection}

M = 1_000_000
#: Every case, in the order they run and print. The 10M size runs the DuckDB null-sink case only
#: (the memory check); raise ``max_rows`` (or pass ``--max-rows-override``) to run more at 10M.
CASES: list[Case] = [
    Case("events/duckdb/null", "duckdb", "null", "events_ours", max_rows=10 * M),
    Case("events/duckdb/null/sdk", "duckdb", "null", "events_sdk", max_rows=1 * M, peer_of="events/duckdb/null"),
    Case("events/duckdb/emulator", "duckdb", "emulator", "events_ours", max_rows=1 * M),
    Case("events/postgres/null", "postgres", "null", "events_ours", max_rows=1 * M),
    # the same through a `postgres` Airflow connection (PostgresHook builds the engine, as in the DAG)
    Case("events/postgres/null/connection", "postgres", "null", "events_ours_connection", max_rows=1 * M),
    Case("events/postgres/null/sdk", "postgres", "null", "events_sdk", max_rows=100_000, peer_of="events/postgres/null"),
    Case("events/postgres/emulator", "postgres", "emulator", "events_ours", max_rows=1 * M),
    # Later: Case("customers/duckdb/emulator", ...), Case("engage/duckdb/emulator", ...) with their runners.
]


def register(case: Case, runner: Runner | None = None) -> None:
    """Add a case (and its runner under ``case.runner``) to the registry."""
    if runner is not None:
        RUNNERS[case.runner] = runner
    CASES.append(case)
