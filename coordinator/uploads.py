"""Checks of uploaded model bytes before they are registered: a model the fleet's runtimes can load, and
nothing that reaches outside its own bytes."""

from __future__ import annotations

import tempfile

from edgeatlas.protos.errors import InvalidInput


def check_model(store, fmt: str, sha256: str, inputs_json: str = "") -> str:
    """The uploaded blob `sha256` is a valid model of `fmt` (onnx | gguf) and the input spec fits it; one
    InvalidInput line otherwise. Returns the spec to store: the one given, or for an ONNX model sent without
    one, the spec its own declared shapes give (refused when a dimension is dynamic)."""
    if store.blob(sha256) is None:
        raise InvalidInput(f"model bytes {sha256[:16]} were not uploaded")
    if fmt == "gguf":
        if inputs_json:
            raise InvalidInput("a GGUF model takes no input spec: its prompt is set by the campaign")
        _check_gguf(store, sha256)
        return ""
    return _check_onnx(store, sha256, inputs_json)


def _check_gguf(store, sha256: str) -> None:
    from edgeatlas.protos.gguf import read_header

    with tempfile.NamedTemporaryFile(suffix=".gguf") as f:  # the reader maps a file
        for chunk in store.blob_chunks(sha256):
            f.write(chunk)
        f.flush()
        read_header(f.name).check_model()


def _check_onnx(store, sha256: str, inputs_json: str) -> str:
    import onnx

    from edgeatlas.protos import inputs, onnx_model

    specs = inputs.from_json(inputs_json)  # bounds first: before the model is parsed

    try:
        model = onnx.load_from_string(b"".join(store.blob_chunks(sha256)))
    except Exception as exc:
        raise InvalidInput(f"not a valid ONNX model: {type(exc).__name__}") from None
    external = [t.name for t in _tensors(model.graph) if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:  # it would name files on the coordinator's disk: their existence would leak, or worse
        raise InvalidInput(f"tensor {external[0][:60]!r} keeps its data in an external file: upload one "
                           f"self-contained ONNX file (onnx.save with save_as_external_data=False)")
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InvalidInput(f"not a valid ONNX model: {first[:300]}") from None
    declared, outputs = onnx_model.declared_inputs(model)
    if not specs:
        return inputs.to_json(inputs.resolve(declared, None, outputs))
    inputs.check_against(declared, specs, outputs)
    return inputs.to_json(specs)


def _tensors(graph):
    """Every TensorProto of a graph: initializers, Constant values and those of subgraphs (If, Loop, Scan)."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _tensors(sub)
