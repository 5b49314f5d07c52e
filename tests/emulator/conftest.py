"""Fixtures for the emulator's own tests: a keyed ``requests.Session`` and record/ingest helpers.

The ``emulator`` and ``api_key`` fixtures come from ``tests/conftest.py``: a fresh
:class:`~amberflo_sync.emulator.EmulatorServer` per test, on a free loopback port.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from amberflo_sync.emulator import EmulatorServer


@pytest.fixture
def session(api_key: str) -> Iterator[requests.Session]:
    """A keep-alive session that sends the right key."""
    with requests.Session() as http:
        http.headers["X-API-KEY"] = api_key
        yield http


@pytest.fixture
def anonymous() -> Iterator[requests.Session]:
    """A session that sends no key at all (admin endpoints, 401 tests)."""
    with requests.Session() as http:
        yield http


@pytest.fixture
def ingest_url(emulator: EmulatorServer) -> str:
    return f"{emulator.url}/ingest"
