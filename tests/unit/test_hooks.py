"""Connection parsing and the Airflow hooks (connections from AIRFLOW_CONN_* like a user sets them)."""

from __future__ import annotations

import json

import pytest

from amberflo_sync.client import AmberfloError
from amberflo_sync.hooks import AmberfloHook, SegmentWarehouseHook, settings_from_connection


def test_host_with_scheme_is_the_base_url():
    s = settings_from_connection("https://app.amberflo.io/", "k")
    assert s.base_url == "https://app.amberflo.io" and s.resolved_ingest_url == "https://app.amberflo.io/ingest"


def test_host_without_scheme_defaults_to_https_and_adds_the_port():
    assert settings_from_connection("app.amberflo.io", "k").base_url == "https://app.amberflo.io"
    assert settings_from_connection("127.0.0.1", "k", port=8765, extra={"scheme": "http"}).base_url == "http://127.0.0.1:8765"


def test_extras_configure_ingest_url_batch_size_and_timeouts():
    extra = {"ingest_url": "https://ingest.amberflo.io/ingest", "batch_size": "250", "read_timeout": 12, "concurrency": 4}
    s = settings_from_connection("https://app.amberflo.io", "k", extra=extra)
    assert (s.resolved_ingest_url, s.batch_size, s.read_timeout, s.concurrency) == (
        "https://ingest.amberflo.io/ingest", 250, 12.0, 4)
    assert extra["batch_size"] == "250"  # input not mutated


def test_missing_host_is_a_clear_error():
    with pytest.raises(AmberfloError, match="no host"):
        settings_from_connection(None, "k")


def test_the_key_never_shows_in_repr():
    assert "sekrit" not in repr(settings_from_connection("https://x", "sekrit"))


def test_amberflo_hook_reads_a_json_connection_from_the_environment(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_AMBERFLO_DEFAULT", json.dumps(
        {"conn_type": "amberflo", "host": "http://127.0.0.1:9", "password": "abc123-secret", "extra": {"batch_size": 50}}))
    hook = AmberfloHook(batch_size=20)
    settings = hook.get_settings()
    assert settings.base_url == "http://127.0.0.1:9" and settings.api_key == "abc123-secret"
    assert settings.batch_size == 20  # the YAML config's value wins over the connection's


def test_amberflo_key_is_registered_with_the_secrets_masker(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_AMBERFLO_DEFAULT", json.dumps(
        {"conn_type": "amberflo", "host": "http://127.0.0.1:9", "password": "mask-me-0123456789"}))
    AmberfloHook().get_settings()
    from airflow.sdk._shared.secrets_masker import redact

    assert "mask-me-0123456789" not in str(redact("key=mask-me-0123456789"))


def test_test_connection_reports_a_wrong_key(monkeypatch, emulator):
    monkeypatch.setenv("AIRFLOW_CONN_AMBERFLO_DEFAULT", json.dumps(
        {"conn_type": "amberflo", "host": emulator.url, "password": "wrong-key-xyz"}))
    ok, message = AmberfloHook().test_connection()
    assert not ok and "API key" in message and "wrong-key-xyz" not in message


def test_test_connection_succeeds_with_the_right_key(monkeypatch, emulator, api_key):
    monkeypatch.setenv("AIRFLOW_CONN_AMBERFLO_DEFAULT", json.dumps(
        {"conn_type": "amberflo", "host": emulator.url, "password": api_key}))
    assert AmberfloHook().test_connection() == (True, "Connection to Amberflo works")


@pytest.mark.parametrize(
    "uri, expected",
    [
        ('{"conn_type": "generic", "extra": {"sqlalchemy_url": "duckdb:////data/w.duckdb"}}', "duckdb:////data/w.duckdb"),
        ("duckdb:////data/w.duckdb", "duckdb:////data/w.duckdb"),
        ("postgres://bob:pw@db.example:5432/segment", "postgresql+psycopg2://bob:pw@db.example:5432/segment"),
    ],
)
def test_warehouse_hook_builds_a_sqlalchemy_url(monkeypatch, uri, expected):
    monkeypatch.setenv("AIRFLOW_CONN_SEGMENT_WAREHOUSE", uri)
    assert SegmentWarehouseHook().get_url() == expected
