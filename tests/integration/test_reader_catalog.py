"""Discovery once per schema, handed over as JSON; statements counted; DuckDB catalog names."""

from __future__ import annotations

import json

import pandas as pd

from amberflo_sync.config import EventsConfig
from amberflo_sync.reader import EventStream, WarehouseReader, Window, create_engine
from amberflo_sync.transform import to_meter_records
from tests.segment_rows import event_rows
from tests.warehouse import Warehouse


def test_a_duckdb_file_named_like_its_schema_is_read(tmp_path):
    """``prod.duckdb`` holding schema ``prod``: ``"prod"."pages"`` is ambiguous (catalog or schema)
    unless the reader names the catalog — every run failed before."""
    import duckdb

    frame = event_rows(3)
    con = duckdb.connect(str(tmp_path / "prod.duckdb"))
    con.execute("CREATE SCHEMA prod.prod")
    con.register("frame_view", frame)
    con.execute("CREATE TABLE prod.prod.pages AS SELECT * FROM frame_view")
    con.close()
    warehouse = Warehouse(f"duckdb:///{tmp_path / 'prod.duckdb'}")
    reader = WarehouseReader(warehouse._engine, chunk_rows=2)
    streams = reader.event_streams(["prod"], EventsConfig())
    assert [s.key for s in streams] == ["prod.pages"]
    upper = reader.max_cursor(streams[0], "uuid_ts")
    assert pd.Timestamp(upper) == frame["uuid_ts"].max()
    assert reader.count_window(streams[0], Window("uuid_ts", None, upper))[0] == 3
    rows = pd.concat(reader.extract_window(streams[0], Window("uuid_ts", None, upper)))
    assert sorted(rows["id"]) == ["m-0", "m-1", "m-2"]
    assert sorted(pd.concat(reader.extract_ids(streams[0], ["m-2"]))["id"]) == ["m-2"]
    warehouse.dispose()


def test_discovery_is_one_statement_per_schema_for_the_readers_life(warehouse):
    for table in ("pages", "screens", "api_calls", "order_completed", "identifies"):
        warehouse.write("prod", table, event_rows(2))
    reader = WarehouseReader(create_engine(warehouse.url))
    schema = warehouse.schema("prod")
    for _ in range(3):
        streams = reader.event_streams([schema, warehouse.schema("absent")], EventsConfig())
        for stream in streams:
            reader.columns(stream.schema, stream.table), reader.cursor_column(stream, "uuid_ts")
    assert len(streams) == 4
    assert reader.discovery_statements == 2 and reader.statements == 2  # one per schema, the absent one too


def test_a_reader_seeded_with_the_plans_catalog_sends_no_discovery(warehouse):
    warehouse.write("prod", "api_calls", event_rows(3, value=[1.0, None, 2.5]))
    plan = WarehouseReader(create_engine(warehouse.url))
    streams = plan.event_streams([warehouse.schema("prod")], EventsConfig())
    catalog = json.loads(json.dumps(plan.catalog_to_dict()))  # through XCom
    slice_reader = WarehouseReader.from_catalog(create_engine(warehouse.url), catalog, chunk_rows=2)
    assert slice_reader.event_streams([warehouse.schema("prod")], EventsConfig()) == streams
    chunks = list(slice_reader.extract_window(streams[0], Window("uuid_ts")))
    assert sum(len(c) for c in chunks) == 3
    assert slice_reader.discovery_statements == 0
    assert slice_reader.statements == 1  # the read, nothing else (no SELECT 1, no information_schema)


def test_statements_are_counted_on_every_read_path(warehouse):
    warehouse.write("prod", "api_calls", event_rows(3))
    reader = WarehouseReader(create_engine(warehouse.url))
    stream = EventStream(warehouse.schema("prod"), "api_calls", "track")
    reader.columns(stream.schema, stream.table)
    before = reader.statements
    list(reader.extract_window(stream, Window("uuid_ts")))
    list(reader.extract_ids(stream, ["m-1"]))
    reader.max_cursor(stream, "uuid_ts")
    reader.count_window(stream, Window("uuid_ts"))
    assert reader.statements - before == 4


def test_warehouse_engines_send_no_liveness_ping(warehouse):
    """``pool_pre_ping`` sent a ``SELECT 1`` before every checkout: a billed statement on Snowflake."""
    engine = create_engine(warehouse.url)
    assert not engine.pool._pre_ping
    seen: list[str] = []
    import sqlalchemy as sa

    sa.event.listen(engine, "before_cursor_execute", lambda conn, cur, statement, *a: seen.append(statement))
    warehouse.write("prod", "pages", event_rows(2))
    reader = WarehouseReader(engine)
    stream = EventStream(warehouse.schema("prod"), "pages", "page")
    for _ in range(3):
        reader.max_cursor(stream, "uuid_ts")
    assert not [s for s in seen if s.strip().upper() == "SELECT 1"]


def test_retried_rows_keep_big_integers_next_to_nulls(warehouse):
    """``extract_ids`` took the untyped path: a BIGINT next to a NULL became float64 and
    9007199254740993 printed as ...992 — a different uniqueId payload than the first send."""
    frame = event_rows(2, event_text="ApiCalls")
    frame["big"] = pd.array([2**53 + 1, None], dtype="Int64")
    warehouse.write("prod", "api_calls", frame)
    reader = WarehouseReader(create_engine(warehouse.url))
    stream = EventStream(warehouse.schema("prod"), "api_calls", "track")
    first = to_meter_records(pd.concat(reader.extract_window(stream, Window("uuid_ts"))), kind="track",
                             table="api_calls").rendered.to_list()
    retried = to_meter_records(pd.concat(reader.extract_ids(stream, ["m-0", "m-1"])), kind="track",
                               table="api_calls").rendered.to_list()
    assert '"big":"9007199254740993"' in first[0]
    assert sorted(retried) == sorted(first)


def test_an_empty_window_reads_nothing(warehouse):
    """PostgreSQL's COPY of no row is an empty CSV, which pyarrow refused."""
    warehouse.write("prod", "pages", event_rows(2))
    reader = WarehouseReader(create_engine(warehouse.url))
    stream = EventStream(warehouse.schema("prod"), "pages", "page")
    upper = reader.max_cursor(stream, "uuid_ts")
    assert list(reader.extract_window(stream, Window("uuid_ts", upper, upper, include_null=False))) == []


def test_window_stats_is_max_cursor_and_count_window_in_one_statement(warehouse):
    frame = event_rows(5)
    frame["uuid_ts"] = frame["uuid_ts"].astype(object)
    frame.loc[4, "uuid_ts"] = None
    frame["uuid_ts"] = pd.to_datetime(frame["uuid_ts"], utc=True)
    warehouse.write("prod", "pages", frame)
    reader = WarehouseReader(create_engine(warehouse.url))
    stream = EventStream(warehouse.schema("prod"), "pages", "page")
    reader.columns(stream.schema, stream.table)
    lower = frame["uuid_ts"][1].to_pydatetime()
    before = reader.statements
    rows, low, high = reader.window_stats(stream, "uuid_ts", lower)
    assert reader.statements - before == 1
    upper = reader.max_cursor(stream, "uuid_ts")
    assert (rows, pd.Timestamp(low), pd.Timestamp(high)) == (
        reader.count_window(stream, Window("uuid_ts", lower, upper))[0], frame["uuid_ts"][2], pd.Timestamp(upper))
    assert rows == 3  # two after the lower bound, and the NULL one
    assert reader.window_stats(stream, "uuid_ts", None, include_null=False)[0] == 4
