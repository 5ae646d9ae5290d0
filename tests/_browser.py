"""Open a local HTML file in a real headless Chromium (Debian's chromium + chromium-driver,
installed by `make setup`) through selenium, and report what a reader's browser saw: console
errors, every image's load state, the tables and headings, and a full-page screenshot."""
from __future__ import annotations

import base64
import shutil
import tempfile
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Root in CI: no sandbox; nothing fetched or synced in the background; a fresh profile per run.
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1000")


def missing() -> str | None:
    """Why the browser cannot run here, or None."""
    for p in (CHROMIUM, CHROMEDRIVER):
        if not Path(p).exists():
            return f"{p} is missing: `make setup` installs chromium and chromium-driver"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is missing: pip install -e '.[dev]'"
    return None


def inspect(html: Path, screenshot: Path) -> dict:
    """Load `html` (file://), wait for the page, and return {"console": [SEVERE console
    entries], "images": [{alt, complete, width}], "tables": [[header cells] per table],
    "headings": [(tag, text)]}; the full page is saved as PNG at `screenshot`."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="report-browser-")
    for f in (*FLAGS, f"--user-data-dir={profile}"):
        opts.add_argument(f)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        driver.set_page_load_timeout(60)
        driver.get(Path(html).resolve().as_uri())
        WebDriverWait(driver, 30).until(lambda d: d.execute_script(
            "return document.readyState === 'complete' && "
            "Array.from(document.images).every(i => i.complete)"))
        out = driver.execute_script("""
            return {
              images: Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete,
                                                            width: i.naturalWidth})),
              tables: Array.from(document.querySelectorAll('table')).map(t =>
                  Array.from(t.rows[0].cells).map(c => c.textContent.trim())),
              headings: Array.from(document.querySelectorAll('h1,h2,h3')).map(h =>
                  [h.tagName.toLowerCase(), h.textContent.trim()]),
              height: document.documentElement.scrollHeight};""")
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True, "clip": {
                "x": 0, "y": 0, "width": 1400, "height": min(out["height"], 16000), "scale": 1}})
        Path(screenshot).write_bytes(base64.b64decode(shot["data"]))
        out["console"] = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        out["headings"] = [tuple(h) for h in out["headings"]]
        return out
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
