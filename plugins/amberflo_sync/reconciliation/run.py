"""One reconciliation: expected (warehouse) vs billed (Amberflo), drill-down, optional repair, re-check.

No Airflow here: :mod:`amberflo_sync.reconcile_tasks` builds the parts and calls :func:`reconcile`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from amberflo_sync.config import SyncConfig
from amberflo_sync.reader import WarehouseReader
from amberflo_sync.reconciliation.billed import read_billed
from amberflo_sync.reconciliation.compare import DRIFT, compare_cells, counts_by_status
from amberflo_sync.reconciliation.drilldown import CellDrill, RepairPlan, drill_down, plan_repair
from amberflo_sync.reconciliation.expected import ExpectedRecords, read_expected
from amberflo_sync.reconciliation.report import rejected_summary, summary_lines
from amberflo_sync.reconciliation.table import iso_hour
from amberflo_sync.reconciliation.window import ReconciliationWindow

log = logging.getLogger(__name__)


class ReconciliationDrift(RuntimeError):
    """Drift beyond the tolerance: the task fails with the counts, so Airflow's alerting fires."""


@dataclass
class ReconciliationResult:
    """Everything one run found (and did)."""

    run_id: str
    window: ReconciliationWindow
    cells: pd.DataFrame
    cells_before_repair: pd.DataFrame | None = None
    drills: list[CellDrill] = field(default_factory=list)
    drills_left_out: int = 0
    repair: RepairPlan | None = None
    dry_run: bool = False
    rejected: dict[tuple[str, str], int] = field(default_factory=dict)
    rejected_ids: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    meters: list[str] = field(default_factory=list)
    api_calls: int = 0
    seconds: float = 0.0
    expected_records: int = 0

    @property
    def counts(self) -> dict[str, int]:
        return counts_by_status(self.cells)

    @property
    def drifted(self) -> int:
        counts = self.counts
        return sum(counts[s] for s in DRIFT)

    def summary(self) -> dict[str, Any]:
        """What a ``sync_runs``-style row of this run should hold (JSON-safe)."""
        before = counts_by_status(self.cells_before_repair) if self.cells_before_repair is not None else None
        return {
            "run_id": self.run_id,
            "interval_start": iso_hour(self.window.start_seconds),
            "interval_end": iso_hour(self.window.end_seconds),
            "settled_before": self.window.settled_before.isoformat(),
            "meters": self.meters,
            "cells": len(self.cells),
            "status_counts": self.counts,
            "status_counts_before_repair": before,
            "expected_records": self.expected_records,
            "expected_count": int(self.cells["expected_count"].sum()) if len(self.cells) else 0,
            "billed_count": int(self.cells["billed_count"].sum()) if len(self.cells) else 0,
            "expected_sum": float(self.cells["expected_sum"].sum()) if len(self.cells) else 0.0,
            "billed_sum": float(self.cells["billed_sum"].sum()) if len(self.cells) else 0.0,
            "rejected_by_reason": rejected_summary(self.rejected),
            "resent": len(self.repair.resend) if self.repair else 0,
            "cancelled": len(self.repair.cancel) if self.repair else 0,
            "foreign_not_cancelled": len(self.repair.foreign) if self.repair else 0,
            "dry_run": self.dry_run,
            "api_calls": self.api_calls,
            "seconds": round(self.seconds, 3),
        }

    def to_dict(self) -> dict[str, Any]:
        drifted = self.cells[self.cells["status"].isin(DRIFT)]
        before = self.cells_before_repair
        drifted_before = before[before["status"].isin(DRIFT)] if before is not None else drifted
        return {
            "summary": self.summary(),
            "drifted_cells": _cell_dicts(drifted),
            "drifted_cells_before_repair": _cell_dicts(drifted_before),
            "drilldown": [d.to_dict() | {"hour": iso_hour(d.hour)} for d in self.drills],
            "repair": None if self.repair is None else {
                "resent_ids": sorted({_uid(t) for t in self.repair.resend}),
                "cancelled_ids": sorted({r["uniqueId"] for r in self.repair.cancel}),
                "foreign_ids": sorted({r["uniqueId"] for r in self.repair.foreign}),
            },
            "rejected": [{"stream": s, "reason": r, "rows": n, "ids_sample": self.rejected_ids.get((s, r), [])}
                         for (s, r), n in sorted(self.rejected.items())],
        }


def reconcile(
    *,
    reader: WarehouseReader,
    client: Any,
    config: SyncConfig,
    window: ReconciliationWindow,
    run_id: str,
    meters: Sequence[str] | None = None,
    repair: bool = False,
    dry_run: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> ReconciliationResult:
    """Reconcile every meter × customer × hour of ``window``; repair when asked, then check again.

    :param client: an :class:`~amberflo_sync.client.AmberfloClient` (usage, events and ingestion).
    :param meters: only these meters (default: every meter the configured streams bill).
    :param repair: re-send missing records and cancel the project's excess records.
    :param dry_run: with ``repair``, plan and report the repair but send nothing.
    """
    settings = config.reconciliation
    began = time.monotonic()
    calls_before = client.stats.requests
    expected = read_expected(reader, config, window, meters=meters)
    chosen = list(meters) if meters else expected.meters
    expected_cells = expected.cells()
    log.info("expected side: %d records in %d cells, %.1f s", expected.records.num_rows, len(expected_cells),
             time.monotonic() - began)

    def check() -> pd.DataFrame:
        billed = read_billed(client, chosen, window, queries_per_call=settings.queries_per_call,
                             max_groups=settings.max_groups, sparse=settings.sparse_usage)
        return compare_cells(expected_cells, billed, settled_seconds=window.settled_seconds,
                             tolerance=settings.tolerance)

    asked = time.monotonic()
    cells = check()
    log.info("billed side: %d meters from the usage API, %.1f s", len(chosen), time.monotonic() - asked)
    result = ReconciliationResult(run_id, window, cells, meters=chosen, rejected=expected.rejected,
                                  rejected_ids=expected.rejected_ids, expected_records=expected.records.num_rows,
                                  dry_run=dry_run)
    drifted = cells[cells["status"].isin(DRIFT)]
    if len(drifted):
        examined = drifted.head(settings.drilldown_max_cells)
        detail = read_expected(reader, config, window, meters=meters, only_cells=examined)  # with their bytes
        result.drills = drill_down(client, examined, detail, page_size=settings.events_page_size)
        result.drills_left_out = max(0, len(drifted) - settings.drilldown_max_cells)
        for drill in result.drills:
            log.warning("drift %s × %s × %s (%s): missing=%s unexpected=%s different_bytes=%s", drill.meter,
                        drill.customer, iso_hour(drill.hour), drill.status, drill.missing_ids, drill.unexpected_ids,
                        drill.different_bytes_ids)
        if repair:
            result.repair = _repair(client, result, expected, dry_run=dry_run)
            if not dry_run and (result.repair.resend or result.repair.cancel):
                result.cells_before_repair = cells
                result.cells = _recheck(check, settings.repair_recheck_seconds,
                                        settings.repair_recheck_every_seconds, sleep)
    result.api_calls = client.stats.requests - calls_before
    result.seconds = time.monotonic() - began
    for line in summary_lines(result.cells) if len(result.cells) else ["reconciliation: no usage on either side"]:
        log.info("%s", line)
    return result


def _repair(client: Any, result: ReconciliationResult, expected: ExpectedRecords, *, dry_run: bool) -> RepairPlan:
    plan = plan_repair(result.drills, expected)
    if plan.foreign:
        log.warning("not cancelling %d records that the project did not send: %s", len(plan.foreign),
                    sorted({r["uniqueId"] for r in plan.foreign})[:50])
    if dry_run:
        log.info("dry run: would cancel %d records and re-send %d", len(plan.cancel), len(plan.resend))
        return plan
    if plan.cancel:  # cancel first: a re-sent record can never be taken for the one being cancelled
        client.ingest_records(plan.cancellation_records())
        log.info("repair: sent %d cancellation records", len(plan.cancel))
    if plan.resend:
        client.ingest_records(plan.resend)
        log.info("repair: re-sent %d missing records byte-identically", len(plan.resend))
    return plan


def _recheck(check: Callable[[], pd.DataFrame], within: float, every: float,
             sleep: Callable[[float], None]) -> pd.DataFrame:
    """Reconcile the interval again until it shows no drift, or ``within`` seconds passed (Amberflo's
    usage may take a while to reflect the repair; the emulator's reflects it at once)."""
    deadline = time.monotonic() + within
    while True:
        cells = check()
        if not cells["status"].isin(DRIFT).any() or time.monotonic() + every > deadline:
            return cells
        log.info("repair not visible in usage yet; checking again in %.0f s", every)
        sleep(every)


def fail_on_drift(result: ReconciliationResult, max_drifted_cells: int) -> None:
    """Raise :class:`ReconciliationDrift` with the counts when more cells drifted than allowed."""
    counts = result.counts
    if result.drifted > max_drifted_cells:
        raise ReconciliationDrift(
            f"reconciliation {result.window.describe()}: {result.drifted} drifted cells (missing={counts['missing']} "
            f"excess={counts['excess']}; match={counts['match']} pending={counts['pending']}), more than the "
            f"{max_drifted_cells} allowed (reconciliation.max_drifted_cells). See the drill-down in the report.")


def _cell_dicts(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{"meter": m, "customer": c, "hour": iso_hour(h), "status": s, "expected_count": int(ec),
             "billed_count": int(bc), "expected_sum": float(es), "billed_sum": float(bs)}
            for m, c, h, s, ec, bc, es, bs in zip(frame["meter"], frame["customer"], frame["hour"], frame["status"],
                                                  frame["expected_count"], frame["billed_count"],
                                                  frame["expected_sum"], frame["billed_sum"])]


def _uid(text: str) -> str:
    import orjson

    return orjson.loads(text)["uniqueId"]
