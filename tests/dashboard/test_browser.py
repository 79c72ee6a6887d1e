"""The dashboard end to end in a real browser: `edgeatlas dashboard` served on 127.0.0.1, a real coordinator
holding real data, Debian's chromium driven by Selenium. Screenshots of each page land in
test-artifacts/dashboard/."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from tests.conftest import cli_env, stop_pid
from tests.dashboard.browser import (ARTIFACTS, chrome, full_screenshot, open_page, svg_texts, wait_css,
                                     wait_idle, wait_text)
from tests.dashboard.conftest import FLEET_MODELS
from tests.dashboard.test_pages import RASPBERRY_PI_5

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture(scope="module")
def served(world, tmp_path_factory):
    """`edgeatlas dashboard` as a user starts it; its URL. Stopped by PID."""
    ready = tmp_path_factory.mktemp("dashboard") / "ready.json"
    env = cli_env(EDGEATLAS_ADMIN_TOKEN=world.coordinator.admin_token)
    with open(world.workdir / "dashboard.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "edgeatlas", "dashboard", "--coordinator",
                                 world.coordinator.address, "--port", "0", "--ready-file", str(ready)],
                                stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 90
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline, (world.workdir / "dashboard.log").read_text()
            time.sleep(0.2)
        url = json.loads(ready.read_text())["url"]
        assert url.startswith("http://127.0.0.1:")
        yield url
    finally:
        stop_pid(proc)
    assert proc.returncode is not None


@pytest.fixture(scope="module")
def browser():
    d = chrome()
    yield d
    d.quit()


def test_heatmap_renders_the_expected_cells(served, browser, world):
    open_page(browser, served, "heatmap")
    wait_text(browser, "Global heat-map")
    wait_css(browser, ".js-plotly-plot g.ytick text")
    models = svg_texts(browser, ".js-plotly-plot g.ytick text")
    columns = svg_texts(browser, ".js-plotly-plot g.xtick text")
    assert set(FLEET_MODELS + world.imported) <= set(models)
    assert any(c.endswith("·imported") for c in columns) and any(c.endswith("·simulated") for c in columns)
    cells = svg_texts(browser, ".js-plotly-plot text")
    assert "k<5" in cells  # the real device's cells, suppressed
    assert sum(1 for t in cells if t and t[0].isdigit()) >= 3 * 12  # published values on 12 devices
    full_screenshot(browser, ARTIFACTS / "heatmap.png")


def test_fleet_page_shows_the_devices(served, browser):
    open_page(browser, served, "fleet")
    wait_text(browser, "Privacy released per device class")
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "Devices" in body and "Online" in body
    full_screenshot(browser, ARTIFACTS / "fleet.png")


def test_campaign_created_in_the_form_reaches_the_coordinator(served, browser, world):
    open_page(browser, served, "campaigns")
    wait_text(browser, "New campaign")
    name = browser.find_element(By.CSS_SELECTOR, 'input[aria-label="Name"]')
    name.send_keys("made-in-chromium")
    models = browser.find_element(By.CSS_SELECTOR, '[data-testid="stMultiSelect"] input')
    models.send_keys("mlp-s")
    models.send_keys(Keys.ENTER)
    selectors = browser.find_element(By.CSS_SELECTOR, "textarea")
    selectors.send_keys("label.simulated=true")
    selectors.send_keys(Keys.TAB)
    submit = next(b for b in browser.find_elements(By.TAG_NAME, "button") if b.text == "Create campaign")
    submit.click()
    wait_text(browser, "made-in-chromium created")
    with world.coordinator.admin() as admin:
        made = [c for c in admin.list_campaigns() if c.name == "made-in-chromium"]
    assert len(made) == 1 and made[0].models == ["mlp-s"] and made[0].selectors == {"label.simulated": "true"}
    wait_idle(browser)
    full_screenshot(browser, ARTIFACTS / "campaigns.png")


def test_pasted_spec_sheet_and_uploaded_model_get_predictions(served, browser, zoo_dir):
    open_page(browser, served, "predictor")
    wait_text(browser, "Predictor v1")
    paste = next(e for e in browser.find_elements(By.CSS_SELECTOR, '[data-testid="stRadio"] label')
                 if e.text == "Paste")
    paste.click()
    wait_idle(browser)
    area = browser.find_element(By.CSS_SELECTOR, 'textarea[aria-label^="Spec sheet (YAML or JSON"]')
    area.send_keys(RASPBERRY_PI_5)
    area.send_keys(Keys.TAB)
    wait_idle(browser)
    upload = browser.find_element(By.CSS_SELECTOR, 'input[type="file"]')
    upload.send_keys(str(zoo_dir / "transformer-s.onnx"))
    wait_idle(browser)
    wait_text(browser, "transformer-s.onnx")
    go = next(b for b in browser.find_elements(By.TAG_NAME, "button") if b.text == "Predict")
    go.click()
    wait_text(browser, "Raspberry Pi 5: predicted latency", timeout=120)
    wait_idle(browser)
    wait_css(browser, ".js-plotly-plot g.xtick text")
    labels = svg_texts(browser, ".js-plotly-plot text")
    assert "transformer-s.onnx" in labels and "mlp-s" in labels  # uploaded and registered, on the Pareto plot
    full_screenshot(browser, ARTIFACTS / "predictor.png")


def test_compare_page_shows_measured_and_predicted(served, browser):
    open_page(browser, served, "compare")
    wait_text(browser, "Add the predictor's values")
    wait_idle(browser)
    full_screenshot(browser, ARTIFACTS / "compare.png")
    assert "Hardware A" in browser.find_element(By.TAG_NAME, "body").text
