"""A schema that bills nothing is named, with what was looked for."""

from __future__ import annotations

from amberflo_sync.config import EventsConfig
from amberflo_sync.discovery_report import MissingSource, missing_event_sources, missing_schemas


def catalog(**schemas) -> dict:
    return {"version": 1, "dialect": "duckdb", "schemas": {
        name: None if tables is None else {"name": name, "catalog": None,
                                           "tables": {t: {"type": "BASE TABLE", "columns": [["id", "VARCHAR"]]}
                                                      for t in tables}}
        for name, tables in schemas.items()}}


def test_every_source_that_bills_is_not_reported():
    found = catalog(prod=["pages", "api_calls", "identifies"], ios_app=["SCREENS"])
    assert missing_event_sources(found, ["prod", "ios_app"], EventsConfig()) == []


def test_an_absent_schema_and_a_schema_without_billed_tables_are_reported():
    found = catalog(prod=None, web=["identifies", "tracks", "users"])
    missing = missing_event_sources(found, ["prod", "web", "never_discovered"], EventsConfig())
    assert missing == [
        MissingSource("prod", "schema"),
        MissingSource("web", "pages or screens or a track event table", ("identifies", "tracks", "users")),
        MissingSource("never_discovered", "schema"),
    ]
    assert str(missing[0]) == "schema 'prod' does not exist (or holds no table the sync can read)"
    assert str(missing[1]) == ("schema 'web' has no pages or screens or a track event table "
                               "(found: identifies, tracks, users)")


def test_include_patterns_that_match_nothing_are_reported():
    found = catalog(prod=["pages", "api_calls"])
    events = EventsConfig(include=("api_*", "order_*"))
    assert [str(m) for m in missing_event_sources(found, ["prod"], events)] == [
        "schema 'prod' has no track event table matching 'order_*' (found: api_calls, pages)"]


def test_excluded_tables_do_not_count_as_billed():
    found = catalog(prod=["api_calls"])
    missing = missing_event_sources(found, ["prod"], EventsConfig(pages=False, screens=False, exclude=("api_*",)))
    assert [m.looked_for for m in missing] == ["a track event table"]


def test_missing_engage_spaces():
    assert missing_schemas(catalog(engage_default=["users"]), ["engage_default", "engage_gone"]) == [
        MissingSource("engage_gone", "schema")]
