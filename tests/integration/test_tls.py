"""TLS and mutual TLS on real sockets, with certificates made by `edgeatlas tls make`."""

import pytest

from edgeatlas.protos.admin_client import AdminClient
from edgeatlas.protos.errors import InvalidInput, Unavailable
from edgeatlas.protos.wire import ClientTls, open_channel

from tests.conftest import CoordinatorProcess, cli_env, run_cli

pytestmark = pytest.mark.slow

@pytest.fixture
def mtls(tmp_path):
    certs = tmp_path / "certs"
    made = run_cli("tls", "make", "--out", str(certs), "--host", "127.0.0.1")
    assert made.returncode == 0, made.stderr
    assert (certs / "server.key").stat().st_mode & 0o077 == 0
    c = CoordinatorProcess(tmp_path, tmp_path / "c.db", extra_args=(
        "--tls-cert", str(certs / "server.pem"), "--tls-key", str(certs / "server.key"),
        "--tls-client-ca", str(certs / "ca.pem"))).start()
    yield c, certs
    c.stop()

def test_mutual_tls_admits_only_certified_clients(mtls, tmp_path):
    c, certs = mtls
    full = ClientTls(ca=str(certs / "ca.pem"), cert=str(certs / "client.pem"), key=str(certs / "client.key"))
    with AdminClient(c.address, c.admin_token, full) as admin:
        assert admin.list_models() == []
    for tls in (None, ClientTls(ca=str(certs / "ca.pem"))):  # plaintext, or TLS without a client certificate
        with AdminClient(c.address, c.admin_token, tls) as admin, pytest.raises(Unavailable):
            admin.list_models()
    # an agent over mutual TLS enrolls and polls
    proc = run_cli("agent", "run", "--coordinator", c.address, "--once",
                   "--state-dir", str(tmp_path / "a"), "--tls-ca", str(certs / "ca.pem"),
                   "--tls-cert", str(certs / "client.pem"), "--tls-key", str(certs / "client.key"), timeout=120,
                   env=cli_env(EDGEATLAS_ENROLL_TOKEN=c.enroll_token))
    assert proc.returncode == 0, proc.stderr
    with AdminClient(c.address, c.admin_token, full) as admin:
        assert len(admin.list_agents()) == 1

def test_tls_files_are_checked(tmp_path):
    (tmp_path / "not.pem").write_text("hello")
    with pytest.raises(InvalidInput, match="is not a PEM file"):
        open_channel("127.0.0.1:1", ClientTls(ca=str(tmp_path / "not.pem")))
    with pytest.raises(InvalidInput, match="cannot read"):
        open_channel("127.0.0.1:1", ClientTls(ca=str(tmp_path / "missing.pem")))
    proc = run_cli("heatmap", "--admin-token", "x", "--tls-cert", "c.pem")
    assert proc.returncode == 2 and "--tls-ca" in proc.stderr
