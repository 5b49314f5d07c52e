"""The warehouse reader on a real DuckDB file and a real PostgreSQL."""

from __future__ import annotations

import pandas as pd
import pytest

from amberflo_sync.config import EventsConfig
from amberflo_sync.reader import EventStream, WarehouseReader, Window, create_engine
from amberflo_sync.transform import DUP_RANK_COLUMN
from tests.segment_rows import event_rows


def reader_for(warehouse, chunk_rows: int = 50_000) -> WarehouseReader:
    return WarehouseReader(create_engine(warehouse.url), chunk_rows=chunk_rows)


def test_discovers_pages_screens_and_event_tables_but_not_other_segment_tables(warehouse):
    for table in ("pages", "tracks", "identifies", "users", "groups", "aliases", "api_calls", "order_completed"):
        warehouse.write("prod", table, event_rows(1))
    streams = reader_for(warehouse).event_streams([warehouse.schema("prod")], EventsConfig())
    assert [(s.table, s.kind) for s in streams] == [
        ("pages", "page"),
        ("api_calls", "track"),
        ("order_completed", "track"),
    ]


def test_missing_schema_and_missing_tables_are_not_errors(warehouse):
    warehouse.write("prod", "screens", event_rows(1))
    streams = reader_for(warehouse).event_streams([warehouse.schema("prod"), warehouse.schema("nope")], EventsConfig())
    assert [s.table for s in streams] == ["screens"]


def test_include_and_exclude_lists_filter_event_tables(warehouse):
    for table in ("api_calls", "api_errors", "order_completed"):
        warehouse.write("prod", table, event_rows(1))
    events = EventsConfig(pages=False, include=("api_*", "order_completed"), exclude=("api_errors",))
    streams = reader_for(warehouse).event_streams([warehouse.schema("prod")], events)
    assert [s.table for s in streams] == ["api_calls", "order_completed"]


def test_streams_a_window_in_chunks(warehouse):
    frame = event_rows(10)
    warehouse.write("prod", "api_calls", frame)
    reader = reader_for(warehouse, chunk_rows=3)
    stream = EventStream(warehouse.schema("prod"), "api_calls", "track")
    lower, upper = frame["uuid_ts"][2], frame["uuid_ts"][8]
    chunks = list(reader.extract_window(stream, Window("uuid_ts", lower.to_pydatetime(), upper.to_pydatetime())))
    assert all(len(c) <= 3 for c in chunks) and len(chunks) >= 2
    ids = sorted(pd.concat(chunks)["id"].tolist())
    assert ids == sorted(f"m-{i}" for i in range(3, 9))


def test_upper_bound_is_the_max_cursor(warehouse):
    frame = event_rows(5)
    warehouse.write("prod", "pages", frame)
    reader = reader_for(warehouse)
    stream = EventStream(warehouse.schema("prod"), "pages", "page")
    assert pd.Timestamp(reader.max_cursor(stream, "uuid_ts")) == frame["uuid_ts"].max()


def test_duplicate_ids_are_ranked_across_the_whole_window(warehouse):
    frame = event_rows(6)
    frame.loc[5, "id"] = "m-0"  # a later copy of m-0 (later uuid_ts)
    warehouse.write("prod", "api_calls", frame)
    chunks = list(reader_for(warehouse, chunk_rows=2).extract_window(
        EventStream(warehouse.schema("prod"), "api_calls", "track"), Window("uuid_ts")))
    rows = pd.concat(chunks)
    ranks = dict(zip(rows["uuid_ts"].astype(str), rows[DUP_RANK_COLUMN]))
    assert sorted(rows[DUP_RANK_COLUMN].tolist()) == [1, 1, 1, 1, 1, 2]
    assert ranks[str(frame["uuid_ts"][5])] == 2


def test_rows_with_null_cursor_are_always_read(warehouse):
    frame = event_rows(3)
    frame["uuid_ts"] = frame["uuid_ts"].astype(object)
    frame.loc[1, "uuid_ts"] = None
    frame["uuid_ts"] = pd.to_datetime(frame["uuid_ts"], utc=True)
    warehouse.write("prod", "pages", frame)
    window = Window("uuid_ts", lower=frame["uuid_ts"][2].to_pydatetime(), upper=frame["uuid_ts"][2].to_pydatetime())
    rows = pd.concat(reader_for(warehouse).extract_window(EventStream(warehouse.schema("prod"), "pages", "page"), window))
    assert sorted(rows["id"]) == ["m-1"]


def test_upper_case_identifiers_like_snowflake(warehouse):
    frame = event_rows(2).rename(columns=str.upper)
    warehouse.write("PROD", "API_CALLS", frame)
    reader = reader_for(warehouse)
    streams = reader.event_streams([warehouse.schema("prod")], EventsConfig())
    assert [(s.schema, s.table) for s in streams] == [(warehouse.schema("PROD"), "API_CALLS")]
    stream = streams[0]
    cursor = reader.cursor_column(stream, "uuid_ts")
    assert cursor.name == "UUID_TS" and cursor.has_time_zone
    rows = pd.concat(reader.extract_window(stream, Window(cursor.name, upper=reader.max_cursor(stream, cursor.name))))
    assert sorted(rows["ID"]) == ["m-0", "m-1"]


def test_hostile_table_and_column_names_are_quoted(warehouse):
    name = 'evil"; DROP TABLE x; --:lower{0}'
    frame = event_rows(2)
    frame['select'] = "kw"
    frame['we"ird col'] = "q"
    warehouse.write("prod", name, frame)
    reader = reader_for(warehouse)
    streams = reader.event_streams([warehouse.schema("prod")], EventsConfig())
    assert [s.table for s in streams] == [name]
    upper = reader.max_cursor(streams[0], "uuid_ts")
    rows = pd.concat(reader.extract_window(streams[0], Window("uuid_ts", lower=upper - pd.Timedelta(days=1), upper=upper)))
    assert sorted(rows["id"]) == ["m-0", "m-1"] and set(rows["select"]) == {"kw"}


def test_table_dropped_after_discovery_yields_nothing(warehouse):
    warehouse.write("prod", "api_calls", event_rows(2))
    reader = reader_for(warehouse)
    stream = reader.event_streams([warehouse.schema("prod")], EventsConfig())[0]
    warehouse.execute(f'DROP TABLE "{warehouse.schema("prod")}"."api_calls"')
    assert list(reader.extract_window(stream, Window("uuid_ts"))) == []


def test_new_columns_appear_in_the_next_run(warehouse):
    """A reader keeps its catalog for its life (one discovery statement per schema and run); the
    next run's reader sees the new column."""
    warehouse.write("prod", "api_calls", event_rows(1))
    reader = reader_for(warehouse)
    stream = EventStream(warehouse.schema("prod"), "api_calls", "track")
    assert "region" not in pd.concat(reader.extract_window(stream, Window(None))).columns
    warehouse.write("prod", "api_calls", event_rows(2, region="eu"))
    assert "region" in pd.concat(reader_for(warehouse).extract_window(stream, Window(None))).columns


def test_an_empty_table_yields_no_chunk(warehouse):
    """PostgreSQL's COPY prints nothing for an empty table, which pyarrow's CSV reader refused."""
    warehouse.write("prod", "api_calls", event_rows(1).iloc[0:0])
    stream = EventStream(warehouse.schema("prod"), "api_calls", "track")
    assert list(reader_for(warehouse).extract_window(stream, Window(cursor=None))) == []
