"""Benchmark of the events sync: fast, lean, and how far ahead of Amberflo's official SDK.

    python bench/bench_events.py                       # 100k, 1M and 10M rows; every case; ~10 min
    python bench/bench_events.py --sizes 100000,1000000 --cases 'events/duckdb/*'

For each size it generates N track events (three event tables, 1,000 customers, ``value`` plus eight
more property columns, 0.1 % duplicate ids, 0.02 % rows without a customer) into a DuckDB file and —
when 127.0.0.1:5432 answers — into a PostgreSQL schema that is dropped afterwards; generation is not
timed. Then every case of :mod:`benchkit.cases` runs in a fresh Python process (so peak RSS is the
case's own) against a fresh sink process: the null HTTP sink or the Amberflo emulator. Our cases run
``events_sync.sync_stream`` exactly as the DAG task does (``WarehouseReader``, a SQLite
``StateStore``, ``AmberfloClient.ingest_records``, shipped defaults); the SDK cases send the same rows
through ``amberflo-metering-python``. Every run is checked: ``read = sent + duplicates + rejected``
per stream, and the sink must have received exactly the records that were sent.

Columns: rows/s = rows read ÷ wall seconds; RSS = the case process's peak resident memory; stage
columns = busy seconds of each stage summed over threads (they overlap, so they can add up to more
than the wall time): extract (warehouse → DataFrames), transform (mapping + rendering JSON),
serialize (request bodies: join + gzip), send (HTTP round trips); ours/peer = our rows/s ÷ the SDK's
on the same rows; sink CPU = CPU of the sink process (it shares the cores); other CPU = CPU used by
every other process meanwhile: the PostgreSQL server in its cases, and any other work on the machine
(which makes numbers worse, so it is shown); statements = SQL statements the reader sent to the
warehouse (discovery, MAX, reads; ``WarehouseReader.statements``).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path[:0] = [str(BENCH), str(REPO / "plugins")]

from benchkit.cases import CASES, RUNNERS, Case, CaseContext  # noqa: E402

API_KEY = "bench-" + uuid.uuid4().hex[:12]
PG_DSN = os.environ.get("BENCH_PG_DSN", "host=127.0.0.1 port=5432 dbname=test user=root")
PG_URL = os.environ.get("BENCH_PG_URL", "postgresql+psycopg2://root@127.0.0.1:5432/test")


# ---------------------------------------------------------------------------------------------
# the child: one case, in its own process
# ---------------------------------------------------------------------------------------------
def peak_rss_mib() -> float:
    """This process's peak resident memory (``VmHWM``).

    Not ``getrusage().ru_maxrss``: Linux carries that over ``exec`` from the forked parent, so a
    case started by a parent that had just generated 10M rows would report the parent's size.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------------------------------
# (the child's entry point)
# ---------------------------------------------------------------------------------------------
def run_child(name: str, context_json: str) -> int:
    """Run case ``name`` and print its result as one JSON line (the parent reads it)."""
    import logging

    logging.basicConfig(level=logging.WARNING)
    case = next(c for c in CASES if c.name == name)
    context = CaseContext(**json.loads(context_json))
    cpu = time.process_time()
    result = RUNNERS[case.runner](context)
    result["cpu_seconds"] = time.process_time() - cpu
    result["rss_mib"] = peak_rss_mib()
    print("BENCH-RESULT " + json.dumps(result, default=str), flush=True)
    return 0


# ---------------------------------------------------------------------------------------------
# the parent: data, services, table
# ---------------------------------------------------------------------------------------------
def postgres_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({model}), {memory:.0f} GiB RAM, Python {platform.python_version()}"


def _machine_cpu_seconds() -> float:
    import psutil

    times = psutil.cpu_times()
    return times.user + times.system + getattr(times, "nice", 0.0)


def wait_for_quiet(max_wait: float, busy_limit: float = 0.25) -> float:
    """Wait (up to ``max_wait`` s) until other work on the machine uses under ``busy_limit`` cores
    over two seconds; returns the cores it used at the last look."""
    deadline = time.monotonic() + max_wait
    while True:
        before = _machine_cpu_seconds()
        time.sleep(2)
        busy = (_machine_cpu_seconds() - before) / 2
        if busy < busy_limit or time.monotonic() >= deadline:
            return busy


def run_case(case: Case, context: CaseContext) -> dict[str, Any]:
    """Start the case's sink, run the case in a child process, check what the sink received."""
    import psutil

    from benchkit.services import running

    with running(case.sink, context.api_key) as sink:
        child_context = asdict(context) | {"sink_url": sink.url}
        sink_process = psutil.Process(sink.process.pid)
        sink_cpu0 = sum(sink_process.cpu_times()[:2])
        machine0 = _machine_cpu_seconds()
        completed = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--run-case", case.name,
             "--context", json.dumps(child_context)],
            capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=f"{BENCH}:{REPO / 'plugins'}"),
        )
        machine_cpu = _machine_cpu_seconds() - machine0
        sink_cpu = sum(sink_process.cpu_times()[:2]) - sink_cpu0
        lines = [l for l in completed.stdout.splitlines() if l.startswith("BENCH-RESULT ")]
        if completed.returncode != 0 or not lines:
            raise RuntimeError(f"case {case.name} failed ({completed.returncode}):\n{completed.stderr[-4000:]}")
        result = json.loads(lines[-1].removeprefix("BENCH-RESULT "))
        result["received"] = sink.received()
        result["sink_cpu"] = sink_cpu
        result["other_cpu"] = max(machine_cpu - result["cpu_seconds"] - sink_cpu, 0.0)
    expected = result.get("counts", {}).get("sent", result.get("offered"))
    result["ok"] = expected is not None and result["received"] == expected
    return result


def fmt_seconds(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}"


def print_table(rows: list[dict[str, Any]]) -> None:
    header = ("case", "rows", "seconds", "rows/s", "RSS MiB", "extract", "transform", "serialize", "send",
              "ours/peer", "received", "sink CPU", "other CPU", "statements")
    table = [header]
    for r in rows:
        stages = r.get("stages") or {}
        table.append((
            r["case"], f"{r['rows']:,}", f"{r['seconds']:.2f}", f"{r['rows'] / r['seconds']:,.0f}",
            f"{r['rss_mib']:.0f}", fmt_seconds(stages.get("extract")), fmt_seconds(stages.get("transform")),
            fmt_seconds(stages.get("serialize")), fmt_seconds(stages.get("send")), r.get("ratio", ""),
            f"{r['received']:,}{'' if r['ok'] else ' MISMATCH'}", f"{r['sink_cpu']:.1f}s", f"{r['other_cpu']:.1f}s",
            r.get("statements", "-"),
        ))
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for i, row in enumerate(table):
        print("  ".join(str(cell).rjust(w) if j else str(cell).ljust(w) for j, (cell, w) in enumerate(zip(row, widths))))
        if i == 0:
            print("  ".join("-" * w for w in widths))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000,10000000",
                        help="comma-separated row counts (default: 100000,1000000,10000000)")
    parser.add_argument("--cases", default="*", help="comma-separated case names or glob patterns")
    parser.add_argument("--max-rows-override", type=int, default=None,
                        help="run every selected case up to this size (default: each case's own max)")
    parser.add_argument("--batch-size", type=int, default=None, help="records per request (default: shipped 500)")
    parser.add_argument("--gzip-level", type=int, default=None, help="gzip level (default: the client's)")
    parser.add_argument("--concurrency", type=int, default=None, help="ingest requests in flight (default: the client's)")
    parser.add_argument("--work-dir", default=None, help="where the DuckDB files go (default: a temp dir)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-postgres", action="store_true", help="skip PostgreSQL even when reachable")
    parser.add_argument("--quiet-wait", type=float, default=60.0,
                        help="before each case, wait up to this many seconds for other work on the machine to stop")
    parser.add_argument("--run-case", help=argparse.SUPPRESS)
    parser.add_argument("--context", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.run_case:
        return run_child(args.run_case, args.context)
    from benchkit.warehouse import PROPERTY_COLUMNS, SCHEMA, drop_postgres, write_duckdb, write_postgres

    sizes = [int(s) for s in args.sizes.split(",") if s]
    patterns = [p.strip() for p in args.cases.split(",") if p.strip()]
    selected = [c for c in CASES if any(fnmatch.fnmatchcase(c.name, p) for p in patterns)]
    use_pg = not args.no_postgres and postgres_reachable()
    if not use_pg:
        print("PostgreSQL is not reachable on 127.0.0.1:5432 (or --no-postgres): its cases are skipped")
        selected = [c for c in selected if c.warehouse != "postgres"]
    client_overrides = {k: v for k, v in (("gzip_level", args.gzip_level), ("concurrency", args.concurrency)) if v is not None}
    config_overrides = {"batch_size": args.batch_size} if args.batch_size else {}
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f} at start")
    print(f"events: 3 tables, {PROPERTY_COLUMNS} property columns (value + 8 dimensions), 1,000 customers; "
          f"client {client_overrides or 'defaults'}, config {config_overrides or 'defaults'}")
    started = time.monotonic()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-events-", dir=args.work_dir) as work:
        for size in sizes:
            cases = [c for c in selected if size <= (args.max_rows_override or c.max_rows)]
            if not cases:
                continue
            urls: dict[str, tuple[str, str]] = {}
            pg_schema = f"bench_events_{size}_{os.getpid()}"
            t0 = time.monotonic()
            if any(c.warehouse == "duckdb" for c in cases):
                path = Path(work) / f"events_{size}.duckdb"
                write_duckdb(str(path), size, seed=args.seed)
                urls["duckdb"] = (f"duckdb:///{path}", SCHEMA)
            if any(c.warehouse == "postgres" for c in cases):
                write_postgres(PG_DSN, pg_schema, size, seed=args.seed)
                urls["postgres"] = (PG_URL, pg_schema)
            print(f"\n{size:,} rows: warehouses generated in {time.monotonic() - t0:.1f}s (not timed)", flush=True)
            try:
                by_name: dict[str, dict[str, Any]] = {}
                for case in cases:
                    if args.quiet_wait > 0:
                        busy = wait_for_quiet(args.quiet_wait)
                        if busy >= 0.25:
                            print(f"  (other work keeps {busy:.1f} cores busy; measuring anyway)", flush=True)
                    url, schema = urls[case.warehouse]
                    context = CaseContext(url, schema, "", API_KEY, work, client_overrides, config_overrides)
                    result = run_case(case, context) | {"case": case.name, "size": size}
                    by_name[case.name] = result
                    print(f"  {case.name}: {result['rows']:,} rows in {result['seconds']:.2f}s = "
                          f"{result['rows'] / result['seconds']:,.0f} rows/s, RSS {result['rss_mib']:.0f} MiB"
                          f"{'' if result['ok'] else ' — SINK MISMATCH'}", flush=True)
                for result in by_name.values():
                    case = next(c for c in CASES if c.name == result["case"])
                    ours = by_name.get(case.peer_of or "")
                    if ours is not None:
                        ratio = (ours["rows"] / ours["seconds"]) / (result["rows"] / result["seconds"])
                        ours["ratio"] = result["ratio"] = f"{ratio:.1f}x"
                results.extend(by_name.values())
            finally:
                if "postgres" in urls:
                    drop_postgres(PG_DSN, pg_schema)
                Path(work, f"events_{size}.duckdb").unlink(missing_ok=True)
    print(f"\nmachine: {machine()}\n")
    print_table(results)
    print(f"\ntotal {time.monotonic() - started:.0f}s; every case balanced read = sent + duplicates + rejected "
          f"and the sink received exactly what was sent" + ("" if all(r["ok"] for r in results) else " — EXCEPT the marked ones"))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
