"""Regenerates the committed protobuf/gRPC stubs from protos/edgeatlas/v1/*.proto."""

from __future__ import annotations

import sys
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent
PROTO_DIR = PROTO_ROOT / "edgeatlas" / "v1"


def proto_files() -> list[Path]:
    return sorted(PROTO_DIR.glob("*.proto"))


def generate(out_root: Path) -> list[Path]:
    """Writes the stubs under out_root/edgeatlas/v1/ and returns their paths."""
    from grpc_tools import protoc  # dev-only dependency
    import grpc_tools

    include = Path(grpc_tools.__file__).parent / "_proto"
    (out_root / "edgeatlas" / "v1").mkdir(parents=True, exist_ok=True)
    args = ["grpc_tools.protoc", f"-I{PROTO_ROOT}", f"-I{include}",
            f"--python_out={out_root}", f"--grpc_python_out={out_root}"]
    args += [str(p.relative_to(PROTO_ROOT)) for p in proto_files()]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed on " + ", ".join(p.name for p in proto_files()))
    return sorted((out_root / "edgeatlas" / "v1").glob("*_pb2*.py"))


if __name__ == "__main__":
    written = generate(PROTO_ROOT)
    print("\n".join(str(p.relative_to(PROTO_ROOT)) for p in written))
    sys.exit(0)
