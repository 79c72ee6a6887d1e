import numpy as np
import pytest

from edgeatlas.agent.runners import make_runner
from edgeatlas.protos.errors import InvalidInput
from edgeatlas.protos.records import LatencyStats, RunParams, Setting

QUICK = RunParams(warmup_iterations=2, min_iterations=20, min_duration_s=0.05, max_duration_s=30)


def test_stats_from_known_values():
    s = LatencyStats.from_values(np.arange(1, 101, dtype=float), batch=4)
    assert s.p50_ms == pytest.approx(50.5)
    assert s.p90_ms == pytest.approx(90.1)
    assert s.p99_ms == pytest.approx(99.01)
    assert (s.min_ms, s.max_ms, s.iterations) == (1, 100, 100)
    assert s.mean_ms == pytest.approx(50.5)
    assert s.throughput_ips == pytest.approx(4 * 100 / (5050 / 1000))


def test_runner_meets_its_rules_and_passes_fidelity(prepared_zoo, zoo_dir):
    runner = make_runner(str(zoo_dir / "resnet-s.onnx"), Setting(threads=1, batch=2),
                         str(zoo_dir / "resnet-s.ref.npz"))
    result = runner.run(RunParams(warmup_iterations=2, min_iterations=30, min_duration_s=0.3))
    assert result.valid, result.invalid_reason
    assert result.stats.iterations >= 30 and result.stats.duration_s >= 0.25
    assert result.fidelity.checked and result.fidelity.passed
    st = result.setting
    assert (st.batch, st.threads, st.precision, st.execution_provider) == (2, 1, "fp32", "CPUExecutionProvider")
    assert st.runtime_version  # onnxruntime version recorded beside the numbers
    assert result.stats.p50_ms <= result.stats.p99_ms


def test_wrong_outputs_make_the_result_invalid(prepared_zoo, zoo_dir, tmp_path):
    with np.load(zoo_dir / "mlp-s.ref.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    key = next(k for k in arrays if k.startswith("output:"))
    arrays[key] = arrays[key] + 0.5  # a device that computes the wrong thing
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    result = make_runner(str(zoo_dir / "mlp-s.onnx"), Setting(threads=1), str(bad)).run(QUICK)
    assert not result.valid
    assert result.fidelity.checked and not result.fidelity.passed
    assert "fidelity" in result.invalid_reason


def test_a_quantized_models_fidelity_allows_its_rounding_and_not_a_wrong_answer():
    """A statically quantized model's reference is an unoptimised run (QuantizeLinear, a float kernel,
    DequantizeLinear); the device runs fused integer kernels (QLinearConv) that round differently, a step
    in 256 per layer. That passes for an int8 model and would not for a float one; a wrong answer fails both."""
    from edgeatlas.agent.runners.fidelity import compare, tolerance

    ref = {"y": np.linspace(-1.0, 1.0, 1000, dtype=np.float32)}
    rounded = {"y": ref["y"] + 3 * 2 / 255}  # three steps of an 8-bit range
    assert compare(rounded, ref, **tolerance("int8")).passed and not compare(rounded, ref, **tolerance("fp32")).passed
    wrong = {"y": ref["y"] + 0.25}
    assert not compare(wrong, ref, **tolerance("int8")).passed and not compare(wrong, ref, **tolerance(None)).passed


def test_a_statically_quantized_network_runs_fused_and_passes_fidelity(tmp_path):
    import onnx

    from edgeatlas.console.models import prepare
    from edgeatlas.predictor.datasets.zoo import build
    from edgeatlas.protos.inputs import request_from_flags

    path = tmp_path / "q.onnx"
    onnx.save(build("resnet:16-32-64:b2:s64:qdq"), str(path))
    prepared = prepare(path, "q", request_from_flags(["input=batchx3x64x64"]))
    assert prepared.summary["precision"] == "int8"
    (tmp_path / "q.npz").write_bytes(prepared.reference_npz)
    result = make_runner(str(path), Setting(threads=1), str(tmp_path / "q.npz")).run(
        RunParams(warmup_iterations=2, min_iterations=64, min_duration_s=0.1, max_duration_s=30))
    assert result.valid, result.invalid_reason
    assert result.fidelity.checked and result.fidelity.passed and result.setting.precision == "int8"


def test_max_duration_cuts_an_invalid_run(prepared_zoo, zoo_dir):
    params = RunParams(warmup_iterations=0, min_iterations=10**6, min_duration_s=0.01, max_duration_s=0.2)
    result = make_runner(str(zoo_dir / "mlp-s.onnx"), Setting(threads=1)).run(params)
    assert not result.valid and "min queries not met" in result.invalid_reason
    assert (result.outcome.driver, result.outcome.verdict) == ("loadgen", "INVALID")
    assert result.invalid_kind == "loadgen"
    assert result.stats.iterations < 10**6
    assert not result.fidelity.checked  # no reference given: said so, not faked


def test_corrupt_model_is_one_readable_line(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x01garbage" * 10)
    with pytest.raises(InvalidInput) as info:
        make_runner(str(bad), Setting())
    assert "broken.onnx" in str(info.value) and "\n" not in str(info.value)


def test_unavailable_provider_is_refused(zoo_dir):
    import onnxruntime as ort

    missing = next(p for p in ("CUDAExecutionProvider", "QNNExecutionProvider", "CoreMLExecutionProvider")
                   if p not in ort.get_available_providers())
    with pytest.raises(InvalidInput, match=f"{missing} is not available"):
        make_runner(str(zoo_dir / "mlp-s.onnx"), Setting(execution_provider=missing))


def test_each_provider_names_the_processor_it_runs_on():
    """The setting's target follows the provider (a CUDA run is a GPU's number and NVML meters it); a
    provider ONNX Runtime does not document is `other`, not guessed."""
    from edgeatlas.agent.runners.onnxruntime import provider_target
    from edgeatlas.console.fingerprints import setting_for

    assert [provider_target(p) for p in ("CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider",
                                         "QNNExecutionProvider", "OpenVINOExecutionProvider", "MadeUpProvider")] == \
        ["cpu", "gpu", "gpu", "npu", "cpu", "other"]
    assert setting_for("CUDAExecutionProvider", 1).target == "gpu"
    assert setting_for("CPUExecutionProvider", 1).target == "cpu"


def test_unknown_runtime_is_refused(zoo_dir):
    with pytest.raises(InvalidInput, match="runtime 'tensorrt'"):
        make_runner(str(zoo_dir / "mlp-s.onnx"), Setting(runtime="tensorrt"))
