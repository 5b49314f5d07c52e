"""DAG ``engage_audiences_to_amberflo``: Segment Engage audiences and computed traits → customer traits.

Only wiring lives here; the work is in ``plugins/amberflo_sync`` (``tasks``, ``engage_sync``).
"""

from __future__ import annotations

import datetime as dt
import os

from airflow.sdk import Param, dag, get_current_context, task
from airflow.timetables.interval import CronDataIntervalTimetable

#: Airflow pool capping concurrent Amberflo traffic (docker-compose creates `amberflo`).
AMBERFLO_POOL = os.environ.get("AMBERFLO_SYNC_POOL", "default_pool")

DOC_MD = """
### Engage audiences and computed traits → Amberflo customer traits

Every 3 hours (Segment expects its Amberflo audience syncs every 2–3 hours) this DAG sends Engage
audience membership and computed traits to Amberflo as **customer traits**: an audience is a trait
named with its key (the snake_cased audience name, e.g. `order_completed_last_30days`) set to
`"true"`/`"false"`; a computed trait is a trait with its value. Rules: `docs/mapping.md` in the
repository.

* **Spaces** — every `engage_*`/`personas_*` schema (or the configured ones), each as one mapped task.
  *Identify-shaped* spaces (`engage_<space>.users`, one row per user) are diffed against the last
  synced snapshot: only users whose audience or trait values changed are sent; an audience column
  seen for the first time is a first sync of that audience (every member gets `true`); a member that
  left gets `false`. *Track-shaped* spaces (`audience_entered`/`audience_exited`/`trait_computed`)
  are read incrementally; the latest event per user and key wins.
* **Never clobbers** — the traits merge into the same full customer records as the identify DAG's
  traits (`segment_identifies_to_amberflo`); both DAGs hold the `customers` lock in the state store
  while writing, so they never write the same customer at the same time.

#### Params (Trigger → "Trigger DAG w/ config", or `--conf` on the CLI)

| Param | default | what it does |
|---|---|---|
| `dry_run` | `false` | compute the changed customers as usual and log the first ones; send nothing, keep the snapshot |
| `dry_run_records` | `20` | how many customer records a dry run shows |
| `full_resync` | `false` | forget the snapshot and watermarks and resend every audience and trait |

#### What a manual run, a backfill and a clear do

* **Manual run**: diffs each space against the last snapshot now, like a scheduled run.
* **Backfill**: one run per 3-hour interval of the (inclusive) range, each named by the end of its
  interval; the warehouse holds only the current audiences, so each run sends what changed since the
  previous one and the later runs usually find nothing. To resend everything use `full_resync`.
* **Clear**: the task runs again; safe, because the snapshot moves only after a successful sync and
  unchanged customers are not written.

State: `engage_fingerprints`, `customers`, `watermarks`, `sync_runs`, `locks`
(`docs/state-tables.md`). Config: the `engage` keys in `docs/configuration.md`.
"""


@dag(
    dag_id="engage_audiences_to_amberflo",
    schedule=CronDataIntervalTimetable(os.environ.get("AMBERFLO_SYNC_ENGAGE_CRON", "0 */3 * * *"), timezone="UTC"),
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,
    doc_md=DOC_MD,
    tags=["segment", "amberflo", "engage", "customers"],
    default_args={
        "retries": int(os.environ.get("AMBERFLO_SYNC_TASK_RETRIES", "2")),
        "retry_delay": dt.timedelta(minutes=5),
    },
    params={
        "dry_run": Param(False, type="boolean", description="Log the first customer records; send nothing."),
        "dry_run_records": Param(20, type="integer", minimum=1, description="Customers to show in a dry run."),
        "full_resync": Param(False, type="boolean", description="Resend every audience and trait."),
    },
)
def engage_audiences_to_amberflo() -> None:
    @task
    def discover_spaces() -> list[dict[str, str]]:
        from amberflo_sync.tasks import discover_engage_spaces

        return discover_engage_spaces()

    @task(map_index_template="{{ space_key }}", pool=AMBERFLO_POOL)
    def sync_space(space: dict[str, str]) -> dict:
        from amberflo_sync.tasks import run_engage_space

        context = get_current_context()
        context["space_key"] = space["key"]  # type: ignore[typeddict-unknown-key]
        return run_engage_space(space, context)

    @task
    def summarize(results: list[dict]) -> str:
        from amberflo_sync.tasks import summarize as summarize_results

        # index instead of iterating: iterating a lazy XCom sequence probes one offset too far
        return summarize_results([results[i] for i in range(len(results))])

    summarize(sync_space.expand(space=discover_spaces()))


engage_audiences_to_amberflo()
