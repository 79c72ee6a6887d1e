"""Energy meters read real counter files; each is tested against a fake tree the test writes."""

import time

import pytest

from edgeatlas.agent.meters import NoMeter, find_meter
from edgeatlas.agent.meters.battery import BatteryMeter
from edgeatlas.agent.meters.nvml import NvmlMeter
from edgeatlas.agent.meters.rapl import RaplMeter


def rapl_zone(root, name, energy_uj, wrap_uj=262143328850):
    zone = root / "sys/class/powercap" / name
    zone.mkdir(parents=True, exist_ok=True)
    (zone / "name").write_text("package-0\n")
    (zone / "energy_uj").write_text(f"{energy_uj}\n")
    (zone / "max_energy_range_uj").write_text(f"{wrap_uj}\n")
    return zone


def test_rapl_sums_packages_and_ignores_subzones(tmp_path):
    p0 = rapl_zone(tmp_path, "intel-rapl:0", 1_000_000)
    p1 = rapl_zone(tmp_path, "intel-rapl:1", 5_000_000)
    core = rapl_zone(tmp_path, "intel-rapl:0:0", 7)  # the core subzone is inside package 0's count
    meter = RaplMeter(tmp_path)
    meter.start()
    (p0 / "energy_uj").write_text("3500000\n")
    (p1 / "energy_uj").write_text("5250000\n")
    (core / "energy_uj").write_text("99999999\n")
    assert meter.stop() == pytest.approx(2.5 + 0.25)


def test_rapl_counter_wrap_around(tmp_path):
    zone = rapl_zone(tmp_path, "intel-rapl:0", 999_000_000, wrap_uj=1_000_000_000)
    meter = RaplMeter(tmp_path)
    meter.start()
    (zone / "energy_uj").write_text("4000000\n")  # wrapped past 1e9 µJ
    assert meter.stop() == pytest.approx(1.0 + 4.0)


def test_rapl_permission_error_is_a_reason_not_a_crash(tmp_path, monkeypatch):
    rapl_zone(tmp_path, "intel-rapl:0", 1)
    real = type(tmp_path).read_text

    def read_text(self, *a, **k):
        if self.name == "energy_uj":
            raise PermissionError(13, "Permission denied")
        return real(self, *a, **k)
    monkeypatch.setattr(type(tmp_path), "read_text", read_text)
    meter, why = find_meter("cpu", tmp_path)
    assert meter is None and "root only" in why


def battery(root, status="Discharging", **files):
    bat = root / "sys/class/power_supply/BAT0"
    bat.mkdir(parents=True, exist_ok=True)
    (bat / "type").write_text("Battery\n")
    (bat / "status").write_text(status + "\n")
    for name, value in files.items():
        (bat / name).write_text(f"{value}\n")
    ac = root / "sys/class/power_supply/AC"
    ac.mkdir(parents=True, exist_ok=True)
    (ac / "type").write_text("Mains\n")
    return bat


def test_battery_integrates_power_while_discharging(tmp_path):
    battery(tmp_path, power_now=5_000_000)  # 5 W
    meter = BatteryMeter(tmp_path, period_s=0.01)
    meter.start()
    time.sleep(0.3)
    energy = meter.stop()
    assert energy == pytest.approx(5 * 0.3, rel=0.25)


def test_battery_from_current_and_voltage(tmp_path):
    battery(tmp_path, current_now=-500_000, voltage_now=8_000_000)  # 0.5 A at 8 V, signed by the driver
    assert BatteryMeter(tmp_path).power_w() == pytest.approx(4.0)


@pytest.mark.parametrize("status", ["Charging", "Full", "Not charging"])
def test_battery_on_mains_is_not_a_meter(tmp_path, status):
    battery(tmp_path, status=status, power_now=1)
    with pytest.raises(NoMeter, match="not discharging"):
        BatteryMeter(tmp_path)


def test_battery_without_power_files(tmp_path):
    battery(tmp_path, capacity=50)
    with pytest.raises(NoMeter, match="neither power_now"):
        BatteryMeter(tmp_path)


class FakeNvml:
    """nvidia-ml-py's calls, over a counter the test moves (millijoules)."""

    def __init__(self, counters_mj, fail_init=None, no_counter=False):
        self.counters, self.fail_init, self.no_counter = counters_mj, fail_init, no_counter

    def nvmlInit(self):
        if self.fail_init:
            raise self.fail_init

    def nvmlDeviceGetCount(self):
        return len(self.counters)

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        if self.no_counter:
            raise RuntimeError("NVMLError_NotSupported")
        return self.counters[handle]


def test_nvml_reads_the_energy_counter():
    nvml = FakeNvml([10_000, 0])
    meter = NvmlMeter(nvml)
    meter.start()
    nvml.counters[0] += 2500  # 2.5 J on the busy GPU
    nvml.counters[1] += 500
    assert meter.stop() == pytest.approx(3.0)


def test_nvml_without_driver_or_counter_says_why():
    class DriverNotLoaded(Exception):
        pass
    with pytest.raises(NoMeter, match="no NVIDIA driver"):
        NvmlMeter(FakeNvml([0], fail_init=DriverNotLoaded()))
    with pytest.raises(NoMeter, match="no energy counter"):
        NvmlMeter(FakeNvml([0], no_counter=True))
    with pytest.raises(NoMeter, match="sees no GPU"):
        NvmlMeter(FakeNvml([]))


def test_find_meter_prefers_rapl_then_battery_and_explains_absence(tmp_path):
    meter, why = find_meter("cpu", tmp_path)
    assert meter is None and "rapl: no RAPL zones" in why and "battery: no battery" in why
    battery(tmp_path, power_now=1_000_000)
    assert find_meter("cpu", tmp_path)[0].name == "battery"
    rapl_zone(tmp_path, "intel-rapl:0", 1)
    assert find_meter("cpu", tmp_path)[0].name == "rapl"


def test_a_run_reports_energy_per_inference_from_its_meter(prepared_zoo, zoo_dir, tmp_path):
    from edgeatlas.agent.runners import make_runner
    from edgeatlas.protos.records import RunParams, Setting

    battery(tmp_path, power_now=2_000_000)  # 2 W
    meter, _ = find_meter("cpu", tmp_path)
    result = make_runner(str(zoo_dir / "mlp-s.onnx"), Setting(threads=1, batch=2)).run(
        RunParams(2, 64, 0.3, 30), meter)
    figures = result.figures()
    assert result.energy.meter == "battery"
    assert figures["power_w"] == pytest.approx(2.0, rel=0.2)
    assert figures["energy_mj"] == pytest.approx(result.energy.energy_j * 1000 / result.energy.inferences)
    assert result.energy.inferences >= 2 * result.stats.iterations  # two samples per call
