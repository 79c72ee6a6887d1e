"""Preparing a model for the fleet: validate, content-address, summarise, and fix reference data."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeatlas.predictor.graph import load_onnx, onnx_summary
from edgeatlas.protos import inputs
from edgeatlas.protos.errors import InvalidInput
from edgeatlas.protos.gguf import FILE_TYPES, GGUFHeader, read_header
from edgeatlas.protos.inputs import to_json
from edgeatlas.protos.onnx_model import declared_inputs

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
    inputs: tuple = ()  # the input spec (protos/inputs.py)

    @property
    def reference_sha256(self) -> str:
        return hashlib.sha256(self.reference_npz).hexdigest() if self.reference_npz else ""

    @property
    def inputs_json(self) -> str:
        return to_json(self.inputs) if self.inputs else ""


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def reference_outputs(path: str | Path, specs: tuple, feeds: dict) -> bytes:
    """The spec's inputs at batch 1 (`feeds`) and the outputs of an unoptimised single-threaded CPU run,
    as npz bytes."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        outputs = session.run(names, feeds)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InvalidInput(f"{Path(path).name} does not run in ONNX Runtime at inputs "
                           f"{inputs.describe(specs)}: {first[:300]}") from None
    buf = io.BytesIO()
    arrays = {f"input:{k}": v for k, v in feeds.items()}
    arrays.update({f"output:{k}": v for k, v in zip(names, outputs)})
    np.savez(buf, **arrays)
    return buf.getvalue()


def gguf_summary(header: GGUFHeader) -> dict:
    """Parameters (every tensor's elements, as llama.cpp counts them), FLOPs per decoded token, the
    architecture config and quantisation of a GGUF model, from its header (read once)."""
    arch = header.architecture
    config = {key: header.value(f"{arch}.{key}") for key in
              ("context_length", "embedding_length", "block_count", "feed_forward_length",
               "attention.head_count", "attention.head_count_kv")}
    file_type = header.value("general.file_type")
    known = FILE_TYPES.get(file_type)
    # a decoded token multiplies through every weight once, but looks its embedding up (no arithmetic) unless
    # the output projection is that same table (tied)
    tied = "output.weight" not in header.tensors
    macs = header.parameters - (0 if tied else header.tensors.get("token_embd.weight", 0))
    return {"parameters": header.parameters, "macs": macs, "flops": 2 * macs, "tied_embedding": tied,
            "architecture": arch, "config": config, "vocab_size": header.value("tokenizer.ggml.tokens"),
            "quantisation": known.name if known else str(file_type),
            "precision": known.name if known else "unknown", "tensor_types": header.tensor_types,
            "ops": {}}


def gguf_reference(path: Path) -> bytes:
    """Reference logits where llama-cpp-python is installed here; otherwise none (fidelity not checked)."""
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None:
        return b""
    from edgeatlas.agent.runners.llamacpp import reference_npz
    return reference_npz(path)


def prepare(path: str | Path, name: str | None = None, request: inputs.InputRequest | None = None) -> PreparedModel:
    """A model checked and summarised at the inputs `request` asks for (a dynamic dimension it leaves open
    is refused), with its reference data made at those inputs."""
    path = Path(path)
    if path.suffix.lower() == ".gguf":
        if request is not None and not request.empty:
            raise InvalidInput("--input, --dim and --values are for ONNX models; a GGUF model's prompt and "
                               "output lengths are campaign settings (--param prompt_tokens=N)")
        header = read_header(path).check_model()
        return PreparedModel(name=name or path.stem, path=path, sha256=sha256_file(path),
                             size_bytes=path.stat().st_size, summary=gguf_summary(header),
                             reference_npz=gguf_reference(path), format="gguf")
    if path.suffix.lower() != ".onnx":
        raise InvalidInput(f"{path.name}: models are .onnx (ONNX Runtime) or .gguf (llama.cpp)")
    model = load_onnx(path, check=True)
    declared, outputs = declared_inputs(model)
    specs = inputs.resolve(declared, request, outputs)
    feeds = inputs.feeds(specs, batch=1, seed=REFERENCE_SEED, samples=request.samples if request else {})
    reference = reference_outputs(path, specs, feeds)  # first: a model that does not run is refused here
    summary = onnx_summary(model, specs, feeds=feeds)  # its "shapes": for the coordinator's featurizer
    return PreparedModel(name=name or path.stem, path=path, sha256=sha256_file(path),
                         size_bytes=path.stat().st_size, summary=summary, reference_npz=reference, inputs=specs)


def summary_json(prepared: PreparedModel) -> str:
    return json.dumps(prepared.summary, separators=(",", ":"))
