"""DAG ``segment_identifies_to_amberflo``: hourly Segment identifies → full Amberflo customer records.

Only wiring lives here; the work is in ``plugins/amberflo_sync`` (``tasks``, ``identifies_sync``).
"""

from __future__ import annotations

import datetime as dt
import os

from airflow.sdk import Param, dag, get_current_context, task
from airflow.timetables.interval import CronDataIntervalTimetable

#: Airflow pool capping concurrent Amberflo traffic (docker-compose creates `amberflo`).
AMBERFLO_POOL = os.environ.get("AMBERFLO_SYNC_POOL", "default_pool")

DOC_MD = """
### Segment identifies → Amberflo customers

Every hour this DAG turns the Segment **identify** calls that landed in the warehouse
(`<source>.identifies`) into Amberflo customers (`PUT /customers` replaces a whole customer, so the
project always sends **complete** records). Field by field: `docs/mapping.md` in the repository.

* `customerId` = `user_id` (identify rows without one are counted as *skipped*),
  `customerName` = trait `name` (else the id), `customerEmail` = trait `email`, every other trait
  column → a trait, formatted and sanitized like meter dimensions.
* **Merge** — per customer and field the most recent non-null value by event time wins; a null keeps
  what is known. Traits the project does not own (Amberflo's `stripeId`, Engage audiences written by
  `engage_audiences_to_amberflo`) are preserved.
* **Only changes are written** — an unchanged customer costs zero API calls; new customers are
  created (`POST`), changed ones replaced (`PUT`), concurrently (bounded, default 8).
* **Order** — this DAG shares the hourly schedule of `segment_events_to_amberflo`, whose scheduled runs
  wait (up to `customers.wait_minutes`) for this DAG's run of the same interval: customers exist before
  their meters. Both customer DAGs hold the `customers` lock in the state store while writing.

#### Params (Trigger → "Trigger DAG w/ config", or `--conf` on the CLI)

| Param | default | what it does |
|---|---|---|
| `dry_run` | `false` | build the customer records as usual and log the first ones; send nothing, move no watermark |
| `dry_run_records` | `20` | how many customer records a dry run shows |
| `full_resync` | `false` | ignore the watermark and rebuild every customer from the whole identifies table (only changed customers are still written) |

#### What a manual run, a backfill and a clear do

* **Manual run**: reads the identifies loaded since the watermark, like a scheduled run.
* **Backfill**: one run per hourly interval of the (inclusive) range, each named by the end of its
  interval; each reads from the watermark like any run, so after the first one the others find nothing
  new. To rebuild customers from history use `full_resync` instead.
* **Clear**: the task runs again; safe, because customers whose record did not change are not written.

State: `customers`, `watermarks`, `sync_runs`, `locks` (`docs/state-tables.md`). Config:
`docs/configuration.md`.
"""


@dag(
    dag_id="segment_identifies_to_amberflo",
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,
    doc_md=DOC_MD,
    tags=["segment", "amberflo", "customers"],
    default_args={
        "retries": int(os.environ.get("AMBERFLO_SYNC_TASK_RETRIES", "2")),
        "retry_delay": dt.timedelta(minutes=2),
    },
    params={
        "dry_run": Param(False, type="boolean", description="Log the first customer records; send nothing."),
        "dry_run_records": Param(20, type="integer", minimum=1, description="Customers to show in a dry run."),
        "full_resync": Param(False, type="boolean", description="Rebuild every customer from the whole table."),
    },
)
def segment_identifies_to_amberflo() -> None:
    @task
    def discover_streams() -> list[dict[str, str]]:
        from amberflo_sync.tasks import discover_identify_streams

        return discover_identify_streams()

    @task(map_index_template="{{ stream_key }}", pool=AMBERFLO_POOL)
    def sync_customers(stream: dict[str, str]) -> dict:
        from amberflo_sync.tasks import run_identify_stream

        context = get_current_context()
        context["stream_key"] = stream["key"]  # type: ignore[typeddict-unknown-key]
        return run_identify_stream(stream, context)

    @task
    def summarize(results: list[dict]) -> str:
        from amberflo_sync.tasks import summarize as summarize_results

        # index instead of iterating: iterating a lazy XCom sequence probes one offset too far
        return summarize_results([results[i] for i in range(len(results))])

    summarize(sync_customers.expand(stream=discover_streams()))


segment_identifies_to_amberflo()
