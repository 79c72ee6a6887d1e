"""The agent's state directory: its credential, model cache and outbox live here."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class Identity:
    agent_id: str
    credential: str
    coordinator: str
    hardware_class: str


def write_private(path: Path, text: str) -> None:
    """Atomically writes a file only its owner can read."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


class StateDir:
    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser()
        make_private(self.root)
        self.models = self.root / "models"
        self.outbox = self.root / "outbox"

    @property
    def identity_path(self) -> Path:
        return self.root / "identity.json"

    def identity(self) -> Identity | None:
        try:
            return Identity(**json.loads(self.identity_path.read_text()))
        except FileNotFoundError:
            return None

    def save_identity(self, identity: Identity) -> None:
        write_private(self.identity_path, json.dumps(asdict(identity)))


def make_private(root: Path) -> None:
    """The state directory is its owner's alone: the folder 0700, every file in it 0600 (results, raw
    samples, the ledger, the outbox, the credential), including those an older agent left readable. The
    process's umask is set to 077 so that every file made from now on is born private too."""
    os.umask(0o077)
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            os.chmod(os.path.join(folder, name), 0o700)
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                os.chmod(path, 0o600)


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "edgeatlas" / "agent"
