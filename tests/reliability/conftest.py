"""Fixtures of the reliability suite: one generated demo warehouse and its fault-free Amberflo state.

Both are built once per session (a few thousand events take about a second each way); tests that
change the warehouse work on a copy of the file.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from amberflo_sync.demo.generate import generate_warehouse
from tests.airflow_runner import migrate
from tests.reliability.rig import DEMO_EVENTS, NOW, fault_free_state


@pytest.fixture(scope="session")
def demo_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated demo warehouse (DuckDB file): never written after creation."""
    path = tmp_path_factory.mktemp("reliability") / "demo.duckdb"
    generate_warehouse(f"duckdb:///{path}", events=DEMO_EVENTS, seed=1, now=NOW)
    return path


@pytest.fixture(scope="session")
def fault_free(demo_file: Path, tmp_path_factory: pytest.TempPathFactory) -> frozenset[str]:
    """Canonical records Amberflo holds after a fault-free sync of every stream of :func:`demo_file`."""
    state = tmp_path_factory.mktemp("fault_free") / "state.sqlite"
    return fault_free_state(f"duckdb:///{demo_file}", f"sqlite:///{state}", "fault-free-key")


@pytest.fixture
def demo_copy(demo_file: Path, tmp_path: Path) -> Path:
    """A private copy of the demo warehouse, for tests that load more data or hand it to Airflow."""
    path = tmp_path / "demo.duckdb"
    shutil.copy(demo_file, path)
    return path


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated Airflow home shared by the suite's ``airflow dags test`` runs."""
    home = tmp_path_factory.mktemp("airflow_home")
    migrate(home)
    return home
