"""ONNX Runtime runner: loads one model for one setting; the task's scenario drives it (agent/scenarios/)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edgeatlas.agent.runners.fidelity import compare, load_reference, tolerance
from edgeatlas.agent.runners.results import judge, stats_of
from edgeatlas.agent.scenarios import Workload, run_scenario
from edgeatlas.protos import inputs, scenarios
from edgeatlas.protos.errors import InvalidInput
from edgeatlas.protos.records import EnergyStats, Fidelity, RunParams, RunResult, Setting


_ORT_DTYPES = {  # onnxruntime's NodeArg.type → numpy's name (protos/inputs.DTYPES)
    "tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
    "tensor(bfloat16)": "bfloat16", "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int16)": "int16",
    "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(uint16)": "uint16", "tensor(uint32)": "uint32",
    "tensor(uint64)": "uint64", "tensor(bool)": "bool",
}
# The processor each of ONNX Runtime's execution providers runs kernels on, from its documentation (OpenVINO's
# and DirectML's defaults: the CPU, the GPU). A task's setting records it, and it picks the energy meter.
_PROVIDER_TARGETS = {
    **dict.fromkeys(("CPU", "Dnnl", "OpenVINO", "Xnnpack", "ACL", "ArmNN"), "cpu"),
    **dict.fromkeys(("CUDA", "Tensorrt", "NvTensorRTRTX", "ROCM", "MIGraphX", "Dml", "WebGpu", "Js"), "gpu"),
    **dict.fromkeys(("QNN", "Nnapi", "CoreML", "VitisAI", "Rknpu", "CANN"), "npu"),
}


def provider_target(provider: str) -> str:
    """`cpu`, `gpu` or `npu` for one of ONNX Runtime's execution providers; `other` for one it does not
    document (which processor it drives is not known here, and is not guessed)."""
    return _PROVIDER_TARGETS.get(provider.removesuffix("ExecutionProvider"), "other")


_IO_PRECISION = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16", "float64": "fp64"}


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


def declared(session, model_path: str | Path) -> tuple[list[inputs.ModelInput], list[str], str]:
    """(inputs, output names, precision) of a loaded model. From the graph where the onnx package is
    installed (token vocabularies, the weights' precision); otherwise from the session's own signature,
    with the precision of its floating-point inputs and outputs."""
    try:
        import onnx
    except ImportError:
        onnx = None
    if onnx is not None:
        from edgeatlas.protos import onnx_model
        try:
            model = onnx.load(str(model_path), load_external_data=False)
        except Exception:  # the session loaded it: whatever onnx cannot parse, the signature still says
            model = None
        if model is not None:
            found, outputs = onnx_model.declared_inputs(model)
            return found, outputs, onnx_model.precision(model)
    return signature(session)


def signature(session) -> tuple[list[inputs.ModelInput], list[str], str]:
    """(inputs, output names, precision of the floating-point inputs and outputs) from the session alone."""
    found = []
    for arg in session.get_inputs():
        dims = tuple(inputs.declared_dim(d) for d in arg.shape)
        found.append(inputs.ModelInput(arg.name, _ORT_DTYPES.get(arg.type, arg.type), dims))
    io = [_ORT_DTYPES.get(a.type) for a in list(session.get_inputs()) + list(session.get_outputs())]
    precision = next((_IO_PRECISION[t] for t in io if t in _IO_PRECISION), "unknown")
    return found, [o.name for o in session.get_outputs()], precision


def check_input_memory(specs, batch: int, available: int | None = None) -> None:
    """Inputs at the task's batch that would take more than half the free memory are refused before they
    are made: a spec comes from elsewhere, and the device's memory is its owner's."""
    need = inputs.nbytes(specs, batch)
    if available is None:
        try:
            import psutil
            available = psutil.virtual_memory().available
        except ImportError:
            return
    if need > available // 2:
        raise InvalidInput(f"the inputs take {need / 2**20:.0f} MiB at batch {batch}; this device has "
                           f"{available / 2**20:.0f} MiB free: run a smaller batch or shape")


def specs_for(found: list[inputs.ModelInput], outputs: list[str], given, reference: dict) -> tuple:
    """The specs a run feeds: given ones (a model reference's), resolved from a request (the CLI's), or
    — for a model registered before specs existed — the shapes of its reference inputs."""
    if isinstance(given, tuple) and given:
        return given
    request = given if isinstance(given, inputs.InputRequest) else inputs.InputRequest()
    if request.empty and reference:
        by_name = {m.name: m for m in found}

        def batched(name: str, shape: tuple) -> tuple:
            m = by_name.get(name)
            dynamic0 = m is not None and bool(m.dims) and not isinstance(m.dims[0], int)
            return (inputs.BATCH,) + tuple(shape[1:]) if shape and dynamic0 else tuple(shape)

        request = inputs.InputRequest(shapes={k: batched(k, v.shape) for k, v in reference.items()},
                                      values={k: "sample" for k in reference}, samples=dict(reference))
    return inputs.resolve(found, request, outputs)


class OnnxRuntimeRunner:
    """One model, one setting; `run` feeds the inputs its spec names and checks outputs against the reference.

    `inputs` is the model reference's spec, or a request from the command line resolved against the model;
    none: the model's own static shapes (a dynamic one is refused, never run at 1)."""

    def __init__(self, model_path: str | Path, setting: Setting, reference_path: str | Path | None = None,
                 inputs_given: tuple | inputs.InputRequest | None = None, precision: str | None = None):
        import onnxruntime as ort

        self.values = scenarios.check(setting.scenario, setting.scenario_params)  # bad parameters: before loading
        self.session = open_session(model_path, setting)
        self.reference_inputs: dict[str, np.ndarray] = {}
        self.reference_outputs: dict[str, np.ndarray] = {}
        if reference_path:
            self.reference_inputs, self.reference_outputs = load_reference(reference_path)
        # a task's spec and precision come with its model reference: the graph need not be parsed again
        # (onnx.load would hold a second copy of the weights)
        known = isinstance(inputs_given, tuple) and bool(inputs_given) and bool(precision)
        found, outputs, graph_precision = (signature(self.session) if known
                                           else declared(self.session, model_path))
        self.specs = specs_for(found, outputs, inputs_given, self.reference_inputs)
        batch = setting.batch
        inputs.check_batch(self.specs, batch, f"model {Path(model_path).name}")
        check_input_memory(self.specs, batch)
        samples = {**getattr(inputs_given, "samples", {}), **self.reference_inputs}
        if self.reference_inputs:
            missing = [s.name for s in self.specs if s.name not in self.reference_inputs]
            if missing:
                raise InvalidInput(f"the reference data has no input {missing[0]!r}")
            self.feeds = inputs.tile(self.specs, self.reference_inputs, batch)
            self.check_feeds = dict(self.reference_inputs)
        else:
            self.feeds = inputs.feeds(self.specs, batch, samples=samples)
            self.check_feeds = {}
        self.feedback = [(name, outputs.index(out)) for name, out in inputs.feedback_pairs(self.specs)]
        self.setting = Setting(
            target=setting.target, runtime="onnxruntime", runtime_version=ort.__version__,
            execution_provider=self.session.get_providers()[0], batch=batch,
            threads=setting.threads, precision=precision or graph_precision, scenario=setting.scenario,
            scenario_params=dict(setting.scenario_params))
        self._first_run()

    def _first_run(self) -> None:
        """One untimed run at the task's shapes: a model that fails at them fails here, in one line."""
        try:
            outs = self.session.run(None, self.feeds)
        except Exception as exc:  # onnxruntime's Fail / InvalidArgument / RuntimeException
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise InvalidInput(f"the model does not run at inputs {inputs.describe(self.specs)}: "
                               f"{first[:300]}") from None
        for name, idx in self.feedback:
            if outs[idx].shape != self.feeds[name].shape:
                raise InvalidInput(f"feedback: output {self.session.get_outputs()[idx].name} has shape "
                                   f"{outs[idx].shape}, input {name} {self.feeds[name].shape}")

    def check_fidelity(self) -> Fidelity:
        if not self.reference_outputs:
            return Fidelity(checked=False, passed=False, detail="no reference outputs for this model")
        names = list(self.reference_outputs)
        got = self.session.run(names, self.check_feeds)
        return compare(dict(zip(names, got)), self.reference_outputs, **tolerance(self.setting.precision))

    def workload(self) -> Workload:
        """One inference per call; the feeds it uses are `self.live` (recurrent state changes there)."""
        run, feeds = self.session.run, dict(self.feeds)
        self.live = feeds
        if not self.feedback:
            return Workload(lambda: run(None, feeds), self.setting.batch)
        pairs = self.feedback

        def step():  # recurrent state: this run's output is the next run's input
            outs = run(None, feeds)
            for name, idx in pairs:
                feeds[name] = outs[idx]
        return Workload(step, self.setting.batch)

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
