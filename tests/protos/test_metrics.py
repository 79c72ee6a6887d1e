"""The metric catalogue is the one definition: the other rooms' tables are read from it."""

from edgeatlas.coordinator import aggregate
from edgeatlas.protos import metrics
from edgeatlas.protos.privacy import STATISTICS
from edgeatlas.protos.records import LatencyStats


def test_every_release_and_derivation_names_a_metric_of_the_catalogue():
    assert set(metrics.RELEASED.values()) <= set(metrics.METRICS)
    assert set(STATISTICS) == set(metrics.RELEASED)
    for name, m in metrics.METRICS.items():
        assert not m.derived_from or metrics.METRICS[m.derived_from].released_as, name
        assert not m.stats or m.stats in LatencyStats.__dataclass_fields__, name
        assert m.lo < m.hi and m.unit


def test_the_heat_map_and_the_views_read_the_catalogue():
    from edgeatlas.console.views import METRIC_UNITS
    from edgeatlas.dashboard.data import METRICS as DASHBOARD

    assert METRIC_UNITS == {name: m.unit for name, m in metrics.METRICS.items()}
    assert {unit for _, unit, _ in DASHBOARD.values()} == {m.unit for m in metrics.METRICS.values()}
    assert set(aggregate.METRICS) | set(metrics.FIGURES) == set(metrics.METRICS)
    assert metrics.label("throughput_ips") == "throughput (inferences/s)" and metrics.label("x") == "x"


def test_derived_rates_follow_from_their_released_latency():
    import math

    import pytest

    logs = aggregate.released_logs({"log_mean_ms": math.log(4.0), "log_tpot_ms": math.log(20.0)}, batch=8)
    assert math.exp(logs["throughput_ips"][0]) == pytest.approx(8 * 1000 / 4.0)
    assert math.exp(logs["decode_tps"][0]) == pytest.approx(1000 / 20.0) and logs["decode_tps"][1] == "log_tpot_ms"
