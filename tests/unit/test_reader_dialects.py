"""Engine dialect rows and the SQL they produce, against recorded ``information_schema`` answers.

BigQuery and Databricks have no offline server: their rows are checked here on the answers those
warehouses give for a Segment source (column types as each reports them), without a connection.
"""

from __future__ import annotations

import json

import sqlalchemy as sa

from amberflo_sync.config import EventsConfig
from amberflo_sync.reader import DIALECTS, EventStream, WarehouseReader, Window, catalog_from_rows

#: ``table_schema, table_name, column_name, data_type, table_type, table_catalog`` as BigQuery's
#: ``prod.INFORMATION_SCHEMA.COLUMNS`` joined with ``TABLES`` answers for a Segment source
BIGQUERY_ANSWER = [
    ("prod", "pages", "id", "STRING", "BASE TABLE", "my-project"),
    ("prod", "pages", "received_at", "TIMESTAMP", "BASE TABLE", "my-project"),
    ("prod", "pages", "timestamp", "TIMESTAMP", "BASE TABLE", "my-project"),
    ("prod", "pages", "user_id", "STRING", "BASE TABLE", "my-project"),
    ("prod", "pages", "uuid_ts", "TIMESTAMP", "BASE TABLE", "my-project"),
    ("prod", "pages", "loaded_at", "TIMESTAMP", "BASE TABLE", "my-project"),
    ("prod", "api_calls", "id", "STRING", "BASE TABLE", "my-project"),
    ("prod", "api_calls", "loaded_at", "TIMESTAMP", "BASE TABLE", "my-project"),
    ("prod", "api_calls", "value", "FLOAT64", "BASE TABLE", "my-project"),
    ("prod", "api_calls", "count", "INT64", "BASE TABLE", "my-project"),
    ("prod", "pages_view", "id", "STRING", "VIEW", "my-project"),
]
#: the same from Databricks (Unity Catalog): table types are MANAGED / EXTERNAL, not BASE TABLE
DATABRICKS_ANSWER = [
    ("prod", "pages", "id", "STRING", "MANAGED", "main"),
    ("prod", "pages", "uuid_ts", "TIMESTAMP", "MANAGED", "main"),
    ("prod", "api_calls", "id", "STRING", "EXTERNAL", "main"),
    ("prod", "api_calls", "uuid_ts", "TIMESTAMP", "EXTERNAL", "main"),
    ("prod", "api_calls", "value", "DOUBLE", "EXTERNAL", "main"),
    ("prod", "recent_pages", "id", "STRING", "VIEW", "main"),
]


def reader_for(dialect: str, answer: list[tuple]) -> WarehouseReader:
    reader = WarehouseReader(sa.create_engine("sqlite://"), dialect=dialect)
    reader._schemas["prod"] = catalog_from_rows(answer, reader.dialect)
    return reader


def test_bigquery_discovery_reads_the_datasets_own_information_schema():
    reader = WarehouseReader(sa.create_engine("sqlite://"), dialect="bigquery")
    sql, params = reader.discovery_sql("prod")
    assert sql == (
        "SELECT c.table_schema, c.table_name, c.column_name, c.data_type, t.table_type, c.table_catalog "
        "FROM `prod`.INFORMATION_SCHEMA.columns AS c JOIN `prod`.INFORMATION_SCHEMA.tables AS t "
        "ON t.table_catalog = c.table_catalog AND t.table_schema = c.table_schema AND t.table_name = c.table_name "
        "WHERE lower(c.table_schema) = :schema ORDER BY c.table_name, c.ordinal_position")
    assert params == {"schema": "prod"}


def test_bigquery_streams_use_loaded_at_and_backticks():
    reader = reader_for("bigquery", BIGQUERY_ANSWER)
    streams = reader.event_streams(["prod"], EventsConfig())
    assert [(s.table, s.kind) for s in streams] == [("pages", "page"), ("api_calls", "track")]  # no view
    stream = streams[1]
    assert reader.cursor_column(stream, "uuid_ts").name == "loaded_at"  # BigQuery's load-time column
    assert reader.cursor_column(streams[0], "received_at").name == "received_at"  # an explicit choice stays
    names = [c.name for c in reader.columns("prod", "api_calls")]
    template, _ = reader._window_select(stream, Window("loaded_at", "L", "U"), names, row_id=None)
    assert template.startswith("SELECT t.`id`, t.`loaded_at`, t.`value`, t.`count`, CASE WHEN t.`id` IS NULL")
    assert "FROM `prod`.`api_calls` AS t WHERE ((t.`loaded_at` >" in template
    assert DIALECTS["bigquery"].quote("we`ird") == "`we\\`ird`"


def test_databricks_managed_and_external_tables_are_discovered():
    """Only ``BASE TABLE`` counted before: discovery found nothing and runs succeeded silently."""
    reader = reader_for("databricks", DATABRICKS_ANSWER)
    streams = reader.event_streams(["prod"], EventsConfig())
    assert [s.table for s in streams] == ["pages", "api_calls"]
    assert reader.catalog_to_dict()["schemas"]["prod"]["tables"]["pages"]["type"] == "MANAGED"
    template, params = reader._window_select(streams[1], Window("uuid_ts", 1, 2), ["id", "uuid_ts", "value"],
                                             row_id=None)
    assert "FROM `prod`.`api_calls` AS t" in template and "t.`uuid_ts` <=" in template


def test_snowflake_names_are_read_as_segment_spells_them():
    answer = [("PROD", "PAGES", "ID", "TEXT", "BASE TABLE", "DB"),
              ("PROD", "PAGES", "UUID_TS", "TIMESTAMP_NTZ", "BASE TABLE", "DB")]
    reader = reader_for("snowflake", answer)
    assert reader.actual_schema("prod") == "prod" and reader.tables("prod") == {"pages": "pages"}
    stream = reader.event_streams(["prod"], EventsConfig())[0]
    assert stream == EventStream("prod", "pages", "page")
    column = reader.cursor_column(stream, "uuid_ts")
    assert (column.name, column.has_time_zone) == ("uuid_ts", False)
    names = [c.name for c in reader._actual_columns("prod", "pages")]
    template, _ = reader._window_select(stream, Window("uuid_ts", "L"), names, row_id=None)
    assert 'FROM "PROD"."PAGES" AS t WHERE' in template and 't."UUID_TS" >' in template


def test_naive_timestamp_columns_get_naive_utc_bounds():
    import datetime as dt

    answer = [("prod", "pages", "id", "character varying", "BASE TABLE", "dev"),
              ("prod", "pages", "uuid_ts", "timestamp without time zone", "BASE TABLE", "dev")]
    reader = reader_for("redshift", answer)
    stream = EventStream("prod", "pages", "page")
    aware = dt.datetime(2026, 11, 20, 12, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    _, params = reader._bounds(Window("uuid_ts", aware), stream)
    assert params == {"lower": dt.datetime(2026, 11, 20, 10)}


def test_the_catalog_is_json_and_round_trips():
    reader = reader_for("databricks", DATABRICKS_ANSWER)
    reader._schemas["absent"] = None
    data = json.loads(json.dumps(reader.catalog_to_dict()))
    seeded = WarehouseReader.from_catalog(sa.create_engine("sqlite://"), data, dialect="databricks")
    assert seeded.catalog_to_dict() == data
    assert seeded.tables("prod") == reader.tables("prod") and seeded.actual_schema("absent") is None
    assert seeded.discovery_statements == 0


def test_bigquery_timestamps_are_instants_so_bounds_keep_a_zone():
    import datetime as dt

    reader = reader_for("bigquery", BIGQUERY_ANSWER)
    naive = dt.datetime(2026, 11, 20, 10)
    _, params = reader._bounds(Window("loaded_at", naive), EventStream("prod", "api_calls", "track"))
    assert params == {"lower": dt.datetime(2026, 11, 20, 10, tzinfo=dt.timezone.utc)}
