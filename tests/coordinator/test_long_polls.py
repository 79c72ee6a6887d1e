"""What a fleet of waiting devices costs the coordinator: credentials looked up many to a query, and no
lease query while no running campaign has an open task (bench/scale_out.py part 3 measures the whole)."""

from __future__ import annotations

import asyncio

import pytest

from edgeatlas.coordinator.services.agent_service import CredentialLookups, OpenWork, Wakeup
from edgeatlas.coordinator.store import Store
from edgeatlas.coordinator.store import agents as storage
from edgeatlas.protos.records import RunParams, Setting

from tests.coordinator.test_storage import SPEC, enroll


class Counting:
    """The store, counting calls of one method."""

    def __init__(self, store: Store, name: str, fail: Exception | None = None):
        self.store, self.name, self.fail, self.calls = store, name, fail, []

    def __getattr__(self, attr):
        real = getattr(self.store, attr)
        if attr != self.name:
            return real

        def counted(*args):
            self.calls.append(args)
            if self.fail is not None:
                raise self.fail
            return real(*args)
        return counted


def test_many_credentials_are_looked_up_in_chunks_leaving_out_revoked_and_unknown(store, monkeypatch):
    monkeypatch.setattr(storage, "LOOKUP_CHUNK", 7)  # several chunks from a few agents
    agents = [store.enroll(f"a{i}", SPEC, f"hash-{i}", {}, "t") for i in range(20)]
    store.revoke_agent(agents[3].agent_id)
    asked = [f"hash-{i}" for i in range(20)] + ["hash-nobody"]
    found = store.agents_by_credentials(asked)
    assert set(found) == {f"hash-{i}" for i in range(20) if i != 3}
    assert all(found[f"hash-{i}"].agent_id == agents[i].agent_id for i in range(20) if i != 3)
    assert store.cached_agent("hash-5").agent_id == agents[5].agent_id  # remembered
    assert store.cached_agent("hash-nobody") is None and store.cached_agent("hash-3") is None


def test_a_revocation_counted_in_the_background_empties_the_cache(db_url):
    here, there = Store(db_url), Store(db_url)
    try:
        a = enroll(here, "a")
        here.count_revocations()
        assert here.agent_by_credential("hash-a").agent_id == a.agent_id
        there.revoke_agent(a.agent_id)
        assert here.cached_agent("hash-a") is not None  # not counted yet: the bound is CREDENTIAL_CACHE_S
        here.count_revocations()  # what the server does every third of it
        assert here.cached_agent("hash-a") is None and here.agent_by_credential("hash-a") is None
    finally:
        here.close()
        there.close()


def test_misses_that_arrive_together_share_queries_and_each_gets_its_own_agent(store):
    agents = [store.enroll(f"a{i}", SPEC, f"hash-{i}", {}, "t") for i in range(300)]
    counting = Counting(store, "agents_by_credentials")

    async def main():
        lookups = CredentialLookups(counting)
        return await asyncio.gather(*(lookups.agent(f"hash-{i}") for i in [*range(300), 7, 7]),
                                    lookups.agent("hash-nobody"))

    got = asyncio.run(main())
    assert [g.agent_id for g in got[:300]] == [a.agent_id for a in agents]
    assert got[300].agent_id == got[301].agent_id == agents[7].agent_id and got[302] is None
    assert len(counting.calls) <= 2  # the first caller's query, then all who came while it ran


def test_a_failed_lookup_is_each_callers_error_and_the_next_ones_ask_again(store):
    enroll(store, "a")
    counting = Counting(store, "agents_by_credentials", fail=RuntimeError("database away"))

    async def main():
        lookups = CredentialLookups(counting)
        results = await asyncio.gather(*(lookups.agent("hash-a") for _ in range(3)), return_exceptions=True)
        counting.fail = None
        return results, await lookups.agent("hash-a")

    results, later = asyncio.run(main())
    assert all(isinstance(r, RuntimeError) for r in results)
    assert later is not None and later.name == "a"


def test_no_lease_query_while_nothing_is_open_and_new_work_is_seen_after_its_wake_up(store):
    counting = Counting(store, "any_open_task")

    async def main():
        wakeup = Wakeup()
        work = OpenWork(counting, wakeup)
        quiet = await asyncio.gather(*(work.exists() for _ in range(50)))
        asked_quiet = len(counting.calls)
        store.create_campaign("c", store.resolve_models(["m1"]), {}, 1, Setting(threads=1), RunParams())
        unannounced = await work.exists()  # committed, but nobody said so yet
        wakeup.wake()  # what a campaign's creation does, here or through the replicas' bus
        return quiet, asked_quiet, unannounced, await work.exists(), len(counting.calls)

    enroll(store, "a")
    quiet, asked_quiet, unannounced, announced, asked = asyncio.run(main())
    assert quiet == [False] * 50 and asked_quiet == 1  # one query for all fifty
    assert unannounced is False and announced is True and asked == 2


def test_a_paused_campaigns_tasks_are_no_open_work(store):
    enroll(store, "a")
    cid = store.create_campaign("c", store.resolve_models(["m1"]), {}, 1, Setting(threads=1), RunParams())
    assert store.any_open_task() is True
    store.set_campaign_state(cid, "pause")
    assert store.any_open_task() is False


def test_a_failed_look_for_open_work_is_asked_again_by_the_next_caller(store):
    counting = Counting(store, "any_open_task", fail=RuntimeError("database away"))

    async def main():
        work = OpenWork(counting, Wakeup())
        with pytest.raises(RuntimeError):
            await work.exists()
        counting.fail = None
        return await work.exists()

    assert asyncio.run(main()) is False and len(counting.calls) == 2
