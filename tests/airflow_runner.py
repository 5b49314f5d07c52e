"""Run real ``airflow dags test`` in a subprocess against a test warehouse and the emulator.

One Airflow home (SQLite metadata, migrated once per session) serves every end-to-end test; each
test gets its own config file, state database and connections through the environment, exactly as
a user sets them (``AIRFLOW_CONN_*``, ``AMBERFLO_SYNC_CONFIG``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def airflow_base_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW__"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AMBERFLO_SYNC_TASK_RETRIES": "0",
            "PYTHONPATH": os.pathsep.join([str(REPO / "plugins"), str(REPO)]),
        }
    )
    return env


def migrate(home: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env=airflow_base_env(home),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@dataclass
class DagRunResult:
    returncode: int
    output: str

    @property
    def succeeded(self) -> bool:
        return self.returncode == 0 and "state=success" in self.output and "state=failed" not in self.output


class AirflowRunner:
    """Runs DAGs with a given warehouse URL, emulator and config overrides."""

    def __init__(self, home: Path, work: Path, *, warehouse_url: str, amberflo_url: str, api_key: str,
                 config: dict | None = None) -> None:
        self.home = home
        self.work = work
        self.config_path = work / "amberflo_sync.yaml"
        self.state_url = f"sqlite:///{work / 'state.sqlite'}"
        settings = {
            "source_schemas": ["prod", "ios_app"],
            "state": {"url": self.state_url},
            "dry_run_dir": str(work / "dry_run"),
            "progress_every_seconds": 0,
        }
        settings.update(config or {})
        self.config_path.write_text(yaml.safe_dump(settings))
        self.env = airflow_base_env(home)
        self.env.update(
            {
                "AMBERFLO_SYNC_CONFIG": str(self.config_path),
                "AIRFLOW_CONN_SEGMENT_WAREHOUSE": json.dumps(
                    {"conn_type": "generic", "extra": {"sqlalchemy_url": warehouse_url}}
                ),
                "AIRFLOW_CONN_AMBERFLO_DEFAULT": json.dumps(
                    {"conn_type": "amberflo", "host": amberflo_url, "password": api_key,
                     "extra": {"read_timeout": 10}}
                ),
            }
        )

    def dags_test(self, dag_id: str, *, conf: dict | None = None, timeout: int = 600) -> DagRunResult:
        command = [sys.executable, "-m", "airflow", "dags", "test", dag_id]
        if conf:
            command += ["--conf", json.dumps(conf)]
        result = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=timeout)
        return DagRunResult(result.returncode, result.stdout + result.stderr)
