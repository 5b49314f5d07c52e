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


def test_invalid_fault_flags_are_refused():
    process = run_cli("--port", "0", "--api-key", KEY, "--rate-500", "1.5")
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 2 and "rate_500" in stderr
