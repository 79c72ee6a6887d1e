"""Federated DP training of the cost GNN: Opacus on the dense GNN, and two rounds on Flower's simulation engine."""

import json
import logging
import math

import numpy as np
import pytest
import torch

from edgeatlas.predictor.data import load_dir
from edgeatlas.predictor.datasets import nasbench201 as nb
from edgeatlas.predictor.federated import dpsgd
from edgeatlas.predictor.federated.plan import FederatedPlan
from edgeatlas.predictor.gnn import Batcher, PairCost
from edgeatlas.protos.errors import InvalidInput


@pytest.fixture(scope="module")
def sample():
    return load_dir(nb.SAMPLE_DIR)


def two_devices(sample, networks: int):
    device = sample.device_of()
    names = ["Google Pixel 3", "Intel Xeon Silver 4114"]
    return [sample.where((device == n) & (sample.graph < networks)).compact() for n in names]


def standardization(sample):
    hw = np.stack([s.features for s in sample.settings])
    return hw.mean(0), hw.std(0) + 1e-3


def test_the_gnn_is_one_opacus_can_train():
    from opacus.validators import ModuleValidator

    assert ModuleValidator.validate(PairCost(dpsgd.new_model()), strict=False) == []


def test_per_pair_and_batched_calls_are_the_same_function(sample):
    # Central training embeds each graph once and pairs it with many settings; DP-SGD calls the model once
    # per (graph, setting) pair, each padded to the widest graph. Both must give the same latency.
    part = two_devices(sample, 12)[1]
    mean, std = standardization(sample)
    model = dpsgd.new_model(3).eval()
    data = dpsgd.PairDataset(part, mean, std)
    per_pair = PairCost(model)(*torch.utils.data.default_collate([data[i] for i in range(len(data))])[:5])
    batcher = Batcher(part.graphs, part.settings)
    gids = np.unique(part.graph)
    x, adj, mask, node = batcher.graph_batch(gids)
    pg = np.searchsorted(gids, part.graph)
    hw = torch.from_numpy(((np.stack([s.features for s in part.settings]) - mean) / std).astype(np.float32))
    batched = model(model.node_embeddings(x, adj)[pg], model.hardware(hw)[part.setting],
                    batcher.log_roofline(node[pg], part.setting), mask[pg])
    assert torch.allclose(per_pair, batched, atol=1e-4)
    assert len(set(np.round(batched.detach().numpy(), 3))) > 1  # not a constant


def test_dpsgd_spends_what_its_accountant_says(sample):
    from opacus.accountants import RDPAccountant

    part = two_devices(sample, 30)[0]
    mean, std = standardization(sample)
    cfg = dpsgd.DPConfig(epsilon=4.0, epochs=1, total_epochs=2)
    model = dpsgd.new_model(0)
    first = dpsgd.train(model, part, mean, std, cfg)
    second = dpsgd.train(model, part, mean, std, cfg, history=first.history)
    assert first.loss_after < first.loss_before
    # an accountant of our own, over the steps the runs say they took, agrees with what they report
    rate = min(0.5, cfg.batch_size / len(part))
    mine = RDPAccountant()
    mine.history = [(first.noise_multiplier, rate, first.steps + second.steps)]
    assert second.epsilon == pytest.approx(mine.get_epsilon(cfg.delta, alphas=dpsgd.ALPHAS), rel=1e-6)
    assert first.epsilon < second.epsilon <= cfg.epsilon * 1.01


def test_an_empty_poisson_batch_is_stepped_on_with_its_noise(sample, caplog):
    """A device with two measurements samples each at rate 0.5: a step's batch is empty a quarter of the
    time. Every step still adds its noise and is accounted (the accountant assumes every step is taken), so
    the update is never exactly zero: once, all of a round's steps were skipped, and Flower's clipping of
    the zero update divided by its norm, failing the round."""
    caplog.set_level(logging.WARNING)
    part = two_devices(sample, 2)[0]
    assert len(part) == 2
    mean, std = standardization(sample)
    cfg = dpsgd.DPConfig(epsilon=4.0, epochs=1, total_epochs=2)
    planned = None
    for _ in range(20):  # with empty batches skipped, all 20 runs take both steps with probability 1e-5
        model = dpsgd.new_model(0)
        start = [p.detach().clone() for p in model.parameters()]
        result = dpsgd.train(model, part, mean, std, cfg)
        assert result.steps == 2 and result.history == [(result.noise_multiplier, 0.5, 2)]
        planned = planned or result.epsilon
        assert result.epsilon == planned
        assert sum(float(((p - q) ** 2).sum()) for p, q in zip(model.parameters(), start)) > 0
    # Opacus warns of an empty first batch; here it is expected, and not said to the device's log
    assert not [r for r in caplog.records if "First batch is empty" in r.getMessage()]


def test_bad_plans_are_refused_in_one_line():
    with pytest.raises(InvalidInput, match="epsilon must be a positive number"):
        FederatedPlan(clients=2, epsilon=0).check()
    with pytest.raises(InvalidInput, match="rounds must be at least 1"):
        FederatedPlan(clients=2, rounds=0).check()
    with pytest.raises(InvalidInput, match="unknown field"):
        FederatedPlan.from_json(json.dumps({"clients": 2, "epsilonn": 3}))
    with pytest.raises(InvalidInput, match="not JSON"):
        FederatedPlan.from_json("{")


@pytest.mark.slow
def test_two_rounds_two_clients_on_the_simulation_engine(sample, tmp_path):
    from dp_accounting import dp_event, rdp

    from edgeatlas.predictor.federated import simulation

    parts = two_devices(sample, 40)
    mean, std = standardization(sample)
    plan = FederatedPlan(clients=2, rounds=2, epsilon=6.0, update_noise=0.005, hw_mean=mean.tolist(),
                         hw_std=std.tolist())
    before = simulation.children()
    outcome = simulation.run(parts, plan, workdir=tmp_path)
    # Ray's workers and Flower's runtime are gone when the run returns
    assert {p for p in simulation.children() - before if p.is_running()} == set()

    assert [r.round for r in outcome.rounds] == [1, 2]
    for r in outcome.rounds:
        assert r.loss_after < r.loss_before  # each device's DP-SGD lowers its loss
    final = dpsgd.new_model()
    final.load_state_dict(outcome.state)
    start = dpsgd.new_model(plan.seed)
    datas = [dpsgd.PairDataset(part, mean, std) for part in parts]
    # the federation's objective, the devices' mean loss, falls
    assert np.mean([dpsgd.loss_of(final, d) for d in datas]) < np.mean([dpsgd.loss_of(start, d) for d in datas])

    # per measurement: what Opacus' accountant gives for the steps both rounds took, within the budget
    r1, r2 = outcome.rounds
    assert r1.epsilon_measurement < r2.epsilon_measurement <= plan.epsilon * 1.01
    for part in parts:
        rate = min(0.5, plan.batch_size / len(part))
        sigma = dpsgd.noise_multiplier(plan.epsilon, plan.delta, rate, plan.rounds * round(1 / rate))
        assert dpsgd.epsilon_of([(sigma, rate, plan.rounds * round(1 / rate))], plan.delta) <= plan.epsilon * 1.01
    # per device: Google's accountant, composed here, agrees with what the server's accountant recorded
    for r in outcome.rounds:
        acc = rdp.RdpAccountant()
        acc.compose(dp_event.GaussianDpEvent(plan.update_noise), r.round)
        assert r.epsilon_device == pytest.approx(acc.get_epsilon(plan.delta), rel=1e-3)
    assert math.isfinite(r2.update_norm) and r2.update_norm > 0


def test_a_ray_start_that_stalls_is_retried_and_its_processes_stopped(monkeypatch):
    import subprocess
    import sys

    import ray

    from edgeatlas.predictor.federated import simulation

    calls, left = [], []

    def init(**kwargs):
        calls.append(kwargs)
        if len(calls) == 1:  # as when Ray's GCS server is not up in time: its process is left running
            left.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]))
            raise RuntimeError("Timed out waiting for file /tmp/ray/session_x/gcs_server_port_y")

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    simulation.start_ray(2)
    assert len(calls) == 2 and calls[1]["num_cpus"] == 2
    assert left[0].poll() is not None  # stopped, by its PID
    assert set(sys.path) <= set(calls[1]["runtime_env"]["env_vars"]["PYTHONPATH"].split(":"))

    def stalls(**kwargs):  # Ray's raylet timeout is a bare Exception
        calls.append(kwargs)
        raise Exception("stalled")

    calls.clear()
    monkeypatch.setattr(ray, "init", stalls)
    with pytest.raises(RuntimeError, match="Ray did not start in 3 attempts: stalled"):
        simulation.start_ray(2)
    assert len(calls) == 3


@pytest.mark.slow
def test_more_devices_connected_than_a_round_asks_for(sample, tmp_path):
    from edgeatlas.predictor.federated import simulation

    device = sample.device_of()
    parts = [sample.where((device == n) & (sample.graph < 15)).compact()
             for n in ["Google Pixel 3", "Intel Xeon Silver 4114", "Samsung Galaxy S7"]]
    mean, std = standardization(sample)
    plan = FederatedPlan(clients=2, rounds=1, update_noise=0.005, hw_mean=mean.tolist(), hw_std=std.tolist())
    outcome = simulation.run(parts, plan, workdir=tmp_path)
    # two of the three train (the accountant insists on exactly the number it was told), and the round completes
    assert outcome.plan["clients"] == 2 and [r.round for r in outcome.rounds] == [1]


def test_a_device_trains_on_the_valid_onnx_results_it_keeps(zoo_dir, tmp_path):
    import hashlib
    import shutil

    from edgeatlas.predictor.federated.store import load_store
    from edgeatlas.protos.spec import SpecSheet

    with pytest.raises(InvalidInput, match="has measured nothing yet"):
        load_store(tmp_path)
    spec = SpecSheet.from_dict({"schema": "edgeatlas.spec/v1", "name": "test box", "device_class": "desktop",
                                "cpu": {"arch": "x86_64", "cores": 4, "threads": 8, "max_ghz": 3.0}})
    (tmp_path / "spec.json").write_text(spec.to_json())
    (tmp_path / "models").mkdir()
    lines = []
    for i, path in enumerate(sorted(zoo_dir.glob("*.onnx"))[:3]):
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        shutil.copy(path, tmp_path / "models" / f"{sha}.onnx")
        setting = {"target": "cpu", "runtime": "onnxruntime", "execution_provider": "CPUExecutionProvider",
                   "batch": 1, "threads": 1}
        lines.append({"model": path.stem, "model_sha256": sha, "model_format": "onnx", "setting": setting,
                      "stats": {"mean_ms": 1.0 + i}, "valid": True})
    lines.append(dict(lines[0], valid=False))  # outputs did not match the reference: not learned from
    lines.append(dict(lines[1], model_format="gguf"))
    lines.append(dict(lines[2], model_sha256="0" * 64))  # its model is no longer in the cache
    lines.append(dict(lines[0], setting=dict(lines[0]["setting"], scenario="server")))  # latency under load
    (tmp_path / "results.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    samples = load_store(tmp_path)
    assert len(samples) == 3 and samples.latency_ms.tolist() == [1.0, 2.0, 3.0]
    assert len(samples.graphs) == 3 and samples.settings[0].spec.name == "test box"
    assert samples.settings[0].threads == 1 and samples.settings[0].target == "cpu"
    (tmp_path / "results.jsonl").write_text(json.dumps(lines[0]) + "\n")
    with pytest.raises(InvalidInput, match="1 valid ONNX measurement"):
        load_store(tmp_path)


def test_a_device_learns_from_its_models_at_the_shapes_it_ran_them(tmp_path):
    """A model with a dynamic sequence length is featurized at the length in the task's spec (recorded beside
    the result), not at 1: the graph the device trains on is the one it timed."""
    import hashlib

    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgeatlas.predictor.federated.store import load_store
    from edgeatlas.protos import inputs
    from edgeatlas.protos.spec import SpecSheet

    weight = numpy_helper.from_array(np.ones((16, 16), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "seq",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", 16])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    (tmp_path / "models").mkdir()
    data = model.SerializeToString()
    sha = hashlib.sha256(data).hexdigest()
    (tmp_path / "models" / f"{sha}.onnx").write_bytes(data)
    onnx.checker.check_model(model)
    spec = SpecSheet.from_dict({"schema": "edgeatlas.spec/v1", "name": "box", "cpu": {"arch": "x86_64", "cores": 2}})
    (tmp_path / "spec.json").write_text(spec.to_json())
    at_128 = inputs.to_json([inputs.InputSpec("x", "float32", (inputs.BATCH, 128, 16))])
    setting = {"target": "cpu", "runtime": "onnxruntime", "batch": 1, "threads": 1}
    line = {"model": "seq", "model_sha256": sha, "model_format": "onnx", "setting": setting, "valid": True,
            "stats": {"mean_ms": 2.0}, "inputs_json": at_128}
    (tmp_path / "results.jsonl").write_text("\n".join(json.dumps(line) for _ in range(2)) + "\n")
    assert load_store(tmp_path).graphs.flops.sum() == 2 * 128 * 16 * 16
    (tmp_path / "results.jsonl").write_text("\n".join(json.dumps(dict(line, inputs_json="")) for _ in range(2)) + "\n")
    assert load_store(tmp_path).graphs.flops.sum() == 2 * 1 * 16 * 16  # an old line: the graph's own


def test_the_client_app_trains_in_process_and_its_update_is_clipped(sample, tmp_path, monkeypatch):
    """The ClientApp's logic without Ray: Flower's own app object, called with a train message as a SuperNode
    would, twice on one device (its accountant's history carried in the context's state)."""
    import pickle
    from dataclasses import replace

    from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict

    from flwr.supercore.task_identity import TaskIdentity

    from edgeatlas.predictor.federated.clientapp import app

    for key in ("_run_id", "_node_id", "_task_id"):  # what a SuperNode's process sets before it calls the app
        monkeypatch.setattr(TaskIdentity, key, 1)
    part = two_devices(sample, 30)[0]
    (tmp_path / "0.pkl").write_bytes(pickle.dumps(part))
    mean, std = standardization(sample)
    plan = replace(FederatedPlan(clients=1, rounds=2, epsilon=6.0, update_clip=0.05, hw_mean=mean.tolist(),
                                 hw_std=std.tolist()), partitions=str(tmp_path))
    context = Context(run_id=1, node_id=1, node_config={"partition-id": 0}, state=RecordDict(), run_config={})
    model = dpsgd.new_model(plan.seed)
    epsilons = []
    for _ in range(plan.rounds):
        start = {k: v.detach().clone() for k, v in model.state_dict().items()}
        msg = Message(content=RecordDict({"arrays": ArrayRecord(model.state_dict()), "config": ConfigRecord(
            {"plan": plan.to_json(), "clipping_norm": plan.update_clip})}), dst_node_id=1, message_type="train")
        reply = app(msg, context)
        assert not reply.has_error(), reply.error
        metrics = reply.content["metrics"]
        assert metrics["loss-after"] < metrics["loss-before"] and metrics["num-examples"] == 1
        model.load_state_dict(reply.content["arrays"].to_torch_state_dict())
        update = sum(((v - start[k]) ** 2).sum() for k, v in model.state_dict().items()) ** 0.5
        assert float(update) <= plan.update_clip * 1.001  # Flower's fixedclipping_mod bounded what leaves
        epsilons.append(metrics["epsilon"])
    assert 0 < epsilons[0] < epsilons[1] <= plan.epsilon * 1.01  # the second round composes with the first


def test_torch_geometric_layers_compute_what_the_hand_written_ones_did():
    """Checkpoints from before DenseSAGEConv load renamed and give the same answers: mean over neighbours
    through one linear map, plus the node itself through another, the bias on either."""
    from torch import nn
    from torch_geometric.nn import DenseSAGEConv

    from edgeatlas.predictor.gnn import upgrade_state

    torch.manual_seed(0)
    lin_l, lin_r = nn.Linear(8, 8), nn.Linear(8, 8, bias=False)
    h = torch.randn(2, 5, 8)
    adj = (torch.rand(2, 5, 5) > 0.5).float()
    adj = ((adj + adj.transpose(1, 2)) > 0).float()
    old = lin_l(torch.bmm(adj / adj.sum(-1, keepdim=True).clamp(min=1), h)) + lin_r(h)
    state = upgrade_state({"convs.0.lin_l.weight": lin_l.weight, "convs.0.lin_l.bias": lin_l.bias,
                           "convs.0.lin_r.weight": lin_r.weight})
    conv = DenseSAGEConv(8, 8)
    conv.load_state_dict({k.removeprefix("convs.0."): v for k, v in state.items()})
    assert torch.allclose(conv(h, adj), old, atol=1e-5)


def test_opacus_per_sample_gradients_through_torch_geometric_layers_are_exact(sample):
    """DP-SGD clips each measurement's own gradient: Opacus's per-sample gradients through DenseSAGEConv
    equal the gradients of each sample's loss computed alone."""
    from opacus import GradSampleModule

    part = two_devices(sample, 6)[0]
    mean, std = standardization(sample)
    data = dpsgd.PairDataset(part, mean, std)
    batch = torch.utils.data.default_collate([data[i] for i in range(4)])
    import copy

    model = dpsgd.new_model(5)
    plain = copy.deepcopy(model)  # Opacus's hooks stay on the modules it wraps: the reference is a copy
    wrapped = GradSampleModule(PairCost(model), loss_reduction="sum")
    ((wrapped(*batch[:5]) - batch[5]) ** 2).sum().backward()
    per_sample = {n.removeprefix("_module."): p.grad_sample for n, p in wrapped.named_parameters()
                  if "convs." in n or "norms." in n}
    assert {"cost.convs.0.lin_rel.weight", "cost.convs.2.lin_root.bias"} <= set(per_sample)
    for i in range(4):
        plain.zero_grad()
        one = [t[i:i + 1] for t in batch]
        ((PairCost(plain)(*one[:5]) - one[5]) ** 2).sum().backward()
        own = {f"cost.{n}": p.grad for n, p in plain.named_parameters()}
        for name, grads in per_sample.items():
            assert torch.allclose(grads[i], own[name], atol=1e-5), name
        assert own["cost.convs.0.lin_rel.weight"].abs().sum() > 0  # a gradient that flows, not zeros
