"""Headless Chromium opens a report from disk: no console errors, no broken images, a screenshot.

Needs ``chromium``, ``chromedriver`` and the ``browser`` extra (selenium).  Skipped without them,
except under ``CI=true``, where ``.ci/run`` installs them and a missing piece is a failure.
The screenshot of the whole page is saved as ``reports/report-screenshot.png``.
"""
from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path

import pytest
from test_report import MODEL, report_inputs

pytestmark = pytest.mark.browser

REPORTS = Path(__file__).resolve().parents[1] / "reports"
#: flags from issue #6: nothing may reach the network, a fresh profile every run
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")
WINDOW = (1280, 900)
SCREENSHOT = "report-screenshot.png"


def _need(what: str, found) -> None:
    if not found:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{what} is missing under CI=true; .ci/run should have installed it")
        pytest.skip(f"{what} is not available (install chromium, chromium-driver and perfmodel[browser])")


def _binary(*names) -> str | None:
    return next((p for p in map(shutil.which, names) if p), None)


@pytest.fixture
def driver(tmp_path_factory):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        webdriver = None
    _need("selenium (the 'browser' extra)", webdriver)
    browser = _binary("chromium", "chromium-browser", "google-chrome")
    _need("chromium", browser)
    chromedriver = _binary("chromedriver")
    _need("chromedriver", chromedriver)
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for flag in (*FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
                 f"--window-size={WINDOW[0]},{WINDOW[1]}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # an explicit chromedriver path: selenium never tries to download a driver
    d = webdriver.Chrome(options=opts, service=Service(executable_path=chromedriver))
    d.set_page_load_timeout(30)
    yield d
    d.quit()


def test_report_in_headless_chromium(driver, tmp_path):
    """Open from disk; no console errors, no broken images, nothing fetched; save a full-page screenshot."""
    from perfmodel.report import write_report
    path = write_report(tmp_path / "charlm.html", MODEL, **report_inputs(tmp_path))
    driver.get(path.resolve().as_uri())
    errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert errors == []
    images = driver.execute_script(
        "return [...document.images].map(i => [i.closest('figure').id, i.complete, i.naturalWidth])")
    assert len(images) == 10
    assert [fig for fig, complete, width in images if not complete or width == 0] == []
    fetched = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert [u for u in fetched if not u.startswith("data:")] == []
    height = driver.execute_script("return document.documentElement.scrollHeight")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": WINDOW[0], "height": height, "scale": 1}})
    png = base64.b64decode(shot["data"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000
    REPORTS.mkdir(exist_ok=True)
    (REPORTS / SCREENSHOT).write_bytes(png)
