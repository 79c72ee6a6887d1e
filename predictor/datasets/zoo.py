"""The real-architecture family: MLPs, ResNet-style and MobileNet-style CNNs and transformer encoders,
each described by an architecture string, built as ONNX with seeded weights (no downloads).

The demo's zoo (`console/zoo.py`) is eight of these; `edgeatlas predictor measure-zoo` times a seeded
spread of others in ONNX Runtime on this machine and writes them in the nasbench201 layout with a
`zoo_index` column, so `predictor train / eval --data DIR` learn from them like the published families.

Architecture strings (every size bounded, so a data file cannot ask for a network nobody can build):

    mlp:784-256-128-10                 widths, input first (2-8 of them, each 1-8192)
    resnet:16-32-64:b1:s32             stage widths (1-5, each 4-512), blocks per stage (1-4), image size (8-256)
    mobilenet:w0.5:s64                 width multiplier (0.25-2), image size (32-256)
    transformer:d64:h4:l2:s32:v1000    width (16-1024, a multiple of heads), heads (1-16), layers (1-12),
                                       sequence (4-512), vocabulary (16-50000)
    resnet:16-32-64:b1:s32:int8        any of them, int8: weights quantized by ONNX Runtime's dynamic
                                       quantizer, as people ship int8 transformers (ConvInteger,
                                       MatMulInteger, activations quantized as it runs)
    resnet:16-32-64:b1:s32:qdq         any of them, int8 weights and activations by its static quantizer
                                       (QDQ format, scales calibrated on random inputs), as people ship int8
                                       CNNs: ONNX Runtime runs QLinearConv, an integer kernel 10x faster than
                                       ConvInteger on the same layer
"""

from __future__ import annotations

import re

import numpy as np
import onnx
from onnx import TensorProto, helper

from edgeatlas.predictor.onnx_build import GraphBuilder
from edgeatlas.protos.errors import InvalidInput

KINDS = ("mlp", "resnet", "mobilenet", "transformer")


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


_FIELD = re.compile(r"([a-z])(\d+(?:\.\d+)?)")


def _number(text: str, what: str, arch: str, lo: float, hi: float, integer: bool = True) -> float:
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        raise InvalidInput(f"zoo arch {arch[:80]!r}: {what} {text[:20]!r} is not a number") from None
    if not lo <= value <= hi:
        raise InvalidInput(f"zoo arch {arch[:80]!r}: {what} {value} is outside {lo:g}..{hi:g}")
    return value


def _widths(text: str, arch: str, least: int, most: int, lo: int, hi: int) -> list[int]:
    parts = text.split("-")
    if not least <= len(parts) <= most:
        raise InvalidInput(f"zoo arch {arch[:80]!r}: {len(parts)} widths, expected {least}-{most} joined by '-'")
    return [int(_number(p, "width", arch, lo, hi)) for p in parts]


def _fields(parts: list[str], arch: str, want: str) -> dict[str, str]:
    """'b1', 's32', ... → {'b': '1', 's': '32'}, exactly the letters of `want`, in that order."""
    found = []
    for part in parts:
        m = _FIELD.fullmatch(part)
        if not m:
            raise InvalidInput(f"zoo arch {arch[:80]!r}: field {part[:20]!r} is not a letter and a number")
        found.append(m.groups())
    if "".join(k for k, _ in found) != want:
        raise InvalidInput(f"zoo arch {arch[:80]!r}: fields {[k for k, _ in found]}, expected "
                           f"{list(want)} in that order")
    return dict(found)


INT8 = ":int8"  # dynamic quantization
QDQ = ":qdq"  # static quantization
QUANTIZED = (INT8, QDQ)


def float_arch(arch: str) -> str:
    """The architecture string without its quantization suffix: the float network it was quantized from."""
    arch = arch.strip()
    return next((arch.removesuffix(q) for q in QUANTIZED if arch.endswith(q)), arch)


def parse(arch: str) -> tuple[str, dict]:
    """An architecture string → (kind, the builder's keyword arguments), every size checked. A trailing
    `:int8` or `:qdq` is not the builder's (see `build`)."""
    arch = arch.strip()
    kind, _, rest = float_arch(arch).partition(":")
    parts = rest.split(":") if rest else []
    if kind == "mlp" and len(parts) == 1:
        return kind, {"widths": _widths(parts[0], arch, 2, 8, 1, 8192)}
    if kind == "resnet" and len(parts) == 3:
        f = _fields(parts[1:], arch, "bs")
        return kind, {"widths": _widths(parts[0], arch, 1, 5, 4, 512),
                      "blocks": int(_number(f["b"], "blocks", arch, 1, 4)),
                      "size": int(_number(f["s"], "size", arch, 8, 256))}
    if kind == "mobilenet" and len(parts) == 2:
        f = _fields(parts, arch, "ws")
        return kind, {"width": _number(f["w"], "width", arch, 0.25, 2.0, integer=False),
                      "size": int(_number(f["s"], "size", arch, 32, 256))}
    if kind == "transformer" and len(parts) == 5:
        f = _fields(parts, arch, "dhlsv")
        d, heads = int(_number(f["d"], "width", arch, 16, 1024)), int(_number(f["h"], "heads", arch, 1, 16))
        if d % heads:
            raise InvalidInput(f"zoo arch {arch[:80]!r}: width {d} is not a multiple of {heads} heads")
        return kind, {"d": d, "heads": heads, "layers": int(_number(f["l"], "layers", arch, 1, 12)),
                      "seq": int(_number(f["s"], "sequence", arch, 4, 512)),
                      "vocab": int(_number(f["v"], "vocabulary", arch, 16, 50000))}
    raise InvalidInput(f"zoo arch {arch[:80]!r} is not one of {', '.join(k + ':...' for k in KINDS)} "
                       f"(see predictor/datasets/zoo.py)")


BUILDERS = {"mlp": mlp, "resnet": resnet, "mobilenet": mobilenet, "transformer": transformer}


def build(arch: str, name: str = "", seed: int = 0) -> onnx.ModelProto:
    """The ONNX network an architecture string describes (batch dimension symbolic, "N"); an `:int8` one
    through ONNX Runtime's dynamic quantizer (int8 weights, activations quantized as it runs), a `:qdq` one
    through its static quantizer (`quantize_static_file`)."""
    kind, kwargs = parse(arch)
    model = BUILDERS[kind](name or arch, seed=seed, **kwargs)
    arch = arch.strip()
    if arch.endswith(INT8):
        return quantized(model, quantize_file)
    return quantized(model, quantize_static_file) if arch.endswith(QDQ) else model


def quantized(model: onnx.ModelProto, how) -> onnx.ModelProto:
    """The model through a file-to-file quantizer (`quantize_file`, `quantize_static_file`)."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        source, out = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, str(source))
        how(source, out)
        return onnx.load(str(out))


def quantize_static_file(source, out, seed: int = 0, batches: int = 4) -> None:
    """int8 weights and activations through ONNX Runtime's static quantizer, in the QDQ format (what its
    tools and most int8 CNNs people ship use), after the pre-processing its documentation asks for (shape
    inference and its basic optimizations: a BatchNormalization folded into its convolution, so that each
    convolution runs as one QLinearConv), the activations' scales calibrated on `batches` random inputs of
    batch 1: uniform 0..1 for a float input, token ids below 16 for an integer one (every vocabulary of the
    family is larger). Random weights give random ranges; the kernels, and their cost, are the same."""
    import logging
    import tempfile
    from pathlib import Path

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model = onnx.load(str(source), load_external_data=False)
    rng = np.random.default_rng(seed)
    feeds = []
    for _ in range(batches):
        feed = {}
        for vi in model.graph.input:
            tt = vi.type.tensor_type
            shape = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1 for d in tt.shape.dim]
            feed[vi.name] = (rng.random(shape, dtype=np.float32) if tt.elem_type == TensorProto.FLOAT
                             else rng.integers(0, 16, shape).astype(helper.tensor_dtype_to_np_dtype(tt.elem_type)))
        feeds.append(feed)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.left = iter(feeds)

        def get_next(self):
            return next(self.left, None)

    logging.disable(logging.WARNING)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ready = Path(tmp) / "pre.onnx"
            quant_pre_process(str(source), str(ready))
            quantize_static(str(ready), str(out), Reader(), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    finally:
        logging.disable(logging.NOTSET)


def quantize_file(source, out) -> None:
    """int8 weights through ONNX Runtime's dynamic quantizer (MatMulInteger / ConvInteger at run time), file
    to file: the zoo family's `:int8` and the real zoo's int8 models (`console/real_zoo.py`) alike."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.disable(logging.WARNING)  # its advice to pre-process for static quantization: this is dynamic
    try:
        quantize_dynamic(str(source), str(out), weight_type=QuantType.QInt8)
    finally:
        logging.disable(logging.NOTSET)


def arch_string(kind: str, suffix: str = "", **kw) -> str:
    """The inverse of `parse` (and of `build`'s quantization suffix: "", INT8 or QDQ)."""
    if kind == "mlp":
        arch = "mlp:" + "-".join(map(str, kw["widths"]))
    elif kind == "resnet":
        arch = f"resnet:{'-'.join(map(str, kw['widths']))}:b{kw['blocks']}:s{kw['size']}"
    elif kind == "mobilenet":
        arch = f"mobilenet:w{kw['width']:g}:s{kw['size']}"
    else:
        arch = f"transformer:d{kw['d']}:h{kw['heads']}:l{kw['layers']}:s{kw['seq']}:v{kw['vocab']}"
    return arch + suffix


def sample_archs(n: int, seed: int = 0, exclude: set[str] = frozenset(), int8_share: float = 0.0) -> list[str]:
    """n distinct architectures, the four kinds in turn, sizes drawn from each kind's usual range (a
    sub-millisecond MLP to a GFLOP CNN), none of `exclude` (networks held out for testing). `int8_share`
    of the rounds of four are int8, spread evenly: a quarter gives every fourth round, one of each kind,
    quantized statically (`:qdq`) and dynamically (`:int8`) in turn; the float draws are the same whatever
    the share."""
    if not 0.0 <= int8_share <= 1.0:
        raise InvalidInput(f"the int8 share must be in 0..1, got {int8_share}")
    rng = np.random.default_rng(seed)
    out: list[str] = []
    seen = set(exclude)
    held = {float_arch(a) for a in exclude}  # nor a held-out network's int8 twins
    tries = 0
    while len(out) < n and tries < 50 * n + 100:
        kind = KINDS[tries % len(KINDS)]
        turn = tries // len(KINDS)
        suffix = ""
        if int((turn + 1) * int8_share) > int(turn * int8_share):
            suffix = (INT8, QDQ)[int((turn + 1) * int8_share) % 2]  # the first int8 round static, then in turn
        tries += 1
        if kind == "mlp":
            depth = int(rng.integers(1, 5))
            widths = [int(rng.choice([64, 128, 256, 512, 784, 1024]))] + \
                [int(rng.choice([64, 128, 256, 512, 1024, 2048])) for _ in range(depth)] + [10]
            arch = arch_string(kind, suffix, widths=widths)
        elif kind == "resnet":
            base = int(rng.choice([8, 16, 24, 32]))
            stages = int(rng.integers(2, 5))
            arch = arch_string(kind, suffix, widths=[base * 2 ** i for i in range(stages)],
                               blocks=int(rng.integers(1, 3)), size=int(rng.choice([32, 48, 64])))
        elif kind == "mobilenet":
            arch = arch_string(kind, suffix, width=float(rng.choice([0.25, 0.5, 0.75, 1.0, 1.25])),
                               size=int(rng.choice([64, 96, 128])))
        else:
            heads = int(rng.choice([2, 4, 8]))
            arch = arch_string(kind, suffix, d=heads * int(rng.choice([16, 32, 48])), heads=heads,
                               layers=int(rng.integers(1, 7)), seq=int(rng.choice([16, 32, 64, 128])),
                               vocab=int(rng.choice([1000, 4000, 8000])))
        if arch not in seen and float_arch(arch) not in held:
            seen.add(arch)
            out.append(arch)
    return out

