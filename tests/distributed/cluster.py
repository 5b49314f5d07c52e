"""A real Airflow 3 deployment with CeleryExecutor, as processes on this machine.

api-server, scheduler, dag-processor and two Celery workers share a PostgreSQL metadata database (a
fresh database per test session) and the local Redis as broker — the way a team runs the project,
minus the containers. Each worker exports ``AMBERFLO_SYNC_WORKER_NAME`` so a test can tell which
worker ran which task.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg2

from tests.airflow_processes import AirflowProcesses, free_port
from tests.airflow_runner import REPO, airflow_base_env

PG = {"host": "127.0.0.1", "port": 5432, "user": "root", "dbname": "test"}


class CeleryCluster(AirflowProcesses):
    """Start/stop the Airflow processes; trigger DAG runs and wait for them."""

    def __init__(self, work: Path, extra_env: dict[str, str]) -> None:
        super().__init__()
        self.work = work
        self.database = f"airflow_{uuid.uuid4().hex[:10]}"
        self.port = free_port()
        self.redis_db = 9
        db_url = f"postgresql+psycopg2://root@127.0.0.1:5432/{self.database}"
        self.env = airflow_base_env(work / "airflow_home")
        self.env.update(extra_env)
        self.env.update({
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
            "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:6379/{self.redis_db}",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql+psycopg2://root@127.0.0.1:5432/{self.database}",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.port}",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "300",
        })

    # -- lifecycle ------------------------------------------------------------------------------
    #: Celery workers to start (none for the LocalExecutor cluster)
    workers: tuple[str, ...] = ("worker1", "worker2")

    def start(self) -> None:
        self._create_database()
        self._run(["db", "migrate"], timeout=300)
        self._spawn("api-server", ["api-server", "--port", str(self.port), "--host", "127.0.0.1"])
        self._spawn("scheduler", ["scheduler"])
        self._spawn("dag-processor", ["dag-processor"])
        for name in self.workers:
            self._spawn(name, ["celery", "worker", "--celery-hostname", f"{name}@%h", "--concurrency", "2"],
                        {"AMBERFLO_SYNC_WORKER_NAME": name})
        self._wait_http(f"http://127.0.0.1:{self.port}/api/v2/version", timeout=180)

    def stop(self) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 30
        for proc in self.processes.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
        self._drop_database()

    # -- DAG runs -------------------------------------------------------------------------------
    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self._run(["dags", "list", "-o", "json"], check=False)
            if result.returncode == 0 and any(d.get("dag_id") == dag_id for d in _json_array(result.stdout)):
                return
            time.sleep(3)
        raise TimeoutError(f"DAG {dag_id} was not parsed within {timeout}s\n{self.tail('dag-processor')}")

    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        self._run(["dags", "unpause", dag_id])
        run_id = f"manual__celery_{uuid.uuid4().hex[:8]}"
        self._run(["dags", "trigger", dag_id, "--run-id", run_id, "--conf", json.dumps(conf or {})])
        return run_id

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 600) -> str:
        deadline = time.monotonic() + timeout
        state = "unknown"
        while time.monotonic() < deadline:
            result = self._run(["dags", "list-runs", dag_id, "-o", "json"], check=False)
            if result.returncode == 0:
                for run in _json_array(result.stdout):
                    if run.get("run_id") == run_id:
                        state = run.get("state")
            if state in ("success", "failed"):
                return state
            time.sleep(3)
        raise TimeoutError(f"run {run_id} still {state} after {timeout}s\n" + self.tail("scheduler") + self.tail("worker1"))

    def wait_for_all_runs(self, dag_id: str, timeout: float = 600) -> dict[str, str]:
        """Wait until no run of ``dag_id`` is queued or running; returns ``{run_id: state}``."""
        deadline = time.monotonic() + timeout
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            result = self._run(["dags", "list-runs", dag_id, "-o", "json"], check=False)
            if result.returncode == 0:
                states = {r["run_id"]: r.get("state") for r in _json_array(result.stdout)}
                if states and all(s in ("success", "failed") for s in states.values()):
                    return states
            time.sleep(3)
        raise TimeoutError(f"runs of {dag_id} still active after {timeout}s: {states}" + self.tail("scheduler"))

    def task_states(self, dag_id: str, run_id: str) -> list[dict]:
        result = self._run(["tasks", "states-for-dag-run", dag_id, run_id, "-o", "json"])
        return _json_array(result.stdout)

    # -- internals ------------------------------------------------------------------------------
    def _run(self, args: list[str], *, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "airflow", *args], env=self.env, capture_output=True,
                                text=True, timeout=timeout, cwd=REPO)
        if check and result.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result

    def _create_database(self) -> None:
        con = psycopg2.connect(**PG)
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{self.database}"')
        con.close()
        import redis

        redis.Redis(host="127.0.0.1", port=6379, db=self.redis_db).flushdb()

    def _drop_database(self) -> None:
        con = psycopg2.connect(**PG)
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        con.close()


def _json_array(text: str) -> list[dict]:
    """The JSON array in a CLI's output (log lines may come before it)."""
    start = text.find("[")
    while start != -1:
        try:
            value, _ = json.JSONDecoder().raw_decode(text[start:])
            if isinstance(value, list):
                return value
        except ValueError:
            pass
        start = text.find("[", start + 1)
    return []


class LocalCluster(CeleryCluster):
    """The same processes with the LocalExecutor: tasks run as children of the scheduler."""

    workers = ()

    def __init__(self, work: Path, extra_env: dict[str, str]) -> None:
        super().__init__(work, extra_env)
        self.env["AIRFLOW__CORE__EXECUTOR"] = "LocalExecutor"
        self.env["AIRFLOW__CORE__PARALLELISM"] = "4"

    def runs(self, dag_id: str) -> list[dict]:
        result = self._run(["dags", "list-runs", dag_id, "-o", "json"], check=False)
        return _json_array(result.stdout) if result.returncode == 0 else []
