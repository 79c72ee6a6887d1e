"""Intel and AMD RAPL through the Linux powercap files: package energy counters in microjoules."""

from __future__ import annotations

from pathlib import Path

from edgeatlas.agent.meters import NoMeter

POWERCAP = "sys/class/powercap"


class RaplMeter:
    """Sums the top-level zones (one per package; `intel-rapl:N`, AMD included) and handles wrap-around."""

    name = "rapl"

    def __init__(self, root: Path):
        base = Path(root) / POWERCAP
        zones = sorted(p for p in base.glob("intel-rapl:*") if p.name.count(":") == 1) if base.is_dir() else []
        if not zones:
            raise NoMeter(f"no RAPL zones under /{POWERCAP}")
        self.zones = []
        for zone in zones:
            try:
                energy = zone / "energy_uj"
                int(energy.read_text())
                wrap = int((zone / "max_energy_range_uj").read_text())
            except PermissionError:
                raise NoMeter(f"{zone.name}/energy_uj is readable by root only (Linux ≥ 5.10); "
                              "a udev rule or running the agent as root gives access") from None
            except (OSError, ValueError) as exc:
                raise NoMeter(f"{zone.name} cannot be read: {exc}") from None
            self.zones.append((energy, wrap))
        self._start: list[int] = []

    def _read(self) -> list[int]:
        return [int(path.read_text()) for path, _ in self.zones]

    def start(self) -> None:
        self._start = self._read()

    def stop(self) -> float:
        total_uj = 0
        for (_, wrap), before, after in zip(self.zones, self._start, self._read()):
            total_uj += after - before if after >= before else after + wrap - before  # the counter wrapped
        return total_uj / 1e6
