"""The playground in a real browser: Debian's headless Chromium driven by Playwright (no
browser download). CI installs chromium (.ci/run): this test never skips; without the browser
it fails saying so."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from .serve_helpers import serve

CHROMIUM = "/usr/bin/chromium"


@pytest.mark.slow
def test_generate_streams_tinted_text(trained_run: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists() or shutil.which("chromium"), (
        f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)"
    )
    with serve(trained_run, key=None) as s, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page()
            page.goto(s.url + "/")
            page.wait_for_function("document.querySelector('#model').options.length > 0")
            page.fill("#prime", "The ")
            page.fill("#length", "120")
            page.fill("#seed", "4")
            page.click("#go")
            page.wait_for_function("document.querySelectorAll('#out span.g').length >= 120")
            spans = page.locator("#out span.g")
            assert spans.count() == 120
            assert "background" in (spans.first.get_attribute("style") or "")
            assert page.locator("#out span.prime").inner_text() == "The "
            page.wait_for_function(
                "document.querySelector('#status').textContent.includes('length')"
            )
            page.screenshot(path=str(tmp_path / "playground.png"), full_page=True)
        finally:
            browser.close()
    assert (tmp_path / "playground.png").stat().st_size > 0
