"""Benchmark runners, one file each; a new runtime is one file and one line in RUNNERS."""

from __future__ import annotations

from typing import Callable, Protocol

from edgeatlas.protos.records import RunParams, RunResult, Setting


class Runner(Protocol):
    """Loads one model for one setting; `run` measures it under the task's rules."""

    def run(self, params: RunParams) -> RunResult: ...


def _onnxruntime(model_path: str, setting: Setting, reference_path: str | None) -> Runner:
    from edgeatlas.agent.runners.onnxruntime import OnnxRuntimeRunner
    return OnnxRuntimeRunner(model_path, setting, reference_path)


RUNNERS: dict[str, Callable[[str, Setting, str | None], Runner]] = {
    "onnxruntime": _onnxruntime,
}


def make_runner(model_path: str, setting: Setting, reference_path: str | None = None) -> Runner:
    from edgeatlas.protos.errors import InvalidInput
    factory = RUNNERS.get(setting.runtime)
    if factory is None:
        raise InvalidInput(f"runtime {setting.runtime!r} is not available here "
                           f"(known: {', '.join(sorted(RUNNERS))})")
    return factory(model_path, setting, reference_path)
