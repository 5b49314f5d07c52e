"""Security of the sync's edges: the API key stays secret, a wrong key fails fast, TLS is verified, the
emulator stays on loopback. (Hostile table names are quoted: ``test_bad_input.py`` syncs a table named
``evil"; DROP TABLE pages; --:x`` on DuckDB and PostgreSQL.)
"""

from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import logging
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from amberflo_sync.client import (
    AmberfloAuthError,
    AmberfloClient,
    AmberfloRejectedError,
    AmberfloUnavailableError,
    ClientSettings,
)
from amberflo_sync.emulator import EmulatorServer, FaultConfig
from amberflo_sync.retry import RetryPolicy
from amberflo_sync.ledger import Ledger
from amberflo_sync.state import StateStore
from tests.airflow_runner import AirflowRunner
from tests.reliability.rig import PYTHON, subprocess_env
from tests.segment_rows import event_rows
from tests.warehouse import Warehouse

RECORD = '{"uniqueId":"u-1","customerId":"c-1","meterApiName":"ApiCalls","meterValue":1.0,"meterTimeInMillis":1700000000000}'


def secret_key() -> str:
    """A key no other test uses, so finding it anywhere means this test leaked it."""
    return f"sk-reliability-{uuid.uuid4().hex}"


# --------------------------------------------------------------------------------------------------
# the key never leaves the X-API-KEY header
# --------------------------------------------------------------------------------------------------
def _files_containing(root: Path, needle: bytes) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            try:
                if needle in path.read_bytes():
                    hits.append(str(path))
            except OSError:
                pass
    return hits


@pytest.mark.airflow
def test_api_key_never_appears_in_dag_output_task_logs_or_state(
    tmp_path: Path, airflow_home: Path
) -> None:
    """Runs the DAG against an Amberflo that refuses every call, then against one that accepts them, and
    searches every byte of output, task log, state database and Airflow home for the key. Fails if the
    key is logged (e.g. the secrets masker is not registered), put in an exception, or stored."""
    key = secret_key()
    warehouse = Warehouse(f"duckdb:///{tmp_path / 'warehouse.duckdb'}")
    rows = event_rows(4, event_text="ApiCalls", value=[1.0, None, 2.0, 3.0])
    rows.loc[1, ["user_id", "anonymous_id"]] = None  # one rejected row: rejected_rows gets written too
    warehouse.write("prod", "api_calls", rows)
    warehouse.dispose()
    work = tmp_path / "work"
    work.mkdir()
    with EmulatorServer(api_key=key, faults=FaultConfig(wrong_key_seconds=3600)) as emulator:
        runner = AirflowRunner(airflow_home, work, warehouse_url=warehouse.url, amberflo_url=emulator.url,
                               api_key=key, config={"events": {"pages": False, "screens": False}})
        failing = runner.dags_test("segment_events_to_amberflo")
        emulator.set_faults(None)
        succeeding = runner.dags_test("segment_events_to_amberflo")
        distinct = emulator.stats()["distinct"]

    assert not failing.succeeded and "refused the API key" in failing.output
    assert succeeding.succeeded, succeeding.output[-5000:]
    assert distinct == 3
    assert key not in failing.output
    assert key not in succeeding.output
    state = Ledger(StateStore.from_url(runner.state_url))
    runs, rejected = state.runs(), state.rejected_rows()
    state.engine.dispose()
    assert {r["status"] for r in runs} == {"failed", "success"} and rejected
    assert key not in repr(runs) + repr(rejected)
    assert _files_containing(work, key.encode()) == []
    assert _files_containing(airflow_home, key.encode()) == []


def test_wrong_key_fails_fast_with_a_clear_message_and_no_retry(emulator: EmulatorServer) -> None:
    """Fails if 401/403 are retried (a rotated key would then stall every task for the whole budget)."""
    wrong = secret_key()
    client = AmberfloClient(ClientSettings(base_url=emulator.url, api_key=wrong), retry=RetryPolicy())
    started = time.monotonic()
    with client, pytest.raises(AmberfloAuthError) as caught:
        client.ingest_records([RECORD])
    assert time.monotonic() - started < 2.0
    assert client.stats.retries == 0
    assert emulator.stats()["unauthorized"] == 1 and emulator.stats()["requests"] == 1
    assert "Check the password of the Amberflo connection" in str(caught.value)
    assert wrong not in str(caught.value)


class _EchoHandler(http.server.BaseHTTPRequestHandler):
    """A hostile server: answers with the caller's own API key in the body."""

    status = 400

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = f"invalid request from key {self.headers.get('X-API-KEY')}".encode()
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def echo_server() -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("status", [400, 500])
def test_key_echoed_by_the_server_is_scrubbed_from_errors_and_logs(
    echo_server: http.server.ThreadingHTTPServer, status: int, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fails if the client stops scrubbing the key from Amberflo's messages (a 400 detail, the retry
    warnings of a 500, the final error)."""
    monkeypatch.setattr(_EchoHandler, "status", status)
    key = secret_key()
    url = f"http://127.0.0.1:{echo_server.server_address[1]}"
    client = AmberfloClient(ClientSettings(base_url=url, api_key=key), retry=RetryPolicy(base_delay=0.01, give_up_after=0.1))
    caplog.set_level(logging.DEBUG)
    with client, pytest.raises((AmberfloRejectedError, AmberfloUnavailableError)) as caught:
        client.ingest_records([RECORD])
    error = caught.value
    assert "invalid request from key ***" in str(error)
    assert key not in str(error) and key not in repr(error) and key not in caplog.text
    assert key not in getattr(error, "detail", "")


def test_settings_repr_hides_the_key() -> None:
    """Settings end up in task logs and tracebacks (``repr`` of a dataclass): fails if the key shows."""
    key = secret_key()
    assert key not in repr(ClientSettings(base_url="https://app.amberflo.io", api_key=key))


# --------------------------------------------------------------------------------------------------
# TLS verification stays on
# --------------------------------------------------------------------------------------------------
def test_https_sessions_verify_certificates() -> None:
    """Fails if the client (or its session's environment handling) ever turns verification off."""
    url = "https://app.amberflo.io"
    with AmberfloClient(ClientSettings(base_url=url, api_key=secret_key())) as client:
        assert client.session.verify is True
        assert client.session.merge_environment_settings(url, {}, None, None, None)["verify"] is not False


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_https_to_a_self_signed_server_fails_with_an_ssl_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A man in the middle with a certificate no CA signed must not receive a single request (with the
    key in its headers). Fails if verification is disabled anywhere on the way.

    The CA-bundle variables are removed: requests lets them override a session's ``verify=False``, which
    would hide exactly the regression this test is for."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    cert_path, key_path = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    handled: list[str] = []

    class Handler(_EchoHandler):
        def do_POST(self) -> None:  # noqa: N802
            handled.append(self.path)
            super().do_POST()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    key = secret_key()
    try:
        settings = ClientSettings(base_url=f"https://127.0.0.1:{server.server_address[1]}", api_key=key,
                                  connect_timeout=2, read_timeout=2)
        with AmberfloClient(settings, retry=RetryPolicy(base_delay=0.01, give_up_after=0.2)) as client, \
                pytest.raises(AmberfloUnavailableError) as caught:
            client.ingest_records([RECORD])
    finally:
        server.shutdown()
        server.server_close()
    assert "SSLError" in str(caught.value) and "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
    assert handled == []
    assert key not in str(caught.value)


# --------------------------------------------------------------------------------------------------
# the emulator never listens beyond loopback
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "example.com", "localhost.example.com", ""])
def test_emulator_refuses_a_non_loopback_host(host: str) -> None:
    """The emulator accepts anyone holding a test key: fails if it can be bound beyond loopback by default."""
    with pytest.raises(ValueError, match="loopback"):
        EmulatorServer(api_key="k", host=host)


def test_emulator_command_line_refuses_a_non_loopback_host() -> None:
    """Fails if ``python -m amberflo_sync.emulator --host 0.0.0.0`` starts listening (it then runs until
    the timeout)."""
    result = subprocess.run([PYTHON, "-m", "amberflo_sync.emulator", "--host", "0.0.0.0", "--port", "0"],
                            env=subprocess_env(AMBERFLO_EMULATOR_API_KEY="k"), capture_output=True, text=True,
                            timeout=15)
    assert result.returncode != 0
    assert "loopback" in result.stderr
    assert "listening" not in result.stdout
