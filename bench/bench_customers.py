"""Benchmark: the customers sync — 20k changed customers against the emulator with 50 ms latency.

Runs the identify sync exactly as the DAG task does (reader → collapse → merge → concurrent writes on
one pooled session) against the emulator started as a subprocess with ``--latency-ms 50``. Target
(issue 6): ≥ 0.8 × concurrency / latency customers/s (≥ 128/s at concurrency 8 and 50 ms).

    PYTHONPATH=plugins .venv/bin/python bench/bench_customers.py [--customers 20000] [--latency-ms 50] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import pyarrow as pa

from amberflo_sync.client import AmberfloClient, ClientSettings
from amberflo_sync.config import SyncConfig
from amberflo_sync.customer_writer import CustomerWriter
from amberflo_sync.identifies_sync import identify_streams, sync_identifies
from amberflo_sync.reader import WarehouseReader, create_engine
from amberflo_sync.state import StateStore

REPO = Path(__file__).resolve().parents[1]


def write_identifies(path: Path, customers: int, round_: int) -> None:
    now = time.time()
    table = pa.table({
        "id": [f"i{round_}-{i}" for i in range(customers)],
        "user_id": [f"user_{i:06d}" for i in range(customers)],
        "timestamp": pa.array([int((now + round_) * 1e6)] * customers, pa.timestamp("us", tz="UTC")),
        "uuid_ts": pa.array([int((now + round_) * 1e6)] * customers, pa.timestamp("us", tz="UTC")),
        "name": [f"Customer {i}" for i in range(customers)],
        "email": [f"c{i}@example.com" for i in range(customers)],
        "plan": [f"plan-{round_}"] * customers,
        "seats": [i % 50 for i in range(customers)],
    })
    con = duckdb.connect(str(path))
    con.execute("CREATE SCHEMA IF NOT EXISTS prod")
    con.register("t", table)
    con.execute("CREATE OR REPLACE TABLE prod.identifies AS SELECT * FROM t")
    con.close()


def start_emulator(key: str, latency_ms: float, work: Path) -> tuple[subprocess.Popen, str]:
    ready = work / "emulator.url"
    env = dict(os.environ, PYTHONPATH=str(REPO / "plugins"))
    proc = subprocess.Popen([sys.executable, "-m", "amberflo_sync.emulator", "--port", "0", "--api-key", key,
                             "--latency-ms", str(latency_ms), "--ready-file", str(ready)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        if ready.exists() and ready.read_text().strip():
            return proc, ready.read_text().strip()
        time.sleep(0.05)
    raise RuntimeError("the emulator did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-customers-"))
    key = secrets.token_hex(16)
    proc, url = start_emulator(key, args.latency_ms, work)
    try:
        path = work / "warehouse.duckdb"
        state = StateStore.from_url(f"sqlite:///{work / 'state.sqlite'}")
        state.create()
        config = SyncConfig(source_schemas=("prod",))
        print(f"customers sync: {args.customers:,} customers, emulator latency {args.latency_ms:.0f} ms, "
              f"concurrency {args.concurrency}; target ≥ {0.8 * args.concurrency / (args.latency_ms / 1000):.0f}/s")
        for round_, label in ((1, "create (new customers)"), (2, "update (every customer changed)"),
                              (2, "re-run, nothing changed")):
            if label != "re-run, nothing changed":
                write_identifies(path, args.customers, round_)
            reader = WarehouseReader(create_engine(f"duckdb:///{path}", read_only=True))
            settings = ClientSettings(base_url=url, api_key=key, concurrency=args.concurrency)
            with AmberfloClient(settings) as client:
                writer = CustomerWriter(client, state, concurrency=args.concurrency, progress_every_seconds=1e9)
                stream = identify_streams(reader, ["prod"])[0]
                started = time.perf_counter()
                stats = sync_identifies(stream, reader=reader, state=state, writer=writer, config=config,
                                        run_id=f"bench-{round_}-{label}")
                seconds = time.perf_counter() - started
                written = stats.details["customers_created"] + stats.details["customers_updated"]
                print(f"  {label:<32} {seconds:7.2f} s  written={written:>6,}  "
                      f"{written / seconds if written else 0:8,.0f} customers/s  API calls={client.stats.requests:,}")
            reader.engine.dispose()
        print(f"  peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
