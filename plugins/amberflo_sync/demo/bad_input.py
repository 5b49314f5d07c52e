"""A hostile Segment warehouse: every row and name the events sync must bill or reject — never crash on.

The realistic demo warehouse (:mod:`amberflo_sync.demo.generate`) has a few quirks at realistic rates;
this corpus has one row per way a row can go wrong, so that a test can say of *each* row whether it must
reach Amberflo (and as which record) or land in ``rejected_rows`` with which reason
(``shared/spec/mapping.md``). Every row is a :class:`BadRow` with the outcome the contract demands in
``expected``: ``"sent"``, ``"duplicate"`` (a second copy of an id, dropped before sending) or a reason
code.

What it holds, in schema ``bad_input<suffix>``:

* ``api_calls`` (track, ``value`` DOUBLE): null/blank ``user_id`` and ``anonymous_id``; NaN, ±inf, huge,
  negative, zero and null values; null ``timestamp`` with and without ``received_at``; an event time
  before 1970 and one older than Amberflo's 60-day horizon; dimension values with ``/ | \\ " '``,
  newlines, tabs, emoji and 10 kB strings; property columns named ``select``, ``from``, ``order`` and
  ``_2fa``; null, blank and hostile ids; a duplicate delivery.
* ``order_completed`` (track, ``value`` TEXT): ``"abc"``, ``""``, ``"1e400"``, ``"NaN"``, ``"12"``,
  ``" 7.5 "``, ``"-4"``.
* ``pages``: sanitized page properties and a property column named ``value`` (a dimension there).
* :data:`HOSTILE_TABLE`: a track table whose name holds a quote, a semicolon, SQL and a colon.

Tables are created with explicit SQL types and filled with parameterized ``INSERT`` (DuckDB through its
own connection, PostgreSQL through psycopg2), so the values arrive exactly as written — NaN stays NaN,
not NULL. :func:`change_value_type` and :func:`drop_table` change the warehouse between two runs, as
Segment does when a property's type changes or a table is dropped.

Times are relative to ``now`` (default: the current second) because the 60-day horizon is relative to
the run: the corpus must not age out of its own meaning.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import make_url

#: Schema of the corpus before the suffix.
SCHEMA = "bad_input"
#: Track table whose ``value`` is DOUBLE.
TRACK_TABLE = "api_calls"
#: Track table whose ``value`` is TEXT.
TEXT_VALUE_TABLE = "order_completed"
PAGES_TABLE = "pages"
#: A track table named to break any SQL that does not quote identifiers (and ``sa.text`` binds).
HOSTILE_TABLE = 'evil"; DROP TABLE pages; --:x'

#: Outcomes of :attr:`BadRow.expected` besides reason codes.
SENT = "sent"
DUPLICATE = "duplicate"

_STANDARD = (
    ("id", "text"),
    ("anonymous_id", "text"),
    ("user_id", "text"),
    ("timestamp", "timestamp"),
    ("received_at", "timestamp"),
    ("sent_at", "timestamp"),
    ("original_timestamp", "timestamp"),
    ("uuid_ts", "timestamp"),
    ("context_library_name", "text"),
)
_TRACK = (("event", "text"), ("event_text", "text"))

#: Column name → logical type, per table, in column order.
TABLE_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    TRACK_TABLE: _STANDARD
    + _TRACK
    + (("value", "double"), ("region", "text"), ("select", "text"), ("from", "text"), ("order", "bigint"),
       ("_2fa", "boolean")),
    TEXT_VALUE_TABLE: _STANDARD + _TRACK + (("value", "text"), ("plan", "text")),
    PAGES_TABLE: _STANDARD + (("name", "text"), ("path", "text"), ("title", "text"), ("url", "text"),
                              ("value", "text")),
    HOSTILE_TABLE: _STANDARD + _TRACK + (("note", "text"),),
}

#: Event names (``event_text``) of the track tables.
EVENT_TEXT = {TRACK_TABLE: "ApiCalls", TEXT_VALUE_TABLE: "Order Completed", HOSTILE_TABLE: "Robert'); DROP TABLE x;--"}

_SQL_TYPES = {
    "duckdb": {"text": "VARCHAR", "timestamp": "TIMESTAMPTZ", "double": "DOUBLE", "bigint": "BIGINT",
               "boolean": "BOOLEAN"},
    "postgresql": {"text": "text", "timestamp": "timestamptz", "double": "double precision", "bigint": "bigint",
                   "boolean": "boolean"},
}

_KEEP = object()  # "use the default value of this column"


@dataclass(frozen=True)
class BadRow:
    """One corpus row and what the mapping contract says must become of it.

    :param name: unique name of the case (also the ``region``/``note``/``title`` marker of rows whose
        id cannot identify them).
    :param table: table it lives in (without schema).
    :param expected: ``"sent"``, ``"duplicate"`` or the reason code it must be rejected with.
    :param why: the rule it exercises.
    :param values: column values overriding the defaults (see :func:`corpus_rows`).
    """

    name: str
    table: str
    expected: str
    why: str
    values: dict[str, Any] = field(default_factory=dict)


def _rows(now: dt.datetime) -> list[BadRow]:
    nan, inf = float("nan"), float("inf")
    old = now - dt.timedelta(days=61)
    almost_old = now - dt.timedelta(days=59)
    first = now - dt.timedelta(hours=1)  # event time of the first row of a table (the "ok" row)
    t, o = TRACK_TABLE, TEXT_VALUE_TABLE
    return [
        # --- api_calls: customers ---
        BadRow("ok", t, SENT, "a clean row with every property",
               {"value": 2.5, "region": "us-west-2", "select": "a", "from": "b", "order": 3, "_2fa": True}),
        BadRow("user-null", t, SENT, "null user_id falls back to anonymous_id", {"user_id": None}),
        BadRow("user-blank", t, SENT, "whitespace user_id falls back to anonymous_id", {"user_id": "   "}),
        BadRow("user-empty", t, SENT, "empty user_id falls back to anonymous_id", {"user_id": ""}),
        BadRow("no-customer-null", t, "missing_customer_id", "user_id and anonymous_id null",
               {"user_id": None, "anonymous_id": None}),
        BadRow("no-customer-blank", t, "missing_customer_id", "user_id and anonymous_id blank",
               {"user_id": "", "anonymous_id": " \t"}),
        # --- api_calls: meter values ---
        BadRow("value-nan", t, "invalid_meter_value", "NaN in a DOUBLE column is present but not finite",
               {"value": nan}),
        BadRow("value-inf", t, "invalid_meter_value", "+inf is not finite", {"value": inf}),
        BadRow("value-neg-inf", t, "invalid_meter_value", "-inf is not finite", {"value": -inf}),
        BadRow("value-huge", t, SENT, "1e300 is finite: sent as it is", {"value": 1e300}),
        BadRow("value-negative", t, SENT, "negative values are sent (the SDK accepts them)", {"value": -3.5}),
        BadRow("value-zero", t, SENT, "zero is a value, not a missing one", {"value": 0.0}),
        BadRow("value-null", t, SENT, "a null value bills 1", {"value": None}),
        # --- api_calls: event time ---
        BadRow("time-received-at", t, SENT, "null timestamp falls back to received_at", {"timestamp": None}),
        BadRow("time-none", t, "missing_event_time", "null timestamp and null received_at",
               {"timestamp": None, "received_at": None}),
        BadRow("time-pre-1970", t, "invalid_event_time", "an event time before the epoch",
               {"timestamp": dt.datetime(1969, 12, 31, 23, 59, 59, tzinfo=dt.timezone.utc)}),
        BadRow("time-61-days", t, "event_too_old", "older than Amberflo's 60-day horizon",
               {"timestamp": old, "received_at": old, "sent_at": old, "original_timestamp": old}),
        BadRow("time-59-days", t, SENT, "inside the 60-day horizon",
               {"timestamp": almost_old, "received_at": almost_old, "sent_at": almost_old,
                "original_timestamp": almost_old}),
        # --- api_calls: dimension values and property names ---
        BadRow("dim-punctuation", t, SENT, "/ | \\ \" become _, ' is allowed", {"region": "a/b|c\\d\"e'f"}),
        BadRow("dim-newlines", t, SENT, "control characters become _", {"region": "line1\nline2\r\ttab"}),
        BadRow("dim-emoji", t, SENT, "non-ASCII becomes _", {"region": "rocket \U0001F680 café"}),
        BadRow("dim-10kb", t, SENT, "values are cut to 200 characters", {"region": "x" * 10_240}),
        BadRow("dim-only-bad", t, SENT, "a value of only refused characters keeps its length", {"region": "///"}),
        BadRow("dim-json", t, SENT, "JSON inside a value is just characters", {"region": '{"a": [1]}'}),
        BadRow("dim-keywords", t, SENT, "columns named select/from/order/_2fa are ordinary dimensions",
               {"select": "DROP TABLE x;", "from": "--", "order": 42, "_2fa": False}),
        # --- api_calls: ids ---
        BadRow("id-null", t, "missing_unique_id", "a row without id", {"id": None, "region": "id-null"}),
        BadRow("id-blank", t, "missing_unique_id", "a whitespace id", {"id": "  ", "region": "id-blank"}),
        BadRow("id-hostile", t, SENT, "an id with quotes and SQL is just a string",
               {"id": "x'; DROP TABLE y; --\"", "region": "id-hostile"}),
        BadRow("ok-again", t, DUPLICATE, "the same delivery loaded twice (same id, later uuid_ts)",
               {"id": "ok", "anonymous_id": "anon-ok", "user_id": "user-0", "timestamp": first,
                "received_at": first + dt.timedelta(milliseconds=500), "sent_at": first, "original_timestamp": first,
                "value": 2.5, "region": "us-west-2", "select": "a", "from": "b", "order": 3, "_2fa": True}),
        # --- order_completed: value as text ---
        BadRow("text-abc", o, "invalid_meter_value", "text that is not a number", {"value": "abc"}),
        BadRow("text-empty", o, "invalid_meter_value", "empty text is present but not a number", {"value": ""}),
        BadRow("text-1e400", o, "invalid_meter_value", "text that overflows a double", {"value": "1e400"}),
        BadRow("text-nan", o, "invalid_meter_value", "the text NaN", {"value": "NaN"}),
        BadRow("text-12", o, SENT, "text that parses as a number", {"value": "12", "plan": "pro"}),
        BadRow("text-padded", o, SENT, "surrounding blanks are ignored", {"value": " 7.5 "}),
        BadRow("text-negative", o, SENT, "negative text", {"value": "-4"}),
        BadRow("text-null", o, SENT, "a null value bills 1", {"value": None}),
        # --- pages ---
        BadRow("page-ok", PAGES_TABLE, SENT, "page properties are sanitized; value is a dimension on pages",
               {"name": "Home", "path": "/home", "title": "Welcome | Initech", "url": "https://segment.com",
                "value": "abc"}),
        BadRow("page-no-customer", PAGES_TABLE, "missing_customer_id", "pages need a customer too",
               {"user_id": None, "anonymous_id": None, "title": "page-no-customer"}),
        # --- the hostile table ---
        BadRow("hostile-ok", HOSTILE_TABLE, SENT, "a table named with SQL is read like any other",
               {"note": "semi; colon: quote\" done"}),
        BadRow("hostile-no-time", HOSTILE_TABLE, "missing_event_time", "rejections work there too",
               {"timestamp": None, "received_at": None, "note": "hostile-no-time"}),
    ]


def corpus_rows(now: dt.datetime | None = None) -> list[BadRow]:
    """Every corpus row with its expected outcome; times relative to ``now`` (default: this second).

    Defaults of a row not overridden by :attr:`BadRow.values`: ``id`` = the case name,
    ``anonymous_id`` = ``anon-<name>``, ``user_id`` = ``user-<n % 3>``, ``timestamp`` = ``now − 1 h + n s``,
    ``received_at`` = ``timestamp + 0.5 s``, ``uuid_ts`` = ``now − 30 min + n s`` (``n`` = position in
    its table), ``event``/``event_text`` of the table, other properties null.
    """
    return _rows(_now(now))


def row_values(row: BadRow, position: int, now: dt.datetime) -> dict[str, Any]:
    """The full column values of ``row`` written at ``position`` of its table (see :func:`corpus_rows`)."""
    now = _now(now)
    event_time = now - dt.timedelta(hours=1) + dt.timedelta(seconds=position)
    values: dict[str, Any] = {
        "id": row.name,
        "anonymous_id": f"anon-{row.name}",
        "user_id": f"user-{position % 3}",
        "timestamp": event_time,
        "received_at": event_time + dt.timedelta(milliseconds=500),
        "sent_at": event_time,
        "original_timestamp": event_time,
        "uuid_ts": now - dt.timedelta(minutes=30) + dt.timedelta(seconds=position),
        "context_library_name": "analytics.js",
    }
    if row.table in EVENT_TEXT:
        values["event"] = "api_calls" if row.table == TRACK_TABLE else row.table.lower()
        values["event_text"] = EVENT_TEXT[row.table]
    values.update(row.values)
    return {name: values.get(name) for name, _ in TABLE_COLUMNS[row.table]}


def write_bad_input_warehouse(url: str, schema_suffix: str = "", now: dt.datetime | None = None) -> dict[str, int]:
    """(Re)create schema ``bad_input<schema_suffix>`` holding the corpus.

    :param url: ``duckdb:////abs/file.duckdb`` or ``postgresql+psycopg2://…`` (SQLAlchemy URL).
    :param schema_suffix: appended to the schema name, to isolate tests on a shared server.
    :param now: the reference time of the corpus (default: the current second, UTC).
    :returns: rows per ``schema.table``.
    """
    now = _now(now)
    schema = SCHEMA + schema_suffix
    by_table: dict[str, list[dict[str, Any]]] = {name: [] for name in TABLE_COLUMNS}
    for row in corpus_rows(now):
        by_table[row.table].append(row_values(row, len(by_table[row.table]), now))
    with _connect(url) as db:
        db.execute(f"DROP SCHEMA IF EXISTS {quote(schema)} CASCADE")
        db.execute(f"CREATE SCHEMA {quote(schema)}")
        for table, rows in by_table.items():
            columns = ", ".join(f"{quote(c)} {db.sql_type(t)}" for c, t in TABLE_COLUMNS[table])
            db.execute(f"CREATE TABLE {quote(schema)}.{quote(table)} ({columns})")
            db.insert(schema, table, [name for name, _ in TABLE_COLUMNS[table]], rows)
    return {f"{schema}.{table}": len(rows) for table, rows in by_table.items()}


def change_value_type(url: str, schema_suffix: str = "", *, table: str = TRACK_TABLE, to: str = "text",
                      new_rows: Iterable[BadRow] = (), now: dt.datetime | None = None,
                      loaded_at: dt.datetime | None = None) -> None:
    """Change ``table.value`` to another type (existing values are cast), then load ``new_rows``.

    Segment widens a column when a property changes type; a sync must neither crash on it nor re-bill
    the rows it already sent (their values cast to text must render to the same bytes).

    :param to: logical type (``text``, ``double``, ``bigint``, ``boolean``, ``timestamp``).
    :param new_rows: rows loaded after the change (``uuid_ts`` = ``loaded_at``, default ``now``).
    """
    now = _now(now)
    schema = SCHEMA + schema_suffix
    target = f"{quote(schema)}.{quote(table)}"
    with _connect(url) as db:
        sql_type = db.sql_type(to)
        if db.dialect == "postgresql":
            db.execute(f"ALTER TABLE {target} ALTER COLUMN {quote('value')} TYPE {sql_type} "
                       f"USING {quote('value')}::{sql_type}")
        else:
            db.execute(f"ALTER TABLE {target} ALTER COLUMN {quote('value')} TYPE {sql_type}")
        rows = []
        for position, row in enumerate(new_rows, start=1000):
            values = row_values(row, position, now)
            values["uuid_ts"] = loaded_at or now
            rows.append(values)
        if rows:
            db.insert(schema, table, list(rows[0]), rows)


def drop_table(url: str, table: str, schema_suffix: str = "") -> None:
    """Drop one corpus table (a Segment table removed between two runs)."""
    with _connect(url) as db:
        db.execute(f"DROP TABLE IF EXISTS {quote(SCHEMA + schema_suffix)}.{quote(table)}")


def quote(identifier: str) -> str:
    """A double-quoted SQL identifier (quotes inside doubled)."""
    return '"' + identifier.replace('"', '""') + '"'


def _now(now: dt.datetime | None) -> dt.datetime:
    if now is None:
        return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    return now if now.tzinfo is not None else now.replace(tzinfo=dt.timezone.utc)


class _Database:
    """One connection and one transaction (committed on success) to DuckDB or PostgreSQL."""

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        backend = parsed.get_backend_name()
        if backend == "duckdb":
            import duckdb

            if not parsed.database or parsed.database == ":memory:":
                raise ValueError("a DuckDB warehouse needs a file path (duckdb:////abs/path/file.duckdb)")
            self.dialect = "duckdb"
            self._con: Any = duckdb.connect(parsed.database)
            self._con.execute("BEGIN TRANSACTION")
            self._placeholder = "?"
        elif backend in ("postgresql", "postgres"):
            import psycopg2

            params = {k: v for k, v in {"host": parsed.host, "port": parsed.port, "dbname": parsed.database,
                                         "user": parsed.username, "password": parsed.password}.items()
                      if v is not None}
            self.dialect = "postgresql"
            self._con = psycopg2.connect(**params)
            self._placeholder = "%s"
        else:
            raise ValueError(f"unsupported warehouse URL {url!r}: expected duckdb:// or postgresql://")

    def sql_type(self, logical: str) -> str:
        return _SQL_TYPES[self.dialect][logical]

    def execute(self, sql: str) -> None:
        if self.dialect == "duckdb":
            self._con.execute(sql)
        else:
            with self._con.cursor() as cur:
                cur.execute(sql)

    def insert(self, schema: str, table: str, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
        names = ", ".join(quote(c) for c in columns)
        marks = ", ".join(self._placeholder for _ in columns)
        sql = f"INSERT INTO {quote(schema)}.{quote(table)} ({names}) VALUES ({marks})"
        params = [[row[c] for c in columns] for row in rows]
        if self.dialect == "duckdb":
            self._con.executemany(sql, params)
        else:
            with self._con.cursor() as cur:
                cur.executemany(sql, params)

    def commit(self) -> None:
        self._con.execute("COMMIT") if self.dialect == "duckdb" else self._con.commit()

    def rollback(self) -> None:
        self._con.execute("ROLLBACK") if self.dialect == "duckdb" else self._con.rollback()

    def close(self) -> None:
        self._con.close()


@contextmanager
def _connect(url: str) -> Iterator[_Database]:
    db = _Database(url)
    try:
        yield db
        db.commit()
    except BaseException:
        db.rollback()
        raise
    finally:
        db.close()


__all__ = ["DUPLICATE", "EVENT_TEXT", "HOSTILE_TABLE", "PAGES_TABLE", "SCHEMA", "SENT", "TABLE_COLUMNS",
           "TEXT_VALUE_TABLE", "TRACK_TABLE", "BadRow", "change_value_type", "corpus_rows", "drop_table",
           "quote", "row_values", "write_bad_input_warehouse"]
