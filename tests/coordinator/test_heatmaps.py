"""GetHeatmap's kept answers: brought up to date from the cells folded into since, equal to a fresh build."""

import pytest
from sqlalchemy import text

from edgeatlas.coordinator.heatmaps import Heatmaps
from edgeatlas.coordinator.store import Store
from edgeatlas.protos.records import RunParams, Setting

from tests.coordinator.test_storage import enroll, report


@pytest.fixture
def store(db_url):
    s = Store(db_url)
    s.put_blob("a" * 64, 3, [b"abc"])
    s.add_model("m1", "onnx", "a" * 64, "", "{}")
    s.put_blob("b" * 64, 3, [b"abd"])
    s.add_model("m2", "onnx", "b" * 64, "", "{}")
    yield s
    s.close()


def run(store, agents, models, p50=2.0, tag="r"):
    store.create_campaign(tag, store.resolve_models(models), {}, 1, Setting(threads=1), RunParams())
    for agent in agents:
        while (leased := store.lease(agent.agent_id)) is not None:
            store.record_report(agent.agent_id, report(leased.task, f"{tag}-{leased.task.id:06d}", p50))


def fresh(store, min_devices, target_precision=0.0) -> bytes:
    return same(Heatmaps(store, min_devices).read("latency_p50_ms", target_precision))


def same(heatmap) -> bytes:
    """Comparable form (a single report's interval is NaN, and NaN != NaN in message equality)."""
    return heatmap.SerializeToString(deterministic=True)


@pytest.mark.parametrize("target_precision", [0.0, 0.1])
def test_kept_answer_follows_folds_and_new_cells(store, target_precision):
    kept = Heatmaps(store, min_devices=2)
    a = enroll(store, "a")
    run(store, [a], ["m1"], tag="one")
    first = kept.read("latency_p50_ms", target_precision)
    assert [(c.n_reports, c.n_devices) for c in first.cells] == [(1, 1)]
    b = enroll(store, "b")
    run(store, [a, b], ["m1", "m2"], p50=8.0, tag="two")  # more reports, a second device, a new cell
    now = kept.read("latency_p50_ms", target_precision)
    assert same(now) == fresh(store, 2, target_precision)
    assert [(c.model_name, c.n_reports, c.n_devices) for c in now.cells] == [("m1", 3, 2), ("m2", 2, 2)]
    assert now.cells[0].metrics["latency_p50_ms"].value == pytest.approx((2 * 8 * 8) ** (1 / 3))
    assert kept.read("latency_p50_ms", target_precision) is now  # unchanged cells: the same answer


def test_a_fold_committed_late_behind_the_newest_is_caught(store):
    """Another replica's batch stamps its time before it commits: a fold can land older than the newest cell
    a read saw. The counts no longer add up, so the answer is built afresh."""
    kept = Heatmaps(store, min_devices=1)
    a = enroll(store, "a")
    run(store, [a], ["m1", "m2"])
    before = kept.read("latency_p50_ms", 0.0)
    with store.engine.begin() as conn:  # m1's cell gains a report stamped an hour ago
        conn.execute(text("UPDATE heatmap_cell SET n_reports = n_reports + 1, updated_ms = updated_ms - 3600000 "
                          "WHERE model_name = 'm1'"))
    after = kept.read("latency_p50_ms", 0.0)
    assert [c.n_reports for c in before.cells] == [1, 1] and [c.n_reports for c in after.cells] == [2, 1]
    assert same(after) == fresh(store, 1)


def test_a_metric_a_cell_lacks_leaves_it_out_unless_suppressed(store):
    kept = Heatmaps(store, min_devices=1)
    run(store, [enroll(store, "a")], ["m1"])
    assert len(kept.read("latency_p50_ms", 0.0).cells) == 1
    assert kept.read("ttft_ms", 0.0).cells == []  # no LLM figures in these reports
    assert set(kept.read("", 0.0).cells[0].metrics) >= {"latency_p50_ms", "throughput_ips"}
