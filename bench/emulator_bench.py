"""How fast the Amberflo emulator ingests, so that sync benchmarks measure the sync, not the emulator.

Starts the emulator CLI in a subprocess (its own GIL), pre-builds gzip'd batches of distinct records
(~8 dimensions each, like a Segment track table), then posts them from one client thread over one
keep-alive ``requests.Session`` and prints records/s. Building and compressing happen before the
clock starts: only the HTTP round trips — and the emulator's full validation, de-duplication and
storage — are timed. The last line checks that every record was stored exactly once.

    python bench/emulator_bench.py [--records 300000] [--batch-size 500] [--client http.client]

``--client http.client`` swaps ``requests`` (~0.5 ms of client overhead per call) for the standard
library's bare connection, to show the emulator's own ceiling.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import orjson
import requests

REPO = Path(__file__).resolve().parents[1]
API_KEY = "bench-key"


def build_batches(total: int, batch_size: int, dimensions: int) -> list[bytes]:
    """Gzip'd JSON batches of distinct, valid meter records."""
    batches = []
    for start in range(0, total, batch_size):
        records = [
            {
                "uniqueId": f"bench-{index:012d}",
                "customerId": f"user_{index % 977}",
                "meterApiName": "ApiCalls",
                "meterValue": 1 + index % 7,
                "meterTimeInMillis": 1_700_000_000_000 + index,
                "dimensions": {
                    f"property_{d}": f"value {d} of row {index % 1013}" for d in range(dimensions)
                },
            }
            for index in range(start, min(start + batch_size, total))
        ]
        batches.append(gzip.compress(orjson.dumps(records), compresslevel=6))
    return batches


def start_emulator() -> tuple[subprocess.Popen[str], str]:
    """Start the emulator CLI on a free port; return the process and its base URL."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "plugins"))
    process = subprocess.Popen(
        [sys.executable, "-m", "amberflo_sync.emulator", "--port", "0", "--api-key", API_KEY],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line.startswith("amberflo emulator listening on "):
        process.kill()
        raise SystemExit(f"emulator did not start: {line!r}")
    return process, line.rsplit(" ", 1)[1]


class _HttpClientPoster:
    """The leanest keep-alive client the standard library has, to show the emulator's own ceiling."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self._connection = http.client.HTTPConnection(host.strip("[]"), int(port))
        self._headers = headers

    def post(self, body: bytes) -> tuple[int, str]:
        self._connection.request("POST", "/ingest", body=body, headers=self._headers)
        response = self._connection.getresponse()
        return response.status, response.read().decode()


class _RequestsPoster:
    """What a real sync client uses: one ``requests.Session``."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self._session = requests.Session()
        self._url = f"{url}/ingest"
        self._headers = headers

    def post(self, body: bytes) -> tuple[int, str]:
        response = self._session.post(self._url, data=body, headers=self._headers)
        return response.status_code, response.text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--dimensions", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (reset between)")
    parser.add_argument(
        "--warmup-rounds",
        type=int,
        default=1,
        help="untimed rounds first: in a fresh VM the first touch of memory dominates round one",
    )
    parser.add_argument("--client", choices=("requests", "http.client"), default="requests")
    args = parser.parse_args()

    batches = build_batches(args.records, args.batch_size, args.dimensions)
    raw_size = sum(len(batch) for batch in batches)
    headers = {
        "X-API-KEY": API_KEY,
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
    }
    process, url = start_emulator()
    try:
        poster_class = _RequestsPoster if args.client == "requests" else _HttpClientPoster
        poster = poster_class(url, headers)
        admin = requests.Session()
        rates = []
        for round_number in range(-args.warmup_rounds + 1, args.rounds + 1):
            admin.post(f"{url}/__emulator/reset").raise_for_status()
            started = time.perf_counter()
            for batch in batches:
                status, text = poster.post(batch)
                if status != 200:
                    raise SystemExit(f"ingest failed: {status} {text}")
            elapsed = time.perf_counter() - started
            stats = admin.get(f"{url}/__emulator/stats").json()
            if stats["distinct"] != args.records or stats["duplicates"] != 0:
                raise SystemExit(f"emulator stored {stats['distinct']} of {args.records} records")
            label = "warm-up" if round_number <= 0 else f"round {round_number}"
            print(
                f"{label}: {args.records} records in {elapsed:.3f} s = "
                f"{args.records / elapsed:,.0f} records/s ({len(batches) / elapsed:,.0f} requests/s)"
            )
            if round_number > 0:
                rates.append(args.records / elapsed)
        print(
            f"{args.client}: best {max(rates):,.0f}, median {statistics.median(rates):,.0f} "
            f"records/s — batches of {args.batch_size} records, {args.dimensions} dimensions, "
            f"gzip ({raw_size / len(batches) / 1024:.1f} KiB/batch), one client thread, "
            f"full validation; every record stored exactly once"
        )
    finally:
        process.terminate()
        process.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
