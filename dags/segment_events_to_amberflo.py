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
warehouse into Amberflo meter records: `page`/`screen` meters with value 1, one meter per track event
(value = the `value` property or 1), customer = `user_id` or `anonymous_id`, dimensions = the call's
properties (sanitized for Amberflo). Field by field: `docs/mapping.md` in the repository.

* **Streams and slices** — `plan_slices` lists `pages`, `screens` and every per-event track table in
  the configured source schemas (include/exclude lists in the YAML config) and cuts each stream's window
  into slices when it holds more than `fan_out.slice_rows` rows; `sync_slices` runs once per slice
  (mapped task named after its slices, in the pool `AMBERFLO_SYNC_POOL`; a failed slice is retried
  alone); `finish` moves each stream's watermark as far as its succeeded slices reach and logs the
  run's totals.
* **Exactly once** — each stream reads rows whose load time (`uuid_ts`) is newer than its watermark
  minus a 2 h overlap; records are byte-identical for the same row, so Amberflo drops re-sends. The
  watermark moves only after Amberflo accepted everything.
* **Rejected rows** (no customer id, no event time, a non-numeric `value`, …) are stored with a reason
  in the state table `rejected_rows`; every run writes its counts to `sync_runs`
  (`docs/state-tables.md`).
* **Customers first** — scheduled runs start with `wait_for_customers`, which waits (up to
  `customers.wait_minutes`, default 30) for `segment_identifies_to_amberflo`'s run of the same
  interval, so customers exist before their meters. Manual runs and backfills do not wait.

#### Params (Trigger → "Trigger DAG w/ config", or `--conf` on the CLI)

| Param | default | what it does |
|---|---|---|
| `dry_run` | `false` | read and map as usual, log (and write to `dry_run_dir`) the first records of each stream; send nothing, move no watermark, write no `sync_runs` row |
| `dry_run_records` | `20` | how many records a dry run shows per stream |
| `start` | empty | backfill: re-send the events whose **event time** (`timestamp`) is after this (ISO-8601, UTC); needs `end` |
| `end` | empty | backfill: … and up to this event time (inclusive) |
| `allow_older_than_60_days` | `false` | let a backfill reach further back than Amberflo's 60-day horizon (only once Amberflo support agreed) |

#### What a manual run, a backfill and a clear do

* **Manual run** (Trigger, no `start`/`end`): bills what was loaded since the watermark, like a
  scheduled run, but does not wait for the identify DAG.
* **Backfill** (Trigger → Backfill, `airflow backfill create`, or a run given `start`/`end`): one run
  per hourly interval of the range — the range is inclusive and each run is named by the end of its
  interval, so 10:00 → 12:00 makes three runs. Each re-sends the events whose event time lies in its
  interval from every stream and **moves no watermark**; events Amberflo already has add nothing.
  Intervals older than 60 days are refused unless `allow_older_than_60_days` is set.
* **Clear** (a task or the run): the cleared tasks run again. Safe at any time: a failed slice moved
  nothing, re-sent records are byte-identical and de-duplicated by Amberflo, and `finish` moves each
  watermark only as far as the succeeded slices reach.

Connections: `segment_warehouse` (SQLAlchemy URL) and `amberflo_default` (type **Amberflo**: API base
URL, API key). Config: `config/amberflo_sync.yaml` or `$AMBERFLO_SYNC_CONFIG` (`docs/configuration.md`).
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
        units = plan.pop("units")
        context["ti"].xcom_push("plan", plan)  # its id and catalog, for the slices and finish
        return units

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
