"""The agent as a background service: a systemd user unit, a launchd agent, or a Windows scheduled task.

Each runs `edgeatlas agent run` at low priority, restarts it on failure, and leaves logs where the
platform keeps them (the user journal, ~/Library/Logs, the task's history). The enrollment token
is kept in a file only the owner can read, never on a command line or in a unit file.
"""

from __future__ import annotations

import os
import plistlib
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

from edgeatlas.agent.state import write_private
from edgeatlas.protos.errors import InvalidInput

NAME = "edgeatlas-agent"
LAUNCHD_LABEL = "org.edgeatlas.agent"
WINDOWS_TASK = "EdgeAtlas Agent"


@dataclass(frozen=True)
class ServiceSpec:
    coordinator: str
    state_dir: Path
    name: str = ""
    extra_args: tuple[str, ...] = ()  # e.g. budget options, --trusted
    python: str = field(default_factory=lambda: sys.executable)

    @property
    def token_file(self) -> Path:
        return self.state_dir / "enroll-token"

    def argv(self) -> list[str]:
        args = [self.python, "-m", "edgeatlas", "agent", "run", "--coordinator", self.coordinator,
                "--state-dir", str(self.state_dir), "--token-file", str(self.token_file)]
        if self.name:
            args += ["--name", self.name]
        return args + list(self.extra_args)


def systemd_unit(spec: ServiceSpec) -> str:
    return f"""[Unit]
Description=EdgeAtlas benchmark agent
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart={shlex.join(spec.argv())}
Environment=PYTHONUNBUFFERED=1
# Benchmarks run when nothing else wants the machine; restart after a crash, not in a tight loop.
Nice=19
IOSchedulingClass=idle
Restart=on-failure
RestartSec=30
# Logs: journalctl --user -u {NAME}

[Install]
WantedBy=default.target
"""


def launchd_plist(spec: ServiceSpec, home: Path) -> bytes:
    logs = home / "Library" / "Logs" / "EdgeAtlas"
    return plistlib.dumps({
        "Label": LAUNCHD_LABEL,
        "ProgramArguments": spec.argv(),
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},  # restart on failure only
        "ThrottleInterval": 30,
        "ProcessType": "Background",
        "LowPriorityIO": True,
        "Nice": 19,
        "EnvironmentVariables": {"PYTHONUNBUFFERED": "1"},
        "StandardOutPath": str(logs / "agent.log"),
        "StandardErrorPath": str(logs / "agent.log"),
    })


def windows_task_xml(spec: ServiceSpec) -> str:
    argv = spec.argv()
    arguments = subprocess.list2cmdline(argv[1:])
    return f"""<?xml version="1.0" encoding="UTF-16"?>
<Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">
  <RegistrationInfo><Description>EdgeAtlas benchmark agent</Description></RegistrationInfo>
  <Triggers><LogonTrigger><Enabled>true</Enabled></LogonTrigger></Triggers>
  <Settings>
    <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>
    <DisallowStartIfOnBatteries>true</DisallowStartIfOnBatteries>
    <StopIfGoingOnBatteries>true</StopIfGoingOnBatteries>
    <ExecutionTimeLimit>PT0S</ExecutionTimeLimit>
    <Priority>7</Priority>
    <RestartOnFailure><Interval>PT1M</Interval><Count>999</Count></RestartOnFailure>
  </Settings>
  <Actions Context="Author">
    <Exec><Command>{escape(argv[0])}</Command><Arguments>{escape(arguments)}</Arguments></Exec>
  </Actions>
</Task>
"""


@dataclass(frozen=True)
class Installed:
    path: Path
    started: bool
    note: str


def service_path(platform: str, home: Path, env: dict[str, str]) -> Path:
    if platform.startswith("linux"):
        config = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
        return config / "systemd" / "user" / f"{NAME}.service"
    if platform == "darwin":
        return home / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist"
    if platform.startswith("win"):
        return Path(env.get("LOCALAPPDATA") or home) / "EdgeAtlas" / "agent-task.xml"
    raise InvalidInput(f"no service support for platform {platform!r} yet (Linux, macOS, Windows)")


def _run(argv: list[str]) -> str | None:
    """None when the command succeeded, else its one-line complaint."""
    if shutil.which(argv[0]) is None:
        return f"{argv[0]} is not available"
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        return (proc.stderr.strip().splitlines() or [f"{argv[0]} exited {proc.returncode}"])[-1]
    return None


def install(spec: ServiceSpec, token: str | None, platform: str = sys.platform, home: Path | None = None,
            env: dict[str, str] | None = None, start: bool = True) -> Installed:
    home = home or Path.home()
    env = dict(os.environ if env is None else env)
    spec.state_dir.mkdir(parents=True, exist_ok=True)
    if token:
        write_private(spec.token_file, token)
    elif not spec.token_file.exists() and not (spec.state_dir / "identity.json").exists():
        raise InvalidInput("the agent is not enrolled yet: give --token-file or set EDGEATLAS_ENROLL_TOKEN "
                           "(the token is kept in a file only you can read)")
    path = service_path(platform, home, env)
    path.parent.mkdir(parents=True, exist_ok=True)
    if platform.startswith("linux"):
        path.write_text(systemd_unit(spec))
        commands = [["systemctl", "--user", "daemon-reload"], ["systemctl", "--user", "enable", "--now", NAME]]
    elif platform == "darwin":
        (home / "Library" / "Logs" / "EdgeAtlas").mkdir(parents=True, exist_ok=True)
        path.write_bytes(launchd_plist(spec, home))
        commands = [["launchctl", "load", "-w", str(path)]]
    else:
        path.write_text(windows_task_xml(spec), encoding="utf-16")
        commands = [["schtasks", "/Create", "/TN", WINDOWS_TASK, "/XML", str(path), "/F"],
                    ["schtasks", "/Run", "/TN", WINDOWS_TASK]]
    if not start:
        return Installed(path, False, "written, not started (--no-start)")
    for argv in commands:
        problem = _run(argv)
        if problem:
            return Installed(path, False, f"written, but `{shlex.join(argv)}` failed: {problem}")
    return Installed(path, True, "installed and started")


def uninstall(platform: str = sys.platform, home: Path | None = None, env: dict[str, str] | None = None) -> Path:
    home = home or Path.home()
    env = dict(os.environ if env is None else env)
    path = service_path(platform, home, env)
    if platform.startswith("linux"):
        _run(["systemctl", "--user", "disable", "--now", NAME])
    elif platform == "darwin":
        _run(["launchctl", "unload", "-w", str(path)])
    else:
        _run(["schtasks", "/Delete", "/TN", WINDOWS_TASK, "/F"])
    if not path.exists():
        raise InvalidInput(f"no agent service is installed ({path} does not exist)")
    path.unlink()
    if platform.startswith("linux"):
        _run(["systemctl", "--user", "daemon-reload"])
    return path
