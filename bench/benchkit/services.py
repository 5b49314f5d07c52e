"""Start and stop the HTTP services a case talks to (null sink, Amberflo emulator), each in its own
process, on 127.0.0.1 only; read their counters afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"


@dataclass
class Service:
    """A running sink: its process, base URL and how to ask it what it received."""

    kind: str
    process: subprocess.Popen
    url: str

    def received(self) -> int:
        """Records the sink accepted (distinct records for the emulator, which de-duplicates)."""
        if self.kind == "null":
            return int(_get_json(f"{self.url}/__stats")["records"])
        return int(_get_json(f"{self.url}/__emulator/stats")["distinct"])

    def stats(self) -> dict:
        path = "/__stats" if self.kind == "null" else "/__emulator/stats"
        return _get_json(self.url + path)


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def _wait_for(ready: Path, process: subprocess.Popen, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready.exists():
            return ready.read_text().strip()
        if process.poll() is not None:
            raise RuntimeError(f"service exited with {process.returncode} before it was ready")
        time.sleep(0.02)
    process.kill()
    raise RuntimeError("service did not become ready in time")


@contextmanager
def running(kind: str, api_key: str) -> Iterator[Service]:
    """``kind`` = ``null`` (the null sink) or ``emulator`` (validation on, as always)."""
    with tempfile.TemporaryDirectory(prefix="bench-svc-") as tmp:
        ready = Path(tmp) / "ready"
        env = dict(os.environ, PYTHONPATH=str(REPO / "plugins"))
        if kind == "null":
            command = [sys.executable, str(BENCH / "benchkit" / "null_sink.py"), "--port", "0", "--ready-file", str(ready)]
        elif kind == "emulator":
            env["AMBERFLO_EMULATOR_API_KEY"] = api_key
            command = [sys.executable, "-m", "amberflo_sync.emulator", "--port", "0", "--ready-file", str(ready)]
        else:
            raise ValueError(f"unknown sink {kind!r}")
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
        try:
            yield Service(kind, process, _wait_for(ready, process))
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
