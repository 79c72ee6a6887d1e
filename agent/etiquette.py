"""Device etiquette: the agent waits while the device is on a low battery, hot, or busy with its owner's work,
and rests between tasks. The conditions at run time are kept with each result on the device.

Read from /sys/class/power_supply, /sys/class/thermal and /proc/stat under a root (a fake tree in tests);
where those are missing (macOS, Windows), from psutil.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from edgeatlas.protos.errors import InvalidInput


@dataclass(frozen=True)
class Rules:
    """0 turns a rule off."""

    min_battery_percent: float = 30.0  # on battery and below this: wait (plugged in: never)
    max_temp_c: float = 80.0           # any thermal zone hotter than this: wait
    max_busy_percent: float = 0.0      # other work using more of the CPUs than this: wait
    cooldown_s: float = 0.0            # rest between tasks, so one run's heat is not the next one's
    min_clock_percent: float = 0.0     # the last task's load held the clock under this share of its maximum
                                       # (thermal throttling): wait, cooling down, before the next

    def check(self) -> "Rules":
        for name, value, high in (("min-battery", self.min_battery_percent, 100), ("max-temp", self.max_temp_c, 150),
                                  ("max-busy", self.max_busy_percent, 100), ("cooldown", self.cooldown_s, 3600),
                                  ("min-clock", self.min_clock_percent, 100)):
            if not 0 <= value <= high:
                raise InvalidInput(f"--{name} {value:g} is not in 0..{high}")
        return self


@dataclass(frozen=True)
class Conditions:
    """The device at one moment; None where it cannot tell."""

    on_battery: bool | None = None
    battery_percent: float | None = None
    temp_c: float | None = None
    busy_percent: float | None = None
    clock_percent: float | None = None  # CPU clock at the end of the last task's load, % of its maximum

    def to_dict(self) -> dict:
        return asdict(self)


def verdict(rules: Rules, now: Conditions) -> str | None:
    """Why the agent should wait, or None when it may run."""
    if (rules.min_battery_percent and now.on_battery and now.battery_percent is not None
            and now.battery_percent < rules.min_battery_percent):
        return f"on battery at {now.battery_percent:.0f} % (below {rules.min_battery_percent:g} %)"
    if rules.max_temp_c and now.temp_c is not None and now.temp_c > rules.max_temp_c:
        return f"hot: {now.temp_c:.0f} °C (above {rules.max_temp_c:g} °C)"
    if rules.max_busy_percent and now.busy_percent is not None and now.busy_percent > rules.max_busy_percent:
        return f"busy: {now.busy_percent:.0f} % of the CPUs in use (above {rules.max_busy_percent:g} %)"
    if rules.min_clock_percent and now.clock_percent is not None and now.clock_percent < rules.min_clock_percent:
        return (f"throttled: the last task held the clock at {now.clock_percent:.0f} % of its maximum "
                f"(below {rules.min_clock_percent:g} %)")
    return None


class Sensors:
    def __init__(self, root: str | Path = "/", busy_window_s: float = 0.5,
                 sleep: Callable[[float], None] = time.sleep):
        self.root = Path(root)
        self.live = self.root == Path("/")
        self.busy_window_s = busy_window_s
        self.sleep = sleep

    def _read(self, path: Path) -> str | None:
        try:
            return path.read_text().strip()
        except OSError:
            return None

    def battery(self) -> tuple[bool | None, float | None]:
        supplies = sorted((self.root / "sys/class/power_supply").glob("*"))
        batteries = [s for s in supplies if self._read(s / "type") == "Battery"]
        if batteries:
            status = self._read(batteries[0] / "status")
            capacity = self._read(batteries[0] / "capacity")
            plugged = any(self._read(s / "online") == "1" for s in supplies if s not in batteries)
            on_battery = None if status is None else (status == "Discharging" and not plugged)
            return on_battery, float(capacity) if capacity and capacity.isdigit() else None
        if self.live:
            try:
                import psutil

                b = psutil.sensors_battery()
            except (ImportError, AttributeError, RuntimeError):
                b = None
            if b is not None:
                return not b.power_plugged, float(b.percent)
        return None, None

    def temperature(self) -> float | None:
        temps = []
        for zone in (self.root / "sys/class/thermal").glob("thermal_zone*"):
            text = self._read(zone / "temp")
            if text and text.lstrip("-").isdigit():
                value = int(text) / 1000 if abs(int(text)) > 1000 else float(text)  # millidegrees, mostly
                if 0 < value < 150:
                    temps.append(value)
        return max(temps) if temps else None

    def _cpu_times(self) -> tuple[int, int] | None:
        line = (self._read(self.root / "proc/stat") or "").splitlines()[:1]
        parts = line[0].split() if line else []
        if not parts or parts[0] != "cpu":
            return None
        values = [int(v) for v in parts[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        return sum(values[:8]), idle

    def busy(self) -> float | None:
        """Share of the CPUs in use over a short window (the agent itself idles while it looks)."""
        first = self._cpu_times()
        if first is None:
            return None
        self.sleep(self.busy_window_s)
        second = self._cpu_times()
        total, idle = second[0] - first[0], second[1] - first[1]
        return round(100 * (1 - idle / total), 1) if total > 0 else None

    def clock_percent(self) -> float | None:
        """The fastest core's current clock as % of its own maximum (cpufreq); read while a load runs,
        a low value means the device is holding its clocks down: thermal or power throttling."""
        ratios = []
        for cpu in (self.root / "sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq"):
            cur, top = self._read(cpu / "scaling_cur_freq"), self._read(cpu / "cpuinfo_max_freq")
            if cur and top and cur.isdigit() and top.isdigit() and int(top) > 0:
                ratios.append(100.0 * int(cur) / int(top))
        return round(max(ratios), 1) if ratios else None

    def read(self, rules: Rules, clock_percent: float | None = None) -> Conditions:
        """Now; `clock_percent` is what the last task's load left (Sensors.clock_percent under load)."""
        on_battery, percent = self.battery() if rules.min_battery_percent else (None, None)
        return Conditions(on_battery, percent, self.temperature(),
                          self.busy() if rules.max_busy_percent else None, clock_percent)
