"""Browser tests need Debian's chromium and the ``playwright`` Python package (requirements-ui.txt).

Playwright's own browser download does not work offline, so the tests drive ``/usr/bin/chromium``
(``.ci/run`` installs it with apt). Where either is missing the tests skip with the reason — except
under ``AMBERFLO_SYNC_REQUIRE_SERVICES=1`` (CI), where a missing browser is a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.conftest import REQUIRE_SERVICES

CHROMIUM = os.environ.get("AMBERFLO_SYNC_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def _missing(reason: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(reason + " and AMBERFLO_SYNC_REQUIRE_SERVICES=1 forbids skipping")
    pytest.skip(reason)


@pytest.fixture
def browser() -> Iterator[object]:
    """A headless Debian chromium driven by Playwright."""
    if not os.path.exists(CHROMIUM):
        _missing(f"no chromium at {CHROMIUM} (apt-get install -y chromium chromium-driver)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package is not installed (pip install -r requirements-ui.txt)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage", "--headless=new"]
        )
        try:
            yield chromium
        finally:
            chromium.close()
