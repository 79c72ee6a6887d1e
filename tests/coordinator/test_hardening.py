"""An adversary's reports on the Store (SQLite and PostgreSQL): bounded pull on a cell, nothing derived from a
suppressed cell, settings that are the task's, and bytes only for the agent's own tasks."""

import dataclasses
import math

import pytest

from edgeatlas.agent.privacy.release import release
from edgeatlas.coordinator import aggregate
from edgeatlas.coordinator.store import check_released
from edgeatlas.protos.errors import InvalidInput
from edgeatlas.protos.privacy import PrivacyParams
from edgeatlas.protos.records import RunParams, Setting

from tests.coordinator.test_storage import enroll, ldp_report, report, stats

TIGHT = PrivacyParams(mechanism="gaussian", epsilon=8.0, delta=1e-6, bounds_ms=(1.0, 25.0))


@pytest.mark.parametrize("contract", [PrivacyParams(), TIGHT,
                                      PrivacyParams(mechanism="laplace", epsilon=1.0, delta=0.0)])
def test_honest_releases_at_the_bounds_are_accepted_and_beyond_the_window_refused(contract):
    for p50 in (0.0001, contract.bounds_ms[0], contract.bounds_ms[1], 1e7):  # clipped at both ends
        for _ in range(300):
            check_released(release(stats(p50), contract).values, contract)
    low, high = contract.window("log_p50_ms")
    lo, hi = contract.log_bounds("log_p50_ms")
    assert low < lo and high > hi
    edge = {"log_p50_ms": high, "log_p99_ms": low, "log_mean_ms": high}
    check_released(edge, contract)
    for bad in (high + 1e-6 * (high - low), low - 1e-6 * (high - low), math.inf, math.nan):
        with pytest.raises(InvalidInput, match="impossible under the contract"):
            check_released({**edge, "log_p50_ms": bad}, contract)


def test_the_window_is_far_tighter_than_the_old_forty_sigma_reach():
    """The issue's numbers: the default contract accepted logs in about [-4355, 4360]."""
    low, high = PrivacyParams().window("log_p50_ms")
    assert -800 < low < -600 and 600 < high < 800


def test_one_hostile_device_moves_a_cell_by_no_more_than_the_stated_bound(store):
    honest = [enroll(store, f"h{i}") for i in range(20)]
    attacker = enroll(store, "attacker")
    store.create_campaign("c", store.resolve_models(["m1"]), {}, 1, Setting(), RunParams(), TIGHT)
    for i, agent in enumerate(honest):
        task = store.lease(agent.agent_id).task
        values = release(stats(2.0), TIGHT).values
        store.record_report(agent.agent_id, dataclasses.replace(ldp_report(task, f"r-honest-{i:04d}", values, TIGHT),
                                                                setting=Setting(runtime_version="1")))
    before = store.heatmap()[0].estimates["latency_p50_ms"].value
    task = store.lease(attacker.agent_id).task
    _, high = TIGHT.window("log_p50_ms")
    beyond = {"log_p50_ms": high + 1.0, "log_p99_ms": high, "log_mean_ms": high}
    with pytest.raises(InvalidInput, match="impossible"):
        store.record_report(attacker.agent_id, dataclasses.replace(
            ldp_report(task, "r-attack-0001", beyond, TIGHT), setting=Setting(runtime_version="1")))
    at_edge = {**beyond, "log_p50_ms": high}
    store.record_report(attacker.agent_id, dataclasses.replace(
        ldp_report(task, "r-attack-0002", at_edge, TIGHT), setting=Setting(runtime_version="1")))
    after = store.heatmap()[0].estimates["latency_p50_ms"].value
    moved = math.log(after) - math.log(before)
    bound = TIGHT.influence_log("log_p50_ms") / 21  # one of 21 reports
    assert 0 < moved <= bound
    assert math.exp(bound) < 13  # with this contract: at most ×13 from one of 21 reports, where the issue saw ×2,000


def test_a_suppressed_cells_devices_needed_is_the_same_whatever_its_devices_released(store):
    """k = 5, one device per cell: devices_needed must not depend on its values (the issue inverted it)."""
    victim = enroll(store, "victim")
    for batch, value in ((2, -3.0), (3, 8.0)):
        store.create_campaign(f"b{batch}", store.resolve_models(["m1"]), {}, 1, Setting(batch=batch), RunParams(),
                              TIGHT)
        task = store.lease(victim.agent_id).task
        released = {"log_p50_ms": value, "log_p99_ms": value, "log_mean_ms": value}
        store.record_report(victim.agent_id, dataclasses.replace(
            ldp_report(task, f"r-victim-{batch:04d}", released, TIGHT),
            setting=Setting(runtime_version="1", batch=batch)))
    views = store.heatmap(min_devices=5, target_precision=1e-3)
    assert len(views) == 2 and all(v.suppressed and v.estimates == {} for v in views)
    assert views[0].devices_needed == views[1].devices_needed > 4


def test_devices_needed_is_capped_for_extreme_reports_and_tiny_precision():
    """Two releases at the old reach's ends (±4355 in log) made a ±10 % campaign's status overflow uint32."""
    n, s, ss = 0, 0.0, 0.0
    for log in (-4355.0, 4360.0):
        n, s, ss = aggregate.fold_log(n, s, ss, log)
    assert aggregate.devices_needed(n, s, ss, 0.0, 2, 0.1) == aggregate.MAX_DEVICES_NEEDED
    assert aggregate.devices_needed(n, s, ss, 0.0, 2, 1e-300) == aggregate.MAX_DEVICES_NEEDED
    assert aggregate.MAX_DEVICES_NEEDED < 2 ** 32  # fits the wire's uint32


@pytest.mark.parametrize("claim", [dict(target="gpu", execution_provider="CUDAExecutionProvider"),
                                   dict(batch=64), dict(threads=4), dict(scenario="offline"),
                                   dict(runtime="llama.cpp"), dict(scenario_params={"bogus": "1"})])
def test_a_report_claiming_another_setting_is_refused_and_stores_nothing(store, claim):
    a = enroll(store, "a")
    store.create_campaign("c", store.resolve_models(["m1"]), {}, 1, Setting(threads=1), RunParams())
    task = store.lease(a.agent_id).task
    honest = report(task, "r-claim-0001")
    with pytest.raises(InvalidInput, match="setting|scenario"):
        store.record_report(a.agent_id, dataclasses.replace(honest, setting=dataclasses.replace(honest.setting,
                                                                                                 **claim)))
    assert store.count_reports() == 0 and store.heatmap() == []
    assert store.record_report(a.agent_id, honest) is False  # the task is still open for the true report


def test_an_agent_may_fetch_only_its_open_tasks_bytes(store):
    a, b = enroll(store, "a"), enroll(store, "b")
    store.put_blob("c" * 64, 3, [b"ckp"])  # a predictor checkpoint, say
    assert not store.fetchable(a.agent_id, "a" * 64)  # no task yet
    store.create_campaign("c", store.resolve_models(["m1"]), {"cpu.cores": "2"}, 1, Setting(), RunParams())
    assert store.fetchable(a.agent_id, "a" * 64) and store.fetchable(b.agent_id, "a" * 64)
    assert not store.fetchable(a.agent_id, "c" * 64) and not store.fetchable(a.agent_id, "0" * 64)
    task = store.lease(a.agent_id).task
    store.record_report(a.agent_id, report(task, "r-fetch-0001"))
    assert not store.fetchable(a.agent_id, "a" * 64)  # done: nothing more to fetch
    assert store.fetchable(b.agent_id, "a" * 64)


def gguf_header(*kvs: bytes, tensors: bytes = b"", n_tensors: int = 0) -> bytes:
    import struct
    return b"GGUF" + struct.pack("<IQQ", 3, n_tensors, len(kvs)) + b"".join(kvs) + tensors


def gguf_key(key: str) -> bytes:
    import struct
    return struct.pack("<Q", len(key)) + key.encode()


def test_a_gguf_header_that_lies_about_its_sizes_is_refused_before_any_allocation(tmp_path, gguf_zoo):
    import resource
    import struct

    from edgeatlas.protos.gguf import read_header

    for prepared in gguf_zoo.values():  # real files pass
        assert read_header(prepared.path).check_model().architecture == "llama"
    arch = gguf_key("general.architecture") + struct.pack("<I", 8) + gguf_key("llama")
    lies = {
        "huge-array": gguf_header(arch, gguf_key("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 0, 2 ** 40)),
        "huge-string": gguf_header(arch, gguf_key("x") + struct.pack("<IQ", 8, 2 ** 62)),
        "many-keys": b"GGUF" + struct.pack("<IQQ", 3, 0, 2 ** 60),
        "bad-type": gguf_header(arch, gguf_key("x") + struct.pack("<I", 77)),
        "tensor-past-end": gguf_header(arch, tensors=gguf_key("w") + struct.pack("<IQQIQ", 2, 4096, 4096, 0, 0),
                                       n_tensors=1),
        "tensor-dims": gguf_header(arch, tensors=gguf_key("w") + struct.pack("<I", 9), n_tensors=1),
    }
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for name, data in lies.items():
        path = tmp_path / f"{name}.gguf"
        path.write_bytes(data)
        with pytest.raises(InvalidInput, match=f"{name}.gguf") as info:
            read_header(path).check_model()
        assert "\n" not in str(info.value)
    assert len(lies["huge-array"]) < 120
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB: nothing was allocated


def test_a_blob_is_stored_without_holding_the_stores_write_lock_and_only_once_whole(store):
    """A 500 MiB upload held the lock every enrollment and report waits for; now only its last step does."""
    seen = []

    def chunks():
        for i in range(20):
            seen.append(store._write.locked())
            assert store.blob("b" * 64) is None  # not visible before every chunk is in
            yield bytes([i]) * 1000

    store.put_blob("b" * 64, 20_000, chunks())
    assert seen == [False] * 20
    assert b"".join(store.blob_chunks("b" * 64)) == b"".join(bytes([i]) * 1000 for i in range(20))

    def dies():
        yield b"x" * 10
        raise OSError("connection lost")

    with pytest.raises(OSError):
        store.put_blob("d" * 64, 20, dies())
    assert store.blob("d" * 64) is None
    store.put_blob("d" * 64, 20, [b"y" * 10, b"z" * 10])  # the retry replaces the dead upload's chunks
    assert b"".join(store.blob_chunks("d" * 64)) == b"y" * 10 + b"z" * 10


def test_a_corrupt_sqlite_file_is_one_line_and_exit_2_at_start_up(tmp_path):
    from edgeatlas.coordinator.store import Store
    from tests.conftest import run_cli

    good = tmp_path / "c.db"
    Store(f"sqlite:///{good}").close()
    data = bytearray(good.read_bytes())
    data[3 * 4096:6 * 4096] = b"\xab" * (3 * 4096)  # pages past the header: it opens, its tables do not read
    (tmp_path / "pages.db").write_bytes(bytes(data))
    (tmp_path / "junk.db").write_bytes(b"not a database" * 500)
    for name, says in (("pages.db", "is corrupt (integrity check: "), ("junk.db", "cannot be opened")):
        proc = run_cli("coordinator", "serve", "--db", f"sqlite:///{tmp_path / name}", "--listen", "127.0.0.1:0",
                       timeout=60)
        assert proc.returncode == 2 and says in proc.stderr and name in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


def test_a_new_start_up_token_revokes_the_earlier_one_and_no_other(store):
    store.add_token("admin", "made-by-token-create")
    assert store.bootstrap_token("admin", "first") == 0
    assert store.bootstrap_token("admin", "first") == 0  # the same token again: a restart, nothing revoked
    assert store.bootstrap_token("admin", "second") == 1
    assert not store.check_token("admin", "first") and store.check_token("admin", "second")
    assert store.check_token("admin", "made-by-token-create")  # tokens made by `token create` are kept
    assert store.bootstrap_token("enroll", "e1") == 0 and store.check_token("admin", "second")
    with pytest.raises(InvalidInput, match="another kind"):
        store.bootstrap_token("enroll", "second")
