"""`edgeatlas demo` as a user runs it: a heat-map of ≥ 4 models, and no process left behind."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from edgeatlas.predictor.fingerprint import INT8_NAMES, NAMES
from tests.conftest import cli_env

pytestmark = pytest.mark.slow


def num(text: str) -> float:
    """A figure as the views print it ("1,034" past a thousand)."""
    return float(text.replace(",", ""))


def pids_in(output: str) -> list[int]:
    return [int(p) for p in re.findall(r"pid (\d+)", output)]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie awaiting its parent counts as gone
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def dashboard_pages_work(url: str) -> None:
    """Every page of the demo's dashboard in Chromium: drawn, no exception, no error; screenshots kept."""
    from selenium.webdriver.common.by import By

    from tests.dashboard.browser import ARTIFACTS, PAGES, chrome, full_screenshot, open_page, wait_css

    d = chrome()
    try:
        for page in PAGES:
            open_page(d, url, page)
            if page in ("heatmap", "fleet"):
                wait_css(d, ".js-plotly-plot")
            bad = d.find_elements(By.CSS_SELECTOR, '[data-testid="stException"], [data-testid="stAlertContentError"]')
            assert not bad, f"{page}: {[b.text for b in bad]}"
            full_screenshot(d, ARTIFACTS.parent / "demo" / f"{page}.png")
        body = d.find_element(By.TAG_NAME, "body").text
        assert "Compare" in body and "Hardware A" in body
    finally:
        d.quit()


@pytest.mark.browser
@pytest.mark.timeout(900)  # a cold build of the real zoo, five real networks × 64 queries on two agents, a browser
def test_demo_prints_a_heatmap_serves_the_dashboard_and_ends_cleanly(tmp_path):
    env = cli_env(EDGEATLAS_CACHE=str(tmp_path / "cache"))
    proc = subprocess.Popen([sys.executable, "-m", "edgeatlas", "demo", "--dir", str(tmp_path / "demo"),
                             "--iterations", "20", "--duration", "0.2", "--stay"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    out = ""
    try:
        while "Ctrl-C stops both" not in out:
            line = proc.stdout.readline()
            if not line:
                break
            out += line
        assert "Ctrl-C stops both" in out, out + proc.stderr.read()
        url = re.search(r"dashboard stays up at (http://127\.0\.0\.1:\d+)", out).group(1)
        dashboard_pages_work(url)
    finally:
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=60)
    out += rest
    assert proc.returncode == 0, out + err
    local = out[out.index("on this machine: exact values"):out.index("what the coordinator holds")]
    rows = [line.split() for line in local.splitlines()[3:] if line.strip()]
    assert len(rows) >= 4  # at least four models measured here
    for row in rows:  # "value [low, high]" per metric, or a value alone where one device ran it
        values = [t for t in row[3:] if not t.startswith("[") and not t.endswith("]")]
        p50, p99 = num(values[0]), num(values[1])
        assert 0 < p50 <= p99
    progress = re.findall(r"(\d+)/(\d+) tasks, \d+ running, (\d+) failed", out)
    totals = {total for _, total, _ in progress}
    # the zoo here and on the simulated fleet, the LLMs here and there, LoadGen's server (totals may coincide)
    assert len(totals) >= 4
    assert all((total, total, "0") in progress for total in totals)  # each finished, nothing failed
    llm = out[out.index("LLMs (llama.cpp): time to first token"):out.index("the simulated fleet (synthetic")]
    here = next(line.split() for line in llm.splitlines() if "on-device" in line)
    assert here[1] == "llama.cpp" and 0 < num(here[-2]) < num(here[-1])  # llama-s answers before SmolLM2-135M
    assert "decode tokens/s" in llm and len([line for line in llm.splitlines() if "simulated" in line]) >= 12
    held = out[out.index("what the coordinator holds"):out.index("this machine beside published")]
    assert len(re.findall(r"suppressed: [12] of k=5 devices", held)) == len(rows)  # two devices are below k
    # no values leak from suppressed cells: no "value [low, high]" anywhere (brackets in settings are parameters)
    assert "ldp gaussian ε=1" in held and not re.search(r"\[[\d.,]+, ", held.split("\n", 3)[3])
    published = out[out.index("this machine beside published"):out.index("privacy spent")]
    assert "imported" in published and "cpu:cortex-a75x4+cortex-a55x4" in published and "HELP" in published
    assert re.search(r"agent-1: \d+ releases, ε = [\d.]+ of 8 per 24 h", out)
    secure = out[out.index("a secure round: the cohort's p50s"):out.index("[6/7] federated training")]
    cohort = re.findall(r"^(\S+)\s+cpu:cortex-a76x4\+cortex-a55x4\s+secure gaussian ε=1 δ=1e-06, simulated\s+"
                        r"([\d.,]+) \[([\d.,]+), ([\d.,]+)\]\s+(\d+)\s+([\d.,]+)\s+×([\d.]+)$", secure, re.M)
    assert {row[0] for row in cohort} == {"resnet-18", "mobilenet-v2"}, secure
    for _, value, low, high, devices, truth, error in cohort:  # noise of σ ≈ 0.26 (log) at 100 devices
        assert int(devices) >= 90 and num(low) <= num(value) <= num(high) and float(error) < 4, secure
    federated = out[out.index("[6/7] federated training"):out.index("[7/7] the cost predictor")]
    spent = re.findall(r"round (\d): the devices' loss ([\d.]+) → ([\d.]+); privacy spent: ε = ([\d.]+) per "
                       r"measurement", federated)
    assert [r[0] for r in spent] == ["1", "2"], federated
    # a dozen measurements per device: DP-SGD's noise, not its signal, decides whether one round's loss falls
    assert all(0 < float(before) < 100 and 0 < float(after) < 100 for _, before, after, _ in spent)
    assert 0 < float(spent[0][3]) < float(spent[1][3]) <= 8.08
    assert "→ predictor v1, scored on networks it never saw: GNN MAPE" in federated
    predictor = out[out.index("[7/7] the cost predictor"):out.index("where the data lives")]
    interval = r"([\d.e+-]+) ms \(([\d.e+-]+)–([\d.e+-]+)\)"
    answers = re.findall(rf"^\s+(\S+)\s+([\d.]+ ms|—)\s+([\d.]+) ms\s+{interval}\s+{interval}\s+{interval}$",
                         predictor, re.M)
    # the campaign's cell, the same model timed alone; predicted with the fingerprint, without one; a typed sheet
    assert len(answers) >= 4, predictor
    for _, _, measured, *predicted in answers:
        values = list(map(float, predicted))
        assert float(measured) > 0
        for mean, lo, hi in (values[0:3], values[3:6], values[6:9]):
            assert 0 < lo <= mean <= hi
    errors = dict(re.findall(r"(with this machine's fingerprint|without a fingerprint): error (\d+) % on average",
                             predictor))
    assert set(errors) == {"with this machine's fingerprint", "without a fingerprint"}, predictor
    # the fingerprint's whole point: close to what was just measured alone, as it was. Without one the answer is
    # no longer the spec sheet's alone (the predictor trained on this machine's timings of other networks): the
    # fingerprint is as close as that training, within ten points, and never off by a factor of two.
    with_fp, without = int(errors["with this machine's fingerprint"]), int(errors["without a fingerprint"])
    assert with_fp < min(without + 10, 100), predictor
    shots = len(set(NAMES) - set(INT8_NAMES))  # the float reference networks: the int8 ones calibrate int8 alone
    assert re.search(rf"calibrated: (corrections averaged|offset|affine|split|physical) from {shots} shots", predictor)
    assert re.search(r"the campaign's cells took ×[\d.]+ the time alone", predictor)
    ask = re.search(r"ask it yourself: (edgeatlas predict .*?)  \(checkpoint", predictor).group(1).split()
    again = subprocess.run([sys.executable, "-m", "edgeatlas", *ask[1:], "--json"], capture_output=True, text=True,
                           timeout=120, env=env)  # the default checkpoint the demo left
    assert again.returncode == 0 and json.loads(again.stdout)["spec"] == "Raspberry Pi 5", again.stderr
    assert str(tmp_path / "demo" / "coordinator.db") in out
    sim = out[out.index("the simulated fleet (synthetic"):out.index("privacy spent")]
    sim_rows = [line.split() for line in sim.splitlines()[3:] if line.strip()]
    assert len(sim_rows) >= 6 and all(row[4] == "simulated" for row in sim_rows)  # class, setting (3 words), source
    assert re.search(r"published to the coordinator as predictor v2", predictor)  # v1: the federated one
    pids = pids_in(out)
    assert len(pids) == 6  # coordinator, dashboard, two agents, the simulated fleet, the secure cohort
    assert not [p for p in pids if alive(p)]
    no_secret_in_logs(tmp_path / "demo", out + err)


def no_secret_in_logs(demo, output: str) -> None:
    """No token or device credential in any log the demo wrote (the coordinator's, the agents', the Flower
    SuperLink's and its runs') nor in what it printed."""
    secrets = list(json.loads((demo / "tokens.json").read_text()).values())
    secrets += [json.loads(p.read_text())["credential"] for p in (demo / "agents").glob("*/identity.json")]
    assert len(secrets) == 4 and all(len(s) >= 16 for s in secrets)
    logs = sorted(demo.rglob("*.log"))
    assert {"coordinator.log", "superlink.log"} <= {p.name for p in logs}
    text = "".join(p.read_text(errors="replace") for p in logs) + output
    assert not [s for s in secrets if s in text]


def test_ctrl_c_stops_every_demo_process(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "edgeatlas", "demo", "--dir", str(tmp_path / "demo"),
                             "--iterations", "2000", "--duration", "5"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=cli_env())
    seen = ""
    deadline = time.monotonic() + 120
    while "[4/7]" not in seen and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen += line
    assert "[4/7]" in seen, seen
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    seen += rest
    assert proc.returncode == 130, seen
    assert "all demo processes stopped" in seen
    pids = pids_in(seen)
    assert len(pids) == 6  # coordinator, dashboard, two agents, the simulated fleet, the secure cohort
    assert not [p for p in pids if alive(p)]
