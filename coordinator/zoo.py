"""The model zoo: real ONNX networks generated locally from seeded weights, no downloads.

Four families at two sizes each: MLP, ResNet-style CNN, MobileNet-style depthwise CNN and a
transformer encoder. The batch dimension is symbolic ("N").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
BN_STAT = "bn_running_"  # initializers that are statistics, not trainable parameters


class GraphBuilder:
    """Appends nodes and seeded initializers; each method returns its output tensor's name."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.count = 0

    def name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}_{self.count}"

    def const(self, prefix: str, array: np.ndarray) -> str:
        name = self.name(prefix)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def weight(self, prefix: str, shape: tuple[int, ...], fan_in: int) -> str:
        return self.const(prefix, (self.rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32))

    def bias(self, prefix: str, n: int) -> str:
        return self.const(prefix, (self.rng.standard_normal(n) * 0.01).astype(np.float32))

    def op(self, op_type: str, inputs: list[str], **attrs) -> str:
        out = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def conv(self, x: str, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> str:
        w = self.weight("conv_w", (cout, cin // groups, k, k), fan_in=cin // groups * k * k)
        return self.op("Conv", [x, w, self.bias("conv_b", cout)], kernel_shape=[k, k],
                       strides=[stride, stride], pads=[k // 2] * 4, group=groups)

    def conv_bn(self, x: str, cin: int, cout: int, k: int, stride: int = 1, relu_first: bool = True) -> str:
        """NAS-Bench-201's ReLUConvBN: ReLU, bias-free conv, BatchNorm (running stats as initializers)."""
        if relu_first:
            x = self.op("Relu", [x])
        w = self.weight("conv_w", (cout, cin, k, k), fan_in=cin * k * k)
        y = self.op("Conv", [x, w], kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4)
        return self.batch_norm(y, cout)

    def batch_norm(self, x: str, c: int) -> str:
        scale = self.const("bn_scale", (1 + 0.1 * self.rng.standard_normal(c)).astype(np.float32))
        bias = self.const("bn_bias", (0.1 * self.rng.standard_normal(c)).astype(np.float32))
        mean = self.const(BN_STAT + "mean", (0.1 * self.rng.standard_normal(c)).astype(np.float32))
        var = self.const(BN_STAT + "var", (1 + 0.1 * self.rng.random(c)).astype(np.float32))
        return self.op("BatchNormalization", [x, scale, bias, mean, var], epsilon=1e-5)

    def gemm(self, x: str, n_in: int, n_out: int) -> str:
        return self.op("Gemm", [x, self.weight("fc_w", (n_in, n_out), n_in), self.bias("fc_b", n_out)])

    def linear(self, x: str, n_in: int, n_out: int) -> str:
        """x [..., n_in] → [..., n_out]."""
        y = self.op("MatMul", [x, self.weight("lin_w", (n_in, n_out), n_in)])
        return self.op("Add", [y, self.bias("lin_b", n_out)])

    def relu6(self, x: str) -> str:
        return self.op("Clip", [x, self.const("zero", np.array(0, np.float32)),
                                self.const("six", np.array(6, np.float32))])

    def layer_norm(self, x: str, d: int) -> str:
        return self.op("LayerNormalization", [x, self.const("ln_g", np.ones(d, np.float32)),
                                              self.const("ln_b", np.zeros(d, np.float32))], axis=-1)

    def gelu(self, x: str) -> str:
        scaled = self.op("Div", [x, self.const("sqrt2", np.array(np.sqrt(2.0), np.float32))])
        inner = self.op("Add", [self.op("Erf", [scaled]), self.const("one", np.array(1.0, np.float32))])
        return self.op("Mul", [self.op("Mul", [x, inner]), self.const("half", np.array(0.5, np.float32))])

    def model(self, name: str, inputs: list[onnx.ValueInfoProto], output: str, out_shape: list) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, name, inputs,
                                  [helper.make_tensor_value_info(output, TensorProto.FLOAT, out_shape)],
                                  self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="edgeatlas-zoo")
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model


def mlp(name: str, widths: list[int], seed: int) -> onnx.ModelProto:
    g = GraphBuilder(seed)
    x = "input"
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        x = g.gemm(x, a, b)
        if i < len(widths) - 2:
            x = g.op("Relu", [x])
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", widths[0]])
    return g.model(name, [inp], x, ["N", widths[-1]])


def resnet(name: str, widths: list[int], blocks: int, size: int, seed: int) -> onnx.ModelProto:
    g = GraphBuilder(seed)
    x = g.op("Relu", [g.conv("input", 3, widths[0], 3)])
    cin = widths[0]
    for stage, cout in enumerate(widths):
        for b in range(blocks):
            stride = 2 if stage > 0 and b == 0 else 1
            y = g.op("Relu", [g.conv(x, cin, cout, 3, stride)])
            y = g.conv(y, cout, cout, 3)
            shortcut = g.conv(x, cin, cout, 1, stride) if (stride != 1 or cin != cout) else x
            x = g.op("Relu", [g.op("Add", [y, shortcut])])
            cin = cout
    x = g.op("Flatten", [g.op("GlobalAveragePool", [x])])
    x = g.gemm(x, cin, 10)
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])
    return g.model(name, [inp], x, ["N", 10])


def mobilenet(name: str, width: float, size: int, seed: int) -> onnx.ModelProto:
    g = GraphBuilder(seed)
    plan = [(32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1)]
    c = int(16 * width)
    x = g.relu6(g.conv("input", 3, c, 3, 2))
    for cout, stride in plan:
        cout = int(cout * width)
        x = g.relu6(g.conv(x, c, c, 3, stride, groups=c))  # depthwise
        x = g.relu6(g.conv(x, c, cout, 1))  # pointwise
        c = cout
    x = g.op("Flatten", [g.op("GlobalAveragePool", [x])])
    x = g.gemm(x, c, 10)
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])
    return g.model(name, [inp], x, ["N", 10])


def transformer(name: str, d: int, heads: int, layers: int, seq: int, vocab: int, seed: int) -> onnx.ModelProto:
    """Pre-norm encoder over token ids [N, seq] → pooled logits [N, 10]."""
    g = GraphBuilder(seed)
    dh = d // heads
    emb = g.const("tok_emb", (g.rng.standard_normal((vocab, d)) * 0.02).astype(np.float32))
    pos = g.const("pos_emb", (g.rng.standard_normal((seq, d)) * 0.02).astype(np.float32))
    x = g.op("Add", [g.op("Gather", [emb, "input_ids"], axis=0), pos])
    split_heads = g.const("shape", np.array([0, 0, heads, dh], np.int64))
    merge_heads = g.const("shape", np.array([0, 0, d], np.int64))
    scale = g.const("scale", np.array(1.0 / np.sqrt(dh), np.float32))
    for _ in range(layers):
        h = g.layer_norm(x, d)
        q = g.op("Transpose", [g.op("Reshape", [g.linear(h, d, d), split_heads])], perm=[0, 2, 1, 3])
        k = g.op("Transpose", [g.op("Reshape", [g.linear(h, d, d), split_heads])], perm=[0, 2, 3, 1])
        v = g.op("Transpose", [g.op("Reshape", [g.linear(h, d, d), split_heads])], perm=[0, 2, 1, 3])
        attn = g.op("Softmax", [g.op("Mul", [g.op("MatMul", [q, k]), scale])], axis=-1)
        ctx = g.op("Reshape", [g.op("Transpose", [g.op("MatMul", [attn, v])], perm=[0, 2, 1, 3]), merge_heads])
        x = g.op("Add", [x, g.linear(ctx, d, d)])
        h = g.layer_norm(x, d)
        x = g.op("Add", [x, g.linear(g.gelu(g.linear(h, d, 4 * d)), 4 * d, d)])
    x = g.op("ReduceMean", [g.layer_norm(x, d)], axes=[1], keepdims=0)
    x = g.gemm(x, d, 10)
    inp = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["N", seq])
    return g.model(name, [inp], x, ["N", 10])


def parse_nb201(arch: str) -> list[list[tuple[str, int]]]:
    """'|op~0|+|op~0|op~1|+|op~0|op~1|op~2|' → [[(op, input node)] for nodes 1, 2, 3]."""
    from edgeatlas.protos.errors import InvalidInput

    nodes = []
    for j, group in enumerate(arch.strip().split("+"), start=1):
        edges = [e for e in group.split("|") if e]
        parsed = []
        for edge in edges:
            op, _, src = edge.partition("~")
            if op not in NB201_OPS or not src.isdigit() or int(src) >= j:
                raise InvalidInput(f"arch {arch!r}: edge {edge!r} of node {j} is not op~i with i < {j}")
            parsed.append((op, int(src)))
        if sorted(i for _, i in parsed) != list(range(j)):
            raise InvalidInput(f"arch {arch!r}: node {j} must have one edge from each of nodes 0..{j - 1}")
        nodes.append(parsed)
    if len(nodes) != 3:
        raise InvalidInput(f"arch {arch!r}: expected 3 node groups separated by '+', got {len(nodes)}")
    return nodes


NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


def nasbench201(name: str, arch: str, seed: int = 0) -> onnx.ModelProto:
    """The NAS-Bench-201 network for an arch string (Dong & Yang, ICLR 2020), CIFAR-10 head, 32×32 input."""
    cell = parse_nb201(arch)
    g = GraphBuilder(seed)

    def cell_forward(x: str, c: int) -> str:
        states = [x]
        for edges in cell:
            terms = []
            for op, src in edges:
                s = states[src]
                if op == "skip_connect":
                    terms.append(s)
                elif op == "nor_conv_1x1":
                    terms.append(g.conv_bn(s, c, c, 1))
                elif op == "nor_conv_3x3":
                    terms.append(g.conv_bn(s, c, c, 3))
                elif op == "avg_pool_3x3":
                    terms.append(g.op("AveragePool", [s], kernel_shape=[3, 3], strides=[1, 1], pads=[1] * 4,
                                      count_include_pad=0))
            if not terms:  # every edge is `none`: the node is zero, shaped like the input
                terms = [g.op("Mul", [x, g.const("zero", np.array(0, np.float32))])]
            total = terms[0]
            for t in terms[1:]:
                total = g.op("Add", [total, t])
            states.append(total)
        return states[-1]

    def reduction(x: str, cin: int, cout: int) -> str:
        a = g.conv_bn(x, cin, cout, 3, stride=2)
        b = g.conv_bn(a, cout, cout, 3)
        pooled = g.op("AveragePool", [x], kernel_shape=[2, 2], strides=[2, 2])
        w = g.weight("conv_w", (cout, cin, 1, 1), fan_in=cin)
        shortcut = g.op("Conv", [pooled, w], kernel_shape=[1, 1])
        return g.op("Add", [b, shortcut])

    x = g.conv_bn("input", 3, 16, 3, relu_first=False)
    for stage, c in enumerate((16, 32, 64)):
        if stage:
            x = reduction(x, c // 2, c)
        for _ in range(5):
            x = cell_forward(x, c)
    x = g.op("Relu", [g.batch_norm(x, 64)])
    x = g.op("Flatten", [g.op("GlobalAveragePool", [x])])
    x = g.gemm(x, 64, 10)
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 32, 32])
    return g.model(name, [inp], x, ["N", 10])


def trainable_parameters(model: onnx.ModelProto) -> int:
    """Parameters as PyTorch counts them: BatchNorm running statistics are not parameters."""
    return int(sum(np.prod(t.dims) for t in model.graph.initializer
                   if not t.name.startswith(BN_STAT) and len(t.dims) > 0))


@dataclass(frozen=True)
class ZooEntry:
    name: str
    family: str
    build: Callable[[], onnx.ModelProto]


ZOO: list[ZooEntry] = [
    ZooEntry("mlp-s", "mlp", lambda: mlp("mlp-s", [784, 256, 128, 10], seed=1)),
    ZooEntry("mlp-l", "mlp", lambda: mlp("mlp-l", [784, 1024, 1024, 512, 10], seed=2)),
    ZooEntry("resnet-s", "resnet", lambda: resnet("resnet-s", [16, 32, 64], blocks=1, size=32, seed=3)),
    ZooEntry("resnet-m", "resnet", lambda: resnet("resnet-m", [32, 64, 128], blocks=2, size=32, seed=4)),
    ZooEntry("mobilenet-s", "mobilenet", lambda: mobilenet("mobilenet-s", width=0.5, size=64, seed=5)),
    ZooEntry("mobilenet-m", "mobilenet", lambda: mobilenet("mobilenet-m", width=1.0, size=96, seed=6)),
    ZooEntry("transformer-s", "transformer",
             lambda: transformer("transformer-s", d=64, heads=4, layers=2, seq=32, vocab=1000, seed=7)),
    ZooEntry("transformer-m", "transformer",
             lambda: transformer("transformer-m", d=128, heads=4, layers=4, seq=64, vocab=4000, seed=8)),
]


def build_zoo(out_dir: str | Path, names: list[str] | None = None) -> list[Path]:
    """Writes <name>.onnx for each zoo entry (all by default); returns the paths, zoo order."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    wanted = set(names) if names else None
    paths = []
    for entry in ZOO:
        if wanted is not None and entry.name not in wanted:
            continue
        path = out / f"{entry.name}.onnx"
        onnx.save(entry.build(), str(path))
        paths.append(path)
    return paths
