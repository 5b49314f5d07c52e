"""The bytes of a record depend only on the warehouse row (issue 12).

Not on the engine (DuckDB, PostgreSQL through COPY, PostgreSQL through the typed fallback that
Redshift and other engines take), not on the chunk size, and not on the read path (the whole
window, the window cut into slices, rows fetched back by id to retry them). Property-based: -0,
BIGINT next to NULL and beyond 2**53, NaN/±inf, decimals, nested JSON, text that looks like numbers.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from amberflo_sync.reader import EventStream, WarehouseReader, Window, create_engine
from amberflo_sync.transform import to_meter_records

BASE = dt.datetime(2026, 11, 20, 10, tzinfo=dt.timezone.utc)
#: column → (DuckDB type, PostgreSQL type)
COLUMNS = {
    "id": ("VARCHAR", "text"),
    "user_id": ("VARCHAR", "text"),
    "timestamp": ("TIMESTAMPTZ", "timestamptz"),
    "uuid_ts": ("TIMESTAMPTZ", "timestamptz"),
    "event_text": ("VARCHAR", "text"),
    "value": ("DOUBLE", "double precision"),
    "big": ("BIGINT", "bigint"),
    "ratio": ("DOUBLE", "double precision"),
    "amount": ("DECIMAL(18,6)", "numeric"),
    "payload": ("JSON", "jsonb"),
    "note": ("VARCHAR", "text"),
}

floats = st.one_of(st.none(), st.sampled_from([-0.0, 0.0, float("nan"), float("inf"), float("-inf"), 1e16, 2.5e-7]),
                   st.floats(allow_nan=True, allow_infinity=True, width=64))
bigints = st.one_of(st.none(), st.sampled_from([2**53 + 1, -(2**63), 2**63 - 1, 0]),
                    st.integers(min_value=-(2**63), max_value=2**63 - 1))
decimals = st.one_of(st.none(), st.decimals(min_value=-10**11, max_value=10**11, places=6, allow_nan=False))
# what PostgreSQL can store: no NUL, no lone surrogates
safe_text = st.text(alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=8)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), safe_text,
              st.floats(allow_nan=False, allow_infinity=False, width=32).map(float)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(safe_text, inner, max_size=3)),
    max_leaves=6,
)
texts = st.one_of(st.none(), st.sampled_from(["-0", "0", "1.0", "NaN", "", "a,b", 'q"t', "line\nbreak"]), safe_text)
rows_strategy = st.lists(
    st.fixed_dictionaries({"value": floats, "big": bigints, "ratio": floats, "amount": decimals,
                           "payload": st.one_of(st.none(), json_values.map(json.dumps)), "note": texts}),
    min_size=1, max_size=12,
)


def table_rows(values: list[dict]) -> list[dict]:
    return [{"id": f"r-{i}", "user_id": f"user_{i % 2}", "timestamp": BASE + dt.timedelta(seconds=i),
             "uuid_ts": BASE + dt.timedelta(minutes=30, seconds=i), "event_text": "ApiCalls", **v}
            for i, v in enumerate(values)]


def write_duckdb(engine, schema: str, table: str, rows: list[dict]) -> None:
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        duck = getattr(raw, "_ConnectionWrapper__c", raw)
        duck.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        duck.execute(f'CREATE TABLE "{schema}"."{table}" ({", ".join(f"{c} {t[0]}" for c, t in COLUMNS.items())})'
                     .replace("timestamp TIMESTAMPTZ", '"timestamp" TIMESTAMPTZ'))
        duck.executemany(f'INSERT INTO "{schema}"."{table}" VALUES ({", ".join(["?"] * len(COLUMNS))})',
                         [[r[c] for c in COLUMNS] for r in rows])
        conn.commit()


def write_postgres(engine, schema: str, table: str, rows: list[dict]) -> None:
    with engine.begin() as conn:
        raw = conn.connection.driver_connection
        with raw.cursor() as cur:
            cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            cur.execute(f'CREATE TABLE "{schema}"."{table}" ({", ".join(f"{chr(34)}{c}{chr(34)} {t[1]}" for c, t in COLUMNS.items())})')
            cur.executemany(f'INSERT INTO "{schema}"."{table}" VALUES ({", ".join(["%s"] * len(COLUMNS))})',
                            [[r[c] for c in COLUMNS] for r in rows])


def rendered(reader: WarehouseReader, stream: EventStream, frames) -> dict[str, str]:
    out: dict[str, str] = {}
    for frame in frames:
        batch = to_meter_records(frame, kind=stream.kind, table=stream.table)
        for record in batch.rendered:
            out[json.loads(record)["uniqueId"]] = record
        for row in batch.rejected.to_dict("records"):
            out[str(row["id"])] = f"rejected:{row['reason']}"
    return out


def every_path(reader: WarehouseReader, stream: EventStream, ids: list[str]) -> list[dict[str, str]]:
    """The rendered records of the whole window, of the window in two slices, and by id."""
    upper = reader.max_cursor(stream, "uuid_ts")
    whole = rendered(reader, stream, reader.extract_window(stream, Window("uuid_ts", None, upper)))
    middle = BASE + dt.timedelta(minutes=30, seconds=len(ids) // 2)
    sliced = rendered(reader, stream, reader.extract_window(stream, Window("uuid_ts", None, middle)))
    sliced |= rendered(reader, stream, reader.extract_window(stream, Window("uuid_ts", middle, upper,
                                                                            include_null=False)))
    by_id = rendered(reader, stream, reader.extract_ids(stream, list(reversed(ids))))
    return [whole, sliced, by_id]


@pytest.fixture(scope="module")
def engines(tmp_path_factory, request):
    from tests.conftest import PG_URL, require_service

    require_service("PostgreSQL", "127.0.0.1", 5432)
    duck = create_engine(f"duckdb:///{tmp_path_factory.mktemp('bytes') / 'w.duckdb'}")
    pg = create_engine(PG_URL)
    schema = f"bytes_{uuid.uuid4().hex[:8]}"
    yield duck, pg, schema
    with pg.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    duck.dispose(), pg.dispose()


# each example writes two real tables: no shrinking phase, so a failure reports within seconds
@settings(max_examples=25, deadline=None, derandomize=True, phases=(Phase.explicit, Phase.reuse, Phase.generate),
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=rows_strategy, chunk_rows=st.sampled_from([1, 2, 5, 50]))
def test_a_row_renders_the_same_bytes_on_every_engine_chunk_and_path(engines, values, chunk_rows):
    duck, pg, schema = engines
    table = f"t_{uuid.uuid4().hex[:10]}"
    rows = table_rows(values)
    write_duckdb(duck, schema, table, rows)
    write_postgres(pg, schema, table, rows)
    stream = EventStream(schema, table, "track")
    ids = [r["id"] for r in rows]
    results = {}
    for name, reader in {
        "duckdb": WarehouseReader(duck, chunk_rows=chunk_rows),
        "postgres (COPY)": WarehouseReader(pg, chunk_rows=chunk_rows),
        "postgres (typed fallback, as Redshift)": WarehouseReader(pg, chunk_rows=chunk_rows, dialect="redshift"),
        "duckdb (chunk of 1000)": WarehouseReader(duck, chunk_rows=1000),
    }.items():
        for path, records in zip(("window", "slices", "ids"), every_path(reader, stream, ids)):
            assert set(records) == set(ids), (name, path)
            results[(name, path)] = records
    expected = results[("duckdb (chunk of 1000)", "window")]
    for key, records in results.items():
        assert records == expected, key


def test_a_json_integer_beyond_64_bits_does_not_crash_the_typed_fallback():
    """Found by the property test in CI: psycopg2 parses a JSON column into Python, and an integer
    beyond 64 bits made orjson refuse the row — a crash of the whole run."""
    from amberflo_sync.reader import _canonical_json, _json_text_at

    [text] = _json_text_at(([1, 2**70, {"n": -(2**65)}],), [0])
    assert _canonical_json(text) == _canonical_json("[1, 1180591620717411303424, {\"n\": -36893488147419103232}]")
