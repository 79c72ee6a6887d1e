"""The admin CLI against a real coordinator process."""

import json
import re

import pytest

from tests.conftest import cli_env, register, run_cli

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
    second = run_cli("agent", "run", "--coordinator", coordinator.address, "--once",
                     "--state-dir", str(tmp_path / "b"), timeout=120, env=cli_env(EDGEATLAS_ENROLL_TOKEN=token))
    assert second.returncode == 2 and "used up" in second.stderr
    on_argv = run_cli("agent", "run", "--coordinator", coordinator.address, "--token", token, "--once",
                      "--state-dir", str(tmp_path / "c"), timeout=120)
    assert on_argv.returncode == 2 and "--token-file" in on_argv.stderr and "ps" in on_argv.stderr
    assert not (tmp_path / "c" / "identity.json").exists()


def test_campaign_schedule_pause_resume_and_bad_options_from_the_cli(coordinator, prepared_zoo):
    from tests.integration.test_security import enroll

    env = coordinator.env()
    with coordinator.admin() as admin:
        register(admin, prepared_zoo, ["mlp-s"])
    enroll(coordinator)  # an enrolled device that never leases: the campaign stays open
    for bad, message in ((["--deadline", "2020-01-01T00:00"], "deadline has already passed"),
                         (["--deadline", "soon"], "--deadline 'soon' is not a duration"),
                         (["--priority", "5000"], "priority 5000 is not in -1000..1000"),
                         (["--selector", "cpu.cores>="], "selector 'cpu.cores>=' is not KEY=VALUE"),
                         (["--selector", "cpu.cores>=many"], "cpu.cores>=many: >= needs a number")):
        out = run_cli("campaign", "create", "--models", "mlp-s", *bad, env=env)
        assert out.returncode == 2 and message in out.stderr and out.stderr.count("\n") == 1, (bad, out.stderr)
    with coordinator.admin() as admin:
        assert admin.list_campaigns() == []  # nothing was stored
    made = run_cli("campaign", "create", "--models", "mlp-s", "--priority", "7", "--quota", "1", "--deadline", "2h",
                   "--selector", "memory.size_gb>=0.5", "--selector", "device_class!=phone", env=env)
    assert made.returncode == 0, made.stderr
    assert "running" in made.stdout and "priority 7, quota 1/class, deadline 20" in made.stdout
    # secure unless asked otherwise, and it says what a one-device class means for it
    assert re.search(r"secure: .* once 10 of its devices hold results .*; fewer here: cpu:\S+ 1 "
                     r"\(--privacy-mode ldp publishes each report on its own\)", made.stdout), made.stdout
    with coordinator.admin() as admin:
        assert admin.campaign(1).privacy.mode == "secure"
    adaptive_secure = run_cli("campaign", "create", "--models", "mlp-s", "--adaptive", "--budget", "2",
                              "--privacy-mode", "secure", env=env)
    assert adaptive_secure.returncode == 2 and "give it --privacy-mode ldp" in adaptive_secure.stderr
    paused = run_cli("campaign", "pause", "1", env=env)
    assert paused.returncode == 0 and "campaign 1 '': paused" in paused.stdout
    again = run_cli("campaign", "pause", "1", env=env)
    assert again.returncode == 2 and "only a running campaign can be paused" in again.stderr
    resumed = run_cli("campaign", "resume", "1", env=env)
    assert resumed.returncode == 0 and ": running" in resumed.stdout
    cancelled = run_cli("campaign", "cancel", "1", env=env)
    assert cancelled.returncode == 0 and ": cancelled" in cancelled.stdout
