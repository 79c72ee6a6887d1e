"""ONNX → operator graph: per node its op, FLOPs, bytes and weights at batch 1; edges follow tensors.

FLOPs count a multiply-add as two. Bytes are what a node reads (activations and weights) and writes;
views (Reshape, Flatten, ...) move nothing. Everything is at batch 1: FLOPs and activation bytes scale
with the batch, weight bytes do not (`at_batch`).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import shape_inference

from edgeatlas.protos.errors import InvalidInput

# Op categories: the GNN's one-hot, and the tabular model's op histogram.
CATEGORIES = ("conv", "conv_dw", "conv_1x1", "matmul", "norm", "activation", "elementwise", "pool",
              "global_pool", "softmax", "view", "copy", "gather", "reduce", "other")
_CATEGORY = {
    "Gemm": "matmul", "MatMul": "matmul", "BatchNormalization": "norm", "LayerNormalization": "norm",
    "InstanceNormalization": "norm", "GroupNormalization": "norm",
    "Relu": "activation", "Clip": "activation", "Sigmoid": "activation", "Tanh": "activation",
    "Erf": "activation", "LeakyRelu": "activation", "HardSigmoid": "activation", "HardSwish": "activation",
    "Gelu": "activation", "Elu": "activation", "Softplus": "activation", "PRelu": "activation",
    "Add": "elementwise", "Sub": "elementwise", "Mul": "elementwise", "Div": "elementwise", "Pow": "elementwise",
    "Sqrt": "elementwise", "Exp": "elementwise", "Log": "elementwise", "Neg": "elementwise",
    "Where": "elementwise", "Max": "elementwise", "Min": "elementwise", "Cast": "elementwise",
    "AveragePool": "pool", "MaxPool": "pool", "GlobalAveragePool": "global_pool", "GlobalMaxPool": "global_pool",
    "Softmax": "softmax", "LogSoftmax": "softmax",
    "Reshape": "view", "Flatten": "view", "Squeeze": "view", "Unsqueeze": "view", "Identity": "view",
    "Shape": "view", "Constant": "view", "Dropout": "view",
    "Transpose": "copy", "Concat": "copy", "Split": "copy", "Slice": "copy", "Pad": "copy", "Expand": "copy",
    "Resize": "copy", "Tile": "copy", "Gather": "gather", "GatherElements": "gather",
    "ReduceMean": "reduce", "ReduceSum": "reduce", "ReduceMax": "reduce", "ReduceL2": "reduce",
}
_FLOPS_PER_ELEMENT = {"BatchNormalization": 2, "LayerNormalization": 8, "InstanceNormalization": 8,
                      "GroupNormalization": 8, "Softmax": 5, "LogSoftmax": 5, "Sigmoid": 4, "Tanh": 4,
                      "Erf": 4, "Gelu": 8, "HardSwish": 4, "Exp": 4, "Log": 4, "Sqrt": 4, "Softplus": 4}
_DTYPE_BYTES = {onnx.TensorProto.FLOAT: 4, onnx.TensorProto.FLOAT16: 2, onnx.TensorProto.BFLOAT16: 2,
                onnx.TensorProto.DOUBLE: 8, onnx.TensorProto.INT8: 1, onnx.TensorProto.UINT8: 1,
                onnx.TensorProto.INT32: 4, onnx.TensorProto.INT64: 8, onnx.TensorProto.BOOL: 1,
                onnx.TensorProto.INT16: 2}
NODE_FEATURES = len(CATEGORIES) + 8


@dataclass
class OpGraph:
    """One network as operators. Arrays are per node, at batch 1."""

    name: str
    ops: list[str]
    category: np.ndarray  # int index into CATEGORIES
    flops: np.ndarray
    act_bytes: np.ndarray  # activations read + written
    weight_bytes: np.ndarray
    kernel: np.ndarray  # spatial kernel size (0 where none)
    stride: np.ndarray
    channels: np.ndarray  # output channels / features (0 where unknown)
    edges: np.ndarray  # int64 [2, E]: producer → consumer
    params: int
    shapes_known: float  # share of nodes whose output shape was inferred
    macs: float = 0.0  # multiply-accumulates of Conv, ConvTranspose, MatMul and Gemm (biases not counted)

    @property
    def nodes(self) -> int:
        return len(self.ops)

    def at_batch(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """(FLOPs, bytes) per node at a batch size."""
        return self.flops * batch, self.act_bytes * batch + self.weight_bytes

    def node_features(self) -> np.ndarray:
        """[nodes, NODE_FEATURES] float32: op one-hot, then log-scaled sizes and attributes."""
        onehot = np.eye(len(CATEGORIES), dtype=np.float32)[self.category]
        total = self.act_bytes + self.weight_bytes
        intensity = np.log1p(self.flops) - np.log1p(total)
        numeric = np.stack([np.log1p(self.flops) / 10, np.log1p(self.act_bytes) / 10,
                            np.log1p(self.weight_bytes) / 10, intensity / 3, self.kernel / 5, self.stride / 2,
                            np.log1p(self.channels) / 5, (self.flops == 0).astype(np.float64)], axis=1)
        return np.concatenate([onehot, numeric.astype(np.float32)], axis=1)

    def summary(self) -> dict[str, float]:
        """Whole-graph features (the tabular model's inputs)."""
        out = {"nodes": float(self.nodes), "log_flops": math.log1p(float(self.flops.sum())),
               "log_act_bytes": math.log1p(float(self.act_bytes.sum())),
               "log_weight_bytes": math.log1p(float(self.weight_bytes.sum())),
               "depth": float(_depth(self.nodes, self.edges))}
        counts = np.bincount(self.category, minlength=len(CATEGORIES))
        flops = np.bincount(self.category, weights=self.flops, minlength=len(CATEGORIES))
        for i, name in enumerate(CATEGORIES):
            out[f"n_{name}"] = float(counts[i])
            out[f"log_flops_{name}"] = math.log1p(float(flops[i]))
        return out


def _depth(n: int, edges: np.ndarray) -> int:
    """Longest path in nodes (the graph is a DAG in topological order, as ONNX requires)."""
    depth = np.ones(n, dtype=np.int64)
    for src, dst in sorted(zip(edges[0].tolist(), edges[1].tolist()), key=lambda e: e[1]):
        depth[dst] = max(depth[dst], depth[src] + 1)
    return int(depth.max()) if n else 0


def load_onnx(path: str | Path, check: bool = False) -> onnx.ModelProto:
    """The parsed ModelProto (checked by onnx.checker when `check`), or one InvalidInput line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"model {path}: no such file")
    try:
        model = onnx.load(str(path))
        if check:
            onnx.checker.check_model(model)
    except Exception as exc:  # protobuf DecodeError, onnx ValidationError, ...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InvalidInput(f"{path.name} is not a valid ONNX model: {first[:300]}") from None
    return model


def onnx_summary(model: onnx.ModelProto) -> dict:
    """A model reference's summary: parameters, multiply-accumulates of Conv/MatMul/Gemm and FLOPs (2 per
    MAC) at batch 1, the op histogram and the opset."""
    graph = from_onnx(model)
    return {"parameters": graph.params, "macs": int(graph.macs), "flops": int(2 * graph.macs),
            "ops": dict(Counter(graph.ops).most_common()),
            "opset": max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=None)}


def from_onnx(model: onnx.ModelProto, name: str = "") -> OpGraph:
    """The operator graph of an ONNX model, its symbolic dimensions set to 1."""
    if not model.graph.node:
        raise InvalidInput(f"model {name or model.graph.name}: the ONNX graph has no operators")
    initializers = list(model.graph.initializer)
    try:
        inferred = shape_inference.infer_shapes(_fix_symbolic_dims(model), strict_mode=False)
    except Exception as exc:
        raise InvalidInput(f"model {name}: ONNX shape inference failed ({str(exc).splitlines()[0]})") from None
    graph = inferred.graph
    shapes: dict[str, tuple[list[int] | None, int]] = {}
    for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
        shapes[vi.name] = _shape(vi.type)
    weights = {}
    for init in initializers:
        weights[init.name] = math.prod(init.dims) * _DTYPE_BYTES.get(init.data_type, 4)
        shapes[init.name] = (list(init.dims), init.data_type)
    producer: dict[str, int] = {}
    n = len(graph.node)
    category = np.zeros(n, np.int64)
    arrays = {k: np.zeros(n) for k in ("flops", "macs", "act", "weight", "kernel", "stride", "channels")}
    edges: list[tuple[int, int]] = []
    known = 0
    ops = []
    for i, node in enumerate(graph.node):
        ops.append(node.op_type)
        category[i] = CATEGORIES.index(_category(node, shapes))
        for inp in node.input:
            if inp in producer:
                edges.append((producer[inp], i))
        for out in node.output:
            producer[out] = i
        outs = [shapes.get(o, (None, 0))[0] for o in node.output]
        ins = [shapes.get(t, (None, 0))[0] if t else None for t in node.input]
        if outs and outs[0] is not None:
            known += 1
        w_bytes = sum(weights.get(t, 0) for t in node.input)
        flops, macs, kernel, stride, channels = _flops(node, ins, outs)
        arrays["flops"][i], arrays["macs"][i], arrays["kernel"][i], arrays["stride"][i], arrays["channels"][i] = (
            flops, macs, kernel, stride, channels)
        arrays["weight"][i] = w_bytes
        if CATEGORIES[category[i]] != "view":
            act_in = sum(_bytes(shapes.get(t)) for t in node.input if t and t not in weights)
            act_out = sum(_bytes(shapes.get(o)) for o in node.output)
            arrays["act"][i] = act_in + act_out
    params = int(sum(math.prod(t.dims) for t in initializers if len(t.dims) > 0))
    return OpGraph(name=name or graph.name, ops=ops, category=category, flops=arrays["flops"],
                   act_bytes=arrays["act"], weight_bytes=arrays["weight"], kernel=arrays["kernel"],
                   stride=arrays["stride"], channels=arrays["channels"],
                   edges=np.array(edges, dtype=np.int64).reshape(-1, 2).T.copy(), params=params,
                   shapes_known=known / n, macs=float(arrays["macs"].sum()))


def _fix_symbolic_dims(model: onnx.ModelProto) -> onnx.ModelProto:
    """A light copy for shape inference: symbolic dimensions set to 1, large weights as typed inputs.

    Small initializers keep their values: Reshape's target shape and the like are read by inference.
    """
    g = model.graph
    names = {vi.name for vi in g.input}
    small = [t for t in g.initializer if math.prod(t.dims) <= 64]
    as_inputs = [onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                 for t in g.initializer if math.prod(t.dims) > 64 and t.name not in names]
    graph = onnx.helper.make_graph(list(g.node), g.name, list(g.input) + as_inputs, list(g.output), small)
    light = onnx.helper.make_model(graph, opset_imports=list(model.opset_import))
    light.ir_version = model.ir_version
    for vi in list(light.graph.input) + list(light.graph.output):
        if vi.type.HasField("tensor_type"):
            for dim in vi.type.tensor_type.shape.dim:
                if not dim.HasField("dim_value"):
                    dim.dim_value = 1
    return light


def _shape(type_proto: onnx.TypeProto) -> tuple[list[int] | None, int]:
    if not type_proto.HasField("tensor_type"):
        return None, 0
    tt = type_proto.tensor_type
    if not tt.HasField("shape"):
        return None, tt.elem_type
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
    return (None if any(d is None for d in dims) else dims), tt.elem_type


def _bytes(entry: tuple[list[int] | None, int] | None) -> float:
    if not entry or entry[0] is None:
        return 0.0
    return float(math.prod(entry[0])) * _DTYPE_BYTES.get(entry[1], 4)


def _attr(node: onnx.NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _category(node: onnx.NodeProto, shapes) -> str:
    if node.op_type in ("Conv", "ConvTranspose"):
        w = shapes.get(node.input[1], (None, 0))[0] if len(node.input) > 1 else None
        group = _attr(node, "group", 1)
        if group > 1 and w is not None and w[1] == 1:
            return "conv_dw"
        if w is not None and all(k == 1 for k in w[2:]):
            return "conv_1x1"
        return "conv"
    return _CATEGORY.get(node.op_type, "other")


def _flops(node: onnx.NodeProto, ins: list, outs: list) -> tuple[float, float, float, float, float]:
    """(FLOPs, MACs, kernel size, stride, output channels) of one node; unknown shapes count as 0 FLOPs."""
    op = node.op_type
    out = outs[0] if outs else None
    out_elems = float(math.prod(out)) if out is not None else 0.0
    channels = float(out[1]) if out is not None and len(out) > 1 else (float(out[-1]) if out else 0.0)
    if op in ("Conv", "ConvTranspose") and len(ins) > 1 and ins[1] is not None and out is not None:
        w = ins[1]
        kernel_elems = float(math.prod(w[2:]))
        stride = float(max(_attr(node, "strides", [1]) or [1]))
        if op == "Conv":
            macs = out_elems * w[1] * kernel_elems
        else:
            in_elems = float(math.prod(ins[0])) if ins[0] is not None else 0.0
            macs = in_elems * w[1] * kernel_elems
        flops = 2 * macs + (out_elems if len(ins) > 2 and ins[2] is not None else 0)
        return flops, macs, float(max(w[2:]) if len(w) > 2 else 1), stride, float(w[0])
    if op in ("MatMul", "Gemm") and len(ins) > 1 and ins[0] is not None and out is not None:
        a = ins[0]
        k = a[0] if op == "Gemm" and _attr(node, "transA", 0) else a[-1]
        macs = out_elems * k
        return 2 * macs + (out_elems if op == "Gemm" and len(ins) > 2 else 0), macs, 0.0, 0.0, float(out[-1])
    if op in ("AveragePool", "MaxPool"):
        kernel = _attr(node, "kernel_shape", [1])
        return out_elems * float(math.prod(kernel)), 0.0, float(max(kernel)), \
            float(max(_attr(node, "strides", [1]))), channels
    if op in ("GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceSum", "ReduceMax", "ReduceL2"):
        in_elems = float(math.prod(ins[0])) if ins and ins[0] is not None else 0.0
        return in_elems, 0.0, 0.0, 0.0, channels
    category = _CATEGORY.get(op, "other")
    if category in ("view", "copy", "gather", "other"):
        return 0.0, 0.0, 0.0, 0.0, channels
    return out_elems * _FLOPS_PER_ELEMENT.get(op, 1), 0.0, 0.0, 0.0, channels
