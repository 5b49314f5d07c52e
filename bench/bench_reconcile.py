"""Benchmark: reconciling 1M events / 1,000 customers / 24 hours of 3 meters against the emulator.

Setup (not timed): the events warehouse of ``bench_events.py`` (``benchkit/warehouse.py``: three
track tables = three meters, 1,000 customers, duplicates and rejected rows included) with its event
times spread evenly over 24 whole hours that ended two days ago (settled); the emulator runs as a
subprocess; a child process bills every row with the events sync (real HTTP).

Timed, in a fresh child process: exactly what the reconciliation task runs (``reconcile``: read the
window by event time, render with the sync's mapping, aggregate, one batched usage call, compare) —
seconds, peak RSS of that process and Amberflo API calls. Targets (issue 13): ≤ 30 s, ≤ 1 GiB,
≤ 10 calls without drift. ``--drift`` also loses/doubles a few records in the emulator first, so the
drill-down (one paged events call per drifted cell) is measured too.

    PYTHONPATH=plugins:bench .venv/bin/python bench/bench_reconcile.py [--rows 1000000] [--drift]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "plugins"), str(REPO / "bench")]

from benchkit.warehouse import SCHEMA, chunks, table_specs  # noqa: E402

HOURS = 24
#: The 24 benchmarked hours end two days ago, on the hour: settled, and well inside 60 days. Fixed
#: once by the main process (``BENCH_END``), so that an hour ticking over between phases changes nothing.
END = (dt.datetime.fromtimestamp(int(os.environ["BENCH_END"]), dt.timezone.utc) if os.environ.get("BENCH_END")
       else dt.datetime.now(dt.timezone.utc).replace(minute=0, second=0, microsecond=0) - dt.timedelta(days=2))
START = END - dt.timedelta(hours=HOURS)


def write_warehouse(path: str, rows: int) -> None:
    """The benchmark warehouse with event times spread evenly over the 24 hours (vectorized)."""
    start_ms = int(START.timestamp() * 1000)
    span = HOURS * 3_600_000
    with duckdb.connect(path) as con:
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{SCHEMA}"')
        for spec in table_specs(rows):
            target = f'"{SCHEMA}"."{spec.table}"'
            done = 0
            for chunk in chunks(spec, seed=7):
                n = chunk.num_rows
                event = start_ms + (np.arange(done, done + n, dtype=np.int64) * span) // max(spec.rows, 1)
                stamps = pa.array(event.astype("datetime64[ms]").astype("datetime64[us]"), pa.timestamp("us", tz="UTC"))
                chunk = chunk.set_column(chunk.schema.get_field_index("timestamp"), "timestamp", stamps)
                chunk = chunk.set_column(chunk.schema.get_field_index("received_at"), "received_at", stamps)
                con.register("bench_chunk", chunk)
                verb = "INSERT INTO" if done else "CREATE TABLE"
                con.execute(f"{verb} {target} {'SELECT * FROM bench_chunk' if done else 'AS SELECT * FROM bench_chunk'}")
                con.unregister("bench_chunk")
                done += n
        con.execute("CHECKPOINT")


def config(work: Path):
    from amberflo_sync.config import config_from_dict

    return config_from_dict({"source_schemas": [SCHEMA], "state": {"url": f"sqlite:///{work / 'state.sqlite'}"},
                             "reconciliation": {"reports_dir": str(work / "reports"), "repair_recheck_seconds": 0}})


def phase_sync(work: Path, url: str, key: str) -> None:
    from amberflo_sync.client import AmberfloClient, ClientSettings
    from amberflo_sync.events_run import finish_run, plan_run, run_slices
    from amberflo_sync.ledger import Ledger
    from amberflo_sync.reader import WarehouseReader, create_engine
    from amberflo_sync.run_kinds import RunRules
    from amberflo_sync.state import StateStore

    cfg = config(work)
    reader = WarehouseReader(create_engine(f"duckdb:///{work / 'bench.duckdb'}", read_only=True))
    ledger = Ledger(StateStore.from_url(cfg.state.url))
    rules = RunRules("manual")
    with AmberfloClient(ClientSettings(base_url=url, api_key=key, batch_size=2000)) as client:
        # the events DAG's path: plan → slices → finish
        plan = plan_run(reader, ledger, cfg, rules, run_id="bench")
        for unit in plan.units:
            run_slices(unit, reader=reader, ledger=ledger, config=cfg, rules=rules, run_id="bench",
                       sender=lambda: client.ingest_records, allow_old_events=True)
        print(f"  synced {finish_run(plan.to_xcom(), ledger=ledger, config=cfg, rules=rules)}", flush=True)


def phase_reconcile(work: Path, url: str, key: str) -> None:
    from amberflo_sync.client import AmberfloClient, ClientSettings
    from amberflo_sync.reader import WarehouseReader, create_engine
    from amberflo_sync.reconcile_tasks import RECONCILE_CHUNK_ROWS
    from amberflo_sync.reconciliation import reconcile, resolve_window

    import logging

    logging.basicConfig(level=logging.INFO, format="  %(message)s", stream=sys.stderr)  # stage timings
    for noisy in ("amberflo_sync.reconciliation.expected",):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    cfg = config(work)
    began = time.perf_counter()
    reader = WarehouseReader(create_engine(f"duckdb:///{work / 'bench.duckdb'}", read_only=True),
                             chunk_rows=min(cfg.chunk_rows, RECONCILE_CHUNK_ROWS))  # as the task opens it
    window = resolve_window(start=START, end=END, settle_hours=27)
    with AmberfloClient(ClientSettings(base_url=url, api_key=key)) as client:
        result = reconcile(reader=reader, client=client, config=cfg, window=window, run_id="bench")
    seconds = time.perf_counter() - began
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": seconds, "peak_rss": peak, "api_calls": result.api_calls,
                      "cells": len(result.cells), "counts": result.counts,
                      "expected_records": result.expected_records}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--drift", action="store_true", help="lose/double ~0.01 %% of records first")
    parser.add_argument("--phase", choices=["sync", "reconcile"], help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        key = os.environ["BENCH_API_KEY"]
        (phase_sync if args.phase == "sync" else phase_reconcile)(Path(args.work), args.url, key)
        return 0

    key = "bench-" + secrets.token_hex(8)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "plugins"), str(REPO / "bench")]), BENCH_API_KEY=key,
               BENCH_END=str(int(END.timestamp())))
    with tempfile.TemporaryDirectory(prefix="bench_reconcile_") as tmp:
        work = Path(tmp)
        began = time.perf_counter()
        write_warehouse(str(work / "bench.duckdb"), args.rows)
        print(f"warehouse: {args.rows} rows over {HOURS} h [{START:%Y-%m-%d %H:%M}, {END:%H:%M}) UTC, "
              f"{time.perf_counter() - began:.1f} s", flush=True)
        ready = work / "emulator.url"
        emulator = subprocess.Popen([sys.executable, "-m", "amberflo_sync.emulator", "--port", "0", "--api-key", key,
                                     "--ready-file", str(ready)], env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
        try:
            for _ in range(300):
                if ready.exists() and ready.read_text().strip():
                    break
                time.sleep(0.1)
            url = ready.read_text().strip()
            if args.drift:
                import requests

                requests.post(f"{url}/__emulator/faults", json={"rate_lose": 0.0001, "rate_double": 0.0001, "seed": 1},
                              timeout=10).raise_for_status()
            began = time.perf_counter()
            subprocess.run([sys.executable, __file__, "--phase", "sync", "--work", tmp, "--url", url], env=env, check=True)
            print(f"sync into the emulator: {time.perf_counter() - began:.1f} s (not part of the benchmark)", flush=True)
            done = subprocess.run([sys.executable, __file__, "--phase", "reconcile", "--work", tmp, "--url", url],
                                  env=env, check=True, stdout=subprocess.PIPE, text=True)  # stderr: stage timings
            result = json.loads(done.stdout.strip().splitlines()[-1])
        finally:
            emulator.terminate()
            emulator.wait(timeout=30)
    mib = result["peak_rss"] / 2**20
    ok = result["seconds"] <= 30 and mib <= 1024 and result["api_calls"] <= 10
    verdict = ("drift case (one events call per drifted cell): the targets are for the case without drift"
               if args.drift else f"targets ≤ 30 s, ≤ 1 GiB, ≤ 10 calls without drift: {'met' if ok else 'MISSED'}")
    print(f"reconcile {result['expected_records']} expected records, {result['cells']} cells, 3 meters: "
          f"{result['seconds']:.1f} s, peak RSS {mib:.0f} MiB, {result['api_calls']} Amberflo API calls, "
          f"statuses {result['counts']} — {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
