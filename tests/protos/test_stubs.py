"""The committed gRPC stubs must be what the committed .proto files generate."""

from edgeatlas.protos import codegen


def test_generated_stubs_match_protos(tmp_path):
    fresh = codegen.generate(tmp_path)
    assert {p.name for p in fresh} >= {"agent_pb2.py", "agent_pb2_grpc.py", "admin_pb2.py", "common_pb2.py"}
    stale = [p.name for p in fresh if (codegen.PROTO_DIR / p.name).read_bytes() != p.read_bytes()]
    assert not stale, f"stubs are stale; run `python protos/codegen.py`: {stale}"


def test_every_generated_stub_is_committed(tmp_path):
    fresh = {p.name for p in codegen.generate(tmp_path)}
    committed = {p.name for p in codegen.PROTO_DIR.glob("*_pb2*.py")}
    assert fresh == committed
