"""``segment_warehouse`` of any Airflow SQL connection type: the provider's hook builds the engine."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from amberflo_sync.config import EventsConfig
from amberflo_sync.hooks import SegmentWarehouseHook
from amberflo_sync.reader import EventStream, WarehouseReader, Window
from amberflo_sync.warehouses import WarehouseProviderMissing
from tests.segment_rows import event_rows
from tests.snowflake_warehouse import SnowflakeWarehouse, fakesnow_server


def use_connection(monkeypatch, connection: dict) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_SEGMENT_WAREHOUSE", json.dumps(connection))


def test_postgres_connection_keeps_the_copy_fast_path(monkeypatch, pg_warehouse):
    """PostgresHook's default URL is ``postgresql+psycopg``, which the COPY path does not serve."""
    pg_warehouse.write("prod", "pages", event_rows(3))
    url = pg_warehouse._engine.url
    use_connection(monkeypatch, {"conn_type": "postgres", "host": url.host, "port": url.port, "login": url.username,
                                 "schema": url.database,
                                 "extra": {"engine_kwargs": {"pool_size": 2,
                                                             "connect_args": {"application_name": "amberflo-sync"}}}})
    warehouse = SegmentWarehouseHook().get_warehouse_engine()
    engine = warehouse.engine
    assert (engine.dialect.name, engine.dialect.driver, warehouse.dialect) == ("postgresql", "psycopg2", "postgresql")
    assert engine.pool.size() == 2 and not engine.pool._pre_ping  # engine_kwargs passed through, no ping
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW application_name").scalar() == "amberflo-sync"
    reader = WarehouseReader(engine, dialect=warehouse.dialect)
    monkeypatch.setattr(reader, "_stream_sqlalchemy", lambda *a, **k: pytest.fail("took the typed fallback"))
    stream = EventStream(pg_warehouse.schema("prod"), "pages", "page")
    assert sum(len(c) for c in reader.extract_window(stream, Window("uuid_ts"))) == 3
    engine.dispose()


def test_a_missing_provider_names_the_package_to_install(monkeypatch):
    use_connection(monkeypatch, {"conn_type": "databricks", "host": "dbc.example.invalid", "password": "tok-secret-1"})
    with pytest.raises(WarehouseProviderMissing) as error:
        SegmentWarehouseHook().get_warehouse_engine()
    message = str(error.value)
    assert "pip install apache-airflow-providers-databricks" in message
    assert "requirements-databricks.txt" in message and "tok-secret-1" not in message


def test_duckdb_and_generic_connections_need_no_provider(monkeypatch, duckdb_warehouse):
    duckdb_warehouse.write("prod", "pages", event_rows(2))
    duckdb_warehouse.dispose()
    for connection in ({"conn_type": "generic", "extra": {"sqlalchemy_url": duckdb_warehouse.url}},
                       {"conn_type": "duckdb", "host": duckdb_warehouse.url.removeprefix("duckdb:///")}):
        use_connection(monkeypatch, connection)
        warehouse = SegmentWarehouseHook().get_warehouse_engine(read_only=True)
        reader = WarehouseReader(warehouse.engine, dialect=warehouse.dialect)
        assert [s.key for s in reader.event_streams(["prod"], EventsConfig())] == ["prod.pages"]
        warehouse.engine.dispose()


@pytest.fixture(scope="module")
def fakesnow_port():
    with fakesnow_server() as port:
        yield port


def test_snowflake_connection_from_the_providers_form_reads_arrow_batches(monkeypatch, fakesnow_port):
    snowflake = SnowflakeWarehouse(fakesnow_port)
    frame = event_rows(4, event_text="ApiCalls", value=[1.5, None, 2.0, 3.0])
    snowflake.write("prod", "api_calls", frame)
    connection = snowflake.connection()
    assert set(connection["extra"]) == {"account", "warehouse", "database", "host", "port", "engine_kwargs"}
    use_connection(monkeypatch, connection)
    warehouse = SegmentWarehouseHook().get_warehouse_engine()
    assert (warehouse.engine.dialect.name, warehouse.dialect) == ("snowflake", "snowflake")
    reader = WarehouseReader(warehouse.engine, dialect=warehouse.dialect, chunk_rows=3)
    monkeypatch.setattr(reader, "_stream_sqlalchemy", lambda *a, **k: pytest.fail("took the typed fallback"))
    (stream,) = reader.event_streams(["prod"], EventsConfig())
    assert stream == EventStream("prod", "api_calls", "track")  # Snowflake's PROD.API_CALLS, as Segment names it
    chunks = list(reader.extract_window(stream, Window("uuid_ts", None, reader.max_cursor(stream, "uuid_ts"))))
    assert [len(c) for c in chunks] == [3, 1]
    assert list(chunks[0].columns)[:3] == ["id", "anonymous_id", "user_id"]
    assert reader.discovery_statements == 1 and reader.statements == 3  # discovery, MAX, the read
    snowflake.dispose()
    warehouse.engine.dispose()


def test_a_state_schema_is_not_needed_to_read(monkeypatch, fakesnow_port):
    """The reader never touches the state schema: grants are read on the Segment schema only."""
    snowflake = SnowflakeWarehouse(fakesnow_port)
    snowflake.write("prod", "pages", event_rows(1))
    use_connection(monkeypatch, snowflake.connection())
    warehouse = SegmentWarehouseHook().get_warehouse_engine()
    seen: list[str] = []
    sa.event.listen(warehouse.engine, "before_cursor_execute", lambda c, cur, s, *a: seen.append(s))
    reader = WarehouseReader(warehouse.engine, dialect=warehouse.dialect)
    reader.event_streams(["prod"], EventsConfig())
    assert seen and not [s for s in seen if "amberflo_sync" in s.lower()]
    snowflake.dispose()
    warehouse.engine.dispose()


def test_a_postgres_connection_to_redshift_names_its_dialect(monkeypatch, pg_warehouse):
    """Redshift speaks PostgreSQL's protocol but has no ``COPY … TO STDOUT``: the extra
    ``warehouse_dialect`` picks the Redshift row, whose rows come through the typed fallback."""
    pg_warehouse.write("prod", "pages", event_rows(2))
    url = pg_warehouse._engine.url
    use_connection(monkeypatch, {"conn_type": "postgres", "host": url.host, "port": url.port,
                                 "login": url.username, "schema": url.database,
                                 "extra": {"warehouse_dialect": "redshift"}})
    warehouse = SegmentWarehouseHook().get_warehouse_engine()
    reader = WarehouseReader(warehouse.engine, dialect=warehouse.dialect)
    assert reader.dialect.name == "redshift" and reader.dialect.naive_utc_timestamps
    monkeypatch.setattr(reader, "_stream_postgres_copy", lambda *a, **k: pytest.fail("COPY on Redshift"))
    stream = EventStream(pg_warehouse.schema("prod"), "pages", "page")
    assert sum(len(c) for c in reader.extract_window(stream, Window("uuid_ts"))) == 2
    warehouse.engine.dispose()
