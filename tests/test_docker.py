"""The compose file and Dockerfiles hang together (no Docker daemon on CI: checked as files)."""

import re
import tomllib

import yaml

from tests.conftest import REPO

DOCKER = REPO / "docker"


def test_compose_runs_coordinator_on_postgres_with_agents():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) >= {"postgres", "coordinator", "agent", "dashboard"}
    assert services["coordinator"]["environment"]["EDGEATLAS_DB"].startswith("postgresql://")
    assert services["coordinator"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert all(p.startswith("127.0.0.1:") for p in services["coordinator"]["ports"])
    assert all(p.startswith("127.0.0.1:") for p in services["dashboard"]["ports"])
    for name in ("coordinator", "agent", "dashboard"):
        build = services[name]["build"]
        assert (DOCKER / build["context"] / build["dockerfile"]).resolve().is_file()


def test_dockerfiles_copy_what_they_install_and_run_the_cli():
    rooms = {d.split("/")[0] for d in tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"].values()}
    for name, extra in (("coordinator", "coordinator"), ("agent", "agent"), ("dashboard", "dashboard")):
        text = (DOCKER / f"{name}.Dockerfile").read_text()
        copied = set(re.findall(r"^COPY (\w+) \w+$", text, re.M))
        assert rooms <= copied, f"{name}.Dockerfile misses {rooms - copied}: setuptools needs every package folder"
        assert all((REPO / c).is_dir() for c in copied)
        assert f'".[{extra}]"' in text
        assert {"coordinator": "edgeatlas coordinator serve", "agent": "edgeatlas agent run",
                "dashboard": "edgeatlas dashboard"}[name] in text
