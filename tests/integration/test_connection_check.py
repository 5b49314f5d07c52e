"""The Amberflo connection against the real emulator over HTTP: the hook's ``test_connection()`` (the
UI's *Test* button) and a key pasted with a trailing newline (issue 14)."""

from __future__ import annotations

import http.server
import json
import logging
import socket
import ssl
import threading
import time

import pytest

from amberflo_sync.emulator import EmulatorServer
from amberflo_sync.hooks import AmberfloHook

SECRET = "sk-conncheck-4f1c2a9e7b"


def _use_connection(monkeypatch: pytest.MonkeyPatch, host: str, password: str) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_AMBERFLO_DEFAULT", json.dumps(
        {"conn_type": "amberflo", "host": host, "password": password}))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_test_connection_ok(monkeypatch, emulator: EmulatorServer, api_key: str):
    _use_connection(monkeypatch, emulator.url, api_key)
    assert AmberfloHook().test_connection() == (True, "Connection to Amberflo works")


def test_test_connection_with_a_wrong_key_says_check_the_api_key(monkeypatch, emulator: EmulatorServer):
    _use_connection(monkeypatch, emulator.url, SECRET)
    ok, message = AmberfloHook().test_connection()
    assert not ok
    assert "refused the API key (HTTP 401)" in message and "check the API key" in message
    assert SECRET not in message


def test_test_connection_to_a_closed_port_says_unreachable_at_once(monkeypatch):
    url = f"http://127.0.0.1:{_free_port()}"
    _use_connection(monkeypatch, url, SECRET)
    ok, message = AmberfloHook().test_connection()
    assert not ok and message.startswith(f"Cannot reach Amberflo at {url}") and "ConnectionError" in message
    assert SECRET not in message


def test_test_connection_to_an_untrusted_certificate_says_tls(monkeypatch, tmp_path):
    from tests.reliability.test_security import _self_signed

    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    cert, key = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        _use_connection(monkeypatch, f"https://127.0.0.1:{server.server_address[1]}", SECRET)
        ok, message = AmberfloHook().test_connection()
    finally:
        server.shutdown()
        server.server_close()
    assert not ok and message.startswith("TLS error talking to https://127.0.0.1:") and "certificate" in message
    assert SECRET not in message


def test_test_connection_with_a_space_inside_the_key_explains_without_the_key(monkeypatch, emulator):
    _use_connection(monkeypatch, emulator.url, "sk-conn check")
    ok, message = AmberfloHook().test_connection()
    assert not ok and "contains whitespace at character 8" in message
    assert "sk-conn" not in message and "check" not in message.replace("check the", "")


def test_test_connection_with_a_wrong_base_url_path_says_so(monkeypatch, emulator, api_key):
    _use_connection(monkeypatch, emulator.url + "/not-the-api", api_key)
    ok, message = AmberfloHook().test_connection()
    assert not ok and "is the API base URL right" in message


def test_a_key_with_a_trailing_newline_works_and_never_shows(monkeypatch, emulator, api_key, caplog):
    """Before issue 14: ``requests`` raised ``InvalidHeader`` with the key (and its newline) in the
    message, which the task log and ``sync_runs.error`` stored unmasked."""
    caplog.set_level(logging.DEBUG)
    _use_connection(monkeypatch, emulator.url, api_key + "\n")
    hook = AmberfloHook()
    assert hook.test_connection() == (True, "Connection to Amberflo works")
    with hook.get_client() as client:
        record = ('{"uniqueId":"nl-1","customerId":"c-1","meterApiName":"ApiCalls","meterValue":1.0,'
                  '"meterTimeInMillis":%d}' % int(time.time() * 1000))
        assert client.ingest_records([record]) == 1
    assert api_key not in caplog.text

