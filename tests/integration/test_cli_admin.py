"""The admin CLI against a real coordinator process."""

import json

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.slow


def test_models_campaigns_tokens_and_heatmap_from_the_cli(coordinator, tmp_path):
    env = coordinator.env()
    built = run_cli("models", "build", "--out", str(tmp_path / "zoo"), "--upload", env=env, timeout=300)
    assert built.returncode == 0, built.stderr
    listed = run_cli("models", "list", env=env)
    assert listed.stdout.count("\n") == 10 and "transformer-m" in listed.stdout
    assert listed.stdout.count(" gguf ") == 2 and "llama-m" in listed.stdout
    again = run_cli("models", "add", str(tmp_path / "zoo" / "mlp-s.onnx"), "--name", "mlp-small", env=env)
    assert again.returncode == 0 and "already registered as 'mlp-s'" in again.stdout  # same bytes
    token = run_cli("token", "create", "--kind", "enroll", "--uses", "1", env=env)
    assert token.returncode == 0 and token.stdout.startswith("ea_enroll_")
    none = run_cli("campaign", "create", "--models", "mlp-s", env=env)
    assert none.returncode == 2 and "no enrolled agent" in none.stderr
    unknown = run_cli("campaign", "create", "--models", "no-such-model", env=env)
    assert unknown.returncode == 2 and "not registered" in unknown.stderr
    missing = run_cli("campaign", "status", "42", env=env)
    assert missing.returncode == 2 and "campaign 42 does not exist" in missing.stderr
    empty = run_cli("heatmap", "--format", "json", env=env)
    assert empty.returncode == 0 and json.loads(empty.stdout) == []


def test_enrollment_token_use_count_is_enforced(coordinator, tmp_path):
    env = coordinator.env()
    token = run_cli("token", "create", "--kind", "enroll", "--uses", "1", env=env).stdout.strip()
    (tmp_path / "token").write_text(token + "\n")  # as `agent install-service` keeps it
    first = run_cli("agent", "run", "--coordinator", coordinator.address, "--token-file", str(tmp_path / "token"),
                    "--once", "--state-dir", str(tmp_path / "a"), timeout=120)
    assert first.returncode == 0, first.stderr
    second = run_cli("agent", "run", "--coordinator", coordinator.address, "--token", token, "--once",
                     "--state-dir", str(tmp_path / "b"), timeout=120)
    assert second.returncode == 2 and "used up" in second.stderr
