"""One events DAG run, task by task: plan → slices → finish, with its bookkeeping in the ledger.

* :func:`plan_run` discovers the configured streams, fixes each one's window (or a backfill's
  event-time interval) and records the plan; a stream that cannot be planned is a *problem* of the
  plan (the run fails once the others are delivered), a plan that cannot be made at all raises.
* :func:`run_slices` runs the slices of one mapped task, each recorded against its plan and window;
  a failing slice does not stop the others of its task, but fails the task.
* :func:`finish_run` closes the plan (watermarks over each stream's succeeded prefix, one
  ``sync_runs`` row per stream) and fails the run when any configured stream failed, when the plan
  itself never came, or when none of the configured streams exists — so Airflow's alerting fires.

No Airflow import: ``amberflo_sync.tasks`` builds the parts and calls in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from amberflo_sync.config import SyncConfig
from amberflo_sync.discovery_report import missing_event_sources
from amberflo_sync.events_sync import DryRun, sync_slice
from amberflo_sync.ledger import Ledger, PlanOutcome, bound_text
from amberflo_sync.planning import (
    Slice,
    check_backfill_interval,
    plan_backfill,
    plan_incremental,
    work_units,
)
from amberflo_sync.reader import EventStream, WarehouseReader
from amberflo_sync.redaction import error_text
from amberflo_sync.run_kinds import RunRules

log = logging.getLogger(__name__)

#: Runs in a row that read nothing from any stream before the run warns that the schema bills nothing.
QUIET_RUNS_WARNING = 3


class RunFailed(RuntimeError):
    """The run did not bill everything it was configured for (its message says what and why)."""


@dataclass
class Plan:
    """A recorded plan, as the tasks after it need it (the rest — kind, streams, problems — is in the
    ledger's ``plans`` row): its id, its slices grouped into mapped tasks, and the discovery answers."""

    plan_id: str
    units: list[list[dict[str, Any]]]
    #: the discovery answers (:meth:`WarehouseReader.catalog_to_dict`), handed to the slice tasks so
    #: that they send no discovery statement of their own
    catalog: dict[str, Any] = field(default_factory=dict)

    def to_xcom(self) -> dict[str, Any]:
        return {"plan_id": self.plan_id, "units": self.units, "catalog": self.catalog}


def looked_for(config: SyncConfig) -> list[str]:
    """What an events run is configured to bill, as ``schema.table`` patterns (for messages)."""
    out = []
    for schema in config.source_schemas:
        if config.events.pages:
            out.append(f"{schema}.pages")
        if config.events.screens:
            out.append(f"{schema}.screens")
        if config.events.tracks:
            include = ",".join(config.events.include) or "*"
            out.append(f"{schema}.<track tables: {include}>")
    return out


def plan_run(reader: WarehouseReader, ledger: Ledger, config: SyncConfig, rules: RunRules, *, run_id: str,
             dag_id: str | None = None, max_map_length: int = 1024, allow_older: bool = False) -> Plan:
    """Discover, plan and record this run's slices (see the module docstring).

    :raises Exception: discovery itself failed (warehouse unreachable, permission denied): the plan
        task fails, and so does the run.
    """
    statements_before = getattr(reader, "statements", 0)
    streams = reader.event_streams(config.source_schemas, config.events)
    catalog = reader.catalog_to_dict()
    for missing in missing_event_sources(catalog, config.source_schemas, config.events):
        log.warning("%s", missing)
    slices: list[Slice] = []
    problems: dict[str, str] = {}
    if rules.interval is not None:
        start, end = rules.interval
        check_backfill_interval(start, end, allow_older=allow_older)
        log.info("backfill of event times (%s, %s] over %d streams; watermarks stay where they are",
                 bound_text(start, ""), bound_text(end, ""), len(streams))
    marks = ledger.watermarks() if rules.interval is None else {}
    for stream in streams:
        try:
            if rules.interval is not None:
                slices += plan_backfill(reader, stream, rules.interval[0], rules.interval[1], config)
            else:
                mark = marks.get(stream.key)
                slices += plan_incremental(reader, None if mark is None else mark.value, stream, config)
        except Exception as exc:  # noqa: BLE001 - one stream's problem must not hide the others
            problems[stream.key] = error_text(exc)
            log.error("%s: could not plan: %s", stream.key, problems[stream.key])
    wanted = looked_for(config)
    if not streams:
        problems["(no stream)"] = (f"none of the configured streams exists in the warehouse; looked for "
                                   f"{', '.join(wanted)} (source_schemas: {', '.join(config.source_schemas)})")
        log.error("%s", problems["(no stream)"])
    statements = getattr(reader, "statements", 0) - statements_before
    plan_id = ledger.open_plan(run_id, rules.label, slices, dag_id=dag_id, looked_for=wanted, problems=problems,
                               statements=statements)
    bound = [s.bound_to(plan_id) for s in slices]
    units = work_units(bound, max_map_length=max_map_length)
    log.info("plan %s (%s): %d slices over %d streams in %d mapped tasks, %d warehouse statements: %s", plan_id,
             rules.label, len(bound), len(streams), len(units), statements, ", ".join(s.key for s in bound)
             or "nothing to do")
    for part in bound:
        log.info("  %s: %s in (%s, %s]", part.key, part.window.cursor or "whole table",
                 bound_text(part.window.lower, "beginning"), bound_text(part.window.upper, "end"))
    if rules.dry_run:
        log.info("dry run: found %d streams (%s); nothing will be sent and no watermark moves", len(streams),
                 ", ".join(s.key for s in streams) or "none")
    return Plan(plan_id, units, catalog)


def run_slices(unit: Sequence[dict[str, Any]], *, reader: WarehouseReader, ledger: Ledger, config: SyncConfig,
               rules: RunRules, run_id: str, sender: Callable[[], Any] | None, worker: str | None = None,
               dry_run_for: Callable[[EventStream], DryRun] | None = None,
               allow_old_events: bool = False, timings: Any = None) -> list[dict[str, Any]]:
    """Run the slices of one mapped task; every outcome lands in the ledger.

    :param sender: builds the sender for this task (None for dry runs, which send nothing).
    :raises RunFailed: a slice failed (after the others of the task ran); Airflow retries the task.
    """
    results, failures, first_error = [], [], None
    send = sender() if sender is not None else _refuse_to_send
    for data in unit:
        part = Slice.from_dict(data)
        if part.plan_id is None:
            raise RunFailed(f"slice {part.key} carries no plan id: it was not planned by this version")
        dry_run = dry_run_for(part.stream) if rules.dry_run and dry_run_for is not None else None
        if rules.dry_run and dry_run is None:
            dry_run = DryRun()
        try:
            stats = sync_slice(part.plan_id, part, reader=reader, ledger=ledger, send=send, config=config,
                               run_id=run_id, dry_run=dry_run, allow_old_events=allow_old_events,
                               retries_rejected=rules.retries_rejected, worker=worker, timings=timings)
        except Exception as exc:  # noqa: BLE001 - recorded by sync_slice; the task fails below
            failures.append(f"{part.key}: {error_text(exc)}")
            first_error = first_error or exc
            continue
        results.append(stats.to_dict() | {"slice": part.key})
    if failures:
        raise RunFailed(f"{len(failures)} of {len(unit)} slices failed: " + "; ".join(failures)) from first_error
    return results


def finish_run(plan: dict[str, Any] | None, *, ledger: Ledger, config: SyncConfig, rules: RunRules) -> str:
    """Close the plan and decide the run's outcome (see the module docstring); returns its summary."""
    if not plan or not plan.get("plan_id"):
        raise RunFailed("the plan task produced no plan (it failed or was skipped; see its log): nothing was "
                        "synced and no watermark moved")
    outcome = ledger.close_plan(plan["plan_id"], dry_run=rules.dry_run)
    line = outcome.summary(dry_run=rules.dry_run)
    for result in outcome.streams.values():
        log.info("%s", result.stats.summary())
    log.info("%s", line)
    _warn_if_quiet(outcome, ledger, config)
    failed = outcome.failed
    if failed:
        watermarks = ", ".join(f"{k} → {bound_text(r.watermark, '')}" for k, r in outcome.streams.items()
                               if r.watermark is not None) or "none"
        raise RunFailed(f"{len(failed)} configured stream(s) failed, their watermarks stay where they were "
                        f"(moved: {watermarks}): " + "; ".join(f"{k}: {v}" for k, v in sorted(failed.items())))
    return line


def _warn_if_quiet(outcome: PlanOutcome, ledger: Ledger, config: SyncConfig) -> None:
    """Warn when the configured streams have read nothing for several runs in a row."""
    if outcome.totals()["read"] or not outcome.streams or outcome.run_kind != "scheduled":
        return
    quiet = ledger.quiet_runs(list(outcome.streams), QUIET_RUNS_WARNING)
    if quiet >= QUIET_RUNS_WARNING:
        log.warning("the last %d runs read no row from %s (schemas %s): is Segment still loading into this "
                    "warehouse, and are these the right source_schemas?", quiet, ", ".join(sorted(outcome.streams)),
                    ", ".join(config.source_schemas))


def _refuse_to_send(records: Any) -> int:
    raise AssertionError("dry run must not send")

