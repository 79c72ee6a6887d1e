"""Adaptive campaigns on a real database: rounds chosen by the surrogate, budget accounting, stop rules."""

import hashlib
import json
import math

import numpy as np
import pytest

from edgeatlas.coordinator.adaptive import AdaptiveCampaigns, AdaptivePlan
from edgeatlas.coordinator.predictions import samples_from_cells
from edgeatlas.coordinator.store import Store
from edgeatlas.protos.errors import Conflict, InvalidInput
from edgeatlas.protos.privacy import PrivacyParams
from edgeatlas.protos.records import RunParams, Setting
from edgeatlas.protos.spec import SpecSheet

from tests.coordinator.test_scheduling import vanish
from tests.coordinator.test_storage import report

MODELS = ["mlp-s", "resnet-s", "mobilenet-s", "transformer-s"]
SPECS = {
    "server": {"name": "server", "cpu": {"vendor": "amd", "model": "EPYC 7B13", "cores": 8, "max_ghz": 3.5},
               "memory": {"size_gb": 64, "bandwidth_gbs": 200}},
    "pi": {"name": "pi", "device_class": "board", "cpu": {"vendor": "broadcom", "model": "BCM2712", "arch": "arm64",
                                                          "cores": 4, "max_ghz": 2.4},
           "memory": {"size_gb": 8, "bandwidth_gbs": 17}},
    "laptop": {"name": "laptop", "device_class": "laptop",
               "cpu": {"vendor": "intel", "model": "Core i7-1165G7", "cores": 4, "max_ghz": 4.7},
               "memory": {"size_gb": 16, "bandwidth_gbs": 68}},
}
SLOWER = {"server": 1.0, "pi": 6.0, "laptop": 2.0}  # the synthetic truth: a device factor × a model's base


@pytest.fixture
def store(db_url, zoo_dir):
    s = Store(db_url)
    for name in MODELS:
        data = (zoo_dir / f"{name}.onnx").read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        s.put_blob(sha, len(data), [data])
        s.add_model(name, "onnx", sha, "", "{}")
    yield s
    s.close()


def fleet(store):
    return {name: store.enroll(name, SpecSheet.from_dict(spec), f"hash-{name}", {}, "t") for name, spec in SPECS.items()}


def adaptive(store, plan, privacy=None):
    return store.create_campaign("adaptive", store.resolve_models(MODELS), {}, 1, Setting(threads=1), RunParams(),
                                 privacy, adaptive_json=plan.check().to_json())


def measure_all(store, agents, n=[0]):
    """Every device runs what it was given; latency = its factor × the model's base (ms)."""
    base = {m.sha256: 1.0 + i for i, m in enumerate(store.resolve_models(MODELS))}
    ran = []
    for name, agent in agents.items():
        while (leased := store.lease(agent.agent_id)) is not None:
            n[0] += 1
            store.record_report(agent.agent_id, report(leased.task, f"r-{n[0]:08d}",
                                                       p50=SLOWER[name] * base[leased.task.model_sha256]))
            ran.append((leased.task.model_sha256, agent.hardware_class))
    return ran


def test_an_adaptive_campaign_runs_rounds_until_its_budget(store):
    agents = fleet(store)
    cid = adaptive(store, AdaptivePlan(budget=10))
    controller = AdaptiveCampaigns(store)
    assert store.campaign_tasks(cid) == []  # an adaptive campaign starts with no tasks
    assert "round 1: 8 cells after 0 measurements" in controller.advance(store.campaign(cid))
    first = store.campaign_tasks(cid)
    cells = {(t.model_sha256, t.hardware_class) for t in first}
    assert len(first) == len(cells) == 8  # no cell twice
    per_class = {hw: sum(t.hardware_class == hw for t in first) for hw in {a.hardware_class for a in agents.values()}}
    assert max(per_class.values()) <= 3  # spread over the three classes: ⌈8 / 3⌉ each at most
    assert controller.advance(store.campaign(cid)) == "round running"  # nothing new while a round runs
    assert len(store.campaign_tasks(cid)) == 8

    measure_all(store, agents)
    assert store.campaign(cid).status == "running"  # its controller, not the last report, ends it
    line = controller.advance(store.campaign(cid))
    assert line.startswith("round 2: 2 cells after 8 measurements (validation MAPE ")  # 10 - 8 left
    second = store.campaign_tasks(cid)[8:]
    assert not cells & {(t.model_sha256, t.hardware_class) for t in second}  # never a measured cell again
    measure_all(store, agents)
    assert "spent the budget of 10" in controller.advance(store.campaign(cid))
    row = store.campaign(cid)
    assert row.status == "done" and "budget of 10" in row.stop_reason
    rounds = store.rounds(cid)
    assert [(r.round, r.measurements, r.picked) for r in rounds] == [(1, 0, 8), (2, 8, 2), (3, 10, 0)]
    assert rounds[0].validation_mape is None and math.isfinite(rounds[1].validation_mape)
    assert len(store.campaign_tasks(cid)) == 10


def test_a_failed_task_counts_against_the_budget(store):
    agents = fleet(store)
    cid = adaptive(store, AdaptivePlan(budget=9))
    controller = AdaptiveCampaigns(store)
    controller.advance(store.campaign(cid))
    for n, agent in enumerate(agents.values()):
        while (leased := store.lease(agent.agent_id)) is not None:
            store.record_report(agent.agent_id, report(leased.task, f"f-{n}-{leased.task.id:06d}", ok=False))
    assert "round 2: 1 cells after 8 measurements" in controller.advance(store.campaign(cid))


def test_it_stops_at_the_target_error(store):
    agents = fleet(store)
    cid = adaptive(store, AdaptivePlan(budget=100, target_mape=999))
    controller = AdaptiveCampaigns(store)
    controller.advance(store.campaign(cid))
    measure_all(store, agents)
    assert "reached the target" in controller.advance(store.campaign(cid))
    assert store.campaign(cid).status == "done" and len(store.campaign_tasks(cid)) == 8


def test_each_device_spends_at_most_its_epsilon_budget(store):
    agents = fleet(store)
    cid = adaptive(store, AdaptivePlan(budget=100, epsilon_budget=1.0), PrivacyParams(epsilon=0.5))
    controller = AdaptiveCampaigns(store)
    controller.advance(store.campaign(cid))
    tasks = store.campaign_tasks(cid)
    assert len(tasks) == 6 and all(sum(t.agent_id == a.agent_id for t in tasks) == 2 for a in agents.values())
    measure_all(store, agents)
    assert "ε budget of 1" in controller.advance(store.campaign(cid))
    assert len(store.campaign_tasks(cid)) == 6


def test_a_queried_spec_weights_the_choice_toward_its_front(store):
    agents = fleet(store)
    spec = SpecSheet.from_dict(SPECS["pi"]).to_json()
    cid = adaptive(store, AdaptivePlan(budget=30, for_spec_json=spec))
    controller = AdaptiveCampaigns(store)
    controller.advance(store.campaign(cid))
    measure_all(store, agents)
    surrogate = controller._surrogate(False, cid)
    candidates = [(m.sha256, a.hardware_class) for m in store.resolve_models(MODELS) for a in agents.values()]
    samples = samples_from_cells(store, [(sha, hw, Setting(threads=1), 1.0) for sha, hw in candidates],
                                 controller.graphs)
    weight = controller._front_weight(surrogate, samples, candidates, Setting(threads=1),
                                      AdaptivePlan(budget=30, for_spec_json=spec))
    by_class = {hw: max(w for (_, h), w in zip(candidates, weight) if h == hw) for _, hw in candidates}
    # the queried sheet is the pi's own: its class weighs fully, every other class less
    assert by_class[agents["pi"].hardware_class] == pytest.approx(1.0)
    assert by_class[agents["server"].hardware_class] < 1.0 and by_class[agents["laptop"].hardware_class] < 1.0
    assert controller.advance(store.campaign(cid)).startswith("round 2:")


def test_a_class_whose_sheet_the_predictor_cannot_read_is_measured_first(store):
    agents = fleet(store)
    blind = SpecSheet.from_dict({"name": "mystery", "cpu": {"vendor": "x", "model": "unknown", "cores": 2}})
    mystery = store.enroll("mystery", blind, "hash-mystery", {}, "t")  # no clock, no bandwidth: no roofline
    cid = adaptive(store, AdaptivePlan(budget=30))
    controller = AdaptiveCampaigns(store)
    controller.advance(store.campaign(cid))
    measure_all(store, agents)
    surrogate = controller._surrogate(False, cid)
    models = [m.sha256 for m in store.resolve_models(MODELS)]
    classes = sorted({a.hardware_class for a in [*agents.values(), mystery]})
    candidates = [(sha, hw) for sha in models for hw in classes]
    groups = np.array([classes.index(hw) for _, hw in candidates])
    networks = np.array([models.index(sha) for sha, _ in candidates])
    unread = {i for i, (_, hw) in enumerate(candidates) if hw == mystery.hardware_class}
    picks = controller._choose(surrogate, candidates, 6, groups, networks, Setting(threads=1), AdaptivePlan(budget=30))
    assert set(picks[:4]) == unread  # nothing to be sure with there: all of them first
    assert len(set(picks)) == 6 and not set(picks[4:]) & unread  # then the GP's choice among the others
    assert set(controller._choose(surrogate, candidates, 3, groups, networks, Setting(threads=1),
                                  AdaptivePlan(budget=30))) < unread


def test_it_stops_when_every_cell_is_measured(store):
    agents = fleet(store)
    cid = adaptive(store, AdaptivePlan(budget=100))
    controller = AdaptiveCampaigns(store)
    while store.campaign(cid).status == "running":
        controller.advance(store.campaign(cid))
        measure_all(store, agents)
    assert store.campaign(cid).stop_reason == "measured every cell its devices can measure"
    assert len(store.campaign_tasks(cid)) == len(MODELS) * len(SPECS)


def test_bad_plans_and_mixed_fleets_are_refused(store):
    agents = fleet(store)
    with pytest.raises(InvalidInput, match="budget"):
        AdaptivePlan(budget=0).check()
    with pytest.raises(InvalidInput, match="for_spec"):
        AdaptivePlan(budget=5, for_spec_json="{not json").check()
    store.enroll("virtual", SpecSheet.from_dict({**SPECS["server"], "simulated": True}), "hash-v",
                 {"simulated": "true"}, "t", simulated=True)
    with pytest.raises(Conflict, match="simulated or from real devices"):
        adaptive(store, AdaptivePlan(budget=5))
    assert len(store.list_campaigns()) == 0 and agents
    assert json.loads(AdaptivePlan(budget=5, target_mape=10).to_json())["budget"] == 5


def test_it_waits_for_an_offline_class_instead_of_stopping(store):
    agents = fleet(store)
    cid = adaptive(store, AdaptivePlan(budget=100))
    controller = AdaptiveCampaigns(store)
    for name in ("server", "laptop"):
        vanish(store, agents[name].agent_id)
    while store.campaign(cid).status == "running":
        line = controller.advance(store.campaign(cid))
        if line.startswith("waiting"):
            break
        measure_all(store, {"pi": agents["pi"]})
    assert line == "waiting for a device of a class still to measure to come online"
    assert store.campaign(cid).status == "running"
    assert {t.hardware_class for t in store.campaign_tasks(cid)} == {agents["pi"].hardware_class}
    rounds = len(store.rounds(cid))
    assert controller.advance(store.campaign(cid)).startswith("waiting") and len(store.rounds(cid)) == rounds
    store.touch_agent(agents["laptop"].agent_id)  # back online
    store.flush_touches()
    assert controller.advance(store.campaign(cid)).startswith(f"round {rounds + 1}:")
