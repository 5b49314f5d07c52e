"""Hostile data: every row is billed correctly or rejected with its reason; no run crashes, nothing vanishes.

The corpus (:mod:`amberflo_sync.demo.bad_input`) is written to DuckDB and to PostgreSQL with explicit
types and synced stream by stream (discovered like the DAG discovers them, so the table named with SQL
has to survive discovery, quoting and ``sa.text`` too). Each corpus row states its expected outcome;
the tests check each one, the exact record of representative rows, and the accounting of every run.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from amberflo_sync.config import SyncConfig, config_from_dict
from amberflo_sync.demo.bad_input import (
    DUPLICATE,
    EVENT_TEXT,
    HOSTILE_TABLE,
    PAGES_TABLE,
    SCHEMA,
    SENT,
    TEXT_VALUE_TABLE,
    TRACK_TABLE,
    BadRow,
    change_value_type,
    corpus_rows,
    drop_table,
    quote,
    row_values,
    write_bad_input_warehouse,
)
from amberflo_sync.emulator import EmulatorServer
from amberflo_sync.reader import EventStream, create_engine
from amberflo_sync.ledger import RunStats
from tests.conftest import PG_URL, require_service
from tests.reliability.rig import SyncRig

API_KEY = "reliability-bad-input-key"
#: Chunks of 7 rows and requests of 5 records: duplicates and rejections straddle chunk boundaries.
CHUNK_ROWS, BATCH_SIZE = 7, 5
#: The reference time of the corpus: the run's own start, as the 60-day horizon is relative to it.
NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
ROWS = corpus_rows(NOW)
METER_OF_TABLE = {TRACK_TABLE: EVENT_TEXT[TRACK_TABLE], TEXT_VALUE_TABLE: EVENT_TEXT[TEXT_VALUE_TABLE],
                  PAGES_TABLE: "page", HOSTILE_TABLE: EVENT_TEXT[HOSTILE_TABLE]}

KNOWN_GAPS: dict[str, str] = {}


def ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


def stream_key(schema: str, table: str) -> str:
    return EventStream(schema, table, "track").key


# --------------------------------------------------------------------------------------------------
# one synced corpus per backend
# --------------------------------------------------------------------------------------------------
@dataclass
class SyncedCorpus:
    """The corpus, synced once into a fresh emulator, and everything the tests look at."""

    backend: str
    url: str
    schema: str
    outcome: dict[str, RunStats | BaseException]
    runs: list[dict[str, Any]]
    records: list[dict[str, Any]]
    rejected: list[dict[str, Any]]
    table_ids: dict[str, list[Any]]
    emulator_stats: dict[str, int]

    def key(self, table: str) -> str:
        return stream_key(self.schema, table)

    def records_of(self, unique_id: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["uniqueId"] == unique_id]

    def rejections(self, table: str) -> list[dict[str, Any]]:
        return [r for r in self.rejected if r["stream"] == self.key(table)]


def _table_ids(url: str, schema: str) -> dict[str, list[Any]]:
    engine = create_engine(url, read_only=True)
    try:
        with engine.connect() as conn:
            return {table: [r[0] for r in conn.exec_driver_sql(f"SELECT id FROM {quote(schema)}.{quote(table)}")]
                    for table in METER_OF_TABLE}
    finally:
        engine.dispose()


def sync_corpus(url: str, schema: str, state_url: str, emulator: EmulatorServer,
                config: SyncConfig | None = None) -> tuple[SyncRig, dict[str, RunStats | BaseException]]:
    rig = SyncRig(url, state_url, emulator.url, API_KEY,
                  config=config or SyncConfig(source_schemas=(schema,), chunk_rows=CHUNK_ROWS, batch_size=BATCH_SIZE,
                                              progress_every_seconds=3600))
    return rig, rig.sync_all()


@pytest.fixture(scope="module", params=["duckdb", "postgres"])
def corpus_target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    """``(backend, url, schema suffix)`` of a warehouse the module may fill; PostgreSQL schemas are dropped."""
    if request.param == "duckdb":
        yield "duckdb", f"duckdb:///{tmp_path_factory.mktemp('bad_input') / 'corpus.duckdb'}", ""
        return
    require_service("PostgreSQL", "127.0.0.1", 5432)
    suffix = f"_r{uuid.uuid4().hex[:8]}"
    yield "postgres", PG_URL, suffix
    engine = sa.create_engine(PG_URL)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {quote(SCHEMA + suffix)} CASCADE")
    engine.dispose()


@pytest.fixture(scope="module")
def corpus(corpus_target: tuple[str, str, str], tmp_path_factory: pytest.TempPathFactory) -> SyncedCorpus:
    backend, url, suffix = corpus_target
    schema = SCHEMA + suffix
    write_bad_input_warehouse(url, suffix, now=NOW)
    state_url = f"sqlite:///{tmp_path_factory.mktemp('bad_input_state') / 'state.sqlite'}"
    with EmulatorServer(api_key=API_KEY) as emulator:
        rig, outcome = sync_corpus(url, schema, state_url, emulator)
        try:
            synced = SyncedCorpus(backend, url, schema, outcome, rig.ledger.runs(), emulator.records(),
                                  rig.ledger.rejected_rows(), {}, emulator.stats())
        finally:
            rig.close()
    synced.table_ids = _table_ids(url, schema)
    return synced


# --------------------------------------------------------------------------------------------------
# no crash, nothing silently dropped
# --------------------------------------------------------------------------------------------------
def test_every_stream_of_the_corpus_is_discovered_and_synced_without_crashing(corpus: SyncedCorpus) -> None:
    """Guards identifier quoting and per-row error handling: fails if any row (or name) breaks a run."""
    assert set(corpus.outcome) == {corpus.key(t) for t in METER_OF_TABLE}
    failed = {k: repr(v) for k, v in corpus.outcome.items() if not isinstance(v, RunStats)}
    assert not failed


def test_every_run_accounts_for_every_row_it_read(corpus: SyncedCorpus) -> None:
    """Guards the accounting: ``read == sent + rejected + skipped + duplicates`` per run, as stored in
    ``sync_runs`` — and ``read`` is every row of the table (the first window is the whole table)."""
    for key, stats in corpus.outcome.items():
        assert isinstance(stats, RunStats)
        assert stats.read == stats.sent + stats.rejected + stats.skipped + stats.duplicates, stats
    for run in corpus.runs:
        assert run["rows_read"] == run["rows_sent"] + run["rejected"] + run["skipped"] + run["duplicates"], run
    by_key = {corpus.key(t): len(ids) for t, ids in corpus.table_ids.items()}
    assert {r["stream"]: r["rows_read"] for r in corpus.runs} == by_key
    assert sum(s.sent for s in corpus.outcome.values()) == len(corpus.records)  # type: ignore[union-attr]


@pytest.mark.parametrize("table", list(METER_OF_TABLE), ids=["api_calls", "order_completed", "pages", "hostile"])
def test_ids_sent_and_rejected_are_exactly_the_ids_in_the_table(corpus: SyncedCorpus, table: str) -> None:
    """Fails if a row is dropped without a trace (neither billed nor in ``rejected_rows``), or is both."""
    ids = corpus.table_ids[table]
    named = {i for i in ids if i is not None and str(i).strip()}
    anonymous_rows = len(ids) - sum(1 for i in ids if i is not None and str(i).strip())
    sent = {r["uniqueId"] for r in corpus.records if r["meterApiName"] == METER_OF_TABLE[table]}
    rejections = corpus.rejections(table)
    rejected = {r["row_id"] for r in rejections if not r["row_id"].startswith("sha1:")}
    assert sent | rejected == named
    assert not sent & rejected
    assert sum(1 for r in rejections if r["row_id"].startswith("sha1:")) == anonymous_rows


def test_no_row_is_billed_twice(corpus: SyncedCorpus) -> None:
    """Fails if two different records share a uniqueId (a duplicate delivery billed again)."""
    ids = [r["uniqueId"] for r in corpus.records]
    assert len(ids) == len(set(ids))
    assert corpus.emulator_stats["duplicates"] == 0


def test_the_sql_in_a_table_name_is_never_executed(corpus: SyncedCorpus) -> None:
    """The hostile table is named ``…; DROP TABLE pages; --``: ``pages`` must still be there, intact."""
    assert len(_table_ids(corpus.url, corpus.schema)[PAGES_TABLE]) == 2


# --------------------------------------------------------------------------------------------------
# each row's outcome
# --------------------------------------------------------------------------------------------------
def _case_params() -> list[Any]:
    params = []
    for row in ROWS:
        marks = [pytest.mark.xfail(strict=True, reason=KNOWN_GAPS[row.name])] if row.name in KNOWN_GAPS else []
        params.append(pytest.param(row, id=row.name, marks=marks))
    return params


@pytest.mark.parametrize("row", _case_params())
def test_each_row_is_sent_or_rejected_with_its_reason(corpus: SyncedCorpus, row: BadRow) -> None:
    """Guards every mapping rule at once, row by row (``BadRow.why`` says which)."""
    values = row_values(row, 0, NOW)
    row_id = values["id"]
    rejections = corpus.rejections(row.table)
    if row.expected == SENT:
        assert len(corpus.records_of(row_id)) == 1, row.why
        assert not [r for r in rejections if r["row_id"] == row_id], row.why
    elif row.expected == DUPLICATE:
        assert len(corpus.records_of(row_id)) == 1
        assert corpus.outcome[corpus.key(row.table)].duplicates >= 1  # type: ignore[union-attr]
    elif row_id is None or not str(row_id).strip():
        marker = row.values["region"]
        found = [r for r in rejections if r["row_id"].startswith("sha1:") and marker in r["row_json"]]
        assert [r["reason"] for r in found] == [row.expected], row.why
    else:
        assert not corpus.records_of(row_id), f"{row.name} was billed: {row.why}"
        assert [r["reason"] for r in rejections if r["row_id"] == row_id] == [row.expected], row.why


def test_rejected_rows_keep_the_original_row(corpus: SyncedCorpus) -> None:
    """A rejection must be actionable: the stored row shows what was wrong with it."""
    stored = {r["row_id"]: json.loads(r["row_json"]) for r in corpus.rejections(TEXT_VALUE_TABLE)}
    assert stored["text-abc"]["value"] == "abc"
    assert stored["text-abc"]["event_text"] == "Order Completed"


# --------------------------------------------------------------------------------------------------
# exact records of representative rows
# --------------------------------------------------------------------------------------------------
def _time(name: str, column: str = "timestamp") -> int:
    row = next(r for r in ROWS if r.name == name)
    position = [r.name for r in ROWS if r.table == row.table].index(name)
    return ms(row_values(row, position, NOW)[column])


def _customer(name: str) -> str:
    row = next(r for r in ROWS if r.name == name)
    return f"user-{[r.name for r in ROWS if r.table == row.table].index(name) % 3}"


def _expected_records() -> dict[str, dict[str, Any]]:
    def track(name: str, value: float = 1.0, dims: dict[str, str] | None = None, *, table: str = TRACK_TABLE,
              customer: str | None = None, unique_id: str | None = None, millis: int | None = None) -> dict[str, Any]:
        record: dict[str, Any] = {"uniqueId": unique_id or name, "customerId": customer or _customer(name),
                                  "meterApiName": METER_OF_TABLE[table], "meterValue": value,
                                  "meterTimeInMillis": millis if millis is not None else _time(name)}
        if dims:
            record["dimensions"] = dims
        return record

    return {
        "ok": track("ok", 2.5, {"_2fa": "true", "from": "b", "order": "3", "region": "us-west-2", "select": "a"}),
        "user-null": track("user-null", customer="anon-user-null"),
        "user-blank": track("user-blank", customer="anon-user-blank"),
        "user-empty": track("user-empty", customer="anon-user-empty"),
        "value-huge": track("value-huge", 1e300),
        "value-negative": track("value-negative", -3.5),
        "value-zero": track("value-zero", 0.0),
        "value-null": track("value-null", 1.0),
        "time-received-at": track("time-received-at", millis=_time("time-received-at", "received_at")),
        "time-59-days": track("time-59-days"),
        "dim-punctuation": track("dim-punctuation", dims={"region": "a_b_c_d_e'f"}),
        "dim-newlines": track("dim-newlines", dims={"region": "line1_line2__tab"}),
        "dim-emoji": track("dim-emoji", dims={"region": "rocket _ caf_"}),
        "dim-10kb": track("dim-10kb", dims={"region": "x" * 200}),
        "dim-only-bad": track("dim-only-bad", dims={"region": "___"}),
        "dim-json": track("dim-json", dims={"region": "__a_: _1__"}),
        "dim-keywords": track("dim-keywords", dims={"_2fa": "false", "from": "--", "order": "42",
                                                    "select": "DROP TABLE x;"}),
        "id-hostile": track("id-hostile", unique_id="x'; DROP TABLE y; --\"", dims={"region": "id-hostile"}),
        "text-12": track("text-12", 12.0, {"plan": "pro"}, table=TEXT_VALUE_TABLE),
        "text-padded": track("text-padded", 7.5, table=TEXT_VALUE_TABLE),
        "text-negative": track("text-negative", -4.0, table=TEXT_VALUE_TABLE),
        "text-null": track("text-null", 1.0, table=TEXT_VALUE_TABLE),
        "page-ok": track("page-ok", 1.0, {"name": "Home", "path": "_home", "title": "Welcome _ Initech",
                                          "url": "https:__segment.com", "value": "abc"}, table=PAGES_TABLE),
        "hostile-ok": track("hostile-ok", dims={"note": "semi; colon: quote_ done"}, table=HOSTILE_TABLE),
    }


EXPECTED = _expected_records()


@pytest.mark.parametrize("name", list(EXPECTED))
def test_representative_rows_become_exactly_the_specified_record(corpus: SyncedCorpus, name: str) -> None:
    """Guards the mapping contract byte for byte (``shared/spec/mapping.md``): customer fallback, value
    parsing, event-time fallback, sanitizing, truncation, keyword/digit column names, page values."""
    expected = EXPECTED[name]
    assert corpus.records_of(expected["uniqueId"]) == [expected]


# --------------------------------------------------------------------------------------------------
# the warehouse changes between runs
# --------------------------------------------------------------------------------------------------
@pytest.fixture
def fresh_corpus(corpus_target: tuple[str, str, str], tmp_path: Path) -> Iterator[tuple[str, str, str, str]]:
    """``(url, schema, suffix, state url)`` of a corpus of this test alone (same backend as the module's)."""
    backend, url, suffix = corpus_target
    if backend == "duckdb":
        url = f"duckdb:///{tmp_path / 'corpus.duckdb'}"
    else:
        suffix = f"{suffix}_{uuid.uuid4().hex[:6]}"
    write_bad_input_warehouse(url, suffix, now=NOW)
    yield url, SCHEMA + suffix, suffix, f"sqlite:///{tmp_path / 'state.sqlite'}"
    if backend != "duckdb":
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {quote(SCHEMA + suffix)} CASCADE")
        engine.dispose()


LATE_ROWS = [
    BadRow("late-abc", TRACK_TABLE, "invalid_meter_value", "text value after the type change", {"value": "abc"}),
    BadRow("late-5", TRACK_TABLE, SENT, "numeric text after the type change", {"value": "5"}),
]


def test_value_changing_from_double_to_text_between_runs_neither_crashes_nor_rebills(
    fresh_corpus: tuple[str, str, str, str],
) -> None:
    """Segment widens ``value`` to text: the re-read overlap must render the same bytes as before (no
    second record per row); new text values are parsed or rejected. Fails if a value's rendering depends
    on the column type (``2.5`` vs ``'2.5'``)."""
    url, schema, suffix, state_url = fresh_corpus
    with EmulatorServer(api_key=API_KEY) as emulator:
        rig, first = sync_corpus(url, schema, state_url, emulator)
        rig.close()
        before = emulator.stats()["distinct"]
        change_value_type(url, suffix, to="text", new_rows=LATE_ROWS, now=NOW,
                          loaded_at=NOW + dt.timedelta(minutes=1))
        rig, second = sync_corpus(url, schema, state_url, emulator)
        try:
            rejected = {(r["row_id"], r["reason"]) for r in rig.ledger.rejected_rows(stream_key(schema, TRACK_TABLE))}
        finally:
            rig.close()
        after = emulator.stats()
        late = [r for r in emulator.records() if r["uniqueId"] == "late-5"]
    stats = second[stream_key(schema, TRACK_TABLE)]
    assert isinstance(stats, RunStats) and stats.status == "success" and stats.balanced
    assert stats.read == len(_table_ids(url, schema)[TRACK_TABLE])  # the overlap re-read every row
    assert after["distinct"] == before + 1  # only late-5 is new
    assert ("late-abc", "invalid_meter_value") in rejected
    assert [r["meterValue"] for r in late] == [5.0]


def test_a_table_dropped_between_runs_is_skipped_without_error(fresh_corpus: tuple[str, str, str, str]) -> None:
    """A stream whose table vanished after the plan (its mapped task runs after the drop) reads nothing,
    succeeds and keeps its watermark; the next plan stops listing it. Fails if a missing table crashes the run."""
    url, schema, suffix, state_url = fresh_corpus
    key = stream_key(schema, TEXT_VALUE_TABLE)
    with EmulatorServer(api_key=API_KEY) as emulator:
        rig, _ = sync_corpus(url, schema, state_url, emulator)
        mark = rig.ledger.watermark(key)
        context = rig.dag.context("planned-before-the-drop")
        plan = rig.dag.plan(context)
        rig.close()
        drop_table(url, TEXT_VALUE_TABLE, suffix)
        rig, outcome = sync_corpus(url, schema, state_url, emulator)
        try:
            with rig.connection():
                for unit in plan["units"]:
                    rig.dag.run_unit(unit, context)
                rig.dag.finish(plan, context)
            [row] = rig.ledger.runs(key, run_id="planned-before-the-drop")
            after = rig.ledger.watermark(key)
        finally:
            rig.close()
    assert key not in outcome and all(isinstance(s, RunStats) for s in outcome.values())
    assert (row["status"], row["rows_read"], row["rows_sent"]) == ("success", 0, 0)
    assert mark is not None and after == mark


# --------------------------------------------------------------------------------------------------
# the 60-day horizon setting
# --------------------------------------------------------------------------------------------------
def test_max_event_age_days_setting_lets_older_events_through(tmp_path: Path) -> None:
    """With ``max_event_age_days: 90`` (Amberflo support enabled older history), a 61-day-old event is
    billed instead of rejected."""
    url = f"duckdb:///{tmp_path / 'corpus.duckdb'}"
    write_bad_input_warehouse(url, now=NOW)
    config = config_from_dict({"source_schemas": [SCHEMA], "max_event_age_days": 90, "batch_size": BATCH_SIZE})
    with EmulatorServer(api_key=API_KEY) as emulator:
        rig, outcome = sync_corpus(url, SCHEMA, f"sqlite:///{tmp_path / 'state.sqlite'}", emulator, config)
        rig.close()
        assert [r["uniqueId"] for r in emulator.records() if r["uniqueId"] == "time-61-days"] == ["time-61-days"]
