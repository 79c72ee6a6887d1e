"""The zoo of real architectures (console/real_zoo.py): the published networks' parameters and MACs counted
from their ONNX graphs (hand counts: the torch module's own, less what export folds), an int8 variant
labelled int8, and a campaign over them that fills the heat-map."""

import pytest

from edgeatlas.agent.runners import ModelFacts, make_runner
from edgeatlas.console.models import prepare, summary_json
from edgeatlas.console.real_zoo import BY_NAME, build_real_zoo, flags_of
from edgeatlas.protos.inputs import request_from_argv
from edgeatlas.protos.records import RunParams, Setting

pytestmark = pytest.mark.slow
NAMES = ["resnet-18", "mobilenet-v2", "efficientnet-b0", "vit-tiny", "bert-mini", "resnet-18-int8", "resnet-18-qdq"]
# Multiply-accumulates at 224×224 (seq 128 for BERT-mini) as their papers and torchvision's tables give them.
PUBLISHED_MACS = {"resnet-18": 1.82e9, "mobilenet-v2": 0.300e9, "efficientnet-b0": 0.39e9, "vit-tiny": 1.26e9}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    out = tmp_path_factory.mktemp("real-zoo")
    paths = build_real_zoo(out, NAMES)
    return {p.stem: prepare(p, p.stem, request_from_argv(flags_of(p.stem))) for p in paths}


@pytest.mark.parametrize("name", ["resnet-18", "mobilenet-v2", "efficientnet-b0", "vit-tiny", "bert-mini"])
def test_parameters_are_the_modules_less_the_batch_norms_export_folds(zoo, name):
    import torch

    module, _ = BY_NAME[name].build()
    torch_params = sum(p.numel() for p in module.parameters())
    if BY_NAME[name].parameters:
        assert torch_params == BY_NAME[name].parameters  # the published count: the architecture is the real one
    # a BatchNorm folded into its Conv leaves a bias of C in place of its weight and bias of 2C; BERT's
    # pooler is not on the path to the hidden states the zoo exports, so export drops it
    folded = sum(m.num_features for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d))
    unused = sum(p.numel() for n, p in module.named_parameters() if ".pooler." in f".{n}")
    # what is left: constants export folds (a token-type embedding of zeros becomes one row, ...), < 1 %
    assert zoo[name].summary["parameters"] == pytest.approx(torch_params - folded - unused, rel=0.01)
    assert zoo[name].summary["uncounted"] == {}


@pytest.mark.parametrize("name", sorted(PUBLISHED_MACS))
def test_macs_are_the_published_ones(zoo, name):
    assert zoo[name].summary["macs"] == pytest.approx(PUBLISHED_MACS[name], rel=0.04)


@pytest.mark.parametrize("name", ["resnet-18-int8", "resnet-18-qdq"])  # dynamic, static quantization
def test_the_int8_variant_is_labelled_int8_and_runs(zoo, tmp_path, name):
    p, fp32 = zoo[name], zoo["resnet-18"]
    assert p.summary["precision"] == "int8" and fp32.summary["precision"] == "fp32"
    # the same weights, in int8; the float export shares equal bias tensors (its convolutions' folded
    # BatchNormalizations of random weights are all zeros: Identity nodes), the static quantizer writes each
    # convolution its own int32 bias (ResNet-18: 3,840 more, of 11.7 million)
    assert p.summary["parameters"] == pytest.approx(fp32.summary["parameters"], rel=1e-3)
    assert p.size_bytes < fp32.size_bytes / 3
    ref = tmp_path / "ref.npz"
    ref.write_bytes(p.reference_npz)
    result = make_runner(str(p.path), Setting(threads=1), str(ref), ModelFacts(p.inputs, "int8")).run(
        RunParams(warmup_iterations=1, min_iterations=3, min_duration_s=0.05))
    assert result.setting.precision == "int8" and result.fidelity.passed, result.fidelity.detail


def test_a_campaign_over_the_real_zoo_fills_the_heatmap(coordinator, zoo, tmp_path):
    from tests.conftest import stop_pid
    from tests.integration.test_campaign import enrolled, start_agents, wait_for

    procs = start_agents(coordinator, tmp_path, n=1, extra=["--trusted"])
    try:
        with coordinator.admin() as admin:
            for p in zoo.values():
                admin.add_model(p.path, p.name, p.reference_npz, summary_json(p), p.format, p.inputs_json)
        wait_for(lambda: enrolled(coordinator, 1), 60, "the agent to enroll")
        with coordinator.admin() as admin:
            cid = admin.create_campaign(NAMES, {}, 1, Setting(threads=2),
                                        RunParams(warmup_iterations=2, min_iterations=64, min_duration_s=0.2)
                                        ).campaign_id

        def finished():
            with coordinator.admin() as admin:
                c = admin.campaign(cid)
            return c.status == "done" and c
        done = wait_for(finished, 600, "the campaign")
        assert (done.counts.done, done.counts.failed) == (len(NAMES), 0), list(done.failures)
        with coordinator.admin() as admin:
            cells = {c.model_name: c for c in admin.heatmap("latency_p50_ms").cells}
        assert set(NAMES) <= set(cells), list(done.failures)
        assert cells["resnet-18-int8"].setting.precision == "int8"
        assert cells["resnet-18"].metrics["latency_p50_ms"].value > cells["mobilenet-v2"].metrics[
            "latency_p50_ms"].value  # 6× the MACs
    finally:
        for proc in procs:
            stop_pid(proc)
