"""What an ONNX graph says about itself without running it: the inputs it declares, its weights (initializers
and Constant nodes alike) and the precision its weights and operators compute in.

Read by the console (`models add`), the predictor's featurizer and, where the `onnx` package is installed,
the agent (`agent bench` on a local file); a device without it takes these facts from the model reference.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from edgeatlas.protos.inputs import ModelInput, declared_dim

# Inputs of quantised operators that are scales or zero points, not weights (ONNX operator specs).
_QUANT_ARGS = {"QuantizeLinear": (1, 2), "DequantizeLinear": (1, 2), "DynamicQuantizeLinear": (),
               "QLinearConv": (1, 2, 4, 5, 6, 7), "QLinearMatMul": (1, 2, 4, 5, 6, 7),
               "MatMulInteger": (2, 3), "ConvInteger": (2, 3), "MatMulIntegerToFloat": (2, 3, 4, 5),
               "DynamicQuantizeMatMul": (2, 3), "DynamicQuantizeLSTM": (8, 9, 10, 11),
               "QGemm": (1, 2, 4, 5, 7, 8), "QAttention": (3, 4, 6, 7)}
# Inputs of quantised operators that are a bias quantized to int32: learned, so parameters (a float model
# counts its biases; its statically quantized twin stores the same ones in int32).
_QUANT_BIAS = {"QLinearConv": (8,), "QGemm": (6,), "DequantizeLinear": (0,)}
# Operators that compute on integers: their presence with int8 weights makes the model int8.
INTEGER_OPS = frozenset({"QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger", "MatMulIntegerToFloat",
                         "DynamicQuantizeMatMul", "DynamicQuantizeLSTM", "QGemm", "QAttention", "DequantizeLinear",
                         "QLinearAdd", "QLinearMul", "QLinearConcat", "QLinearSigmoid", "QLinearGlobalAveragePool"})
_PRECISION = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16", "float64": "fp64", "int8": "int8",
              "uint8": "int8", "int4": "int4", "uint4": "int4"}
MIXED_SHARE = 0.25  # a second precision carrying at least this share of the weights makes a model "mixed"


def attribute(node, name: str, default):
    """A node's attribute's value, or `default` where it is absent or, for a number, not a number (a hostile
    file's string where a count belongs: ONNX Runtime refuses that graph, and so nothing is counted from it)."""
    from onnx import helper

    found = next((a for a in node.attribute if a.name == name), None)
    value = default if found is None else helper.get_attribute_value(found)
    if isinstance(default, (int, float)) and not isinstance(value, (int, float)):
        return default
    return value


@dataclass(frozen=True)
class Weight:
    name: str
    dtype: str
    dims: tuple


def _dtype(elem_type: int) -> str:
    from onnx import helper

    if elem_type == 16:
        return "bfloat16"
    if elem_type in (21, 22):
        return "uint4" if elem_type == 21 else "int4"
    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).name
    except (KeyError, TypeError, ValueError):
        return f"onnx type {elem_type}"


def nodes(graph):
    """Every node of a graph and of its subgraphs (If branches, Loop and Scan bodies)."""
    for node in graph.node:
        yield node
        for a in node.attribute:
            for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                yield from nodes(sub)


def subgraphs(graph):
    """A graph and every graph nested in it (If branches, Loop and Scan bodies), outermost first."""
    yield graph
    for node in nodes(graph):
        for a in node.attribute:
            yield from ([a.g] if a.HasField("g") else []) + list(a.graphs)


def constants(graph) -> dict[str, Weight]:
    """Every constant tensor by name, subgraphs included: initializers and the values of Constant nodes."""
    out = {}
    for g in subgraphs(graph):
        out.update({t.name: Weight(t.name, _dtype(t.data_type), tuple(t.dims)) for t in g.initializer})
    for node in nodes(graph):
        if node.op_type == "Constant" and node.output:
            for a in node.attribute:
                if a.name == "value" and a.HasField("t"):
                    out[node.output[0]] = Weight(node.output[0], _dtype(a.t.data_type), tuple(a.t.dims))
    return out


def weights(graph) -> list[Weight]:
    """The learned tensors: constants of a floating-point or low-bit type with at least one dimension,
    less the scales and zero points of quantised operators, and their int32 biases. Shapes, axes and
    indices (int64/int32) are not weights."""
    consts = constants(graph)
    quant, bias = ({node.input[i] for node in nodes(graph) for i in table.get(node.op_type, ()) if i < len(node.input)}
                   for table in (_QUANT_ARGS, _QUANT_BIAS))
    return [w for w in consts.values() if w.dims and w.name not in quant and
            (w.dtype in _PRECISION or (w.dtype == "int32" and w.name in bias))]


def parameters(graph) -> int:
    return int(sum(int(np.prod(w.dims, dtype=np.int64)) for w in weights(graph)))


def weight_bytes(graph) -> float:
    """The bytes the weights (`weights`) take as stored: a 4-bit one half a byte."""
    def size(dtype: str) -> float:
        return 0.5 if dtype in ("int4", "uint4") else float(np.dtype(dtype).itemsize)

    return float(sum(int(np.prod(w.dims, dtype=np.int64)) * size(w.dtype) for w in weights(graph)))


def precision(model) -> str:
    """fp32 / fp16 / bf16 / int8 / int4 by what the weights are stored in, weighted by their elements;
    "mixed" where a second precision holds a quarter of them or more. int8 weights count only where
    integer operators (QLinear*, *Integer, DequantizeLinear, ...) read them."""
    g = model.graph
    ops = {n.op_type for n in nodes(g)}
    by: Counter = Counter()
    for w in weights(g):
        kind = _PRECISION.get(w.dtype, "int32")  # an int32 bias: beside its int8 weights, never the most
        if kind == "int32" or (kind in ("int8", "int4") and not ops & INTEGER_OPS):
            continue  # int8 tables without integer ops are data, not quantised weights
        by[kind] += int(np.prod(w.dims, dtype=np.int64))
    if not by:  # no weights: the activations say
        for vi in list(g.input) + list(g.output):
            if vi.type.HasField("tensor_type"):
                kind = _PRECISION.get(_dtype(vi.type.tensor_type.elem_type))
                if kind in ("fp32", "fp16", "bf16", "fp64"):
                    return kind
        return "unknown"
    (first, n1), *rest = by.most_common()
    if rest and rest[0][1] >= MIXED_SHARE * sum(by.values()):
        return "mixed"
    return first


def declared_inputs(model) -> tuple[list[ModelInput], list[str]]:
    """(inputs, output names) of an onnx.ModelProto. An integer input that a Gather uses as indices into
    a constant table (an embedding, quantised or not) takes token ids in [0, rows)."""
    from onnx import helper

    g = model.graph
    consts = constants(g)
    dequantized = {n.output[0]: n.input[0] for n in g.node
                   if n.op_type == "DequantizeLinear" and n.input and n.output}
    casts = {n.output[0]: n.input[0] for n in g.node if n.op_type == "Cast" and n.input and n.output}
    vocab: dict[str, int] = {}
    for node in g.node:
        if node.op_type != "Gather" or len(node.input) < 2:
            continue
        table = consts.get(dequantized.get(node.input[0], node.input[0]))
        indices = casts.get(node.input[1], node.input[1])
        axis = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), 0)
        if table and -len(table.dims) <= axis < len(table.dims) and table.dims[axis] > 0:
            rows = int(table.dims[axis])
            vocab[indices] = min(vocab.get(indices, rows), rows)
    inputs = []
    for vi in g.input:
        if vi.name in consts or not vi.type.HasField("tensor_type"):
            continue
        tt = vi.type.tensor_type
        dims = tuple(declared_dim(d.dim_value if d.HasField("dim_value") else d.dim_param)
                     for d in tt.shape.dim) if tt.HasField("shape") else None
        inputs.append(ModelInput(vi.name, _dtype(tt.elem_type), dims, vocab.get(vi.name)))
    return inputs, [o.name for o in g.output]
