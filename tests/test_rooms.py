"""Imports flow one way (DESIGN.md's room table); the agent never needs the coordinator's or the predictor's stack."""

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO

HEAVY = ("torch", "torch_geometric", "flwr", "streamlit", "opacus")
ROOMS = ("protos", "agent", "coordinator", "predictor", "dashboard", "console")
ALLOWED = {  # DESIGN.md: "may import"
    "protos": {"protos"},
    "agent": {"protos", "agent"},
    "coordinator": {"protos", "coordinator", "predictor"},  # the predictor: to train and serve it
    "predictor": {"protos", "predictor"},
    "dashboard": {"protos", "dashboard"},  # the admin API only: never the coordinator's database
    "console": set(ROOMS),
}
PACKAGE_ROOM = {"v1": "protos"}  # import name under edgeatlas. → room folder, where they differ


def _room(dotted: str) -> str | None:
    """The room an absolute module name lies in; "edgeatlas" itself for the bare package."""
    parts = dotted.split(".")
    if parts[0] != "edgeatlas":
        return None
    if len(parts) == 1:
        return "edgeatlas"
    return PACKAGE_ROOM.get(parts[1], parts[1])


def edgeatlas_imports(source: str, package: str = "") -> set[str]:
    """Rooms a module's source imports: `import`, `from` (relative ones resolved against `package`, the
    module's own package), `from edgeatlas import room`, and importlib.import_module / __import__ of a
    literal name. The bare package counts as "edgeatlas" (it would hide which room is used)."""
    rooms = set()
    for node in ast.walk(ast.parse(source)):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base == "edgeatlas":
                names = [f"edgeatlas.{a.name}" if a.name != "__version__" else "edgeatlas.__version__"
                         for a in node.names]
            else:
                names = [base]
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id in ("import_module", "__import__")))):
            names = [node.args[0].value]
        for name in names:
            room = _room(name)
            if room and room != "__version__":
                rooms.add(room)
    return rooms


def _package(path: Path) -> str:
    room = path.relative_to(REPO).parts[0]
    inner = path.relative_to(REPO / room).parent.parts
    return ".".join(("edgeatlas", room) + inner)


def test_rooms_import_only_what_design_allows():
    for room, allowed in ALLOWED.items():
        for path in (REPO / room).rglob("*.py"):
            if "_pb2" in path.name:
                continue
            extra = edgeatlas_imports(path.read_text(), _package(path)) - allowed
            assert not extra, f"{path.relative_to(REPO)} imports {extra}"


@pytest.mark.parametrize("line", [
    "import edgeatlas.agent.runners.onnxruntime",
    "from edgeatlas.agent.runners.llamacpp import reference_npz",
    "from edgeatlas import agent",
    "import edgeatlas",
    "from ...agent import loop",
    "import importlib; importlib.import_module('edgeatlas.agent.probe')",
    "from importlib import import_module\ndef f():\n    return import_module('edgeatlas.console.cli')",
    "__import__('edgeatlas.dashboard.api')",
])
def test_a_coordinator_module_that_imports_outside_its_rooms_is_caught(line):
    found = edgeatlas_imports(line, "edgeatlas.coordinator.services")
    assert found - ALLOWED["coordinator"], f"{line!r} was not caught: {found}"


def test_what_the_coordinator_may_import_passes():
    source = ("from edgeatlas.protos.errors import InvalidInput\nfrom edgeatlas import __version__\n"
              "from ..storage import Store\nimport importlib; importlib.import_module('edgeatlas.predictor.models')")
    assert edgeatlas_imports(source, "edgeatlas.coordinator.services") <= ALLOWED["coordinator"]


def test_every_room_folder_is_in_the_table():
    folders = {p.parent.name for p in REPO.glob("*/__init__.py")} - {"tests", "edgeatlas"}
    assert folders == set(ALLOWED), "a room folder DESIGN.md's table does not name (or the reverse)"


def test_agent_extra_pulls_no_heavy_stack():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    agent = project["dependencies"] + project["optional-dependencies"]["agent"]
    assert not [d for d in agent if d.split("=")[0].split("[")[0].lower().replace("-", "_") in HEAVY]
    assert all("==" in d or d.startswith("numpy") for d in agent)  # pinned


def test_agent_loop_loads_without_coordinator_modules():
    code = ("import sys, edgeatlas.agent.loop, edgeatlas.agent.probe, edgeatlas.agent.runners.onnxruntime;"
            "bad=[m for m in sys.modules if m.split('.')[0] in ('sqlmodel','sqlalchemy','onnx','torch',"
            "'streamlit','flwr','gguf') or m.startswith(('edgeatlas.coordinator', 'edgeatlas.console'))];"
            "print(bad); sys.exit(bool(bad))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
