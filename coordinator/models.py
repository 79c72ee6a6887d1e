"""Preparing a model for the fleet: validate, content-address, summarise, and fix reference data."""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeatlas.protos.errors import InvalidInput

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


def load_onnx(path: str | Path):
    """The parsed, checked ModelProto, or one readable InvalidInput line."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"model file {path} does not exist")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:  # protobuf DecodeError, onnx ValidationError, ...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InvalidInput(f"{path.name} is not a valid ONNX model: {first[:300]}") from None
    return model


def summarise(model) -> dict:
    """Parameters, multiply-accumulates and FLOPs at batch 1, op histogram."""
    import onnx

    params = int(sum(np.prod(t.dims) for t in model.graph.initializer))
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for value in list(fixed.graph.input) + list(fixed.graph.output):
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param"):
                dim.dim_value = 1
    try:
        inferred = onnx.shape_inference.infer_shapes(fixed)
    except Exception:
        inferred = fixed
    shapes = {}
    for value in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        dims = [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]
        shapes[value.name] = dims
    for t in inferred.graph.initializer:
        shapes[t.name] = list(t.dims)
    macs = 0
    for node in inferred.graph.node:
        out = shapes.get(node.output[0]) if node.output else None
        if not out or None in out:
            continue
        out_elems = int(np.prod(out))
        if node.op_type == "Conv":
            w = shapes.get(node.input[1])
            if w and None not in w:
                macs += out_elems * int(np.prod(w[1:]))
        elif node.op_type in ("Gemm", "MatMul"):
            a = shapes.get(node.input[0])
            if a and a[-1]:
                transposed = any(at.name == "transA" and at.i for at in node.attribute)
                k = a[-2] if transposed and len(a) >= 2 else a[-1]
                macs += out_elems * int(k)
    return {"parameters": params, "macs": int(macs), "flops": int(2 * macs),
            "ops": dict(Counter(n.op_type for n in model.graph.node).most_common()),
            "opset": max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=None)}


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


GGUF_SCALAR_BYTES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
GGUF_STRING, GGUF_ARRAY = 8, 9
GGUF_MAX_DIMS = 4  # GGML_MAX_DIMS
GGUF_MAX_ITEMS = 1 << 24  # an array's items: vocabularies and merges are ~10^5-10^6


def check_gguf_bounds(path: Path) -> None:
    """Walks a GGUF header (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md) checking every count
    and length against the bytes the file has left before anything is allocated, and every tensor's extent
    against its data section. The gguf package's reader trusts them: a 94-byte file declaring a 2^40-item
    array grew a coordinator to 20 GB. One InvalidInput line naming the first lie."""
    import math
    import struct

    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    size = path.stat().st_size

    def bad(what: str) -> InvalidInput:
        return InvalidInput(f"{path.name} is not a valid GGUF model: {what}")

    with open(path, "rb") as f:
        def take(n: int, what: str) -> bytes:
            if n > size - f.tell():
                raise bad(f"{what} runs past the end of the file ({size} bytes)")
            return f.read(n)

        def number(fmt: str, what: str) -> int:
            return struct.unpack(fmt, take(struct.calcsize(fmt), what))[0]

        def string(what: str) -> bytes:
            return take(number("<Q", f"{what}'s length"), what)

        def skip(kind: int, what: str, depth: int = 0) -> None:
            if kind in GGUF_SCALAR_BYTES:
                take(GGUF_SCALAR_BYTES[kind], what)
            elif kind == GGUF_STRING:
                string(what)
            elif kind == GGUF_ARRAY and depth == 0:
                item, count = number("<I", what), number("<Q", f"{what}'s count")
                least = GGUF_SCALAR_BYTES.get(item, 8)  # a string or an array takes at least its 8-byte length
                if count > GGUF_MAX_ITEMS or count * least > size - f.tell():
                    raise bad(f"{what} declares {count} items, more than the file holds")
                if item in GGUF_SCALAR_BYTES:
                    take(count * least, what)
                else:
                    for _ in range(count):
                        skip(item, what, depth + 1)
            else:
                raise bad(f"{what} has value type {kind}, not one GGUF defines")

        if take(4, "magic") != b"GGUF":
            raise bad("no GGUF magic")
        version = number("<I", "version")
        if version not in (2, 3):
            raise bad(f"version {version} is not 2 or 3")
        n_tensors, n_kv = number("<Q", "tensor count"), number("<Q", "key count")
        if n_kv * 12 > size - f.tell() or n_tensors * 24 > size - f.tell():  # the smallest key and tensor entry
            raise bad(f"header declares {n_kv} keys and {n_tensors} tensors, "
                               f"more than {size} bytes hold")
        alignment = 32
        for _ in range(n_kv):
            key = string("key").decode("utf-8", "replace")
            kind = number("<I", f"value type of {key[:60]}")
            if key == "general.alignment" and kind == 4:
                alignment = number("<I", key)
                if alignment == 0 or alignment & (alignment - 1):
                    raise bad(f"general.alignment {alignment} is not a power of two")
            else:
                skip(kind, f"value of {key[:60]}")
        extents = []
        for _ in range(n_tensors):
            name = string("tensor name").decode("utf-8", "replace")[:60]
            n_dims = number("<I", f"tensor {name}'s dimensions")
            if not 1 <= n_dims <= GGUF_MAX_DIMS:
                raise bad(f"tensor {name} has {n_dims} dimensions (1..{GGUF_MAX_DIMS})")
            dims = [number("<Q", f"tensor {name}'s shape") for _ in range(n_dims)]
            kind, offset = number("<I", f"tensor {name}'s type"), number("<Q", f"tensor {name}'s offset")
            try:
                block, type_bytes = GGML_QUANT_SIZES[GGMLQuantizationType(kind)]
            except (ValueError, KeyError):
                raise bad(f"tensor {name} has type {kind}, not one ggml defines") from None
            if dims[0] % block:
                raise bad(f"tensor {name}'s rows of {dims[0]} are not whole blocks")
            extents.append((name, offset, math.prod(dims) // block * type_bytes))
        data_start = -(-f.tell() // alignment) * alignment
        for name, offset, nbytes in extents:
            if data_start + offset + nbytes > size:
                raise bad(f"tensor {name} ({nbytes} bytes at {offset}) runs past the "
                                   f"end of the file")


def read_gguf(path: str | Path) -> dict:
    """The GGUF's architecture config and quantisation, or one readable InvalidInput line."""
    from gguf import GGUFReader, GGUFValueType

    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"model file {path} does not exist")
    check_gguf_bounds(path)
    try:
        reader = GGUFReader(str(path))
    except Exception as exc:  # bad magic, truncated file, unknown version
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InvalidInput(f"{path.name} is not a valid GGUF model: {first[:300]}") from None

    def value(key: str):
        field = reader.fields.get(key)
        if field is None or not field.types:
            return None
        if field.types[0] == GGUFValueType.STRING:
            return bytes(field.parts[field.data[0]]).decode("utf-8", "replace")
        if field.types[0] == GGUFValueType.ARRAY:
            return len(field.data)
        return field.parts[field.data[0]].tolist()[0]

    arch = value("general.architecture")
    if not arch:
        raise InvalidInput(f"{path.name} is a GGUF file without general.architecture: not a model")
    params = int(sum(int(np.prod(t.shape)) for t in reader.tensors))
    if params == 0:
        raise InvalidInput(f"{path.name} holds no tensors")
    config = {key: value(f"{arch}.{key}") for key in
              ("context_length", "embedding_length", "block_count", "feed_forward_length",
               "attention.head_count", "attention.head_count_kv")}
    from edgeatlas.agent.runners.llamacpp import FILE_TYPES
    file_type = value("general.file_type")
    types = Counter(t.tensor_type.name for t in reader.tensors)
    return {"parameters": params, "macs": params, "flops": 2 * params,  # per token, decode
            "architecture": arch, "config": config, "vocab_size": value("tokenizer.ggml.tokens"),
            "quantisation": FILE_TYPES.get(file_type, str(file_type)), "tensor_types": dict(types.most_common()),
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
        summary = read_gguf(path)
        return PreparedModel(name=name or path.stem, path=path, sha256=sha256_file(path),
                             size_bytes=path.stat().st_size, summary=summary, reference_npz=gguf_reference(path),
                             format="gguf")
    if path.suffix.lower() != ".onnx":
        raise InvalidInput(f"{path.name}: models are .onnx (ONNX Runtime) or .gguf (llama.cpp)")
    model = load_onnx(path)
    summary = summarise(model)
    return PreparedModel(name=name or path.stem, path=path, sha256=sha256_file(path),
                         size_bytes=path.stat().st_size, summary=summary,
                         reference_npz=reference_outputs(path))


def summary_json(prepared: PreparedModel) -> str:
    return json.dumps(prepared.summary, separators=(",", ":"))
