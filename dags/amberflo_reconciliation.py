"""DAG ``amberflo_reconciliation``: daily proof that what Amberflo bills equals what the warehouse holds.

Only wiring lives here; the work is in ``plugins/amberflo_sync/reconcile_tasks.py`` and
``plugins/amberflo_sync/reconciliation/``.
"""

from __future__ import annotations

import datetime as dt
import os

from airflow.sdk import Param, dag, get_current_context, task
from airflow.timetables.interval import CronDataIntervalTimetable

#: Airflow pool capping concurrent Amberflo traffic (docker-compose creates `amberflo`).
AMBERFLO_POOL = os.environ.get("AMBERFLO_SYNC_POOL", "default_pool")

DOC_MD = """
### Reconciliation: warehouse vs Amberflo, cell by cell

For every meter × customer × hour of the interval it compares the **expected** SUM and COUNT — the
records a sync sends, rendered from the warehouse by the project's own mapping (rejected rows are
listed, not expected) — with what **Amberflo bills** (its usage API, batched: one `/usage/batch` call
covers many meters). Each cell is `match`, `missing`, `excess` or `pending` (younger than
`reconciliation.settle_hours`, default 27: Amberflo's usage may still change).

* Results: state table `reconciliation`, a summary line per meter, a Markdown report in the log and
  an HTML chart + JSON drill-down under `reconciliation.reports_dir`.
* Drift beyond the tolerance (`reconciliation.max_drifted_cells`, `tolerance`) **fails the task** with
  the counts; the drill-down names the records behind every drifted cell (missing uniqueIds,
  unexpected ones, same uniqueId with different bytes).
* **Params** — `start`/`end`: the event-time interval (default: the 7 days ending `settle_hours` ago;
  intervals older than 60 days are refused); `meters`: only these; `repair`: re-send missing records
  byte-identically and cancel excess records the project sent (never anyone else's), then reconcile
  again; `dry_run`: with `repair`, only report what it would send; `settle_hours`: override the delay.
* **Manual run** — reconciles the default interval (or `start`/`end`) now; it sends nothing unless
  `repair` is set. **Backfill** — a UI backfill makes one run per day, each reconciling the default
  interval relative to when it runs (give `start`/`end` to pin an interval). **Clear** — re-runs the
  reconciliation; it is read-only unless `repair` is set, so clearing is always safe.

Docs: README "Reconciliation"; the records compared are those of `docs/mapping.md`; the Amberflo usage
API it reads is in `docs/amberflo-api.md`; the result table is in `docs/state-tables.md`.
"""


@dag(
    dag_id="amberflo_reconciliation",
    schedule=CronDataIntervalTimetable("30 4 * * *", timezone="UTC"),
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,
    doc_md=DOC_MD,
    tags=["segment", "amberflo", "billing", "reconciliation"],
    default_args={
        "retries": int(os.environ.get("AMBERFLO_SYNC_TASK_RETRIES", "2")),
        "retry_delay": dt.timedelta(minutes=5),
    },
    params={
        "start": Param(None, type=["null", "string"], description="Event-time interval start (ISO-8601, UTC). "
                       "Needs end. Default: the configured days ending settle_hours ago."),
        "end": Param(None, type=["null", "string"], description="Event-time interval end (ISO-8601, UTC)."),
        "meters": Param([], type="array", items={"type": "string"}, description="Only these meters (default all)."),
        "repair": Param(False, type="boolean", description="Re-send missing records, cancel the project's "
                        "excess records, and reconcile again."),
        "dry_run": Param(False, type="boolean", description="With repair: report what would be sent, send nothing."),
        "settle_hours": Param(None, type=["null", "number"], minimum=0, description="Override "
                              "reconciliation.settle_hours (younger hours are pending)."),
    },
)
def amberflo_reconciliation() -> None:
    @task(pool=AMBERFLO_POOL)
    def reconcile() -> dict:
        from amberflo_sync.reconcile_tasks import run_reconciliation

        return run_reconciliation(get_current_context())

    reconcile()


amberflo_reconciliation()
