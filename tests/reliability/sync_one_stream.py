"""Sync one stream in a process of its own, so that a test can SIGKILL it mid-run.

A killed worker runs no ``except``/``finally``: whatever the sync wrote before the kill is all the next
run has to go on. The parts are built the way ``amberflo_sync.tasks`` builds them (warehouse read-only,
state in its own database, one client for the stream).

Usage (the API key comes from ``$RELIABILITY_API_KEY``, never from the command line)::

    python tests/reliability/sync_one_stream.py --warehouse duckdb:////tmp/w.duckdb \\
        --state sqlite:////tmp/state.sqlite --amberflo http://127.0.0.1:8765 \\
        --schema prod --table pages --kind page --batch-size 10 --run-id run-1
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from amberflo_sync.client import AmberfloClient, ClientSettings
from amberflo_sync.config import SyncConfig
from amberflo_sync.events_sync import sync_stream
from amberflo_sync.reader import EventStream, WarehouseReader, create_engine
from amberflo_sync.retry import RetryPolicy
from amberflo_sync.state import StateStore

API_KEY_ENV = "RELIABILITY_API_KEY"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", required=True, help="SQLAlchemy URL of the warehouse")
    parser.add_argument("--state", required=True, help="SQLAlchemy URL of the state database")
    parser.add_argument("--amberflo", required=True, help="Amberflo (emulator) base URL")
    parser.add_argument("--schema", required=True)
    parser.add_argument("--table", required=True)
    parser.add_argument("--kind", required=True, choices=("page", "screen", "track"))
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--chunk-rows", type=int, default=200)
    parser.add_argument("--run-id", required=True)
    args = parser.parse_args(argv)

    config = SyncConfig(source_schemas=(args.schema,), chunk_rows=args.chunk_rows, batch_size=args.batch_size,
                        progress_every_seconds=3600)
    reader = WarehouseReader(create_engine(args.warehouse, read_only=True), chunk_rows=config.chunk_rows)
    state = StateStore.from_url(args.state)
    state.create()
    settings = ClientSettings(base_url=args.amberflo, api_key=os.environ[API_KEY_ENV], batch_size=args.batch_size)
    retry = RetryPolicy(base_delay=0.01, max_delay=0.05, give_up_after=10.0)
    with AmberfloClient(settings, retry=retry) as client:
        stats = sync_stream(EventStream(args.schema, args.table, args.kind), reader=reader, state=state,
                            send=client.ingest_records, config=config, run_id=args.run_id)
    print(stats.summary(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
