"""DAG ``segment_events_to_amberflo``: hourly billing of Segment pages, screens and track events.

Only wiring lives here; the work is in ``plugins/amberflo_sync`` (see its ``tasks`` module).
"""

from __future__ import annotations

import datetime as dt
import os

from airflow.sdk import Param, PokeReturnValue, dag, get_current_context, task
from airflow.timetables.interval import CronDataIntervalTimetable

#: Airflow pool capping concurrent Amberflo traffic (docker-compose creates `amberflo`).
AMBERFLO_POOL = os.environ.get("AMBERFLO_SYNC_POOL", "default_pool")

DOC_MD = """
### Segment events → Amberflo meters

Every hour this DAG bills the Segment **page**, **screen** and **track** calls that landed in the
warehouse into Amberflo meter records (`shared/spec/mapping.md`): `page`/`screen` meters with value 1,
one meter per track event (value = the `value` property or 1), customer = `user_id` or
`anonymous_id`, dimensions = the call's properties (sanitized for Amberflo).

* **Streams and slices** — `plan_slices` lists `pages`, `screens` and every per-event track table in
  the configured source schemas (include/exclude lists in the YAML config) and cuts each stream's window
  into slices when it holds more than `fan_out.slice_rows` rows; `sync_slices` runs once per slice
  (mapped task named after its slices, in the pool `AMBERFLO_SYNC_POOL`; a failed slice is retried
  alone); `finish` moves each stream's watermark as far as its succeeded slices reach and logs the
  run's totals.
* **Backfills** — a run created by the UI's *Backfill* dialog or `airflow backfill create`, or any run
  given `start`/`end` Params, re-sends the events whose **event time** (`timestamp`) lies in that
  interval, from every stream, and moves no watermark. Re-sent events are byte-identical, so Amberflo
  adds nothing for events it already has. Intervals older than Amberflo's 60-day horizon are refused
  unless `allow_older_than_60_days` is set.
* **Exactly once** — each stream reads rows whose load time (`uuid_ts`) is newer than its watermark
  minus a 2 h overlap; records are byte-identical for the same row, so Amberflo drops re-sends. The
  watermark moves only after Amberflo accepted everything; a failed task moves nothing and can be
  cleared and re-run safely.
* **Rejected rows** (no customer id, no event time, a non-numeric `value`, …) are stored with a reason
  in the state schema's `rejected_rows`; every run writes its counts to `sync_runs`.
* **Customers first** — scheduled runs start with `wait_for_customers`, which waits (up to
  `customers.wait_minutes`, default 30) for `segment_identifies_to_amberflo`'s run of the same
  interval, so customers exist before their meters. Manual runs and backfills do not wait.
* **Params** — `dry_run`: log (and write to `dry_run_dir`) the first `dry_run_records` records and send
  nothing, moving no watermark.

Connections: `segment_warehouse` (SQLAlchemy URL), `amberflo_default` (host = API base URL,
password = API key). Config: `config/amberflo_sync.yaml` or `$AMBERFLO_SYNC_CONFIG`.
"""


@dag(
    dag_id="segment_events_to_amberflo",
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    # Runs may overlap (a manual run while a scheduled one waits for customers): each plans its own
    # windows in the ledger, re-sent records are byte-identical and watermarks never move backwards.
    max_active_runs=int(os.environ.get("AMBERFLO_SYNC_MAX_ACTIVE_RUNS", "3")),
    doc_md=DOC_MD,
    tags=["segment", "amberflo", "billing"],
    default_args={
        "retries": int(os.environ.get("AMBERFLO_SYNC_TASK_RETRIES", "2")),
        "retry_delay": dt.timedelta(minutes=2),
    },
    params={
        "dry_run": Param(False, type="boolean", description="Log the first records; send nothing."),
        "dry_run_records": Param(20, type="integer", minimum=1, description="Records to show in a dry run."),
        "start": Param(None, type=["null", "string"], description="Backfill: re-send events whose event time "
                       "is after this (ISO-8601, UTC). Needs end. Moves no watermark."),
        "end": Param(None, type=["null", "string"], description="Backfill: … and up to this event time."),
        "allow_older_than_60_days": Param(False, type="boolean", description="Backfill intervals older than "
                                          "Amberflo's 60-day horizon (only once Amberflo support agreed)."),
    },
)
def segment_events_to_amberflo() -> None:
    @task.sensor(poke_interval=60, timeout=6 * 3600, mode="reschedule")
    def wait_for_customers() -> PokeReturnValue:
        from amberflo_sync.tasks import customers_ready

        return PokeReturnValue(is_done=customers_ready(get_current_context()))

    @task
    def plan_slices() -> list[list[dict]]:
        from amberflo_sync.tasks import plan_event_slices

        context = get_current_context()
        plan = plan_event_slices(context)
        context["ti"].xcom_push("plan", plan)  # the whole plan, for finish
        return plan["units"]

    @task(map_index_template="{{ slice_keys }}", pool=AMBERFLO_POOL)
    def sync_slices(unit: list[dict]) -> list[dict]:
        from amberflo_sync.tasks import run_event_slices

        context = get_current_context()
        context["slice_keys"] = ", ".join(s["key"] for s in unit)  # type: ignore[typeddict-unknown-key]
        return run_event_slices(unit, context)

    @task(trigger_rule="all_done")
    def finish() -> str:
        from amberflo_sync.tasks import finish_event_run

        context = get_current_context()
        # pulled, not passed: a plan that failed leaves nothing, and finish must then fail the run
        return finish_event_run(context["ti"].xcom_pull(task_ids="plan_slices", key="plan"), context)

    units = plan_slices()
    wait_for_customers() >> units
    done = finish()
    sync_slices.expand(unit=units) >> done
    units >> done


segment_events_to_amberflo()
