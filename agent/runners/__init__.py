"""Benchmark runners, one file each; a new runtime is one file and one line in RUNNERS."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from edgeatlas.protos.inputs import InputRequest
from edgeatlas.protos.records import RunParams, RunResult, Setting

# Loading a model takes about its file's size in memory, plus the runtime's working set.
MEMORY_FACTOR = 1.5
MEMORY_SLACK_BYTES = 256 << 20


class Runner(Protocol):
    """Loads one model for one setting; `run` measures it under the task's scenario and rules."""

    setting: Setting

    def run(self, params: RunParams, meter=None) -> RunResult: ...


def _onnxruntime(model_path: str, setting: Setting, reference_path: str | None, model: ModelFacts) -> Runner:
    from edgeatlas.agent.runners.onnxruntime import OnnxRuntimeRunner
    return OnnxRuntimeRunner(model_path, setting, reference_path, model.inputs, model.precision)


def _llamacpp(model_path: str, setting: Setting, reference_path: str | None, model: ModelFacts) -> Runner:
    from edgeatlas.agent.runners.llamacpp import LlamaCppRunner
    return LlamaCppRunner(model_path, setting, reference_path)


@dataclass(frozen=True)
class ModelFacts:
    """What the model reference says beyond its bytes: the input spec (or, from the command line, a request
    to resolve against the model) and the precision its graph computes in."""

    inputs: tuple | InputRequest | None = None
    precision: str | None = None

    @classmethod
    def of(cls, ref) -> "ModelFacts":
        """From a ModelRef (protos/records.py); a malformed spec is one InvalidInput line."""
        import json

        from edgeatlas.protos.inputs import from_json
        try:
            summary = json.loads(ref.summary_json or "{}")
        except json.JSONDecodeError:
            summary = {}
        precision = summary.get("precision") if isinstance(summary, dict) else None
        return cls(from_json(ref.inputs_json) or None, precision if isinstance(precision, str) else None)


RUNNERS: dict[str, Callable[[str, Setting, str | None, ModelFacts], Runner]] = {
    "onnxruntime": _onnxruntime,
    "llama.cpp": _llamacpp,
}
FORMAT_RUNTIME = {"onnx": "onnxruntime", "gguf": "llama.cpp"}


def check_memory(model_path: str, available_bytes: int | None = None) -> None:
    """A model too large for the device's free memory fails its task before it is loaded."""
    from edgeatlas.protos.errors import InvalidInput

    path = Path(model_path)
    if not path.is_file():
        return  # the runner says the file is missing
    if available_bytes is None:
        try:
            import psutil
            available_bytes = psutil.virtual_memory().available
        except ImportError:
            return
    need = int(path.stat().st_size * MEMORY_FACTOR) + MEMORY_SLACK_BYTES
    if need > available_bytes:
        raise InvalidInput(f"model {path.name} needs about {need / 2**30:.1f} GiB of memory; "
                           f"this device has {available_bytes / 2**30:.1f} GiB available")


def make_runner(model_path: str, setting: Setting, reference_path: str | None = None,
                model: ModelFacts = ModelFacts()) -> Runner:
    from edgeatlas.protos.errors import InvalidInput
    factory = RUNNERS.get(setting.runtime)
    if factory is None:
        raise InvalidInput(f"runtime {setting.runtime!r} is not available here "
                           f"(known: {', '.join(sorted(RUNNERS))})")
    check_memory(model_path)
    return factory(model_path, setting, reference_path, model)
