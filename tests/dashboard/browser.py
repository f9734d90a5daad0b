"""Headless Debian chromium driven by Selenium through Debian's matching chromedriver.

Both binaries come from apt (``scripts/install-system-deps.sh``), so their versions always
match and nothing is downloaded at test time: Selenium is given both paths explicitly and
``SE_OFFLINE`` stops Selenium Manager from looking for drivers. A missing browser is a test
*failure* with the fix in the message, never a skip, so CI cannot pass without the test.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("FLSIM_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("FLSIM_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
]
INSTALL_HINT = "run `sh scripts/install-system-deps.sh` (apt-get install chromium chromium-driver)"


def _require(path: str, what: str) -> None:
    if not (Path(path).is_file() and os.access(path, os.X_OK)) and shutil.which(path) is None:
        pytest.fail(f"{what} not found at {path}: {INSTALL_HINT}", pytrace=False)


@contextmanager
def chromium(profile_dir: Path) -> Iterator[Any]:
    """A headless chromium WebDriver with a fresh profile in ``profile_dir``; quits on exit."""
    _require(CHROMIUM, "chromium")
    _require(CHROMEDRIVER, "chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is not installed: pip install -e '.[dashboard]'", pytrace=False)
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager download anything
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={profile_dir}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (last value: {last!r})")


def console_errors(driver: Any) -> list[dict[str, Any]]:
    """Browser log entries at SEVERE level (console.error, uncaught exceptions, failed loads)."""
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
