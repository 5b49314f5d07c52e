"""The same Segment fixture through every engine: Amberflo (the emulator) receives the same records
and customers from a DuckDB file, a Snowflake-speaking server (fakesnow, through a ``snowflake``-type
Airflow connection made like the provider's form) and PostgreSQL (a ``postgres``-type connection,
with zoned timestamps and with Redshift-style naive UTC ones) — real ``airflow dags test`` runs of
the events, identify and Engage DAGs.

fakesnow returns a NULL ``TIMESTAMP`` as the epoch: the fixture seeds no NULL timestamps (the
workaround is in the fixture, :mod:`tests.snowflake_warehouse` refuses them), so the comparison
holds every column as it is.
"""

from __future__ import annotations

import json
import uuid

import orjson
import pandas as pd
import pytest

from amberflo_sync.emulator import EmulatorServer
from tests.airflow_runner import AirflowRunner
from tests.e2e.test_events_dag import build_small_warehouse
from tests.integration.test_engage_sync import AUDIENCE, users
from tests.integration.test_identifies_sync import identify_rows
from tests.segment_rows import BASE_TIME
from tests.snowflake_warehouse import SnowflakeWarehouse, fakesnow_server
from tests.unit.test_customers import SEED_TRAITS
from tests.warehouse import Warehouse

pytestmark = pytest.mark.airflow
DAGS = ("segment_identifies_to_amberflo", "engage_audiences_to_amberflo", "segment_events_to_amberflo")


def build_fixture(warehouse) -> None:
    """Events (every stream kind), identifies and an identify-shaped Engage space."""
    build_small_warehouse(warehouse)
    warehouse.write("prod", "identifies", identify_rows(
        [SEED_TRAITS, {"user_id": "user_2", "plan": "free", "seats": 3}], loaded=BASE_TIME))
    warehouse.write("engage_default", "users", users({"user_0": {AUDIENCE: True, "lifetime_value": 12.5},
                                                      "user_2": {AUDIENCE: False, "lifetime_value": 0.0}}))


def naive_utc(frame: pd.DataFrame) -> pd.DataFrame:
    """Redshift's layout: every timestamp column ``timestamp`` (no zone), meaning UTC."""
    frame = frame.copy()
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.DatetimeTZDtype):
            frame[column] = frame[column].dt.tz_convert("UTC").dt.tz_localize(None)
    return frame


class NaiveTimestamps:
    """A warehouse writer that stores timestamps as Redshift does (naive UTC)."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def write(self, schema, table, frame, **kw):
        self.inner.write(schema, table, naive_utc(frame), **kw)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def received(runner: AirflowRunner, emulator: EmulatorServer) -> tuple[list[bytes], dict]:
    """Run the three DAGs; what Amberflo holds: each meter record as JSON bytes, the customers."""
    for dag_id in DAGS:
        result = runner.dags_test(dag_id)
        assert result.succeeded, f"{dag_id}:\n{result.output[-6000:]}"
    records = sorted(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) for r in emulator.records())
    customers = {k: {f: v for f, v in c.items() if f not in ("createTime", "updateTime")}
                 for k, c in emulator.customers().items()}
    return records, customers


@pytest.fixture
def duckdb_baseline(duckdb_warehouse, airflow, emulator):
    build_fixture(duckdb_warehouse)
    records, customers = received(airflow(duckdb_warehouse, engage={"spaces": ["engage_default"]}), emulator)
    assert len(records) == 6 and set(customers) == {"some_user_id", "user_0", "user_2"}
    return records, customers


def other_runner(airflow_home, tmp_path, emulator, api_key, connection: dict) -> AirflowRunner:
    work = tmp_path / uuid.uuid4().hex[:8]
    work.mkdir()
    runner = AirflowRunner(airflow_home, work, warehouse_url="unused://", amberflo_url=emulator.url,
                           api_key=api_key, config={"engage": {"spaces": ["engage_default"]}})
    runner.env["AIRFLOW_CONN_SEGMENT_WAREHOUSE"] = json.dumps(connection)
    return runner


def test_snowflake_connection_bills_what_duckdb_bills(duckdb_baseline, airflow_home, tmp_path, api_key):
    with fakesnow_server() as port, EmulatorServer(api_key=api_key) as emulator:
        snowflake = SnowflakeWarehouse(port)
        try:
            build_fixture(snowflake)
            # exactly the provider form's fields plus the local server's host/port/protocol
            runner = other_runner(airflow_home, tmp_path, emulator, api_key, snowflake.connection())
            assert received(runner, emulator) == duckdb_baseline
        finally:
            snowflake.dispose()


def pg_connection(pg_warehouse) -> dict:
    url = pg_warehouse._engine.url
    return {"conn_type": "postgres", "host": url.host, "port": url.port, "login": url.username,
            "password": url.password, "schema": url.database}


def test_postgres_connection_bills_what_duckdb_bills_with_zoned_and_naive_timestamps(
        duckdb_baseline, pg_url, airflow_home, tmp_path, api_key):
    """A ``postgres`` connection (PostgresHook, psycopg2, COPY): Segment's PostgreSQL layout
    (``timestamptz``), then Redshift's (naive UTC ``timestamp``)."""
    for layout in ("zoned", "naive"):
        warehouse = Warehouse(pg_url, prefix=f"t{uuid.uuid4().hex[:8]}_")
        try:
            with EmulatorServer(api_key=api_key) as emulator:
                build_fixture(warehouse if layout == "zoned" else NaiveTimestamps(warehouse))
                runner = other_runner(airflow_home, tmp_path, emulator, api_key, pg_connection(warehouse))
                runner.config_path.write_text(runner.config_path.read_text()
                                              .replace("- prod", f"- {warehouse.schema('prod')}")
                                              .replace("- ios_app", f"- {warehouse.schema('ios_app')}")
                                              .replace("- engage_default", f"- {warehouse.schema('engage_default')}"))
                assert received(runner, emulator) == duckdb_baseline, layout
        finally:
            warehouse.drop_all()
            warehouse.dispose()
