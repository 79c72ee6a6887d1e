"""The Store on a real SQLite file: idempotent reports, incremental cells, campaigns, leases."""

import dataclasses
import math

import pytest

from edgeatlas.coordinator import aggregate
from edgeatlas.coordinator.store import IncomingReport, Store
from edgeatlas.protos.errors import Conflict, InvalidInput, PermissionDenied
from edgeatlas.protos.privacy import PrivacyParams
from edgeatlas.protos.records import Fidelity, LatencyStats, RunParams, Setting
from edgeatlas.protos.spec import SpecSheet

SPEC = SpecSheet.from_dict({"name": "box", "cpu": {"vendor": "amd", "model": "EPYC 7B13", "cores": 2}})


def stats(p50: float) -> LatencyStats:
    return LatencyStats(p50, p50 * 1.1, p50 * 1.2, p50 * 1.05, 0.1, p50 * 0.9, p50 * 1.3, 1000 / p50, 100, 1.0)


def report(task, report_id, p50=2.0, ok=True, valid=True) -> IncomingReport:
    return IncomingReport(report_id=report_id, task_id=task.id, lease_id=task.lease_id,
                          status="ok" if ok else "failed",
                          failure_reason="" if ok else "model did not load",
                          setting=Setting(runtime_version="1.0", threads=1) if ok else None,
                          stats=stats(p50) if ok else None, fidelity=Fidelity(True, True), valid=valid,
                          invalid_reason="" if valid else "fidelity", privacy_mode="trusted", started_ms=0,
                          agent_version="t")


def enroll(store, name):
    return store.enroll(name, SPEC, f"hash-{name}", {}, "t")


def test_sqlite_runs_in_wal_mode(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'c.db'}")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    store.close()


def test_report_is_idempotent_and_folds_once(store):
    a = enroll(store, "a")
    cid = store.create_campaign("c", store.resolve_models(["m1"]), {}, 1, Setting(threads=1), RunParams())
    task = store.lease(a.agent_id).task
    assert store.record_report(a.agent_id, report(task, "r-00000001")) is False
    assert store.record_report(a.agent_id, report(task, "r-00000001")) is True  # the retry
    view, = store.heatmap()
    cell, est = view.cell, view.estimates
    assert (cell.n_reports, cell.n_devices, store.count_reports()) == (1, 1, 1)
    assert est["latency_p50_ms"].value == pytest.approx(2.0)
    assert store.campaign(cid).status == "done"


def test_cells_fold_geometric_means_over_devices(store):
    agents = [enroll(store, n) for n in ("a", "b", "c")]
    store.create_campaign("c", store.resolve_models(["m1"]), {}, 1, Setting(threads=1), RunParams())
    for agent, p50 in zip(agents, (1.0, 4.0, 16.0)):
        task = store.lease(agent.agent_id).task
        store.record_report(agent.agent_id, report(task, f"r-{agent.name}-0001", p50))
    view, = store.heatmap()
    cell, est = view.cell, view.estimates
    assert cell.n_devices == 3
    assert est["latency_p50_ms"].value == pytest.approx(4.0)  # (1·4·16)^(1/3)
    assert est["latency_p50_ms"].low < 4.0 < est["latency_p50_ms"].high
    assert est["throughput_ips"].value == pytest.approx(250.0)


def test_foreign_unknown_and_stale_reports_store_nothing(store):
    a, b = enroll(store, "a"), enroll(store, "b")
    store.create_campaign("c", store.resolve_models(["m1"]), {"name": "a"}, 1, Setting(), RunParams())
    task = store.lease(a.agent_id).task
    with pytest.raises(InvalidInput, match="not this agent's"):
        store.record_report(b.agent_id, report(task, "r-foreign-01"))
    task.id = 999
    with pytest.raises(InvalidInput, match="does not exist"):
        store.record_report(a.agent_id, report(task, "r-unknown-01"))
    assert store.count_reports() == 0 and store.heatmap() == []


def test_report_id_of_another_agent_is_refused(store):
    a, b = enroll(store, "a"), enroll(store, "b")
    store.create_campaign("c", store.resolve_models(["m1"]), {}, 1, Setting(), RunParams())
    ta, tb = store.lease(a.agent_id).task, store.lease(b.agent_id).task
    store.record_report(a.agent_id, report(ta, "r-shared-01"))
    with pytest.raises(PermissionDenied):
        store.record_report(b.agent_id, report(tb, "r-shared-01"))


def test_orphaned_lease_is_offered_again_and_the_old_lease_goes_stale(store):
    a = enroll(store, "a")
    store.create_campaign("c", store.resolve_models(["m1"]), {}, 2, Setting(), RunParams())
    first = store.lease(a.agent_id).task
    # The agent asks again without reporting: it never got the first reply (say, a crash).
    second = store.lease(a.agent_id).task
    assert second.id == first.id and second.lease_id != first.lease_id and second.attempts == 2
    with pytest.raises(Conflict, match="stale"):
        store.record_report(a.agent_id, report(first, "r-stale-001"))
    store.record_report(a.agent_id, report(second, "r-fresh-001"))
    third = store.lease(a.agent_id).task
    assert third.id != first.id  # the next repeat, only after the first was reported


def test_a_task_leased_too_often_fails_with_its_reason(store):
    a = enroll(store, "a")
    cid = store.create_campaign("c", store.resolve_models(["m1"]), {}, 1, Setting(), RunParams())
    for _ in range(3):
        assert store.lease(a.agent_id) is not None
    assert store.lease(a.agent_id) is None
    assert store.task_counts(cid)["failed"] == 1 and "no report after 3 leases" in store.failures(cid)[0]
    assert store.campaign(cid).status == "done"


def test_failed_and_invalid_reports_do_not_reach_the_heatmap(store):
    a = enroll(store, "a")
    cid = store.create_campaign("c", store.resolve_models(["m1"]), {}, 2, Setting(), RunParams())
    store.record_report(a.agent_id, report(store.lease(a.agent_id).task, "r-failed-01", ok=False))
    store.record_report(a.agent_id, report(store.lease(a.agent_id).task, "r-invalid-1", valid=False))
    assert store.heatmap() == []
    assert store.task_counts(cid)["failed"] == 1 and store.task_counts(cid)["done"] == 1
    assert any("did not load" in f for f in store.failures(cid))


def test_campaign_needs_a_matching_agent_and_can_be_cancelled(store):
    enroll(store, "a")
    with pytest.raises(Conflict, match="no enrolled agent"):
        store.create_campaign("c", store.resolve_models(["m1"]), {"cpu.arch": "arm64"}, 1, Setting(), RunParams())
    cid = store.create_campaign("c", store.resolve_models(["m1"]), {"cpu.vendor": "amd"}, 1, Setting(),
                                RunParams())
    assert store.set_campaign_state(cid, "cancel").status == "cancelled"
    assert store.task_counts(cid)["cancelled"] == 1


def test_estimate_interval_is_nan_below_two_reports():
    n, s, ss = aggregate.fold(0, 0.0, 0.0, 3.0)
    e = aggregate.estimate(n, s, ss)
    assert e.value == pytest.approx(3.0) and math.isnan(e.low) and math.isnan(e.high)


LDP = PrivacyParams(mechanism="laplace", epsilon=2.0, delta=0.0, statistics=("log_p50_ms", "log_mean_ms"),
                    bounds_ms=(0.1, 100.0))


def ldp_report(task, report_id, logs, privacy=LDP) -> IncomingReport:
    return IncomingReport(report_id=report_id, task_id=task.id, lease_id=task.lease_id, status="ok",
                          failure_reason="", setting=Setting(runtime_version="1.0", batch=2), stats=None,
                          fidelity=Fidelity(True, True), valid=True, invalid_reason="", privacy_mode="ldp",
                          started_ms=0, agent_version="t", privacy=privacy, released=logs)


def test_ldp_reports_fold_with_their_noise_and_stay_suppressed_below_k(store):
    agents = [enroll(store, n) for n in "abc"]
    store.create_campaign("c", store.resolve_models(["m1"]), {}, 1, Setting(batch=2), RunParams(), LDP)
    for agent, log in zip(agents, (0.0, 1.0, 2.0)):
        task = store.lease(agent.agent_id).task
        store.record_report(agent.agent_id, ldp_report(task, f"r-ldp-{agent.name}-01",
                                                       {"log_p50_ms": log, "log_mean_ms": log}))
    view, = store.heatmap(min_devices=5)
    assert view.suppressed and view.estimates == {} and view.cell.source == "fleet"
    view, = store.heatmap(min_devices=3, target_precision=0.1)
    est = view.estimates["latency_p50_ms"]
    assert est.value == pytest.approx(math.e)  # geometric mean of e^0, e^1, e^2
    noise_sd = math.sqrt(LDP.noise_variance_log("log_p50_ms"))
    assert math.log(est.high) - math.log(est.value) == pytest.approx(1.959964 * noise_sd / math.sqrt(3), rel=1e-6)
    assert view.estimates["throughput_ips"].value == pytest.approx(2000 / math.e)  # batch 2, from the mean
    assert view.devices_needed > 1000  # ε = 2 local noise: ±10 % needs a real fleet
    assert view.cell.privacy == "ldp laplace ε=2"


def test_a_release_under_another_contract_is_refused(store):
    a = enroll(store, "a")
    store.create_campaign("c", store.resolve_models(["m1"]), {}, 1, Setting(batch=2), RunParams(), LDP)
    task = store.lease(a.agent_id).task
    weaker = PrivacyParams(**{**LDP.__dict__, "epsilon": 8.0})
    with pytest.raises(InvalidInput, match="does not match"):
        store.record_report(a.agent_id, ldp_report(task, "r-weak-0001", {"log_p50_ms": 0, "log_mean_ms": 0}, weaker))
    with pytest.raises(InvalidInput, match="statistics"):
        store.record_report(a.agent_id, ldp_report(task, "r-miss-0001", {"log_p50_ms": 0}))
    with pytest.raises(InvalidInput, match="impossible"):
        store.record_report(a.agent_id, ldp_report(task, "r-huge-0001", {"log_p50_ms": 1e9, "log_mean_ms": 0}))
    assert store.count_reports() == 0 and store.heatmap() == []


def test_declined_task_is_terminal_with_its_reason(store):
    a = enroll(store, "a")
    cid = store.create_campaign("c", store.resolve_models(["m1"]), {}, 1, Setting(batch=2), RunParams(), LDP)
    task = store.lease(a.agent_id).task
    declined = IncomingReport(report_id="r-declined1", task_id=task.id, lease_id=task.lease_id, status="declined",
                              failure_reason="declined: privacy budget", setting=None, stats=None,
                              fidelity=Fidelity(), valid=False, invalid_reason="", privacy_mode="ldp",
                              started_ms=0, agent_version="t")
    store.record_report(a.agent_id, declined)
    assert store.task_counts(cid)["declined"] == 1 and store.campaign(cid).status == "done"
    assert store.heatmap() == []


def test_reports_arriving_together_share_one_commit_and_a_refused_one_sinks_none(store):
    from sqlalchemy import event

    agents = [enroll(store, f"a{i}") for i in range(12)]
    cid = store.create_campaign("c", store.resolve_models(["m1"]), {}, 1, Setting(threads=1), RunParams())
    tasks = [store.lease(a.agent_id).task for a in agents]
    commits = []
    event.listen(store.engine, "commit", lambda conn: commits.append(1))
    with store._write:  # the writer waits for this lock: everything below queues up behind it
        good = [store.submit_report(a.agent_id, report(t, f"r-batch-{i:04d}", p50=2.0 + i))
                for i, (a, t) in enumerate(zip(agents[1:], tasks[1:]))]
        again = store.submit_report(agents[1].agent_id, report(tasks[1], "r-batch-0000"))  # the retry, same batch
        stale = store.submit_report(agents[0].agent_id, dataclasses.replace(
            report(tasks[0], "r-stale-0001"), lease_id="x" * 32))
        foreign = store.submit_report(agents[0].agent_id, report(tasks[2], "r-foreign-01"))
    assert [f.result(timeout=30) for f in good] == [False] * 11
    assert again.result(timeout=30) is True
    with pytest.raises(Conflict, match="stale"):
        stale.result(timeout=30)
    with pytest.raises(InvalidInput, match="not this agent's"):
        foreign.result(timeout=30)
    assert len(commits) <= 2  # the first may have been taken alone before the lock held the rest back
    assert store.count_reports() == 11 and store.task_counts(cid) == {"done": 11, "leased": 1}
    view, = store.heatmap()
    assert view.cell.n_reports == 11 and view.cell.n_devices == 11


def test_a_caller_that_gave_up_does_not_stop_the_writer(store):
    agents = [enroll(store, f"a{i}") for i in range(2)]
    store.create_campaign("c", store.resolve_models(["m1"]), {}, 1, Setting(threads=1), RunParams())
    with store._write:  # both queue behind the lock; the first caller gives up while it waits (a cancelled RPC)
        gone = store.submit_lease(agents[0].agent_id)
        assert gone.cancel()
        waiting = store.submit_lease(agents[1].agent_id)
    assert waiting.result(timeout=30) is not None
    # the writer is alive: a later write is answered too, and the first lease was made (it stays in the store)
    assert store.submit_lease(agents[0].agent_id).result(timeout=30) is not None


def test_heartbeats_are_written_together_and_a_heartbeat_without_state_keeps_it(store):
    a, b = enroll(store, "a"), enroll(store, "b")
    store.touch_agent(a.agent_id, "waiting: battery 12 %")
    store.touch_agent(b.agent_id)
    store.flush_touches()
    store.touch_agent(a.agent_id)  # a plain heartbeat: the last word stays
    rows = {row.agent_id: row for row, _ in store.list_agents()}  # reading the fleet writes what is buffered
    assert rows[a.agent_id].state == "waiting: battery 12 %" and rows[b.agent_id].state == "enrolled"
    assert rows[a.agent_id].last_seen_ms >= a.last_seen_ms and rows[b.agent_id].last_seen_ms >= b.last_seen_ms


def test_a_lease_and_a_report_of_one_batch_see_each_other(store):
    """Reports run before leases in a batch: the task just reported is done, so the lease queued with it
    gives the next task instead of offering the reported one again."""
    a = enroll(store, "a")
    store.create_campaign("c", store.resolve_models(["m1"]), {}, 2, Setting(threads=1), RunParams())
    first = store.lease(a.agent_id).task
    with store._write:  # both queue behind the lock and run in one batch, the lease queued first
        lease = store.submit_lease(a.agent_id)
        done = store.submit_report(a.agent_id, report(first, "r-first-0001"))
    assert done.result(timeout=30) is False
    assert lease.result(timeout=30).task.id != first.id
    assert store.task_counts(first.campaign_id) == {"done": 1, "leased": 1}


def test_a_device_counts_once_per_cell_within_and_across_batches(store):
    a, b = enroll(store, "a"), enroll(store, "b")
    store.create_campaign("c", store.resolve_models(["m1"]), {}, 3, Setting(threads=1), RunParams())
    t1 = store.lease(a.agent_id).task
    store.record_report(a.agent_id, report(t1, "r-a-000001"))
    t2, t3 = store.lease(a.agent_id).task, store.lease(b.agent_id).task
    with store._write:  # a's second report and b's first share a batch
        futures = [store.submit_report(a.agent_id, report(t2, "r-a-000002")),
                   store.submit_report(b.agent_id, report(t3, "r-b-000001"))]
    assert [f.result(timeout=30) for f in futures] == [False, False]
    store._contributors.clear()  # as after a restart: what is stored is looked up, not remembered
    store.record_report(a.agent_id, report(store.lease(a.agent_id).task, "r-a-000003"))
    view, = store.heatmap()
    assert (view.cell.n_reports, view.cell.n_devices) == (4, 2)
    assert view.estimates["latency_p50_ms"].n == 4


def test_a_revocation_through_another_replica_is_seen_within_the_cache_interval(db_url, monkeypatch):
    from edgeatlas.coordinator.store import agents as storage

    here, there = Store(db_url), Store(db_url)
    try:
        a = enroll(here, "a")
        assert here.agent_by_credential("hash-a").agent_id == a.agent_id
        assert here.cached_agent("hash-a").agent_id == a.agent_id  # remembered: no database
        there.revoke_agent(a.agent_id)
        monkeypatch.setattr(storage, "CREDENTIAL_CACHE_S", 0.0)  # the interval has passed
        assert here.cached_agent("hash-a") is None  # not trusted from memory any more
        assert here.agent_by_credential("hash-a") is None  # counted the revocations, forgot, asked again
        assert there.agent_by_credential("hash-a") is None
    finally:
        here.close()
        there.close()


def test_releases_under_two_contracts_mark_their_cell_mixed_once_committed(store, monkeypatch):
    a = enroll(store, "a")
    weaker = PrivacyParams(**{**LDP.__dict__, "epsilon": 8.0})
    store.create_campaign("c1", store.resolve_models(["m1"]), {}, 1, Setting(batch=2), RunParams(), LDP)
    first = store.lease(a.agent_id).task
    store.record_report(a.agent_id, ldp_report(first, "r-ldp-a-001", {"log_p50_ms": 0.0, "log_mean_ms": 0.0}))
    b = enroll(store, "b")  # only b is asked in the second campaign's first lease
    store.create_campaign("c2", store.resolve_models(["m1"]), {}, 1, Setting(batch=2), RunParams(), weaker)
    second = store.lease(b.agent_id).task
    mixed = ldp_report(second, "r-ldp-b-001", {"log_p50_ms": 1.0, "log_mean_ms": 1.0}, weaker)

    def fail(*_):
        raise RuntimeError("disk full")
    with monkeypatch.context() as m:  # the batch fails after it folded: nothing of it is kept, in memory either
        m.setattr(Store, "_write_reports", fail)
        with pytest.raises(RuntimeError):
            store.record_report(b.agent_id, mixed)
    view, = store.heatmap()
    assert (view.cell.privacy, view.cell.n_reports) == ("ldp laplace ε=2", 1)
    store.record_report(b.agent_id, mixed)
    view, = store.heatmap()
    assert (view.cell.privacy, view.cell.n_reports, view.cell.n_devices) == ("fleet (mixed contracts)", 2, 2)


def test_the_same_bytes_with_other_inputs_are_a_conflict_not_a_silent_reuse(store):
    spec = '[{"name":"x","dtype":"float32","shape":["batch",3,8,8],"source":"normal"}]'
    store.put_blob("c" * 64, 3, [b"xyz"])
    row = store.add_model("m3", "onnx", "c" * 64, "", "{}", spec)
    assert row.inputs_json == spec and row.to_ref().inputs_json == spec
    assert store.add_model("m3", "onnx", "c" * 64, "", "{}", spec).name == "m3"  # the same again: idempotent
    with pytest.raises(Conflict, match="already registered as 'm3' with other inputs"):
        store.add_model("m3-large", "onnx", "c" * 64, "", "{}", spec.replace("8,8", "64,64"))
