"""A real Chromium for the web pages' tests: Debian's ``chromium`` package driven by Playwright from PyPI (which
cannot download its own browsers here). ``make test`` installs both where it can; elsewhere the tests skip and say
what to install."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("CONTENTMILL_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
WIDE = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (a Playwright ``Browser``), or a skip that names what is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: `make test` installs it (the dev extra)")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: `make test` installs Debian's chromium package where apt-get runs "
                    "as root; else install it, or point CONTENTMILL_TEST_CHROMIUM at a Chromium binary")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            yield browser
        finally:
            browser.close()


def screenshot_path(name: str, tmp: Path) -> Path:
    """Where a test's screenshot goes: docs/img when DOCS_SCREENSHOTS=1 (to refresh the docs' images),
    else the test's own temporary directory."""
    if os.environ.get("DOCS_SCREENSHOTS") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        return DOCS_IMG / name
    return tmp / name


def sign_in(page: Any, root_url: str, key: str, target: str = "/") -> None:
    """Sign in through the form, as a person would, and land on ``target``."""
    page.goto(f"{root_url}/signin?next={target}")
    page.get_by_test_id("key-input").fill(key)
    page.get_by_test_id("signin-button").click()
    page.wait_for_url(f"{root_url}{target}*")
