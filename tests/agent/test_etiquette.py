"""Device etiquette on fake sysfs trees (this machine has no battery or thermal zones to read)."""

from __future__ import annotations

import json

import pytest

from edgeatlas.agent import loop
from edgeatlas.agent.etiquette import Conditions, Rules, Sensors, verdict
from edgeatlas.protos.errors import InvalidInput


def power(root, status="Discharging", capacity=20, mains_online=None):
    bat = root / "sys/class/power_supply/battery"
    bat.mkdir(parents=True, exist_ok=True)
    (bat / "type").write_text("Battery\n")
    (bat / "status").write_text(status + "\n")
    (bat / "capacity").write_text(f"{capacity}\n")
    if mains_online is not None:
        ac = root / "sys/class/power_supply/ac"
        ac.mkdir(parents=True, exist_ok=True)
        (ac / "type").write_text("Mains\n")
        (ac / "online").write_text(f"{mains_online}\n")


def thermal(root, *millidegrees):
    for i, value in enumerate(millidegrees):
        zone = root / f"sys/class/thermal/thermal_zone{i}"
        zone.mkdir(parents=True, exist_ok=True)
        (zone / "temp").write_text(f"{value}\n")


def cpu_stat(root, busy, idle):
    (root / "proc").mkdir(parents=True, exist_ok=True)
    (root / "proc/stat").write_text(f"cpu  {busy} 0 0 {idle} 0 0 0 0 0 0\ncpu0 1 0 0 1 0 0 0 0 0 0\n")


def phone(coordinator, prepared_zoo, tmp_path, fake):
    """A real agent reading the fake sysfs tree `fake`, mlp-s registered, and a one-task campaign's maker."""
    from edgeatlas.agent.loop import Agent, AgentConfig
    from edgeatlas.agent.probe import probe
    from edgeatlas.agent.state import StateDir

    from tests.conftest import register

    with coordinator.admin() as admin:
        register(admin, prepared_zoo, ["mlp-s"])
    agent = Agent(AgentConfig(coordinator=coordinator.address, enroll_token=coordinator.enroll_token,
                              state_dir=StateDir(tmp_path / "state"), name="phone", trusted=True,
                              etiquette=Rules(cooldown_s=0.01)),
                  probe("/", measure_bandwidth=False, name="phone"))
    agent.sensors = Sensors(fake)
    return agent


def one_task(coordinator) -> int:
    from edgeatlas.protos.records import RunParams, Setting

    with coordinator.admin() as admin:
        return admin.create_campaign(["mlp-s"], {}, 1, Setting(threads=1),
                                     RunParams(warmup_iterations=1, min_iterations=5, min_duration_s=0.05)
                                     ).campaign_id


def test_low_battery_waits_unless_plugged_in(tmp_path):
    rules = Rules()
    power(tmp_path, "Discharging", 20)
    now = Sensors(tmp_path).read(rules)
    assert (now.on_battery, now.battery_percent) == (True, 20.0)
    assert verdict(rules, now) == "on battery at 20 % (below 30 %)"
    power(tmp_path, "Discharging", 45)
    assert verdict(rules, Sensors(tmp_path).read(rules)) is None
    power(tmp_path, "Discharging", 20, mains_online=1)  # a charger the battery driver has not noticed yet
    assert verdict(rules, Sensors(tmp_path).read(rules)) is None
    assert verdict(Rules(min_battery_percent=0), Conditions(True, 5.0)) is None  # the rule turned off


def test_heat_waits_over_the_hottest_zone(tmp_path):
    thermal(tmp_path, 41000, 86500, -1)
    now = Sensors(tmp_path).read(Rules())
    assert now.temp_c == 86.5 and verdict(Rules(), now) == "hot: 86 °C (above 80 °C)"
    assert verdict(Rules(max_temp_c=90), now) is None


def test_busy_is_measured_over_a_window(tmp_path):
    cpu_stat(tmp_path, busy=1000, idle=1000)
    sensors = Sensors(tmp_path, busy_window_s=0.01,
                      sleep=lambda s: cpu_stat(tmp_path, busy=1000 + 75, idle=1000 + 25))  # 75 % in the window
    rules = Rules(max_busy_percent=50)
    now = sensors.read(rules)
    assert now.busy_percent == 75.0 and verdict(rules, now).startswith("busy: 75 %")
    assert Sensors(tmp_path).read(Rules()).busy_percent is None  # not measured when the rule is off


def cpufreq(root, *cur_max_khz):
    for i, (cur, top) in enumerate(cur_max_khz):
        d = root / f"sys/devices/system/cpu/cpu{i}/cpufreq"
        d.mkdir(parents=True, exist_ok=True)
        (d / "scaling_cur_freq").write_text(f"{cur}\n")
        (d / "cpuinfo_max_freq").write_text(f"{top}\n")


def test_a_clock_held_down_under_load_waits(tmp_path):
    cpufreq(tmp_path, (1_000_000, 2_000_000), (1_100_000, 2_200_000), (700_000, 1_800_000))  # big and little
    sensors = Sensors(tmp_path)
    assert sensors.clock_percent() == 50.0  # the fastest core, against its own maximum
    rules = Rules(min_clock_percent=60)
    now = sensors.read(rules, clock_percent=sensors.clock_percent())
    assert verdict(rules, now) == "throttled: the last task held the clock at 50 % of its maximum (below 60 %)"
    assert verdict(rules, sensors.read(rules, clock_percent=95.0)) is None
    assert verdict(Rules(), now) is None  # off by default when run by hand
    assert Sensors(tmp_path / "nothing").clock_percent() is None


def test_missing_sensors_never_block(tmp_path):
    assert verdict(Rules(max_busy_percent=50), Sensors(tmp_path).read(Rules(max_busy_percent=50))) is None


@pytest.mark.parametrize("rules", [Rules(min_battery_percent=120), Rules(max_temp_c=-1), Rules(cooldown_s=1e6),
                                   Rules(min_clock_percent=101)])
def test_rules_out_of_range_are_refused(rules):
    with pytest.raises(InvalidInput, match="is not in 0.."):
        rules.check()


@pytest.mark.slow
def test_agent_waits_on_battery_then_runs_and_keeps_the_conditions(coordinator, prepared_zoo, tmp_path, monkeypatch):
    """A real agent against a real coordinator: no lease while the battery is low; the run once plugged in."""
    monkeypatch.setattr(loop, "ETIQUETTE_WAIT_S", 0.05)
    fake = tmp_path / "device"
    power(fake, "Discharging", 12)
    thermal(fake, 52000)
    cpufreq(fake, (1_800_000, 2_000_000))
    agent = phone(coordinator, prepared_zoo, tmp_path, fake)
    try:
        agent.enroll()
        cid = one_task(coordinator)
        assert agent.step() is False and agent.waiting.startswith("on battery at 12 %")
        with coordinator.admin() as admin:
            assert admin.campaign(cid).counts.pending == 1  # nothing was leased
            assert admin.list_agents()[0].state == "waiting: on battery at 12 % (below 30 %)"
        power(fake, "Charging", 13)
        assert agent.step() is True and agent.waiting is None
    finally:
        agent.channel.close()
        agent.ledger.close()
    with coordinator.admin() as admin:
        assert admin.campaign(cid).counts.done == 1
    kept = json.loads((tmp_path / "state" / "results.jsonl").read_text().splitlines()[-1])
    assert kept["conditions"] == {"on_battery": False, "battery_percent": 13.0, "temp_c": 52.0,
                                  "busy_percent": None, "clock_percent": 90.0}


def test_a_task_leased_while_the_device_went_on_battery_waits_for_the_owners_rules(coordinator, prepared_zoo,
                                                                                   tmp_path, monkeypatch):
    """A long-poll lasts up to a minute: the rules are checked again when it brings a task, which is kept
    (not run) until they allow it."""
    monkeypatch.setattr(loop, "ETIQUETTE_WAIT_S", 0.05)
    fake = tmp_path / "device"
    power(fake, "Charging", 80)
    agent = phone(coordinator, prepared_zoo, tmp_path, fake)
    real_lease = agent.lease

    def unplugged_while_it_waits():
        task = real_lease()
        power(fake, "Discharging", 12)
        return task

    agent.lease = unplugged_while_it_waits
    try:
        agent.enroll()
        cid = one_task(coordinator)
        assert agent.step() is False and agent.waiting.startswith("on battery at 12 %")
        assert agent.current is not None and agent.tasks_done == 0  # leased, kept, not run
        assert agent.step() is False  # still on battery
        power(fake, "Charging", 13)
        assert agent.step() is True and agent.tasks_done == 1 and agent.current is None
    finally:
        agent.channel.close()
        agent.ledger.close()
    with coordinator.admin() as admin:
        assert admin.campaign(cid).counts.done == 1
