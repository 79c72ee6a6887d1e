"""Imports flow one way (DESIGN.md): the agent never needs the coordinator's or the predictor's stack."""

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.conftest import REPO

HEAVY = ("torch", "torch_geometric", "flwr", "streamlit", "opacus")
ALLOWED = {
    "protos": {"protos"},
    "agent": {"protos", "agent"},
    "coordinator": {"protos", "coordinator", "agent", "predictor"},  # the agent's runner fixes reference outputs
    "predictor": {"protos", "predictor"},
    "dashboard": {"protos", "dashboard"},  # the admin API only: never the coordinator's database
}


def edgeatlas_imports(path: Path) -> set[str]:
    rooms = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
            [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
        for name in names:
            parts = name.split(".")
            if parts[0] == "edgeatlas" and len(parts) > 1:
                rooms.add({"v1": "protos"}.get(parts[1], parts[1]))
    return rooms


def test_rooms_import_only_what_design_allows():
    for room, allowed in ALLOWED.items():
        for path in (REPO / room).rglob("*.py"):
            if "_pb2" in path.name:
                continue
            extra = edgeatlas_imports(path) - allowed - {"__version__"}
            assert not extra, f"{path.relative_to(REPO)} imports {extra}"


def test_agent_extra_pulls_no_heavy_stack():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    agent = project["dependencies"] + project["optional-dependencies"]["agent"]
    assert not [d for d in agent if d.split("=")[0].split("[")[0].lower().replace("-", "_") in HEAVY]
    assert all("==" in d or d.startswith("numpy") for d in agent)  # pinned


def test_agent_loop_loads_without_coordinator_modules():
    code = ("import sys, edgeatlas.agent.loop, edgeatlas.agent.probe, edgeatlas.agent.runners.onnxruntime;"
            "bad=[m for m in sys.modules if m.split('.')[0] in ('sqlmodel','sqlalchemy','onnx','torch',"
            "'streamlit','flwr') or m.startswith('edgeatlas.coordinator')]; print(bad); sys.exit(bool(bad))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
