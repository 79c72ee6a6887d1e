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
from onnx import TensorProto, helper

from edgeatlas.predictor.onnx_build import GraphBuilder


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
