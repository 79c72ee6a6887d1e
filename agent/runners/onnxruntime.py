"""ONNX Runtime SingleStream runner: warm-up, then ≥ min_iterations and ≥ min_duration_s of timed calls."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edgeatlas.protos.errors import InvalidInput
from edgeatlas.protos.records import Fidelity, LatencyStats, RunParams, RunResult, Setting

MAX_ITERATIONS = 1_000_000  # bounds the raw samples kept in memory
RTOL = 1e-3
ATOL_FRACTION = 1e-4  # of the reference's largest magnitude

_DTYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_,
}
_PRECISION = {"tensor(float)": "fp32", "tensor(float16)": "fp16", "tensor(bfloat16)": "bf16",
              "tensor(double)": "fp64", "tensor(int8)": "int8", "tensor(uint8)": "int8"}


def load_reference(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Reference npz → (inputs, outputs) keyed by tensor name; arrays keep batch 1 as stored."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            inputs = {k[len("input:"):]: npz[k] for k in npz.files if k.startswith("input:")}
            outputs = {k[len("output:"):]: npz[k] for k in npz.files if k.startswith("output:")}
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"reference data {Path(path).name} is not a readable npz: {exc}") from None
    return inputs, outputs


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


def compare(outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> Fidelity:
    worst, tolerance, detail = 0.0, 0.0, ""
    for name, ref in reference.items():
        got = outputs.get(name)
        if got is None or got.shape != ref.shape:
            return Fidelity(True, False, float("inf"), 0.0,
                            f"output {name}: shape {None if got is None else got.shape} != {ref.shape}")
        ref64, got64 = ref.astype(np.float64), got.astype(np.float64)
        atol = ATOL_FRACTION * max(1.0, float(np.abs(ref64).max(initial=0.0)))
        err = np.abs(got64 - ref64)
        excess = err - (atol + RTOL * np.abs(ref64))
        worst = max(worst, float(err.max(initial=0.0)))
        tolerance = max(tolerance, atol)
        if not np.all(np.isfinite(got64)) or np.any(excess > 0):
            detail = f"output {name}: max abs error {float(err.max()):.3g} exceeds rtol {RTOL} + atol {atol:.3g}"
            return Fidelity(True, False, worst, tolerance, detail)
    return Fidelity(True, True, worst, tolerance, "")


class OnnxRuntimeRunner:
    """One model, one setting; `run` follows RunParams and checks outputs against the reference."""

    def __init__(self, model_path: str | Path, setting: Setting, reference_path: str | Path | None = None):
        import onnxruntime as ort

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
            threads=setting.threads, precision=precision, scenario="single-stream",
            scenario_params=dict(setting.scenario_params))

    def timed_loop(self, params: RunParams) -> tuple[np.ndarray, bool]:
        """Latencies in ms of the timed calls, and whether the run met min iterations and duration."""
        run, feeds = self.session.run, self.feeds
        for _ in range(params.warmup_iterations):
            run(None, feeds)
        clock = time.perf_counter_ns
        samples = np.empty(MAX_ITERATIONS, dtype=np.int64)
        start = clock()
        min_end = start + int(params.min_duration_s * 1e9)
        max_end = start + int(params.max_duration_s * 1e9)
        n, min_n = 0, params.min_iterations
        while n < MAX_ITERATIONS:
            t0 = clock()
            run(None, feeds)
            t1 = clock()
            samples[n] = t1 - t0
            n += 1
            if (n >= min_n and t1 >= min_end) or t1 >= max_end:
                break
        met = n >= min_n and (clock() >= min_end or n == MAX_ITERATIONS)
        return samples[:n] / 1e6, met

    def check_fidelity(self) -> Fidelity:
        if not self.reference_outputs:
            return Fidelity(checked=False, passed=False, detail="no reference outputs for this model")
        names = list(self.reference_outputs)
        got = self.session.run(names, self.reference_inputs)
        return compare(dict(zip(names, got)), self.reference_outputs)

    def run(self, params: RunParams) -> RunResult:
        started_ms = int(time.time() * 1000)
        latencies_ms, met = self.timed_loop(params)
        stats = LatencyStats.from_values(latencies_ms, batch=self.setting.batch)
        fidelity = self.check_fidelity()
        reasons, kinds = [], []
        if not met:
            kinds.append("too-slow")
            reasons.append(f"stopped at max_duration_s={params.max_duration_s} after {stats.iterations} "
                           f"of {params.min_iterations} iterations")
        if fidelity.checked and not fidelity.passed:
            kinds.append("fidelity")
            reasons.append("fidelity check failed: " + fidelity.detail)
        return RunResult(setting=self.setting, stats=stats, fidelity=fidelity, valid=not reasons,
                         invalid_reason="; ".join(reasons), started_ms=started_ms, invalid_kind=",".join(kinds))
