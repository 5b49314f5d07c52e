from __future__ import annotations

import pytest

from tests.airflow_runner import AirflowRunner, migrate


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow_home")
    migrate(home)
    return home


@pytest.fixture
def airflow(airflow_home, tmp_path, emulator, api_key):
    """``airflow(warehouse_url, **config)`` → an :class:`AirflowRunner` bound to this test's emulator."""

    def make(warehouse, **config) -> AirflowRunner:
        warehouse.dispose()  # a DuckDB file admits one writing process: release the test's handle
        return AirflowRunner(airflow_home, tmp_path, warehouse_url=warehouse.url, amberflo_url=emulator.url,
                             api_key=api_key, config=config)

    return make
