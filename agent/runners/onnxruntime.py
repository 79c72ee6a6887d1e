"""ONNX Runtime runner: loads one model for one setting; the task's scenario drives it (agent/scenarios/)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edgeatlas.agent.runners.fidelity import compare, load_reference
from edgeatlas.agent.runners.results import judge, stats_of
from edgeatlas.agent.scenarios import Workload, run_scenario
from edgeatlas.protos import scenarios
from edgeatlas.protos.errors import InvalidInput
from edgeatlas.protos.records import EnergyStats, Fidelity, RunParams, RunResult, Setting


_DTYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_,
}
_PRECISION = {"tensor(float)": "fp32", "tensor(float16)": "fp16", "tensor(bfloat16)": "bf16",
              "tensor(double)": "fp64", "tensor(int8)": "int8", "tensor(uint8)": "int8"}


def open_session(model_path: str | Path, setting: Setting):
    """An InferenceSession for the setting, or one readable InvalidInput line."""
    import onnxruntime as ort

    path = Path(model_path)
    if not path.is_file():
        raise InvalidInput(f"model file {path} does not exist")
    available = ort.get_available_providers()
    if setting.execution_provider not in available:
        raise InvalidInput(f"execution provider {setting.execution_provider} is not available "
                           f"(this device has {', '.join(available)})")
    options = ort.SessionOptions()
    options.intra_op_num_threads = setting.threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=[setting.execution_provider])
    except Exception as exc:  # ORT raises several unrelated types for a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidInput(f"cannot load model {path.name}: {first[:300]}") from None


def synthetic_inputs(session, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Fixed pseudo-random inputs for a model that came without reference data."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for i, arg in enumerate(session.get_inputs()):
        dtype = _DTYPES.get(arg.type)
        if dtype is None:
            raise InvalidInput(f"input {arg.name} has type {arg.type}, which the runner cannot feed")
        shape = [batch if j == 0 and not isinstance(d, int) else (d if isinstance(d, int) and d > 0 else 1)
                 for j, d in enumerate(arg.shape)]
        if np.issubdtype(dtype, np.floating):
            feeds[arg.name] = rng.standard_normal(shape).astype(dtype)
        else:
            feeds[arg.name] = rng.integers(0, 2, size=shape).astype(dtype)
    return feeds


def tile_batch(feeds: dict[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
    """Repeats batch-1 inputs along axis 0 to the task's batch."""
    if batch == 1:
        return feeds
    return {k: np.repeat(v, batch, axis=0) for k, v in feeds.items()}


def model_precision(session) -> str:
    """The first precision among inputs then outputs (token ids are int64, the math is not)."""
    for arg in list(session.get_inputs()) + list(session.get_outputs()):
        if arg.type in _PRECISION:
            return _PRECISION[arg.type]
    return "unknown"


class OnnxRuntimeRunner:
    """One model, one setting; `run` follows RunParams and checks outputs against the reference."""

    def __init__(self, model_path: str | Path, setting: Setting, reference_path: str | Path | None = None):
        import onnxruntime as ort

        self.values = scenarios.check(setting.scenario, setting.scenario_params)  # bad parameters: before loading
        self.session = open_session(model_path, setting)
        self.reference_inputs: dict[str, np.ndarray] = {}
        self.reference_outputs: dict[str, np.ndarray] = {}
        if reference_path:
            self.reference_inputs, self.reference_outputs = load_reference(reference_path)
        batch = setting.batch
        feeds = (tile_batch(self.reference_inputs, batch) if self.reference_inputs
                 else synthetic_inputs(self.session, batch))
        self.feeds = feeds
        precision = model_precision(self.session)
        self.setting = Setting(
            target=setting.target, runtime="onnxruntime", runtime_version=ort.__version__,
            execution_provider=self.session.get_providers()[0], batch=batch,
            threads=setting.threads, precision=precision, scenario=setting.scenario,
            scenario_params=dict(setting.scenario_params))

    def check_fidelity(self) -> Fidelity:
        if not self.reference_outputs:
            return Fidelity(checked=False, passed=False, detail="no reference outputs for this model")
        names = list(self.reference_outputs)
        got = self.session.run(names, self.reference_inputs)
        return compare(dict(zip(names, got)), self.reference_outputs)

    def workload(self) -> Workload:
        run, feeds = self.session.run, self.feeds
        return Workload(lambda: run(None, feeds), self.setting.batch)

    def run(self, params: RunParams, meter=None) -> RunResult:
        started_ms = int(time.time() * 1000)
        scenario_run = run_scenario(self.setting.scenario, self.values, self.workload(), params, meter)
        stats = stats_of(scenario_run, self.setting.batch)
        energy = None
        if scenario_run.energy_j is not None:
            energy = EnergyStats(meter.name, scenario_run.energy_j, scenario_run.wall_s,
                                 scenario_run.samples * self.setting.batch)
        return judge(self.setting, stats, self.check_fidelity(), scenario_run, params, started_ms,
                     energy=energy, raw_ms=scenario_run.latencies_ms)
