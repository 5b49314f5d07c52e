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

* **Streams** — `discover_streams` lists `pages`, `screens` and every per-event track table in the
  configured source schemas (include/exclude lists in the YAML config); `sync_stream` runs once per
  stream (mapped task, named after the stream).
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
    max_active_runs=1,
    doc_md=DOC_MD,
    tags=["segment", "amberflo", "billing"],
    default_args={
        "retries": int(os.environ.get("AMBERFLO_SYNC_TASK_RETRIES", "2")),
        "retry_delay": dt.timedelta(minutes=2),
    },
    params={
        "dry_run": Param(False, type="boolean", description="Log the first records; send nothing."),
        "dry_run_records": Param(20, type="integer", minimum=1, description="Records to show in a dry run."),
    },
)
def segment_events_to_amberflo() -> None:
    @task.sensor(poke_interval=60, timeout=6 * 3600, mode="reschedule")
    def wait_for_customers() -> PokeReturnValue:
        from amberflo_sync.tasks import customers_ready

        return PokeReturnValue(is_done=customers_ready(get_current_context()))

    @task
    def discover_streams() -> list[dict[str, str]]:
        from amberflo_sync.tasks import discover_event_streams

        return discover_event_streams()

    @task(map_index_template="{{ stream_key }}", pool=AMBERFLO_POOL)
    def sync_stream(stream: dict[str, str]) -> dict:
        from amberflo_sync.tasks import run_event_stream

        context = get_current_context()
        context["stream_key"] = stream["key"]  # type: ignore[typeddict-unknown-key]
        return run_event_stream(stream, run_id=context["run_id"], params=dict(context["params"]))

    @task
    def summarize(results: list[dict]) -> str:
        from amberflo_sync.tasks import summarize as summarize_results

        # index instead of iterating: iterating a lazy XCom sequence probes one offset too far
        return summarize_results([results[i] for i in range(len(results))])

    streams = discover_streams()
    wait_for_customers() >> streams
    summarize(sync_stream.expand(stream=streams))


segment_events_to_amberflo()
