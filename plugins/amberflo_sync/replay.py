"""Replay rejected rows of a stream now: ``python -m amberflo_sync.replay --stream prod.api_calls``.

For operators, after fixing what made rows fail (data corrected in the warehouse, a customer created,
Amberflo support enabling history older than 60 days with ``--allow-old-events``). Rows are re-read
from the warehouse by ``id`` and mapped exactly as the sync maps them; accepted ones leave
``rejected_rows``, the others stay with their (new) reason. Connections come from the same Airflow
connections as the DAGs (``AIRFLOW_CONN_SEGMENT_WAREHOUSE``, ``AIRFLOW_CONN_AMBERFLO_DEFAULT``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging

from amberflo_sync.reader import EventStream


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stream", required=True, help="stream key as in rejected_rows, e.g. prod.api_calls")
    parser.add_argument("--reason", action="append", help="only rows with this reason (repeatable); default: all")
    parser.add_argument("--allow-old-events", action="store_true", help="send events older than max_event_age_days")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    from amberflo_sync.events_sync import sync_stream
    from amberflo_sync.hooks import AmberfloHook
    from amberflo_sync.isolation import IsolatingSender
    from amberflo_sync.segment import PAGE, SCREEN, TRACK
    from amberflo_sync.tasks import build_runtime

    runtime = build_runtime()
    rows = runtime.ledger.open_rejected(args.stream, args.reason) + [
        r for r in runtime.ledger.rejected_rows(args.stream, status="abandoned")
        if not args.reason or r["reason"] in args.reason]
    ids = sorted({str(r["row_id"]) for r in rows if not str(r["row_id"]).startswith("sha1:")})
    schema, _, table = args.stream.partition(".")
    actual_schema = runtime.reader.actual_schema(schema) or schema
    actual_table = runtime.reader.tables(actual_schema).get(table.lower(), table)
    kind = {"pages": PAGE, "screens": SCREEN}.get(actual_table.lower(), TRACK)
    stream = EventStream(actual_schema, actual_table, kind)
    run_id = "replay__" + dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    with AmberfloHook(batch_size=runtime.config.batch_size).get_client() as client:
        stats = sync_stream(stream, reader=runtime.reader, ledger=runtime.ledger,
                            send=IsolatingSender(client.ingest_records), config=runtime.config, run_id=run_id,
                            window=None, retry_ids=ids, allow_old_events=args.allow_old_events)
    runtime.ledger.record_run(stats)
    resolved = (stats.details or {}).get("rejected_resolved", 0)
    print(f"{args.stream}: replayed {len(ids)} rows: {stats.sent} sent, {resolved} resolved, "
          f"{stats.rejected} still rejected")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
