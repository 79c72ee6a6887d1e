"""The compose file and Dockerfiles hang together (no Docker daemon on CI: checked as files)."""

import re
import tomllib

import yaml

from tests.conftest import REPO

DOCKER = REPO / "docker"


def test_compose_runs_two_coordinators_on_postgres_behind_the_balancer_with_agents():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) >= {"postgres", "coordinator", "coordinator-2", "balancer", "agent", "dashboard"}
    for name in ("coordinator", "coordinator-2"):
        env = services[name]["environment"]
        assert env["EDGEATLAS_DB"].startswith("postgresql://") and env["EDGEATLAS_ADVERTISE"] == f"{name}:50051"
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert "ports" not in services[name]  # reached through the balancer only
    assert all(p.startswith("127.0.0.1:") for p in services["balancer"]["ports"])
    assert all(p.startswith("127.0.0.1:") for p in services["dashboard"]["ports"])
    for name in ("agent", "dashboard"):
        assert services[name]["environment"]["EDGEATLAS_COORDINATOR"] == "balancer:50051"
    # the balancer's configuration names both replicas, health-checked on the port the image's CMD serves
    cfg = (DOCKER / "haproxy.cfg").read_text()
    for name in ("coordinator", "coordinator-2"):
        assert re.search(rf"^  server {name} {name}:50051 check check-proto h1 port 8081$", cfg, re.M)
    assert "--health-listen 0.0.0.0:8081" in (DOCKER / "coordinator.Dockerfile").read_text()
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
