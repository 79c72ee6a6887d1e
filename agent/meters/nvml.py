"""NVIDIA GPUs through NVML (nvidia-ml-py): the total-energy counter in millijoules (Volta and newer)."""

from __future__ import annotations

from edgeatlas.agent.meters import NoMeter


class NvmlMeter:
    """Energy of every GPU NVML sees (the task's GPU is the one in use; the others idle alike)."""

    name = "nvml"

    def __init__(self, nvml=None):
        if nvml is None:
            try:
                import pynvml as nvml  # nvidia-ml-py's module name
            except ImportError:
                raise NoMeter("nvidia-ml-py is not installed") from None
        self.nvml = nvml
        try:
            nvml.nvmlInit()
            self.handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
        except Exception as exc:  # NVMLError_LibraryNotFound, _DriverNotLoaded, ...
            raise NoMeter(f"NVML unavailable ({type(exc).__name__}: no NVIDIA driver)") from None
        if not self.handles:
            raise NoMeter("NVML sees no GPU")
        try:
            self._read()
        except Exception as exc:
            raise NoMeter(f"this GPU has no energy counter ({type(exc).__name__}; Volta or newer has one)") from None
        self._start: list[int] = []

    def _read(self) -> list[int]:
        return [int(self.nvml.nvmlDeviceGetTotalEnergyConsumption(h)) for h in self.handles]

    def start(self) -> None:
        self._start = self._read()

    def stop(self) -> float:
        return sum(after - before for before, after in zip(self._start, self._read())) / 1000.0
