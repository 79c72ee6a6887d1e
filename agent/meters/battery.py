"""Battery discharge where the OS exposes it: /sys/class/power_supply, sampled while the run lasts.

Only on battery power (status Discharging) does the battery's output equal the device's draw. Power
is read from power_now (µW), or current_now (µA) × voltage_now (µV), ten times a second, and integrated.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from edgeatlas.agent.meters import NoMeter

SUPPLY = "sys/class/power_supply"
PERIOD_S = 0.1


def _battery_dir(root: Path) -> Path:
    base = Path(root) / SUPPLY
    for path in sorted(base.glob("*")) if base.is_dir() else []:
        try:
            if (path / "type").read_text().strip() == "Battery":
                return path
        except OSError:
            continue
    raise NoMeter(f"no battery under /{SUPPLY}")


class BatteryMeter:
    name = "battery"

    def __init__(self, root: Path, period_s: float = PERIOD_S):
        self.dir = _battery_dir(root)
        status = (self.dir / "status").read_text().strip() if (self.dir / "status").exists() else "Unknown"
        if status != "Discharging":
            raise NoMeter(f"battery is {status.lower()}, not discharging: on mains its output is not the draw")
        if self.power_w() is None:
            raise NoMeter(f"{self.dir.name} exposes neither power_now nor current_now and voltage_now")
        self.period_s = period_s
        self._energy_j = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _value(self, name: str) -> float | None:
        try:
            return float((self.dir / name).read_text())
        except (OSError, ValueError):
            return None

    def power_w(self) -> float | None:
        power = self._value("power_now")
        if power is not None:
            return abs(power) / 1e6
        current, voltage = self._value("current_now"), self._value("voltage_now")
        if current is None or voltage is None:
            return None
        return abs(current) * voltage / 1e12

    def _sample(self) -> None:
        last_t, last_w = time.perf_counter(), self.power_w() or 0.0
        while not self._stop.wait(self.period_s):
            t, w = time.perf_counter(), self.power_w() or 0.0
            self._energy_j += (t - last_t) * (w + last_w) / 2  # trapezoid
            last_t, last_w = t, w
        t, w = time.perf_counter(), self.power_w() or 0.0
        self._energy_j += (t - last_t) * (w + last_w) / 2

    def start(self) -> None:
        self._energy_j = 0.0
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, name="battery-meter", daemon=True)
        self._thread.start()

    def stop(self) -> float:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return self._energy_j
