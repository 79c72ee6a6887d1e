"""Energy meters, one file each: a meter measures joules over the timed part of a run, never estimates them.

A new meter is one file and one line in METERS. `find_meter` returns the first that works for the
task's target, or None and the reason, which travels with the report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol


class Meter(Protocol):
    name: str

    def start(self) -> None: ...

    def stop(self) -> float:
        """Joules since start()."""
        ...


class NoMeter(Exception):
    """This meter cannot measure here; the message says why (one line)."""


def _rapl(root: Path) -> Meter:
    from edgeatlas.agent.meters.rapl import RaplMeter
    return RaplMeter(root)


def _nvml(root: Path) -> Meter:
    from edgeatlas.agent.meters.nvml import NvmlMeter
    return NvmlMeter()


def _battery(root: Path) -> Meter:
    from edgeatlas.agent.meters.battery import BatteryMeter
    return BatteryMeter(root)


METERS: dict[str, Callable[[Path], Meter]] = {"rapl": _rapl, "nvml": _nvml, "battery": _battery}
# Which meters can see a target's energy, best first. A battery sees the whole device.
FOR_TARGET = {"cpu": ("rapl", "battery"), "gpu": ("nvml", "battery")}


def find_meter(target: str, root: str | Path = "/") -> tuple[Meter | None, str]:
    """The first meter that works for the target, or (None, why none did)."""
    reasons = []
    for name in FOR_TARGET.get(target, ("battery",)):
        try:
            return METERS[name](Path(root)), ""
        except NoMeter as exc:
            reasons.append(f"{name}: {exc}")
    return None, "no energy meter: " + "; ".join(reasons)
