"""Two coordinator replicas on one PostgreSQL behind HAProxy (scripts/balancer), all real processes on
127.0.0.1: a campaign runs through the balancer while one replica is killed (kill -9) mid-campaign; new work
and revocations made through one replica reach the other at once; a secure round runs through both."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time

import grpc
import pytest
import yaml

from edgeatlas.agent.outbox import Outbox
from edgeatlas.agent.simulate import load_catalog
from edgeatlas.protos.admin_client import AdminClient
from edgeatlas.protos.privacy import PrivacyParams
from edgeatlas.protos.records import RunParams, Setting
from edgeatlas.protos.wire import bearer
from edgeatlas.v1 import agent_pb2, agent_pb2_grpc

from tests.balancer import Balancer, replica, role
from tests.conftest import cli_env, register, stop_pid
from tests.integration.test_campaign import wait_for
from tests.integration.test_crash import OPTIONS, stored_report_ids, virtual_agent
from tests.integration.test_secure_rounds import PI5

pytestmark = pytest.mark.slow

AGENTS, REPEATS = 12, 20


@pytest.fixture
def cluster(postgres, tmp_path):
    db = postgres.create_database(f"r{abs(hash(str(tmp_path))) % 10**12}")
    extra = ("--report-rate", "6000", "--secure-stage-timeout", "20")
    first = replica(tmp_path / "r1", db, None, *extra).start()
    second = replica(tmp_path / "r2", db, tmp_path / "r1", *extra).start()
    balancer = Balancer(tmp_path, [first, second]).start()
    wait_for(lambda: sorted(role(r) for r in (first, second)) == ["follower", "leader"], 30, "one leader")
    yield first, second, balancer
    balancer.stop()
    for r in (first, second):
        r.stop()


def enroll(address: str, token: str, n: int, name: str = "sim") -> list[str]:
    catalog = load_catalog()
    with grpc.insecure_channel(address) as channel:
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        return [stub.Enroll(agent_pb2.EnrollRequest(
            enrollment_token=token, spec_json=json.dumps(dict(catalog[i % len(catalog)].data, simulated=True)),
            name=f"{name}-{i}", simulated=True, labels={"simulated": "true"}), timeout=30).credential
            for i in range(n)]


async def campaign_through_a_kill(balancer, credentials, tmp_path, victim) -> tuple[list[str], int, float]:
    acked: list[str] = []
    async with grpc.aio.insecure_channel(balancer.address, options=OPTIONS) as channel:
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        agents = [asyncio.create_task(virtual_agent(stub, cred, Outbox(tmp_path / f"outbox-{i}"), acked))
                  for i, cred in enumerate(credentials)]
        while len(acked) < AGENTS * REPEATS // 3:
            await asyncio.sleep(0.01)
        before = len(acked)
        await asyncio.to_thread(victim.kill)  # SIGKILL while reports and leases are in flight through it
        killed_at = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*agents), timeout=300)
    return acked, before, killed_at


def test_a_campaign_through_the_balancer_survives_the_leader_killed_mid_campaign(cluster, prepared_zoo, tmp_path):
    first, second, balancer = cluster
    leader, follower = (first, second) if role(first) == "leader" else (second, first)
    with AdminClient(balancer.address, first.admin_token) as admin:
        register(admin, prepared_zoo, ["mlp-s"])
    credentials = enroll(balancer.address, first.enroll_token, AGENTS)
    with AdminClient(balancer.address, first.admin_token) as admin:
        admin.create_campaign(["mlp-s"], {"label.simulated": "true"}, REPEATS, Setting(threads=1), RunParams())
    acked, before, killed_at = asyncio.run(campaign_through_a_kill(balancer, credentials, tmp_path, leader))
    total = AGENTS * REPEATS
    assert 0 < before < total  # the kill came mid-campaign
    assert len(acked) == len(set(acked)) == total  # every report acknowledged once
    wait_for(lambda: role(follower) == "leader", 15, "the surviving replica to lead")
    took_over_s = time.monotonic() - killed_at
    with AdminClient(balancer.address, first.admin_token) as admin:
        campaign = admin.list_campaigns()[0]
        cells = admin.heatmap().cells
    stored = stored_report_ids(follower.db_url)
    assert sorted(stored) == sorted(acked)  # each acknowledged report present, exactly once; nothing else
    assert (campaign.status, campaign.counts.done, campaign.counts.failed) == ("done", total, 0)
    assert sum(cell.n_reports for cell in cells) == total  # folded once each, by whichever replica took it
    assert took_over_s < 15


def test_new_work_and_a_revocation_through_one_replica_reach_the_other_at_once(cluster, prepared_zoo):
    first, second, _ = cluster
    with first.admin() as admin:
        register(admin, prepared_zoo, ["mlp-s"])
    credential, bystander = enroll(first.address, first.enroll_token, 2)
    waited: dict[str, float] = {}

    def long_poll() -> None:  # waits on the first replica for work that appears through the second
        with grpc.insecure_channel(first.address) as channel:
            t0 = time.monotonic()
            lease = agent_pb2_grpc.AgentServiceStub(channel).LeaseTask(
                agent_pb2.LeaseTaskRequest(wait_s=20), metadata=bearer(credential), timeout=30)
            waited["s"] = time.monotonic() - t0 if lease.has_task else float("inf")

    poll = threading.Thread(target=long_poll)
    poll.start()
    time.sleep(1.0)  # the poll has looked once and is waiting
    with second.admin() as admin:
        admin.create_campaign(["mlp-s"], {"label.simulated": "true"}, 1, Setting(threads=1), RunParams())
    poll.join(timeout=30)
    # it waited 1 s before the campaign; between its looks it waits LEASE_POLL_S (20 s): only the bus wakes it
    # this soon
    assert waited["s"] < 1.0 + 2.0, f"lease arrived {waited['s'] - 1.0:.2f} s after the campaign"

    with grpc.insecure_channel(first.address) as channel:
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        stub.Heartbeat(agent_pb2.HeartbeatRequest(state="idle"), metadata=bearer(bystander), timeout=5)  # cached
        agent_id = next(a.agent_id for a in first.admin().list_agents() if a.name == "sim-1")
        with second.admin() as admin:
            admin.revoke_agent(agent_id)
        revoked = time.monotonic()
        refused = None
        while time.monotonic() - revoked < 5 and refused is None:
            try:
                stub.Heartbeat(agent_pb2.HeartbeatRequest(state="idle"), metadata=bearer(bystander), timeout=5)
                time.sleep(0.05)
            except grpc.RpcError as exc:
                refused = (exc.code(), time.monotonic() - revoked)
    # the credential cache's own bound is 10 s: refused within 2 s, the bus told the first replica
    assert refused is not None and refused[0] == grpc.StatusCode.UNAUTHENTICATED and refused[1] < 2.0


def test_a_secure_round_runs_through_both_replicas(cluster, prepared_zoo, tmp_path):
    first, second, balancer = cluster
    with first.admin() as admin:
        register(admin, prepared_zoo, ["mlp-s", "resnet-s"])
    catalog = tmp_path / "one-device.yaml"
    catalog.write_text(yaml.safe_dump([PI5]))
    env = cli_env(EDGEATLAS_COORDINATOR=balancer.address, EDGEATLAS_ENROLL_TOKEN=first.enroll_token)
    fleet = subprocess.Popen([sys.executable, "-m", "edgeatlas", "fleet", "simulate", "--agents", "5",
                              "--catalog", str(catalog), "--duration", "150"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for(lambda: len(first.admin().list_agents()) >= 5, 60, "five simulated agents")
        with second.admin() as admin:
            admin.create_campaign(["mlp-s", "resnet-s"], {"label.simulated": "true"}, 1, Setting(), RunParams(),
                                  privacy=PrivacyParams(mode="secure", cohort_min=5))

        def published():
            with first.admin() as admin:
                found = [c for c in admin.heatmap().cells if c.source == "simulated"]
            return len(found) == 2 and found

        cells = wait_for(published, 150, "two secure cells")
    finally:
        stop_pid(fleet)
    for cell in cells:
        assert cell.privacy == "secure gaussian ε=1 δ=1e-06, simulated" and cell.n_devices == 5
    logs = [(r.workdir / "coordinator.log").read_text() for r in (first, second)]
    assert sum("secure round" in log and "published" in log for log in logs) == 1  # the leader ran it


def test_a_follower_relays_over_tls_to_a_leader_whose_certificate_a_ca_signed(postgres, tmp_path):
    """Each replica with its own certificate from the fleet CA (`tls make` signs with it): a follower
    trusting only its own certificate (the default without --tls-client-ca) cannot verify the leader; with
    --tls-peer-ca it can, and the leader answers the relayed call itself (here: the credential is wrong).
    Replicas sharing one certificate verify each other without it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID

    from edgeatlas.console import tls as material
    from edgeatlas.coordinator.replicas import Relay
    from edgeatlas.coordinator.server import ServerTls
    from edgeatlas.coordinator.store import Store

    folder = tmp_path / "tls"
    pem = material.make_certificates(folder, ["127.0.0.1"])
    cert, key, ca = str(pem["server"]), str(folder / "server.key"), str(pem["ca"])
    ca_key = serialization.load_pem_private_key((folder / "ca.key").read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate(pem["ca"].read_bytes())
    own_key = material._key()  # the follower's own certificate, from the same CA
    own = material._cert("127.0.0.1", own_key, ca_cert.subject, ca_key, ca=False,
                         usage=ExtendedKeyUsageOID.SERVER_AUTH, hosts=["127.0.0.1"])
    (folder / "follower.pem").write_bytes(own.public_bytes(serialization.Encoding.PEM))
    (folder / "follower.key").write_bytes(material._pem_key(own_key))
    url = postgres.create_database(f"t{abs(hash(str(tmp_path))) % 10**12}")
    leader = replica(tmp_path / "r0", url, None, "--tls-cert", cert, "--tls-key", key, "--tls-peer-ca", ca).start()
    store = Store(url)
    try:
        wait_for(lambda: role(leader) == "leader", 15, "the replica to lead")

        async def relayed(tls: ServerTls) -> grpc.StatusCode:
            relay = Relay(store, None, tls.peer_credentials())
            try:
                await relay.secure_round(agent_pb2.SecureRoundRequest(), [("authorization", "Bearer not-a-device")],
                                         timeout_s=10)
            except grpc.aio.AioRpcError as exc:
                return exc.code()
            finally:
                await relay.close()
            raise AssertionError("the leader answered a call without a valid credential")

        follower = str(folder / "follower.pem"), str(folder / "follower.key")
        assert asyncio.run(relayed(ServerTls(*follower, peer_ca=ca))) == grpc.StatusCode.UNAUTHENTICATED
        assert asyncio.run(relayed(ServerTls(*follower))) == grpc.StatusCode.UNAVAILABLE  # handshake refused
        assert asyncio.run(relayed(ServerTls(cert, key))) == grpc.StatusCode.UNAUTHENTICATED  # one shared certificate
    finally:
        store.close()
        leader.stop()
