"""A local Airflow (api-server, scheduler, dag-processor; LocalExecutor, SQLite) on a free loopback port
with an isolated AIRFLOW_HOME — what ``airflow standalone`` runs — plus a login for the browser."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.airflow_runner import REPO, airflow_base_env
from tests.airflow_processes import AirflowProcesses, free_port

USER = "admin"


class AirflowStack(AirflowProcesses):
    """Start/stop the Airflow processes of one browser test; REST helpers authenticated as ``USER``."""

    def __init__(self, work: Path, extra_env: dict[str, str]) -> None:
        super().__init__()
        self.work = work
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.password = secrets.token_urlsafe(12)
        home = work / "airflow_home"
        home.mkdir(parents=True, exist_ok=True)
        passwords = home / "passwords.json"
        passwords.write_text(json.dumps({USER: self.password}))
        self.env = airflow_base_env(home)
        self.env.update(extra_env)
        self.env.update({
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        })
        self._token: str | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        result = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=self.env, cwd=REPO,
                                capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            raise RuntimeError("airflow db migrate failed:\n" + result.stdout[-2000:] + result.stderr[-2000:])
        self._spawn("api-server", ["api-server", "--port", str(self.port), "--host", "127.0.0.1"])
        self._spawn("scheduler", ["scheduler"])
        self._spawn("dag-processor", ["dag-processor"])
        self._wait_http(f"{self.url}/api/v2/version", timeout=180)

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for proc in self.processes.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    def airflow(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """An ``airflow`` CLI command against this stack's metadata database."""
        return subprocess.run([sys.executable, "-m", "airflow", *args], env=self.env, cwd=REPO,
                              capture_output=True, text=True, timeout=timeout)

    # -- REST -----------------------------------------------------------------------------------
    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        if self._token is None:
            answer = requests.post(f"{self.url}/auth/token", json={"username": USER, "password": self.password},
                                   timeout=30)
            answer.raise_for_status()
            self._token = answer.json()["access_token"]
        headers = {"Authorization": f"Bearer {self._token}"}
        return requests.request(method, f"{self.url}/api/v2{path}", headers=headers, timeout=30, **kwargs)

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.api("GET", f"/dags/{dag_id}").status_code == 200:
                return
            time.sleep(2)
        raise TimeoutError(f"DAG {dag_id} not parsed after {timeout}s" + self.tail("dag-processor"))

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 240) -> str:
        deadline = time.monotonic() + timeout
        state = "unknown"
        while time.monotonic() < deadline:
            answer = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
            if answer.status_code == 200:
                state = answer.json()["state"]
                if state in ("success", "failed"):
                    return state
            time.sleep(2)
        raise TimeoutError(f"run {run_id} still {state} after {timeout}s" + self.tail("scheduler"))
