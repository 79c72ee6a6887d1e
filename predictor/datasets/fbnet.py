"""The FBNet space (Wu et al., CVPR 2019) as HW-NAS-Bench builds it for CIFAR-100 (Li et al., ICLR 2021).

Latencies of 4,000 of its networks on the NAS-Bench-201 devices were published with HELP; the data
directory has the nasbench201 layout with an `fbnet_index` column (see `predictor.data.load_dir`).
Its README gives the network; this builds it operator for operator, as ONNX.
"""

from __future__ import annotations

import re
from pathlib import Path

import onnx
from onnx import TensorProto, helper

from edgeatlas.predictor.onnx_build import GraphBuilder
from edgeatlas.protos.errors import InvalidInput

CITATION = ("FBNet-space latency as published with HELP (Lee et al., NeurIPS 2021, MIT licence); the space "
            "and the Pixel 3 values from HW-NAS-Bench (Li et al., ICLR 2021)")
STAGE_LAYERS = (1, 4, 4, 4, 4, 4, 1)
STAGE_CHANNELS = (16, 24, 32, 64, 112, 184, 352)
STAGE_STRIDES = (1, 1, 2, 2, 1, 2, 1)
LAYERS = sum(STAGE_LAYERS)
SAMPLE_DIR = Path(__file__).parent / "fbnet_sample"
OP = re.compile(r"k([35])_e([136])(_g2)?|skip")


def parse_fbnet(arch: str) -> list[str]:
    """'k3_e1|skip|...' → its 22 op names, each checked."""
    ops = arch.strip().split("|")
    if len(ops) != LAYERS:
        raise InvalidInput(f"FBNet arch {arch[:80]!r}: {len(ops)} layers, expected {LAYERS} joined by '|'")
    for i, op in enumerate(ops):
        if not OP.fullmatch(op):
            raise InvalidInput(f"FBNet arch: layer {i} is {op[:20]!r}, not one of kK_eE[_g2] (K 3|5, E 1|3|6) "
                               f"or skip")
    return ops


def fbnet(name: str, arch: str, seed: int | None = 0, check: bool = True) -> onnx.ModelProto:
    """The network for an arch string: input N×3×32×32, 100 classes."""
    ops = parse_fbnet(arch)
    g = GraphBuilder(seed)
    side = 32

    def conv_bn(x: str, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, relu: bool = True) -> str:
        w = g.weight("conv_w", (cout, cin // groups, k, k), fan_in=cin // groups * k * k)
        y = g.batch_norm(g.op("Conv", [x, w], kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4,
                              group=groups), cout)
        return g.op("Relu", [y]) if relu else y

    def shuffle(x: str, c: int, groups: int) -> str:
        shape5 = g.const("shape", _ints([0, groups, c // groups, side, side]))
        y = g.op("Transpose", [g.op("Reshape", [x, shape5])], perm=[0, 2, 1, 3, 4])
        return g.op("Reshape", [y, g.const("shape", _ints([0, c, side, side]))])

    x = conv_bn("input", 3, 16, 3)
    cin = 16
    layer = 0
    for stage, (count, cout, first_stride) in enumerate(zip(STAGE_LAYERS, STAGE_CHANNELS, STAGE_STRIDES)):
        for i in range(count):
            stride = first_stride if i == 0 else 1
            op = ops[layer]
            layer += 1
            if op == "skip":
                side //= stride
                if stride == 1 and cin == cout:
                    continue
                x = conv_bn(x, cin, cout, 1, stride)
            else:
                m = OP.fullmatch(op)
                k, e, groups = int(m[1]), int(m[2]), 2 if m[3] else 1
                mid = e * cin
                y = conv_bn(x, cin, mid, 1, groups=groups)
                if groups > 1:
                    y = shuffle(y, mid, groups)
                y = conv_bn(y, mid, mid, k, stride, groups=mid)
                side //= stride
                y = conv_bn(y, mid, cout, 1, groups=groups, relu=False)
                x = g.op("Add", [y, x]) if stride == 1 and cin == cout else y
            cin = cout
    x = conv_bn(x, cin, 1504, 1)
    x = g.op("Flatten", [g.op("GlobalAveragePool", [x])])
    x = g.gemm(x, 1504, 100)
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 32, 32])
    return g.model(name, [inp], x, ["N", 100], check=check)


def _ints(values: list[int]):
    import numpy as np

    return np.array(values, dtype=np.int64)
