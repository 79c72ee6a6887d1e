"""Driving the dashboard in a real browser: Debian's chromium through chromium-driver (Selenium).

Also a small tool: `python -m tests.dashboard.browser URL OUTDIR` saves a screenshot of every page of a
running dashboard (how docs/dashboard/*.png are made from `edgeatlas demo --stay`).
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

PAGES = ("heatmap", "fleet", "campaigns", "predictor", "compare")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"


def chromium_paths() -> tuple[str, str]:
    """(browser, driver); an AssertionError naming what is missing otherwise."""
    browser = shutil.which("chromium") or "/usr/bin/chromium"
    driver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    missing = [p for p in (browser, driver) if not Path(p).exists()]
    assert not missing, (f"{', '.join(missing)} missing: scripts/test installs Debian's chromium and "
                         f"chromium-driver")
    return browser, driver


def chrome(width: int = 1400, height: int = 1100) -> webdriver.Chrome:
    browser, driver = chromium_paths()
    options = Options()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}", "--disable-extensions", "--no-first-run"):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service(driver))


def wait_idle(d: webdriver.Chrome, timeout: float = 60.0) -> None:
    """Until Streamlit has finished its script run (its status widget is gone) and the page has content."""
    def idle(_):
        busy = d.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"], [data-testid="stSpinner"]')
        app = d.find_elements(By.CSS_SELECTOR, '[data-testid="stMain"], [data-testid="stAppViewContainer"]')
        return bool(app) and not busy
    deadline = time.monotonic() + timeout
    calm = 0
    while calm < 3:  # idle three looks in a row, 0.4 s apart: a rerun that is about to start shows up
        assert time.monotonic() < deadline, "the dashboard stayed busy"
        time.sleep(0.4)
        calm = calm + 1 if idle(None) else 0


def wait_text(d: webdriver.Chrome, text: str, timeout: float = 60.0) -> None:
    def present(_):
        try:
            return text in d.find_element(By.TAG_NAME, "body").text
        except StaleElementReferenceException:
            return False
    WebDriverWait(d, timeout).until(present, f"the page never showed {text!r}")


def wait_css(d: webdriver.Chrome, selector: str, timeout: float = 60.0):
    WebDriverWait(d, timeout).until(lambda _: d.find_elements(By.CSS_SELECTOR, selector),
                                    f"nothing matched {selector!r}")
    return d.find_elements(By.CSS_SELECTOR, selector)


def svg_texts(d: webdriver.Chrome, selector: str) -> list[str]:
    return [e.get_attribute("textContent") for e in d.find_elements(By.CSS_SELECTOR, selector)]


def open_page(d: webdriver.Chrome, url: str, page: str) -> None:
    d.get(f"{url}/?page={page}")
    wait_idle(d)


def full_screenshot(d: webdriver.Chrome, path: Path) -> None:
    """The whole page, not only the window: the window grows to the content's height for the shot."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height = d.execute_script(
        "const m = document.querySelector('[data-testid=\"stMain\"]') || document.body;"
        "return Math.max(m.scrollHeight, document.body.scrollHeight);")
    size = d.get_window_size()
    d.set_window_size(size["width"], min(max(int(height) + 120, 800), 4000))
    time.sleep(0.8)
    d.save_screenshot(str(path))
    d.set_window_size(size["width"], size["height"])


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m tests.dashboard.browser URL OUTDIR", file=sys.stderr)
        return 2
    url, out = argv[0].rstrip("/"), Path(argv[1])
    d = chrome()
    try:
        for page in PAGES:
            open_page(d, url, page)
            if page == "predictor":  # the default sheet and models, answered
                next(b for b in d.find_elements(By.TAG_NAME, "button") if b.text == "Predict").click()
                wait_idle(d, 120)
            time.sleep(1)
            full_screenshot(d, out / f"{page}.png")
            print(out / f"{page}.png")
    finally:
        d.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
