"""Benchmark: the Engage snapshot diff — 1M users × 20 audiences, 5 % of them changed.

Measures what the identify-shaped Engage sync does before any API call: scan ``engage_<space>.users``
in chunks, fingerprint every user, compare with the stored fingerprints, diff the changed users
against their stored customer values. Target (issue 6): ≤ 15 s and peak RSS ≤ 1.5 GiB on 2 cores.

    PYTHONPATH=plugins .venv/bin/python bench/bench_engage.py [--users 1000000] [--audiences 20]
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from amberflo_sync.config import SyncConfig
from amberflo_sync.engage import KeyFilter
from amberflo_sync.engage_sync import EngageSpace, _snapshot_diff
from amberflo_sync.reader import WarehouseReader, create_engine
from amberflo_sync.state import RunStats, StateStore


def write_users(path: Path, users: int, audiences: int, seed: int, changed: float = 0.0) -> None:
    rng = np.random.default_rng(seed)
    columns = {"id": pa.array([f"user_{i:07d}" for i in range(users)])}
    base = np.random.default_rng(1)
    flip = rng.random(users) < changed
    for a in range(audiences):
        member = base.random(users) < 0.3
        if a == 0:
            member = np.where(flip, ~member, member)
        columns[f"audience_{a:02d}"] = pa.array(member)
    con = duckdb.connect(str(path))
    con.execute("CREATE SCHEMA IF NOT EXISTS engage_bench")
    con.register("users_arrow", pa.table(columns))
    con.execute("CREATE OR REPLACE TABLE engage_bench.users AS SELECT * FROM users_arrow")
    con.close()


def diff_phase(path: str, state_url: str, save: bool) -> dict:
    """One diff in a fresh process (so its peak RSS is its own); optionally remember the snapshot."""
    state = StateStore.from_url(state_url)
    reader = WarehouseReader(create_engine(f"duckdb:///{path}", read_only=True), chunk_rows=100_000)
    stats = RunStats(run_id="bench", stream="engage_bench")
    started = time.perf_counter()
    updates, prints = _snapshot_diff(EngageSpace("engage_bench", "identify"), reader, state, KeyFilter(), stats, False)
    seconds = time.perf_counter() - started
    save_seconds = 0.0
    if save:
        started = time.perf_counter()
        state.save_fingerprints("engage_bench", prints)
        save_seconds = time.perf_counter() - started
    return {"seconds": seconds, "changed": len(prints), "updates": len(updates), "save_seconds": save_seconds,
            "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def in_fresh_process(*args) -> dict:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(diff_phase, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--audiences", type=int, default=20)
    parser.add_argument("--changed", type=float, default=0.05)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-engage-"))
    path = work / "warehouse.duckdb"
    state_url = f"sqlite:///{work / 'state.sqlite'}"
    StateStore.from_url(state_url).create()
    write_users(path, args.users, args.audiences, seed=1)
    first = in_fresh_process(str(path), state_url, True)
    write_users(path, args.users, args.audiences, seed=2, changed=args.changed)
    second = in_fresh_process(str(path), state_url, False)
    print(f"engage diff: users={args.users:,} audiences={args.audiences} changed≈{args.changed:.0%} (DuckDB, SQLite state)")
    print(f"  first sync (no snapshot yet): {first['seconds']:6.2f} s  users to send={first['changed']:,}  "
          f"saving fingerprints {first['save_seconds']:.2f} s  peak RSS {first['rss_mib']:,.0f} MiB")
    print(f"  incremental diff:             {second['seconds']:6.2f} s  users changed={second['changed']:,}  "
          f"trait updates={second['updates']:,}  ({args.users / second['seconds']:,.0f} users/s)  "
          f"peak RSS {second['rss_mib']:,.0f} MiB")
    print("  target (incremental diff): ≤ 15 s, peak RSS ≤ 1536 MiB")


if __name__ == "__main__":
    main()
