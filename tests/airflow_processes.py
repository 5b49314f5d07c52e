"""Airflow components (api-server, scheduler, dag-processor, workers) as processes of one test:
spawned with their output in a log file, waited for over HTTP, their logs' tails in failure messages.
Shared by the distributed suite (``tests/distributed/cluster.py``) and the browser test
(``tests/ui/stack.py``)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.airflow_runner import REPO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AirflowProcesses:
    """Subclasses set ``work`` (where the logs go) and ``env`` (the processes' environment)."""

    work: Path
    env: dict[str, str]

    def __init__(self) -> None:
        self.processes: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}

    def tail(self, name: str, lines: int = 60) -> str:
        path = self.logs.get(name)
        if path is None or not path.exists():
            return ""
        return f"\n--- {name} ---\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def _spawn(self, name: str, args: list[str], extra: dict[str, str] | None = None) -> None:
        log = self.work / f"{name}.log"
        self.logs[name] = log
        with open(log, "w") as handle:
            self.processes[name] = subprocess.Popen([sys.executable, "-m", "airflow", *args],
                                                    env=dict(self.env, **(extra or {})), stdout=handle,
                                                    stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)

    def _wait_http(self, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(url, timeout=2).status_code < 500:
                    return
            except requests.RequestException:
                pass
            for name, proc in self.processes.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}" + self.tail(name))
            time.sleep(1)
        raise TimeoutError(f"{url} not up after {timeout}s" + self.tail("api-server"))
