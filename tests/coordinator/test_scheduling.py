"""Scheduling on a real database (SQLite and PostgreSQL): priorities, pause and resume, deadlines, quotas
per hardware class, selectors with comparisons, and tasks of vanished or overdue devices adopted by
another device of the same class, never twice by one device."""

import sqlite3

import pytest
from sqlmodel import select

from edgeatlas.coordinator import scheduling
from edgeatlas.coordinator.store import Store, now_ms
from edgeatlas.coordinator.tables import AgentRow, TaskRow
from edgeatlas.protos.errors import Conflict, InvalidInput
from edgeatlas.protos.records import RunParams, Schedule, Setting
from edgeatlas.protos.spec import SpecSheet

from tests.coordinator.test_storage import report

EPYC = {"name": "server", "cpu": {"vendor": "amd", "model": "EPYC 7B13", "cores": 2}, "memory": {"size_gb": 16}}
PI = {"name": "pi", "device_class": "board",
      "cpu": {"vendor": "broadcom", "model": "BCM2712", "arch": "arm64", "cores": 4}, "memory": {"size_gb": 4}}


@pytest.fixture
def store(db_url):
    s = Store(db_url)
    for name in ("m1", "m2"):
        sha = name[-1] * 64
        s.put_blob(sha, 3, [b"abc"])
        s.add_model(name, "onnx", sha, "", "{}")
    yield s
    s.close()


def enroll(store, name, spec=EPYC, labels=None):
    return store.enroll(name, SpecSheet.from_dict(spec), f"hash-{name}", labels or {}, "t")


def campaign(store, models=("m1",), selectors=None, repeats=1, **schedule):
    return store.create_campaign("c", store.resolve_models(list(models)), selectors or {}, repeats, Setting(),
                                 RunParams(), schedule=Schedule(**schedule))


def vanish(store, agent_id, ago_ms=scheduling.OFFLINE_AFTER_MS + 1000):
    with store.session() as s:
        row = s.get(AgentRow, agent_id)
        row.last_seen_ms = now_ms() - ago_ms
        s.add(row)
        s.commit()
    store._swept_ms = 0  # the next lease sweeps at once, not up to SWEEP_EVERY_MS later


def test_a_device_leases_the_higher_priority_campaign_first(store):
    a = enroll(store, "a")
    low = campaign(store, ["m1"], priority=-5)
    high = campaign(store, ["m2"], priority=10)
    middle = campaign(store, ["m1"])
    order = []
    while (leased := store.lease(a.agent_id)) is not None:
        order.append(leased.task.campaign_id)
        store.record_report(a.agent_id, report(leased.task, f"r-{leased.task.id:08d}"))
    assert order == [high, middle, low]


def test_a_paused_campaign_leases_nothing_until_resumed(store):
    a = enroll(store, "a")
    cid = campaign(store, ["m1", "m2"])
    first = store.lease(a.agent_id).task
    assert store.set_campaign_state(cid, "pause").status == "paused"
    assert store.lease(a.agent_id) is None
    # the task leased before the pause may still report; the campaign stays paused
    store.record_report(a.agent_id, report(first, "r-before-pause"))
    assert store.campaign(cid).status == "paused"
    with pytest.raises(Conflict, match="paused: only a running campaign can be paused"):
        store.set_campaign_state(cid, "pause")
    assert store.set_campaign_state(cid, "resume").status == "running"
    second = store.lease(a.agent_id).task
    store.record_report(a.agent_id, report(second, "r-after-resume"))
    assert store.campaign(cid).status == "done"
    with pytest.raises(Conflict, match="done: only a paused campaign can be resumed"):
        store.set_campaign_state(cid, "resume")


def test_a_paused_campaign_whose_last_task_reported_is_done_on_resume(store):
    a = enroll(store, "a")
    cid = campaign(store)
    task = store.lease(a.agent_id).task
    store.set_campaign_state(cid, "pause")
    store.record_report(a.agent_id, report(task, "r-while-paused"))
    assert store.set_campaign_state(cid, "resume").status == "done"


def test_past_its_deadline_a_campaign_expires_and_its_open_tasks_are_cancelled_with_the_reason(store):
    a = enroll(store, "a")
    with pytest.raises(InvalidInput, match="deadline has already passed"):
        campaign(store, deadline_ms=now_ms() - 1)
    cid = campaign(store, ["m1", "m2"], deadline_ms=now_ms() + 60_000)
    done = store.lease(a.agent_id).task
    store.record_report(a.agent_id, report(done, "r-in-time-01"))
    leased = store.lease(a.agent_id).task
    with store.session() as s:  # the clock moves past the deadline
        row = store.campaign(cid)
        row.deadline_ms = now_ms() - 1
        s.add(row)
        s.commit()
    store.expire_overdue()
    row = store.campaign(cid)
    assert row.status == "expired" and row.finished_ms
    assert store.task_counts(cid) == {"done": 1, "cancelled": 1}
    (failure,) = store.failures(cid)
    assert failure.startswith(f"task {leased.id} cancelled (") and failure.endswith("): the campaign's deadline passed")
    with pytest.raises(Conflict, match="already cancelled"):  # a report after the deadline is refused
        store.record_report(a.agent_id, report(leased, "r-too-late-1"))
    assert store.lease(a.agent_id) is None


def test_a_quota_takes_that_many_devices_per_hardware_class_the_online_ones_first(store):
    servers = [enroll(store, f"s{i}") for i in range(4)]
    pis = [enroll(store, f"p{i}", PI) for i in range(2)]
    vanish(store, servers[0].agent_id)
    cid = campaign(store, quota=2)
    assert store.campaign(cid).n_agents == 4
    by_class = store.task_counts_by_hardware(cid)
    assert {hw: sum(c.values()) for hw, c in by_class.items()} == {
        servers[0].hardware_class: 2, pis[0].hardware_class: 2}
    with store.session() as s:
        holders = {t.agent_id for t in s.exec(select(TaskRow).where(TaskRow.campaign_id == cid)).all()}
    assert servers[0].agent_id not in holders  # offline: an online device of its class went instead


def test_selectors_compare_numbers_and_exclude_values(store):
    enroll(store, "server")
    pi = enroll(store, "pi", PI, {"site": "lab"})
    assert store.campaign(campaign(store, selectors={"memory.size_gb": ">=8"})).n_agents == 1
    assert store.campaign(campaign(store, selectors={"memory.size_gb": "<8", "label.site": "lab"})).n_agents == 1
    assert store.campaign(campaign(store, selectors={"device_class": "!=board"})).n_agents == 1
    assert store.lease(pi.agent_id).task.campaign_id == 2
    with pytest.raises(Conflict, match="no enrolled agent"):
        campaign(store, selectors={"cpu.cores": ">8"})
    with pytest.raises(InvalidInput, match="needs a number"):
        campaign(store, selectors={"cpu.cores": ">=many"})


def test_the_task_of_a_vanished_device_goes_to_another_of_its_class_never_twice_to_one(store):
    a, b = enroll(store, "a"), enroll(store, "b")
    pi = enroll(store, "pi", PI)
    cid = campaign(store, ["m1"], selectors={"device_class": "!=board"})
    vanish(store, a.agent_id)
    # b holds its own copy of (m1, repeat 0): it runs that, and never adopts a's copy of the same task
    own = store.lease(b.agent_id).task
    assert own.agent_id == b.agent_id
    store.record_report(b.agent_id, report(own, "r-b-own-0001"))
    assert store.lease(b.agent_id) is None
    assert store.lease(pi.agent_id) is None  # another hardware class never adopts it
    c = enroll(store, "c")  # a newcomer of the class adopts it
    adopted = store.lease(c.agent_id).task
    assert adopted.agent_id == c.agent_id and adopted.campaign_id == cid
    store.record_report(c.agent_id, report(adopted, "r-c-adopted1"))
    assert store.campaign(cid).status == "done"
    assert store.task_counts(cid) == {"done": 2}


def test_an_overdue_lease_is_adopted_and_the_slow_device_report_is_stale(store):
    first, second = enroll(store, "first"), enroll(store, "second")
    cid = campaign(store, quota=1)  # one device of the class: the most recently seen, `second`
    slow, fast = second, first
    task = store.lease(slow.agent_id).task
    assert store.lease(fast.agent_id) is None  # its lease is still live
    with store.session() as s:
        row = s.get(TaskRow, task.id)
        row.lease_expires_ms = now_ms() - 1
        s.add(row)
        s.commit()
    store._swept_ms = 0
    adopted = store.lease(fast.agent_id).task
    assert adopted.id == task.id and adopted.agent_id == fast.agent_id and adopted.attempts == 2
    with pytest.raises(Exception, match="not this agent's|stale"):
        store.record_report(slow.agent_id, report(task, "r-slow-late1"))
    store.record_report(fast.agent_id, report(adopted, "r-fast-done1"))
    assert store.campaign(cid).status == "done"


def test_retries_stay_bounded_across_devices(store):
    agents = [enroll(store, n) for n in "abcd"]
    cid = campaign(store, quota=1)
    holder, = {t.agent_id for t in store.campaign_tasks(cid)}  # enrolled in the same millisecond, any may hold it
    agents.sort(key=lambda a: a.agent_id != holder)
    for agent in agents:  # the holder first; each leases and vanishes
        leased = store.lease(agent.agent_id)
        if leased is None:
            break
        with store.session() as s:
            row = s.get(TaskRow, leased.task.id)
            row.lease_expires_ms = now_ms() - 1
            s.add(row)
            s.commit()
        store._swept_ms = 0
    assert store.task_counts(cid) == {"failed": 1}
    assert "no report after 3 leases" in store.failures(cid)[0]


def test_an_older_database_gains_the_new_columns(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    Store(url).close()
    with sqlite3.connect(tmp_path / "old.db") as db:
        db.execute("ALTER TABLE campaign DROP COLUMN priority")
        db.execute("DROP INDEX ix_task_orphaned")
        db.execute("ALTER TABLE task DROP COLUMN orphaned")
    store = Store(url)
    with sqlite3.connect(tmp_path / "old.db") as db:
        assert "priority" in {r[1] for r in db.execute("PRAGMA table_info(campaign)")}
        assert "ix_task_orphaned" in {r[1] for r in db.execute("PRAGMA index_list(task)")}
    store.put_blob("1" * 64, 3, [b"abc"])
    store.add_model("m1", "onnx", "1" * 64, "", "{}")
    a = enroll(store, "a")
    cid = campaign(store, priority=3)
    assert store.campaign(cid).priority == 3 and store.lease(a.agent_id).task.orphaned is False
    store.close()
