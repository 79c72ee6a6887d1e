"""Preparing a model for the fleet: validate, content-address, summarise, and fix reference data."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeatlas.predictor.graph import load_onnx, onnx_summary
from edgeatlas.protos.errors import InvalidInput
from edgeatlas.protos.gguf import FILE_TYPES, read_header

REFERENCE_SEED = 20261128


@dataclass(frozen=True)
class PreparedModel:
    name: str
    path: Path
    sha256: str
    size_bytes: int
    summary: dict
    reference_npz: bytes  # "input:<name>" fixed inputs, "output:<name>" reference outputs, batch 1
    format: str = "onnx"  # onnx | gguf

    @property
    def reference_sha256(self) -> str:
        return hashlib.sha256(self.reference_npz).hexdigest() if self.reference_npz else ""


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def reference_outputs(path: str | Path) -> bytes:
    """Fixed seeded inputs and the outputs of an unoptimised single-threaded CPU run, as npz bytes."""
    import onnxruntime as ort

    from edgeatlas.agent.runners.onnxruntime import synthetic_inputs

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feeds = synthetic_inputs(session, batch=1, seed=REFERENCE_SEED)
        names = [o.name for o in session.get_outputs()]
        outputs = session.run(names, feeds)
    except InvalidInput:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InvalidInput(f"{Path(path).name} does not run in ONNX Runtime: {first[:300]}") from None
    buf = io.BytesIO()
    arrays = {f"input:{k}": v for k, v in feeds.items()}
    arrays.update({f"output:{k}": v for k, v in zip(names, outputs)})
    np.savez(buf, **arrays)
    return buf.getvalue()


def gguf_summary(path: Path) -> dict:
    """Parameters, FLOPs per decoded token, the architecture config and quantisation of a GGUF model."""
    header = read_header(path).check_model()
    arch = header.architecture
    config = {key: header.value(f"{arch}.{key}") for key in
              ("context_length", "embedding_length", "block_count", "feed_forward_length",
               "attention.head_count", "attention.head_count_kv")}
    file_type = header.value("general.file_type")
    known = FILE_TYPES.get(file_type)
    return {"parameters": header.parameters, "macs": header.parameters, "flops": 2 * header.parameters,
            "architecture": arch, "config": config, "vocab_size": header.value("tokenizer.ggml.tokens"),
            "quantisation": known.name if known else str(file_type), "tensor_types": header.tensor_types,
            "ops": {}}


def gguf_reference(path: Path) -> bytes:
    """Reference logits where llama-cpp-python is installed here; otherwise none (fidelity not checked)."""
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None:
        return b""
    from edgeatlas.agent.runners.llamacpp import reference_npz
    return reference_npz(path)


def prepare(path: str | Path, name: str | None = None) -> PreparedModel:
    path = Path(path)
    if path.suffix.lower() == ".gguf":
        summary = gguf_summary(path)
        return PreparedModel(name=name or path.stem, path=path, sha256=sha256_file(path),
                             size_bytes=path.stat().st_size, summary=summary, reference_npz=gguf_reference(path),
                             format="gguf")
    if path.suffix.lower() != ".onnx":
        raise InvalidInput(f"{path.name}: models are .onnx (ONNX Runtime) or .gguf (llama.cpp)")
    summary = onnx_summary(load_onnx(path, check=True))
    return PreparedModel(name=name or path.stem, path=path, sha256=sha256_file(path),
                         size_bytes=path.stat().st_size, summary=summary,
                         reference_npz=reference_outputs(path))


def summary_json(prepared: PreparedModel) -> str:
    return json.dumps(prepared.summary, separators=(",", ":"))
