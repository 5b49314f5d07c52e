"""``python -m amberflo_sync.emulator``: starts, announces its URL, refuses non-loopback, stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
KEY = "cli-secret-key-0123"


def run_cli(*args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO / "plugins"))
    env.pop("AMBERFLO_EMULATOR_API_KEY", None)
    return subprocess.Popen(
        [sys.executable, "-m", "amberflo_sync.emulator", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.fixture
def cli() -> Iterator:
    """``cli(*args)`` → (process, url) of a running emulator; stopped afterwards."""
    processes: list[subprocess.Popen[str]] = []

    def start(*args: str) -> tuple[subprocess.Popen[str], str]:
        process = run_cli("--port", "0", "--api-key", KEY, *args)
        processes.append(process)
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        prefix = "amberflo emulator listening on "
        assert line.startswith(prefix), (line, process.stderr.read() if process.poll() else "")
        return process, line[len(prefix) :]

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        process.stdout.close()
        process.stderr.close()


def test_starts_on_a_free_port_and_prints_its_url(cli):
    process, url = cli()
    assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
    assert requests.get(f"{url}/__emulator/health").json() == {"status": "ok"}


def test_serves_the_api_with_the_given_key(cli):
    _, url = cli()
    assert requests.get(f"{url}/customers", headers={"X-API-KEY": KEY}).json() == []
    assert requests.get(f"{url}/customers", headers={"X-API-KEY": "other"}).status_code == 401


def test_stops_cleanly_on_sigterm_without_printing_the_key(cli):
    process, _ = cli()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
    output = process.stdout.read() + process.stderr.read()
    assert KEY not in output


def test_stops_cleanly_on_sigint(cli):
    process, _ = cli()
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=10) == 0


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.1", "example.com"])
def test_refuses_a_non_loopback_host(host):
    process = run_cli("--host", host, "--port", "0", "--api-key", KEY)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 2
    assert "loopback" in stderr and stdout == ""
    assert KEY not in stdout + stderr


def test_refuses_to_start_without_a_key():
    process = run_cli("--port", "0")
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 2 and "API key" in stderr


def test_writes_the_ready_file(cli, tmp_path):
    ready = tmp_path / "emulator.url"
    _, url = cli("--ready-file", str(ready))
    assert ready.read_text().strip() == url


def test_fault_flags_are_applied(cli):
    _, url = cli("--rate-429", "1", "--retry-after", "3", "--seed", "5")
    response = requests.post(f"{url}/ingest", json=[], headers={"X-API-KEY": KEY})
    assert response.status_code == 429 and response.headers["Retry-After"] == "3"
    faults = requests.get(f"{url}/__emulator/faults").json()
    assert faults["rate_429"] == 1 and faults["seed"] == 5


def test_throttle_and_short_ingest_flags_are_applied(cli):
    _, url = cli("--throttle-seconds", "60", "--short-ingest-by", "1")
    faults = requests.get(f"{url}/__emulator/faults").json()
    assert faults["throttle_seconds"] == 60 and faults["short_ingest_by"] == 1
    assert requests.post(f"{url}/ingest", json=[], headers={"X-API-KEY": KEY}).status_code == 429


def test_invalid_fault_flags_are_refused():
    process = run_cli("--port", "0", "--api-key", KEY, "--rate-500", "1.5")
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 2 and "rate_500" in stderr


# --- --allow-container-bind: the explicit opt-in for a container's interface (docker compose) ------
# Nothing here binds a non-loopback address: the argument validation and the server's constructor
# (which does not bind) are what decide, and they are what these tests check.


def _parse(*args: str):
    from amberflo_sync.emulator.__main__ import build_parser

    return build_parser().parse_args(["--api-key", KEY, *args])


def test_container_bind_without_the_in_container_variable_exits_2():
    env = dict(os.environ, PYTHONPATH=str(REPO / "plugins"))
    env.pop("AMBERFLO_EMULATOR_IN_CONTAINER", None)
    env.pop("AMBERFLO_EMULATOR_API_KEY", None)
    process = subprocess.run(
        [sys.executable, "-m", "amberflo_sync.emulator", "--host", "0.0.0.0", "--port", "0",
         "--api-key", KEY, "--allow-container-bind"],
        capture_output=True, text=True, env=env, timeout=30,
    )
    assert process.returncode == 2 and process.stdout == ""
    assert "AMBERFLO_EMULATOR_IN_CONTAINER=1" in process.stderr
    assert KEY not in process.stderr


@pytest.mark.parametrize("value", ["", "0", "true", "yes"])
def test_container_bind_needs_the_variable_to_be_exactly_1(value):
    from amberflo_sync.emulator.__main__ import listen_address

    with pytest.raises(ValueError, match="AMBERFLO_EMULATOR_IN_CONTAINER=1"):
        listen_address(_parse("--host", "0.0.0.0", "--allow-container-bind"),
                       {"AMBERFLO_EMULATOR_IN_CONTAINER": value})


def test_container_bind_with_the_variable_accepts_every_interface():
    from amberflo_sync.emulator.__main__ import listen_address

    args = _parse("--host", "0.0.0.0", "--allow-container-bind")
    assert listen_address(args, {"AMBERFLO_EMULATOR_IN_CONTAINER": "1"}) == ("0.0.0.0", True)


def test_in_container_variable_alone_does_not_lift_the_loopback_rule():
    from amberflo_sync.emulator.__main__ import listen_address

    with pytest.raises(ValueError, match="loopback"):
        listen_address(_parse("--host", "0.0.0.0"), {"AMBERFLO_EMULATOR_IN_CONTAINER": "1"})


def test_container_bind_still_refuses_host_names():
    from amberflo_sync.emulator.__main__ import listen_address

    with pytest.raises(ValueError, match="IP address"):
        listen_address(_parse("--host", "example.com", "--allow-container-bind"),
                       {"AMBERFLO_EMULATOR_IN_CONTAINER": "1"})


def test_loopback_needs_no_opt_in():
    from amberflo_sync.emulator.__main__ import listen_address

    assert listen_address(_parse(), {}) == ("127.0.0.1", False)


def test_server_refuses_every_interface_without_allow_non_loopback():
    from amberflo_sync.emulator import EmulatorServer

    with pytest.raises(ValueError, match="loopback"):
        EmulatorServer(KEY, host="0.0.0.0")


@pytest.mark.parametrize("host, family", [("0.0.0.0", "AF_INET"), ("::", "AF_INET6"), ("[::]", "AF_INET6")])
def test_server_accepts_every_interface_with_allow_non_loopback(host, family):
    import socket

    from amberflo_sync.emulator.server import bind_address

    address, bound_family = bind_address(host, allow_non_loopback=True)
    assert bound_family == getattr(socket, family) and address in ("0.0.0.0", "::")
    from amberflo_sync.emulator import EmulatorServer

    server = EmulatorServer(KEY, host=host, allow_non_loopback=True)  # constructed, never started
    assert "not running" in repr(server)
