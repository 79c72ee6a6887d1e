"""A coordinator holding real data of every kind, shared by the dashboard's page tests and browser tests.

- fleet: one real agent process ran mlp-s and resnet-s; with k = 5 those cells are suppressed;
- imported: three NAS-Bench-201 networks with their published latencies on 12 devices;
- simulated: six virtual devices ran the same two zoo models, and the zoo's small llama (LLM figures);
- a predictor checkpoint trained on the bundled published sample, published as version 1.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgeatlas.v1 import admin_pb2
import streamlit as st
from streamlit.testing.v1 import AppTest

from edgeatlas.dashboard.serve import APP
from edgeatlas.protos.records import RunParams, Setting

from tests.conftest import CoordinatorProcess, cli_env, register, run_cli, stop_pid
from tests.integration.test_campaign import campaign_state, start_agents, wait_for

ZOO_MODELS = ["mlp-s", "resnet-s", "mobilenet-s"]
FLEET_MODELS = ["mlp-s", "resnet-s"]
LLM_MODEL = "llama-s"


@dataclass
class World:
    coordinator: CoordinatorProcess
    imported: list[str]       # NAS-Bench-201 model names
    workdir: Path


def agents(c: CoordinatorProcess) -> int:
    with c.admin() as admin:
        return len(admin.list_agents())


@pytest.fixture(scope="session")
def world(tmp_path_factory, prepared_zoo, gguf_zoo):
    from edgeatlas.console.imports import import_nasbench201
    from edgeatlas.predictor.datasets.nasbench201 import SAMPLE_DIR

    workdir = tmp_path_factory.mktemp("dashboard-world")
    c = CoordinatorProcess(workdir, workdir / "coordinator.db", k_anonymity=5).start()
    procs: list[subprocess.Popen] = []
    try:
        with c.admin() as admin:
            register(admin, prepared_zoo, ZOO_MODELS)
            register(admin, gguf_zoo, [LLM_MODEL])
            imported = import_nasbench201(admin, None, 3, workdir / "nb201")
        env = cli_env(EDGEATLAS_COORDINATOR=c.address, EDGEATLAS_ENROLL_TOKEN=c.enroll_token)
        with open(workdir / "fleet.log", "ab") as log:
            procs.append(subprocess.Popen([sys.executable, "-m", "edgeatlas", "fleet", "simulate", "--agents", "6",
                                           "--duration", "300"], stdout=log, stderr=subprocess.STDOUT, env=env))
        procs += start_agents(c, workdir, n=1, extra=("--label", "real=true"))
        wait_for(lambda: agents(c) >= 7, 90, "six simulated agents and one real one")
        with c.admin() as admin:
            sim = admin.create_campaign(FLEET_MODELS, {"label.simulated": "true"}, 1, Setting(), RunParams(),
                                        name="simulated").campaign_id
            llm = admin.create_campaign([LLM_MODEL], {"label.simulated": "true"}, 1,
                                        Setting(scenario_params={"prompt_tokens": "64", "output_tokens": "16"}),
                                        RunParams(), name="simulated-llm").campaign_id
            real = admin.create_campaign(FLEET_MODELS, {"label.real": "true"}, 1, Setting(threads=1),
                                         RunParams(warmup_iterations=2, min_iterations=10, min_duration_s=0.1),
                                         name="real").campaign_id
            adaptive = admin.create_campaign(ZOO_MODELS, {"label.simulated": "true"}, 1, Setting(), RunParams(),
                                             name="adaptive", adaptive=admin_pb2.Adaptive(budget=12)).campaign_id
        for cid in (sim, llm, real, adaptive):
            wait_for(lambda: campaign_state(c, cid).status == "done", 180, f"campaign {cid}")
        checkpoint = workdir / "predictor.pt"
        trained = run_cli("predictor", "train", "--data", str(SAMPLE_DIR), "--out", str(checkpoint),
                          "--members", "1", "--epochs", "1", "--max-networks", "80", timeout=600)
        assert trained.returncode == 0, trained.stderr
        published = run_cli("predictor", "publish", str(checkpoint), env=c.env())
        assert published.returncode == 0, published.stderr
        yield World(c, imported, workdir)
    finally:
        for proc in procs:
            stop_pid(proc)
        c.stop()


@pytest.fixture
def app(world, monkeypatch):
    def open_page(page: str, address: str | None = None, token: str | None = None) -> AppTest:
        monkeypatch.setenv("EDGEATLAS_COORDINATOR", address or world.coordinator.address)
        monkeypatch.setenv("EDGEATLAS_ADMIN_TOKEN", world.coordinator.admin_token if token is None else token)
        st.cache_data.clear()  # the pages cache reads for seconds, process-wide: start each test fresh
        at = AppTest.from_file(str(APP), default_timeout=120)
        at.query_params["page"] = page
        at.run()
        assert not at.exception, [e.message for e in at.exception]
        return at
    return open_page
