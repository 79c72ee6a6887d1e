"""The CLI as a user meets it: bad input is one line and exit code 2, never a traceback."""

import json

import pytest
import yaml

from tests.conftest import run_cli


def one_line_error(proc, *needles):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in lines[0]


@pytest.fixture
def corrupt(tmp_path):
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(b"\x00\x01 this is not a protobuf" * 20)
    return bad


def test_agent_bench_on_a_corrupt_model(corrupt):
    one_line_error(run_cli("agent", "bench", str(corrupt)), "corrupt.onnx")


def test_models_add_on_a_corrupt_model_touches_no_coordinator(corrupt):
    # the address is unreachable: validation must answer before any connection is tried
    one_line_error(run_cli("models", "add", str(corrupt), "--coordinator", "127.0.0.1:9",
                           "--admin-token", "x"), "corrupt.onnx", "not a valid ONNX model")


def test_agent_bench_prints_stats_and_setting(zoo_dir, prepared_zoo):
    proc = run_cli("agent", "bench", str(zoo_dir / "mobilenet-s.onnx"), "--threads", "1", "--iterations", "20",
                   "--duration", "0.2", "--reference", str(zoo_dir / "mobilenet-s.ref.npz"), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["valid"] and result["fidelity"]["passed"]
    assert result["stats"]["iterations"] >= 20 and result["setting"]["threads"] == 1
    assert result["setting"]["target"] == "cpu"
    assert result["stats"]["p50_ms"] <= result["stats"]["p99_ms"]


def test_agent_bench_rejects_nonsense_parameters(zoo_dir):
    one_line_error(run_cli("agent", "bench", str(zoo_dir / "mlp-s.onnx"), "--iterations", "0"), "--iterations")


def test_agent_spec_prints_a_spec_sheet():
    proc = run_cli("agent", "spec", "--no-bandwidth")
    assert proc.returncode == 0, proc.stderr
    spec = yaml.safe_load(proc.stdout)
    assert spec["schema"] == "edgeatlas.spec/v1" and spec["cpu"]["threads"] >= 1
    assert spec["memory"]["bandwidth_gbs"] is None  # not measured when asked not to: null, not guessed


def test_agent_spec_explain_says_where_each_field_came_from():
    from tests.conftest import SHARED

    proc = run_cli("agent", "spec", "--root", str(SHARED / "fixtures" / "devices" / "nexus5x"), "--explain")
    assert proc.returncode == 0, proc.stderr
    assert yaml.safe_load(proc.stdout)["soc"] == "Qualcomm MSM8992"  # stdout stays one YAML document
    explained = dict(line[4:].split(": ", 1) for line in proc.stderr.splitlines() if line.startswith("#   "))
    assert explained["soc"] == "/proc/cpuinfo Hardware = 'Qualcomm Technologies, Inc MSM8992'"
    assert explained["cpu.threads"] == "cpu/present ∩ cpu/possible"
    assert "cpu.clusters" in explained and "cpu.clusters[].core" in explained
    one_line_error(run_cli("agent", "spec", "--root", "/nonexistent-tree", "--explain"), "--root")


def test_admin_commands_without_a_coordinator_say_so():
    proc = run_cli("heatmap", "--coordinator", "127.0.0.1:9", "--admin-token", "x", timeout=60)
    assert proc.returncode == 3 and "unreachable" in proc.stderr and "Traceback" not in proc.stderr


def test_bad_address_and_missing_token():
    one_line_error(run_cli("heatmap", "--coordinator", "nowhere", "--admin-token", "x"), "HOST:PORT")
    one_line_error(run_cli("campaign", "list", "--coordinator", "127.0.0.1:9"), "admin token")


def test_models_nasbench201_builds_or_names_the_problem(tmp_path):
    out = tmp_path / "net.onnx"
    ok = run_cli("models", "nasbench201", "--arch",
                 "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
                 "--out", str(out))
    assert ok.returncode == 0 and "1,531,546 parameters" in ok.stdout and out.stat().st_size > 1_000_000
    one_line_error(run_cli("models", "nasbench201", "--arch", "|conv~0|", "--out", str(out)), "arch")


def test_campaign_privacy_contract_is_checked_before_connecting():
    one_line_error(run_cli("campaign", "create", "--models", "m", "--epsilon", "0", "--coordinator", "127.0.0.1:9",
                           "--admin-token", "x"), "epsilon")
    one_line_error(run_cli("campaign", "create", "--models", "m", "--bounds-ms", "5", "--coordinator",
                           "127.0.0.1:9", "--admin-token", "x"), "--bounds-ms")


def test_agent_privacy_reports_the_ledger(tmp_path):
    from edgeatlas.agent.privacy.ledger import Budget, Ledger
    from edgeatlas.protos.privacy import PrivacyParams

    ledger = Ledger(tmp_path / "privacy-ledger.db", Budget())
    ledger.record("r1", 1, PrivacyParams(mechanism="laplace", epsilon=2.0, delta=0.0))
    ledger.record("r2", 2, None)
    ledger.close()
    proc = run_cli("agent", "privacy", "--state-dir", str(tmp_path), "--privacy-budget", "6")
    assert proc.returncode == 0, proc.stderr
    assert "ε ≤ 6 per 24 h" in proc.stdout and "ε = 2" in proc.stdout and "1 trusted" in proc.stdout
    one_line_error(run_cli("agent", "privacy", "--state-dir", str(tmp_path), "--privacy-budget", "-1"),
                   "--privacy-budget")


def test_serve_refuses_a_peer_ca_without_a_certificate_of_its_own(tmp_path):
    one_line_error(run_cli("coordinator", "serve", "--db", f"sqlite:///{tmp_path / 'c.db'}", "--listen",
                           "127.0.0.1:0", "--tls-peer-ca", str(tmp_path / "ca.pem")), "--tls-peer-ca")
    assert not (tmp_path / "c.db").exists()  # refused before anything was made
