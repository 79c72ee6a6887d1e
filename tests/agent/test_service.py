"""The agent as a service: the definitions each platform reads, written, validated and removed."""

import plistlib
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from edgeatlas.agent import service
from edgeatlas.protos.errors import InvalidInput

from tests.conftest import cli_env, run_cli


@pytest.fixture
def spec(tmp_path):
    return service.ServiceSpec(coordinator="127.0.0.1:50051", state_dir=tmp_path / "state", name="pi-5",
                               extra_args=("--privacy-budget", "4"))


def test_systemd_unit_is_valid_and_keeps_the_token_out(spec, tmp_path):
    unit = service.systemd_unit(spec)
    assert "Restart=on-failure" in unit and "Nice=19" in unit and "WantedBy=default.target" in unit
    assert "--token-file" in unit and "ea_enroll" not in unit
    assert verify(tmp_path, unit) == ""
    broken = unit.replace("Nice=19", "Nice=19\nRestartEvery=5").replace(spec.python, "/nonexistent/python")
    assert "RestartEvery" in verify(tmp_path, broken)  # the check can fail


def verify(tmp_path, unit: str) -> str:
    """systemd's own verdict on a user unit: '' when clean, else its complaints."""
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing: scripts/test installs systemd for this test")
    run = tmp_path / "run"
    run.mkdir(mode=0o700, exist_ok=True)
    path = tmp_path / f"{service.NAME}.service"
    path.write_text(unit)
    proc = subprocess.run(["systemd-analyze", "verify", "--user", str(path)], capture_output=True, text=True,
                          env={"XDG_RUNTIME_DIR": str(run), "PATH": "/usr/bin:/bin"})
    return "" if proc.returncode == 0 and not proc.stderr.strip() else proc.stderr


def test_launchd_plist_and_windows_task_parse(spec, tmp_path):
    plist = plistlib.loads(service.launchd_plist(spec, tmp_path))
    assert plist["Label"] == service.LAUNCHD_LABEL and plist["ProgramArguments"] == spec.argv()
    assert plist["KeepAlive"] == {"SuccessfulExit": False} and plist["ProcessType"] == "Background"
    root = ET.fromstring(service.windows_task_xml(spec).replace('encoding="UTF-16"', ""))
    ns = {"t": "http://schemas.microsoft.com/windows/2004/02/mit/task"}
    assert root.find("t:Settings/t:DisallowStartIfOnBatteries", ns).text == "true"
    assert "--token-file" in root.find("t:Actions/t:Exec/t:Arguments", ns).text


@pytest.mark.parametrize("platform", ["linux", "darwin", "win32"])
def test_install_writes_the_service_and_a_private_token_then_uninstall_removes_it(spec, tmp_path, platform):
    home = tmp_path / "home"
    env = {"XDG_CONFIG_HOME": str(home / ".config"), "LOCALAPPDATA": str(home / "AppData")}
    done = service.install(spec, "ea_enroll_secret", platform=platform, home=home, env=env, start=False)
    assert done.path.exists() and not done.started
    assert spec.token_file.read_text() == "ea_enroll_secret" and spec.token_file.stat().st_mode & 0o077 == 0
    assert "ea_enroll_secret" not in done.path.read_bytes().decode("utf-8", "replace")
    assert service.uninstall(platform=platform, home=home, env=env) == done.path
    assert not done.path.exists()
    with pytest.raises(InvalidInput, match="no agent service is installed"):
        service.uninstall(platform=platform, home=home, env=env)


def test_install_without_enrollment_is_refused(spec, tmp_path):
    with pytest.raises(InvalidInput, match="not enrolled yet"):
        service.install(spec, None, platform="linux", home=tmp_path, env={}, start=False)


def test_cli_install_service_on_this_machine(tmp_path):
    env = cli_env(XDG_CONFIG_HOME=str(tmp_path / "config"), EDGEATLAS_ENROLL_TOKEN="ea_enroll_x")
    proc = run_cli("agent", "install-service", "--state-dir", str(tmp_path / "s"), env=env)
    assert proc.returncode == 0, proc.stderr
    unit = tmp_path / "config" / "systemd" / "user" / f"{service.NAME}.service"
    assert str(unit) in proc.stdout and unit.exists()  # started, or says exactly why not (no user bus here)
    assert run_cli("agent", "uninstall-service", env=env).returncode == 0 and not unit.exists()
