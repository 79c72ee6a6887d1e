"""The per-element costs the predictor counts for ONNX Runtime's kernels that are more than an add
(`predictor/graph.py`), each op timed here alone against its count.

Each op runs alone on 1M float elements ([1024, 1024]; reductions and normalizations over rows of 1,024),
one thread, the best of three passes. Two sections:

- scalar loops (SCALAR_ELEMENTWISE, SCALAR_REDUCTIONS): ns per element measured, the operations per element
  counted, and their quotient, ns per counted operation. The embeddings (`GATHERS`) gather 1,024 tokens' rows,
  the older vision kernels (`VISION_CASES`) run on images, in each variant their attributes make. Where the
  counts are right it is one figure for every op (a cycle of this core's clock); the answer charges them at
  half a lane's peak. So are the bitwise kernels, the random generators, running sums along the last axis,
  LpPool and a MaxPool that returns its indices (`OTHER_CASES`), and the int8 kernels that look each element up
  in a table or pool in loops of their own (`QUANTIZED_CASES`).
- vector kernels (`_FLOPS_PER_ELEMENT`: MLAS's approximations): ns per element beyond a copy's (Relu: its
  memory traffic alone), per counted FLOP. Where the counts are right it is one figure too, the core's time
  per FLOP at its vector peak.
- classic machine learning (`predictor/classic_ml.py`): ONNX-ML's tree ensembles (random balanced trees on
  uniform data, each branch a coin toss: small forests that stay in cache and large ones that do not, one
  and ten classes, opset 3's and opset 5's forms), RBF support vector machines and the element loops, on
  1,000 rows: ns per operation counted, beside the scalar loops' figure.
- object detection (`predictor/detection.py`): NonMaxSuppression over boxes and scores drawn at random (boxes,
  classes, thresholds, box sizes as detectors have them, YOLO's 8,400 × 80 among them) and RoiAlign at fixed
  and adaptive sampling grids: ns per operation counted from the run's values, beside the scalar loops' figure.
- index walks (`index_walk`): transposes, softmaxes over a leading axis and reductions whose shapes send
  ONNX Runtime to its generic loops, on about 1M elements: ns per operation counted, beside the scalar
  loops' figure; and the same ops on shapes its vector paths take, which are not counted as walks.
- convolutions in NCHW (`graph.im2col_bytes`): depthwise, grouped and ungrouped ones, 1-D and 2-D, whose
  weights are fed as an input (ONNX Runtime's NCHWc pass leaves them in NCHW): measured, and the estimate at
  a multiply-add's and a copied byte's rates measured in the same run, with and without the patch matrix.
- convolutions in NCHWc whose taps read padding (`graph.nchwc_work_share`): dilated ones on small maps
  (DeepLab's ASPP) and 3×3 and 5×5 ones on maps of 1-64 positions a side: measured, and the estimate at a
  multiply-add's rate measured in the same run, for the taps the kernel computes and for every tap.

- grouped int8 convolutions (`graph.im2col_bytes`): QLinearConvs of 2-32 channels a group, gathered a group at
  a time, beside ungrouped ones: measured, and the estimate at a multiply-add's and a copied
  byte's rates measured in the same run, with and without their patch matrix.

    python bench/scalar_ops.py [--threads 1] [--only nchw|padded|qlinear|lookups]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

SHAPE = (1024, 1024)
MS = "com.microsoft"


def model(op: str, domain: str = "", exponent: float | None = None):
    """A one-node graph of `op` on x [1024, 1024], with the constant inputs its kind takes."""
    from onnx import TensorProto, helper, numpy_helper

    row = np.ones(SHAPE[-1], np.float32)
    consts = {"gamma": row, "beta": row * 0, "bias": row * 0.1, "axes": np.array([-1], np.int64)}
    if exponent is not None:
        consts["e"] = np.array(exponent, np.float32)
    inputs = {"Pow": ["x", "e"], "Mod": ["x", "x"], "LayerNormalization": ["x", "gamma", "beta"],
              "SkipLayerNormalization": ["x", "x", "gamma", "beta"], "SkipSimplifiedLayerNormalization":
              ["x", "x", "gamma"], "BiasGelu": ["x", "bias"]}.get(op, ["x", "axes"] if op.startswith("Reduce")
                                                                    else ["x"])
    attrs = {"Mod": {"fmod": 1}, "Softmax": {"axis": -1}, "LayerNormalization": {"axis": -1},
             "Hardmax": {"axis": -1}, "MeanVarianceNormalization": {"axes": [1]}}.get(op, {})
    node = helper.make_node(op, inputs, ["y"], domain=domain, **attrs)
    used = [numpy_helper.from_array(v, k) for k, v in consts.items() if k in inputs]
    graph = helper.make_graph([node], op, [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(SHAPE))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], used)
    opsets = [helper.make_opsetid("", 18)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    m = helper.make_model(graph, opset_imports=opsets)
    m.ir_version = 8
    return m


def spread(values: list[float], digits: int = 3) -> str:
    """"median m, range a-b" of the figures a section printed, at `digits` decimals."""
    return f"median {statistics.median(values):.{digits}f}, range {min(values):.{digits}f}-{max(values):.{digits}f}"


def session_of(m, threads: int):
    """An ONNX Runtime CPU session of the one-node graph `m` on `threads` threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(m.SerializeToString(), options, providers=["CPUExecutionProvider"])


def ns_per_element(m, threads: int, low: float, high: float, shape: tuple = SHAPE) -> float:
    session = session_of(m, threads)
    x = {"x": np.random.default_rng(0).uniform(low, high, shape).astype(np.float32)}
    return best_seconds(session, x, passes=3, least=0.3) * 1e9 / float(np.prod(shape))


def one_node(node, inputs: list, out_type: int, initializers: list = ()):
    """A graph of the one node `node` (its output "y", of element type `out_type`), opset 17."""
    from onnx import helper

    graph = helper.make_graph([node], node.op_type, inputs, [helper.make_tensor_value_info("y", out_type, None)],
                              list(initializers))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def ms_of(m, feeds: dict, threads: int, least: float = 0.2) -> float:
    """Milliseconds a run of the graph `m` takes (`best_seconds`: the best of three passes)."""
    return best_seconds(session_of(m, threads), feeds, passes=3, least=least) * 1e3


def best_seconds(session, feeds: dict, passes: int, least: float) -> float:
    """The best of `passes` passes' mean time of one run of an ONNX Runtime session (each pass at least
    `least` seconds and three runs), after one run to warm it."""
    session.run(None, feeds)
    best = float("inf")
    for _ in range(passes):
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < least or n < 3:
            session.run(None, feeds)
            n += 1
        best = min(best, (time.perf_counter() - t0) / n)
    return best


def main() -> int:
    from edgeatlas.predictor.graph import _ELEMENTWISE, _FLOPS_PER_ELEMENT, SCALAR_ELEMENTWISE, SCALAR_REDUCTIONS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    sections = {"nchw": nchw_convolutions, "padded": padded_convolutions, "qlinear": qlinear_convolutions,
                "lookups": quantized_section}
    parser.add_argument("--only", choices=tuple(sections), help="one section alone: convolutions in NCHW, in NCHWc "
                        "with taps that read padding, grouped int8 ones, or the int8 table lookups and pools")
    args = parser.parse_args()
    if args.only:
        sections[args.only](args.threads)
        return 0
    counts = {**_ELEMENTWISE, **_FLOPS_PER_ELEMENT}

    print(f"scalar loops\n{'op':34s} {'ns/element':>10s} {'counted ops':>11s} {'ns/op':>7s}")
    per_op = []
    for op, count in {**SCALAR_ELEMENTWISE, **SCALAR_REDUCTIONS}.items():
        if op in GATHERS or op in VISION or op in OTHER or op in QUANTIZED:
            continue  # timed below, on tokens, on images, on integers, drawn or int8
        domain = MS if op.startswith("Skip") else ""
        ns = ns_per_element(model(op, domain, 1.7 if op == "Pow" else None), args.threads, *_domain(op))
        per_op.append(ns / count)
        print(f"{op:34s} {ns:10.3f} {count:11.1f} {ns / count:7.3f}")
    for op, ns, count in gathers(args.threads) + vision(args.threads) + others(args.threads) + quantized(args.threads):
        per_op.append(ns / count)
        print(f"{op:34s} {ns:10.3f} {count:11.1f} {ns / count:7.3f}")
    print(f"ns per counted operation: {spread(per_op)} (×{max(per_op) / min(per_op):.2f} apart)")

    copy = ns_per_element(model("Relu"), args.threads, -3, 3)
    print(f"\nvector kernels, beyond a copy (Relu: {copy:.3f} ns an element)\n"
          f"{'op':34s} {'ns/element':>10s} {'counted FLOPs':>13s} {'ns/FLOP beyond':>14s}")
    per_flop = []
    for op, domain in (("Exp", ""), ("Sigmoid", ""), ("Tanh", ""), ("Erf", ""), ("Sqrt", ""), ("Softmax", ""),
                       ("LayerNormalization", ""), ("Gelu", MS), ("BiasGelu", MS), ("FastGelu", MS),
                       ("QuickGelu", MS), ("Softsign", ""), ("Hardmax", ""), ("MeanVarianceNormalization", "")):
        ns = ns_per_element(model(op, domain), args.threads, 0.1 if op == "Sqrt" else -3, 3)
        per_flop.append((ns - copy) / counts[op])
        print(f"{op:34s} {ns:10.3f} {counts[op]:13.1f} {per_flop[-1]:14.4f}")
    print(f"ns per counted FLOP beyond a copy: {spread(per_flop, 4)}; Pow with a constant 2 (a square): "
          f"{ns_per_element(model('Pow', exponent=2.0), args.threads, -3, 3):.3f} ns an element")
    machine_learning(args.threads, statistics.median(per_op))
    detection(args.threads, statistics.median(per_op))
    walks(args.threads, statistics.median(per_op))
    nchw_convolutions(args.threads)
    padded_convolutions(args.threads)
    qlinear_convolutions(args.threads)
    return 0


# (op, input shape, attributes or a reduction's axes): the generic loops `index_walk` counts, then shapes their
# vector paths take
WALKS = [("Transpose", (8, 64, 64, 32), {"perm": [0, 3, 2, 1]}),
         ("Transpose", (32, 32, 32, 32), {"perm": [1, 0, 3, 2]}),
         ("Transpose", (1, 256, 16, 64), {"perm": [0, 3, 2, 1]}),
         ("Transpose", (16, 16, 64, 4), {"perm": [2, 1, 0, 3]}),
         ("Transpose", (16, 16, 256, 16), {"perm": [2, 1, 0, 3]}), ("Softmax", (1, 64, 16, 1024), {"axis": 1}),
         ("Softmax", (1, 16, 4, 16384), {"axis": 1}), ("ReduceSumSquare", (1, 2, 256, 2048), [1]),
         ("ReduceSumSquare", (1, 2048, 256, 2), [-1]), ("ReduceSum", (1, 2, 256, 2048), [1]),
         ("ReduceMean", (1, 64, 16384), [1]), ("ReduceMax", (16, 16, 16, 256), [0, 2]),
         ("ReduceL2", (1024, 1024), [1])]
VECTOR_PATHS = [("Transpose", (1, 128, 12, 64), {"perm": [0, 2, 1, 3]}), ("Transpose", (1024, 1024), {"perm": [1, 0]}),
                ("Softmax", (1024, 1024), {"axis": -1}), ("ReduceSum", (1024, 1024), [0]),
                ("ReduceMean", (1, 64, 16384), [2]), ("ReduceSumSquare", (1024, 1024), None)]


def walk_model(op: str, shape: tuple, how):
    """A one-node graph of `op` on x of `shape`: `how` is its attributes, or a reduction's axes."""
    from onnx import TensorProto, helper, numpy_helper

    inputs, consts, attrs = ["x"], [], how if isinstance(how, dict) else {}
    if op.startswith("Reduce") and how is not None:
        inputs.append("axes")
        consts.append(numpy_helper.from_array(np.array(how, np.int64), "axes"))
    graph = helper.make_graph([helper.make_node(op, inputs, ["y"], **attrs)], op,
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], consts)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 8
    return m


# The scalar loops that gather rows of tables by token (`graph.SCALAR_ELEMENTWISE`): BERT's fused embeddings and
# a quantized embedding, 1,024 tokens of 1,024 wide from a 30,522-row vocabulary, timed per element written.
GATHERS = ("EmbedLayerNormalization", "QEmbedLayerNormalization", "GatherBlockQuantized")
TOKENS, WIDTH, VOCAB = 1024, 1024, 30522


def gathers(threads: int) -> list[tuple[str, float, float]]:
    """(op, ns per element, operations counted per element) of each `GATHERS` kernel, GatherBlockQuantized at
    4 and 8 bits."""
    from onnx import TensorProto, helper, numpy_helper

    from edgeatlas.predictor.graph import from_onnx

    rng = np.random.default_rng(0)
    tables = {"words": (VOCAB, WIDTH), "positions": (TOKENS, WIDTH), "segments": (2, WIDTH), "gamma": (WIDTH,),
              "beta": (WIDTH,)}

    def quantized(shape):
        return rng.integers(0, 255, shape).astype(np.uint8)

    scales, zeros = [np.array(0.05, np.float32)] * len(tables), [np.array(128, np.uint8)] * len(tables)
    nodes = {  # label: (the constants' values, in the order of the node's inputs, its inputs, its attributes)
        "EmbedLayerNormalization": ([rng.standard_normal(s).astype(np.float32) for s in tables.values()],
                                    ["ids", "seg", *tables], {}),
        "QEmbedLayerNormalization": ([quantized(s) for s in tables.values()] + scales + zeros,
                                     ["ids", "seg", *tables, ""] + [f"{n}_s" for n in tables] +
                                     [f"{n}_z" for n in tables], {}),
        "GatherBlockQuantized 4 bits": ([quantized((VOCAB, WIDTH // 2)), rng.random((VOCAB, WIDTH // 32))],
                                        ["words", "ids", "scales"], {"bits": 4}),
        "GatherBlockQuantized 8 bits": ([quantized((VOCAB, WIDTH)), rng.random((VOCAB, WIDTH // 32))],
                                        ["words", "ids", "scales"], {"bits": 8})}
    out = []
    for label, (values, names, attrs) in nodes.items():
        op = label.split()[0]
        consts = [n for n in names if n and n not in ("ids", "seg")]
        if op == "GatherBlockQuantized":
            attrs |= {"block_size": 32, "gather_axis": 0, "quantize_axis": 1}
        inits = [numpy_helper.from_array(np.asarray(v, np.float32 if v.dtype == np.float64 else v.dtype), n)
                 for n, v in zip(consts, values)]
        node = helper.make_node(op, names, ["y"] + (["mask"] if "Embed" in op else []), domain=MS, **attrs)
        ids = [helper.make_tensor_value_info(n, TensorProto.INT32, [1, TOKENS]) for n in names if n in ("ids", "seg")]
        graph = helper.make_graph([node], op, ids, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                                  inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid(MS, 1)])
        m.ir_version = 8
        session = session_of(m, threads)
        feeds = {"ids": rng.integers(0, VOCAB, (1, TOKENS)).astype(np.int32), "seg": np.zeros((1, TOKENS), np.int32)}
        feeds = {i.name: feeds[i.name] for i in session.get_inputs()}
        elements = TOKENS * WIDTH
        ns = best_seconds(session, feeds, passes=3, least=0.3) * 1e9 / elements
        out.append((label, ns, from_onnx(m, feeds=feeds).flops[0] / elements))
    return out


# The older vision kernels that are scalar loops (`graph.scalar_count`), each on an image-sized input in the
# variants whose counts differ: (label, op, input shape, attributes; GridSample's grid is [1, 96, 128, 2]).
VISION = ("LRN", "Shrink", "GridSample", "LpNormalization")
VISION_CASES = [("LRN", "LRN", (1, 96, 110, 110), {"size": 5, "alpha": 1e-4, "beta": 0.75}),
                ("LRN beta 1", "LRN", (1, 96, 110, 110), {"size": 5, "alpha": 1e-4, "beta": 1.0}),
                ("Shrink", "Shrink", SHAPE, {"lambd": 0.5}),
                ("GridSample linear", "GridSample", (1, 64, 96, 128), {"mode": "linear"}),
                ("GridSample nearest", "GridSample", (1, 64, 96, 128), {"mode": "nearest"}),
                ("GridSample cubic", "GridSample", (1, 64, 96, 128), {"mode": "cubic"}),
                ("LpNormalization last axis", "LpNormalization", SHAPE, {"axis": -1, "p": 2}),
                ("LpNormalization first axis", "LpNormalization", SHAPE, {"axis": 0, "p": 2})]


def vision(threads: int) -> list[tuple[str, float, float]]:
    """(label, ns per output element, operations counted per output element) of each of `VISION_CASES`."""
    from onnx import TensorProto, helper

    from edgeatlas.predictor.graph import from_onnx

    out = []
    for label, op, shape, attrs in VISION_CASES:
        grid = (1, 96, 128, 2) if op == "GridSample" else None
        inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))] + (
            [helper.make_tensor_value_info("grid", TensorProto.FLOAT, list(grid))] if grid else [])
        node = helper.make_node(op, [i.name for i in inputs], ["y"], **attrs)
        graph = helper.make_graph([node], op, inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
        m.ir_version = 9
        session = session_of(m, threads)
        rng = np.random.default_rng(0)
        feeds = {"x": rng.standard_normal(shape).astype(np.float32)}
        if grid:
            feeds["grid"] = rng.uniform(-1, 1, grid).astype(np.float32)
        elements = float(np.prod(shape))  # the output's, as the input's here
        ns = best_seconds(session, feeds, passes=3, least=0.3) * 1e9 / elements
        out.append((label, ns, from_onnx(m).flops[0] / elements))
    return out


# (label, op, inputs {name: (dtype, shape)}, constant inputs {name: array}, attributes): the bitwise kernels, the
# random generators, running sums and products along the last axis, LpPool and MaxPool with its indices
OTHER = ("BitwiseAnd", "BitwiseOr", "BitwiseXor", "BitShift", "RandomNormal", "RandomNormalLike", "RandomUniform",
         "RandomUniformLike", "GlobalLpPool")
OTHER_CASES = [("BitwiseAnd int32", "BitwiseAnd", {"x": ("int32", SHAPE), "b": ("int32", SHAPE)}, {}, {}),
               ("BitwiseXor uint8", "BitwiseXor", {"x": ("uint8", SHAPE), "b": ("uint8", SHAPE)}, {}, {}),
               ("BitShift right uint32", "BitShift", {"x": ("uint32", SHAPE), "b": ("uint32", SHAPE)}, {},
                {"direction": "RIGHT"}),
               ("RandomNormalLike", "RandomNormalLike", {"x": ("float32", SHAPE)}, {}, {}),
               ("RandomUniformLike", "RandomUniformLike", {"x": ("float32", SHAPE)}, {}, {}),
               ("RandomNormal", "RandomNormal", {}, {}, {"shape": list(SHAPE)}),
               ("CumSum along the last axis", "CumSum", {"x": ("float32", SHAPE)}, {"axis": np.array(1)}, {}),
               ("CumSum exclusive, reversed", "CumSum", {"x": ("float32", SHAPE)}, {"axis": np.array(1)},
                {"exclusive": 1, "reverse": 1}),
               ("LpPool p 2, 3×3", "LpPool", {"x": ("float32", (1, 64, 128, 128))}, {},
                {"kernel_shape": [3, 3], "p": 2}),
               ("LpPool p 3, 3×3, stride 2", "LpPool", {"x": ("float32", (1, 64, 128, 128))}, {},
                {"kernel_shape": [3, 3], "p": 3, "strides": [2, 2]}),
               ("GlobalLpPool p 2", "GlobalLpPool", {"x": ("float32", (1, 64, 128, 128))}, {}, {"p": 2}),
               ("MaxPool 2×2 with indices", "MaxPool", {"x": ("float32", (1, 64, 128, 128))}, {},
                {"kernel_shape": [2, 2], "strides": [2, 2]}),
               ("MaxPool 3×3 stride 2 with indices", "MaxPool", {"x": ("float32", (1, 64, 128, 128))}, {},
                {"kernel_shape": [3, 3], "strides": [2, 2]})]


def others(threads: int) -> list[tuple[str, float, float]]:
    """(label, ns per output element, operations counted per output element) of each of `OTHER_CASES`."""
    from onnx import helper, numpy_helper

    from edgeatlas.predictor.graph import from_onnx

    out = []
    rng = np.random.default_rng(0)
    for label, op, inputs, consts, attrs in OTHER_CASES:
        outputs = ["y", "indices"] if op == "MaxPool" else ["y"]
        node = helper.make_node(op, list(inputs) + list(consts), outputs, **attrs)
        types = {k: helper.np_dtype_to_tensor_dtype(np.dtype(t)) for k, (t, _) in inputs.items()}
        graph = helper.make_graph([node], op, [helper.make_tensor_value_info(k, types[k], list(shape))
                                               for k, (_, shape) in inputs.items()],
                                  [helper.make_empty_tensor_value_info(o) for o in outputs],
                                  [numpy_helper.from_array(np.asarray(v, np.int64), k) for k, v in consts.items()])
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 26 if op == "CumProd" else 20)])
        m.ir_version = 10
        feeds = {k: (rng.uniform(0.5, 1.5, shape) if t == "float32" else rng.integers(0, 8, shape)).astype(t)
                 for k, (t, shape) in inputs.items()}
        ns_run = best_seconds(session_of(m, threads), feeds, passes=3, least=0.3) * 1e9
        g = from_onnx(m)
        elements = float(np.prod(session_of(m, threads).run(["y"], feeds)[0].shape))
        out.append((label, ns_run / elements, float(g.flops.sum()) / elements))
    return out


# The int8 QOperator kernels that are scalar loops (`graph.LOOKUP_OPS`, `graph.QLINEAR_POOL_OUTPUT_OPS`): (label,
# op, input shape, attributes; for QLinearConcat, its two inputs' scales, 0.1 being the output's), uint8 in and
# out. A QLinearConcat of inputs at the output's scale copies them, counts nothing and is printed apart.
QUANTIZED = ("QLinearLeakyRelu", "QLinearSigmoid", "QLinearSoftmax")
QUANTIZED_CASES = [("QLinearConcat, both inputs rescaled", "QLinearConcat", (1, 128, 56, 56), {"scales": (0.05, 0.2)}),
                   ("QLinearConcat, one input rescaled", "QLinearConcat", (1, 128, 56, 56), {"scales": (0.05, 0.1)}),
                   ("QLinearLeakyRelu", "QLinearLeakyRelu", (1, 128, 56, 56), {"alpha": 0.1}),
                   ("QLinearSigmoid", "QLinearSigmoid", (1, 128, 56, 56), {}),
                   ("QLinearSoftmax rows of 16", "QLinearSoftmax", (4096, 16), {"axis": -1, "opset": 13}),
                   ("QLinearSoftmax rows of 128", "QLinearSoftmax", (1024, 128), {"axis": -1, "opset": 13}),
                   ("QLinearSoftmax rows of 3136", "QLinearSoftmax", (128, 3136), {"axis": -1, "opset": 13})] + [
    (f"QLinearAveragePool {'NHWC' if last else 'NCHW'} {k}×{k} stride {st}", "QLinearAveragePool",
     (1, 56, 56, 64) if last else (1, 64, 56, 56),
     {"kernel_shape": [k, k], "strides": [st, st], "pads": [k // 2 * (st == 1)] * 4, "channels_last": last})
    for last in (1, 0) for k, st in ((2, 2), (3, 1), (3, 2), (5, 1))]


def quantized_model(op: str, shape: tuple, attrs: dict, out_shape: list | None = None):
    """A one-node graph of the int8 kernel `op` on x of `shape` (uint8), with its scales and zero points; its
    output's shape `out_shape` where given (shape inference does not know these kernels)."""
    from onnx import TensorProto, helper, numpy_helper

    attrs = dict(attrs)
    first, second = attrs.pop("scales", (0.05, 0.1))
    consts = {"xs": np.array(first, np.float32), "xz": np.array(128, np.uint8), "ys": np.array(0.1, np.float32),
              "yz": np.array(128, np.uint8), "bs": np.array(second, np.float32)}
    two = ["x", "xs", "xz", "x", "bs", "xz", "ys", "yz"]  # x at its scale and at the second one
    names = {"QLinearConcat": ["ys", "yz", "x", "xs", "xz", "x", "bs", "yz"], "QLinearAdd": two,
             "QLinearMul": two}.get(op, ["x", "xs", "xz", "ys", "yz"])
    if op == "QLinearConcat":
        attrs["axis"] = 1
    node = helper.make_node(op, names, ["y"], domain=MS, **attrs)
    graph = helper.make_graph([node], op, [helper.make_tensor_value_info("x", TensorProto.UINT8, list(shape))],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, out_shape)],
                              [numpy_helper.from_array(v, k) for k, v in consts.items() if k in names])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)])
    m.ir_version = 8
    return m


def quantized_section(threads: int) -> None:
    """`quantized` alone, as the scalar loops' table prints it."""
    print(f"int8 table lookups and pools\n{'op':34s} {'ns/element':>10s} {'counted ops':>11s} {'ns/op':>7s}")
    per_op = []
    for label, ns, count in quantized(threads):
        per_op.append(ns / count)
        print(f"{label:34s} {ns:10.3f} {count:11.1f} {ns / count:7.3f}")
    print(f"ns per counted operation: {spread(per_op)} (×{max(per_op) / min(per_op):.2f} apart)")
    vector_quantized(threads)


def vector_quantized(threads: int) -> None:
    """MLAS's QLinearAdd and QLinearMul (two inputs at different scales), printed as the vector kernels are:
    ns per element beyond a uint8 copy's (a Max of the input and itself), per counted FLOP."""
    from onnx import TensorProto, helper

    from edgeatlas.predictor.graph import from_onnx

    shape = (1, 128, 56, 56)
    feeds = {"x": np.random.default_rng(0).integers(0, 255, shape).astype(np.uint8)}
    copy = ms_of(one_node(helper.make_node("Max", ["x", "x"], ["y"]),
                          [helper.make_tensor_value_info("x", TensorProto.UINT8, list(shape))], TensorProto.UINT8),
                 feeds, threads) * 1e6 / np.prod(shape)
    print(f"\nint8 vector kernels, beyond a copy (uint8: {copy:.3f} ns an element)\n"
          f"{'op':34s} {'ns/element':>10s} {'counted FLOPs':>13s} {'ns/FLOP beyond':>14s}")
    for op in ("QLinearAdd", "QLinearMul"):
        m = quantized_model(op, shape, {}, list(shape))
        ns = ms_of(m, feeds, threads) * 1e6 / np.prod(shape)
        counted = float(from_onnx(m).flops[0]) / np.prod(shape)
        print(f"{op:34s} {ns:10.3f} {counted:13.1f} {(ns - copy) / counted:14.4f}")


def quantized(threads: int) -> list[tuple[str, float, float]]:
    """(label, ns per output element, operations counted per output element) of each of `QUANTIZED_CASES`; and
    the copy a QLinearConcat at its output's scale makes, printed."""
    from edgeatlas.predictor.graph import from_onnx

    out = []
    rng = np.random.default_rng(0)
    for label, op, shape, attrs in QUANTIZED_CASES + [("copy", "QLinearConcat", (1, 128, 56, 56),
                                                       {"scales": (0.1, 0.1)})]:
        m = quantized_model(op, shape, attrs)
        feeds = {"x": rng.integers(0, 255, shape).astype(np.uint8)}
        session = session_of(m, threads)
        y = session.run(["y"], feeds)[0].shape
        elements = float(np.prod(y))
        ns = best_seconds(session, feeds, passes=3, least=0.3) * 1e9 / elements
        counted = float(from_onnx(quantized_model(op, shape, attrs, list(y))).flops.sum()) / elements
        if label == "copy":
            print(f"{'QLinearConcat at the output scale':34s} {ns:10.3f} {counted:11.1f}   (a copy)")
        else:
            out.append((label, ns, counted))
    return out


ROWS, FEATURES = 1000, 16
# (label, op, {trees, depth, classes} for a forest, else the node's attributes)
ML_CASES = [("TreeEnsembleRegressor 300 trees depth 4", "TreeEnsembleRegressor", {"trees": 300, "depth": 4}),
            ("TreeEnsembleRegressor 100 trees depth 8", "TreeEnsembleRegressor", {"trees": 100, "depth": 8}),
            ("TreeEnsembleRegressor 50 trees depth 14", "TreeEnsembleRegressor", {"trees": 50, "depth": 14}),
            ("TreeEnsembleClassifier 100 trees depth 8, 10 classes", "TreeEnsembleClassifier",
             {"trees": 100, "depth": 8, "classes": 10}),
            ("TreeEnsemble (opset 5) 100 trees depth 8", "TreeEnsemble", {"trees": 100, "depth": 8}),
            ("SVMRegressor RBF 500 vectors", "SVMRegressor", {"vectors": 500, "classes": 0}),
            ("SVMClassifier RBF 500 vectors, 5 classes", "SVMClassifier", {"vectors": 500, "classes": 5}),
            ("Scaler", "Scaler", {"offset": [0.5] * FEATURES, "scale": [2.0] * FEATURES}),
            ("Normalizer L2", "Normalizer", {"norm": "L2"}),
            ("Binarizer", "Binarizer", {"threshold": 0.5}),
            ("Imputer", "Imputer", {"imputed_value_floats": [0.0] * FEATURES, "replaced_value_float": 0.25}),
            ("ZipMap", "ZipMap", {"classlabels_int64s": list(range(FEATURES))}),
            ("LabelEncoder", "LabelEncoder", {"keys_floats": [i / 8 for i in range(8)],
                                              "values_floats": [float(i) for i in range(8)]}),
            ("OneHotEncoder 8 categories", "OneHotEncoder", {"cats_int64s": list(range(8))})]


def forest_attributes(op: str, trees: int, depth: int, classes: int = 1, seed: int = 0) -> dict:
    """A forest of `trees` balanced trees `depth` deep, each node a random feature against a random threshold
    in [0, 1), as `op`'s attributes (TreeEnsemble: ONNX-ML opset 5's form)."""
    from onnx import numpy_helper

    rng = np.random.default_rng(seed)
    inner, leaves = 2 ** depth - 1, 2 ** depth
    features = rng.integers(0, FEATURES, trees * inner)
    splits = rng.random(trees * inner).astype(np.float32)
    if op == "TreeEnsemble":
        heap = np.arange(inner)
        true, false = 2 * heap + 1, 2 * heap + 2
        per_tree = [(np.where(c < inner, c + t * inner, c - inner + t * leaves), (c >= inner).astype(np.int64))
                    for t in range(trees) for c in (true, false)]
        return {"tree_roots": list(range(0, trees * inner, inner)), "nodes_featureids": features.tolist(),
                "nodes_splits": numpy_helper.from_array(splits),
                "nodes_modes": numpy_helper.from_array(np.zeros(trees * inner, np.uint8)),
                "nodes_truenodeids": np.concatenate([ids for ids, _ in per_tree[0::2]]).tolist(),
                "nodes_trueleafs": np.concatenate([flag for _, flag in per_tree[0::2]]).tolist(),
                "nodes_falsenodeids": np.concatenate([ids for ids, _ in per_tree[1::2]]).tolist(),
                "nodes_falseleafs": np.concatenate([flag for _, flag in per_tree[1::2]]).tolist(),
                "leaf_targetids": [0] * (trees * leaves),
                "leaf_weights": numpy_helper.from_array(rng.random(trees * leaves).astype(np.float32)),
                "n_targets": 1, "aggregate_function": 1, "post_transform": 0}
    nodes = inner + leaves
    ids = np.tile(np.arange(nodes), trees)
    internal = ids < inner
    modes = np.where(internal, "BRANCH_LEQ", "LEAF").tolist()
    values = np.zeros(trees * nodes, np.float32)
    values[internal] = splits
    feature = np.zeros(trees * nodes, np.int64)
    feature[internal] = features
    leaf_tree, leaf_id = np.repeat(np.arange(trees), leaves), np.tile(np.arange(inner, nodes), trees)
    kind = "class" if op == "TreeEnsembleClassifier" else "target"
    outputs = max(classes, 1)
    attrs = {"nodes_treeids": np.repeat(np.arange(trees), nodes).tolist(), "nodes_nodeids": ids.tolist(),
             "nodes_featureids": feature.tolist(), "nodes_modes": modes, "nodes_values": values.tolist(),
             "nodes_truenodeids": np.where(internal, 2 * ids + 1, 0).tolist(),
             "nodes_falsenodeids": np.where(internal, 2 * ids + 2, 0).tolist(),
             f"{kind}_treeids": np.repeat(leaf_tree, outputs).tolist(),
             f"{kind}_nodeids": np.repeat(leaf_id, outputs).tolist(),
             f"{kind}_ids": np.tile(np.arange(outputs), len(leaf_tree)).tolist(),
             f"{kind}_weights": rng.random(len(leaf_tree) * outputs).astype(np.float32).tolist()}
    if op == "TreeEnsembleClassifier":
        attrs["classlabels_int64s"] = list(range(outputs))
    else:
        attrs["n_targets"] = 1
    return attrs


def svm_attributes(vectors: int, classes: int, seed: int = 0) -> dict:
    """An RBF support vector machine of `vectors` random vectors (a classifier's split among `classes`)."""
    rng = np.random.default_rng(seed)
    attrs = {"kernel_type": "RBF", "kernel_params": [1.0 / FEATURES, 0.0, 3.0],
             "support_vectors": rng.random(vectors * FEATURES).astype(np.float32).tolist()}
    if not classes:
        return attrs | {"n_supports": vectors, "coefficients": rng.standard_normal(vectors).tolist(), "rho": [0.1]}
    per = [vectors // classes + (c < vectors % classes) for c in range(classes)]
    return attrs | {"vectors_per_class": per, "classlabels_ints": list(range(classes)),
                    "coefficients": rng.standard_normal((classes - 1) * vectors).tolist(),
                    "rho": rng.standard_normal(classes * (classes - 1) // 2).tolist()}


def machine_learning(threads: int, scalar_ns: float) -> None:
    """ns per operation the counter charges of each of `ML_CASES`, on ROWS rows of uniform data."""
    from onnx import TensorProto, helper

    from edgeatlas.predictor.graph import from_onnx

    print(f"\nclassic machine learning, {ROWS} rows of {FEATURES} features (the scalar loops' figure above: "
          f"{scalar_ns:.3f} ns per operation)\n{'op':52s} {'ns/row':>10s} {'ops counted':>11s} {'ns/op':>7s}")
    per_op = []
    for label, op, how in ML_CASES:
        if op.startswith("Tree"):
            attrs = forest_attributes(op, how["trees"], how["depth"], how.get("classes", 1))
        elif op.startswith("SVM"):
            attrs = svm_attributes(how["vectors"], how["classes"])
        else:
            attrs = how
        outputs = ["label", "y"] if op.endswith("Classifier") else ["y"]
        node = helper.make_node(op, ["x"], outputs, domain="ai.onnx.ml", **attrs)
        graph = helper.make_graph([node], op, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [ROWS, FEATURES])],
                                  [helper.make_empty_tensor_value_info(o) for o in outputs])
        opsets = [helper.make_opsetid("", 18), helper.make_opsetid("ai.onnx.ml", 5 if op == "TreeEnsemble" else 3)]
        m = helper.make_model(graph, opset_imports=opsets)
        m.ir_version = 9
        session = session_of(m, threads)
        x = np.random.default_rng(1).random((ROWS, FEATURES)).astype(np.float32)
        ns = best_seconds(session, {"x": x}, passes=3, least=0.3) * 1e9 / ROWS
        ops = float(from_onnx(m).flops.sum()) / ROWS
        per_op.append(ns / ops)
        print(f"{label:52s} {ns:10.1f} {ops:11.1f} {ns / ops:7.3f}")
    print(f"ns per counted operation: {spread(per_op)} (×{max(per_op) / min(per_op):.2f} apart)")


def walks(threads: int, scalar_ns: float) -> None:
    from edgeatlas.predictor.graph import from_onnx

    print(f"\nindex walks (the scalar loops' figure above: {scalar_ns:.3f} ns per operation)\n"
          f"{'op':16s} {'shape':>20s} {'how':>18s} {'ns/element':>10s} {'ops counted':>11s} {'ns/op':>7s}")
    per_op = []
    for op, shape, how in WALKS + VECTOR_PATHS:
        m = walk_model(op, shape, how)
        graph = from_onnx(m)
        elements = float(np.prod(shape))
        ns = ns_per_element(m, threads, 0.5, 1.5, shape)
        walked = (op, shape, how) in WALKS
        said = str(how.get("perm", how.get("axis")) if isinstance(how, dict) else how).replace(" ", "")
        if walked:
            per_op.append(ns * elements / graph.flops[0])
        ops = f"{graph.flops[0] / elements:11.2f}" if walked else f"{'vector':>11s}"
        rate = f"{per_op[-1]:7.3f}" if walked else ""
        print(f"{op:16s} {str(shape).replace(' ', ''):>20s} {said:>18s} {ns:10.3f} {ops} {rate}")
    print(f"ns per counted operation of the walks: {spread(per_op)} (×{max(per_op) / min(per_op):.2f} apart; "
          f"×{statistics.median(per_op) / scalar_ns:.2f} the scalar loops')")


# (boxes, classes, max kept a class, IoU threshold, score threshold, box sides from-to on a 640-pixel image)
NMS_CASES = [(8400, 80, 100, 0.7, 0.25, 5, 100), (8400, 80, 300, 0.45, 0.25, 5, 100),
             (8400, 80, 100, 0.7, 0.9, 5, 100), (8400, 80, 100, 0.3, 0.5, 50, 300), (1000, 91, 100, 0.5, 0.05, 5, 100),
             (20000, 20, 1000, 0.5, 0.0, 20, 200), (5000, 10, 5000, 0.5, 0.1, 30, 300),
             (8400, 1, 300, 0.7, 0.25, 5, 100)]
# (regions, channels, side of the feature map, output side, sampling ratio (0: adaptive), region side in pixels)
ROI_CASES = [(1000, 256, 50, 7, 2, 64), (1000, 256, 50, 7, 1, 64), (300, 256, 50, 7, 4, 64), (500, 64, 50, 14, 2, 64),
             (1000, 256, 50, 7, 0, 32), (300, 256, 50, 7, 0, 180), (1000, 4, 50, 7, 2, 64)]


def detection(threads: int, scalar_ns: float) -> None:
    """ns per operation the counter charges (from the run's values) of each of `NMS_CASES` and `ROI_CASES`."""
    from onnx import TensorProto, helper

    from edgeatlas.predictor.graph import from_onnx

    def timed(label: str, node, inputs: dict, feeds: dict) -> float:
        graph = helper.make_graph([node], "d", [helper.make_tensor_value_info(k, t, list(feeds[k].shape))
                                                for k, t in inputs.items()],
                                  [helper.make_empty_tensor_value_info(node.output[0])])
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        m.ir_version = 9
        ms = best_seconds(session_of(m, threads), feeds, passes=3, least=0.3) * 1e3
        ops = float(from_onnx(m, feeds=feeds).flops.sum())
        print(f"{label:64s} {ms:9.3f} {ops:13.4g} {ms * 1e6 / ops:7.3f}")
        return ms * 1e6 / ops

    print(f"\nobject detection (the scalar loops' figure above: {scalar_ns:.3f} ns per operation)\n"
          f"{'op':64s} {'ms':>9s} {'ops counted':>13s} {'ns/op':>7s}")
    rng = np.random.default_rng(0)
    per_op = []
    for n, classes, most, iou, threshold, low, high in NMS_CASES:
        corner = rng.uniform(0, 640, (1, n, 2))
        boxes = np.concatenate([corner, corner + rng.uniform(low, high, (1, n, 2))], -1).astype(np.float32)
        node = helper.make_node("NonMaxSuppression", ["boxes", "scores", "most", "iou", "threshold"], ["kept"])
        feeds = {"boxes": boxes, "scores": rng.uniform(0, 1, (1, classes, n)).astype(np.float32),
                 "most": np.array([most], np.int64), "iou": np.array([iou], np.float32),
                 "threshold": np.array([threshold], np.float32)}
        types = {"boxes": TensorProto.FLOAT, "scores": TensorProto.FLOAT, "most": TensorProto.INT64,
                 "iou": TensorProto.FLOAT, "threshold": TensorProto.FLOAT}
        per_op.append(timed(f"NMS {n} boxes × {classes}, keep {most}, IoU {iou}, score {threshold}, {low}-{high} px",
                            node, types, feeds))
    for regions, channels, side, out, ratio, size in ROI_CASES:
        corner = rng.uniform(0, side * 4 - size, (regions, 2))
        rois = np.concatenate([corner, corner + rng.uniform(size * 0.5, size * 1.5, (regions, 2))], 1)
        node = helper.make_node("RoiAlign", ["x", "rois", "batch"], ["y"], output_height=out, output_width=out,
                                sampling_ratio=ratio, spatial_scale=0.25)
        feeds = {"x": rng.standard_normal((1, channels, side, side)).astype(np.float32),
                 "rois": rois.astype(np.float32), "batch": np.zeros(regions, np.int64)}
        types = {"x": TensorProto.FLOAT, "rois": TensorProto.FLOAT, "batch": TensorProto.INT64}
        per_op.append(timed(f"RoiAlign {regions} regions × {channels} ch, {out}×{out}, ratio {ratio}, {size} px",
                            node, types, feeds))
    print(f"ns per counted operation: {spread(per_op)} (×{max(per_op) / min(per_op):.2f} apart)")


# (channels, positions per side, taps per side, groups, stride, dimensions): depthwise 2-D as MobileNets and
# ConvNeXt have them, 1-D depthwise as Conformers and wav2vec2 have them, grouped and ungrouped ones
NCHW_CASES = [(32, 112, 3, 32, 1, 2), (96, 56, 3, 96, 2, 2), (144, 56, 3, 144, 1, 2), (240, 28, 5, 240, 1, 2),
              (480, 14, 3, 480, 1, 2), (960, 7, 5, 960, 1, 2), (32, 16, 7, 32, 1, 2), (64, 8, 7, 64, 1, 2),
              (256, 32, 7, 256, 1, 2), (768, 14, 7, 768, 1, 2), (256, 500, 31, 256, 1, 1), (144, 200, 31, 144, 1, 1),
              (512, 100, 15, 512, 1, 1), (128, 400, 16, 16, 1, 1), (64, 56, 3, 2, 1, 2), (128, 28, 3, 8, 1, 2),
              (256, 14, 3, 32, 1, 2), (64, 56, 3, 1, 1, 2)]


def nchw_convolutions(threads: int) -> None:
    """Convolutions ONNX Runtime runs in NCHW (MLAS: im2col, then a product per group; their weights fed as an
    input keep x86's NCHWc pass away), each timed against the physical terms' estimate at rates measured in
    the same run: its multiply-adds at a large pointwise convolution's rate (no patch matrix), its bytes at a
    copy's (Relu on 4 MiB). Beside it, the estimate without the patch matrix (`graph.im2col_bytes`)."""
    from onnx import TensorProto, helper

    def conv(channels: int, side: int, taps: int, groups: int, stride: int, dims: int):
        shape = [1, channels] + [side] * dims
        weight = [channels, channels // groups] + [taps] * dims
        node = helper.make_node("Conv", ["x", "w"], ["y"], group=groups, strides=[stride] * dims,
                                pads=[taps // 2] * (2 * dims), kernel_shape=[taps] * dims)
        m = one_node(node, [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape),
                            helper.make_tensor_value_info("w", TensorProto.FLOAT, weight)], TensorProto.FLOAT)
        rng = np.random.default_rng(0)
        feeds = {"x": rng.standard_normal(shape).astype(np.float32),
                 "w": rng.standard_normal(weight).astype(np.float32) * 0.1}
        return m, feeds

    copy_ns_per_byte = ns_per_element(model("Relu"), threads, -3, 3) / 8
    m, feeds = conv(256, 56, 1, 1, 1, 2)
    mac_ns = ms_of(m, feeds, threads, least=0.3) * 1e6 / (256 * 256 * 56 * 56)
    print(f"\nconvolutions in NCHW (a multiply-add {mac_ns:.4f} ns, a byte copied {copy_ns_per_byte:.4f} ns)\n"
          f"{'convolution':44s} {'ms':>8s} {'ns/MAC':>7s} {'estimate':>9s} {'×':>5s} {'no im2col':>9s} {'×':>5s}")
    ratios, before = [], []
    for channels, side, taps, groups, stride, dims in NCHW_CASES:
        m, feeds = conv(channels, side, taps, groups, stride, dims)
        ms, macs, bare, estimate = patched_estimate(m, feeds, threads, mac_ns, copy_ns_per_byte, tensors=True)
        ratios.append(estimate / ms)
        before.append(bare / ms)
        label = f"{channels} ch, {side}{'²' if dims == 2 else ''}, {taps}-tap, {groups} groups, stride {stride}"
        print(f"{label:44s} {ms:8.3f} {ms * 1e6 / macs:7.3f} {estimate:9.3f} {estimate / ms:5.2f} {bare:9.3f} "
              f"{bare / ms:5.2f}")
    print(f"estimate / measured: {spread(ratios, 2)}; without the patch matrix: {spread(before, 2)}")


# (input channels, output channels, positions per side, taps per side, dilation, padding): DeepLab's ASPP (3×3
# at dilations 6-36 on a 16² map), dilated backbones' 3×3s, 3×3 and 5×5 ones on maps of 1-14 positions a side
PADDED_CASES = [(960, 256, 16, 3, 1, 1), (960, 256, 16, 3, 6, 6), (960, 256, 16, 3, 12, 12), (960, 256, 16, 3, 24, 24),
                (960, 256, 16, 3, 36, 36), (512, 512, 1, 3, 1, 1), (512, 512, 2, 3, 1, 1), (512, 512, 4, 3, 1, 1),
                (512, 512, 7, 3, 1, 1), (256, 256, 14, 3, 1, 1), (256, 256, 8, 3, 2, 2), (512, 512, 32, 3, 4, 4),
                (256, 256, 5, 3, 1, 1), (256, 256, 6, 5, 1, 2), (96, 96, 64, 3, 8, 8), (512, 256, 64, 3, 18, 18)]


def padded_convolutions(threads: int, cases: list = PADDED_CASES) -> None:
    """Convolutions ONNX Runtime runs in NCHWc (constant weights) whose taps read padding, each timed against
    the physical terms' estimate at a multiply-add's rate measured in the same run (a 3×3 convolution on a
    28² map, whose taps all but read the input): the taps its kernel computes (`graph.nchwc_work_share`), and
    beside it every tap counted."""
    from onnx import TensorProto, helper, numpy_helper

    from edgeatlas.predictor.graph import from_onnx

    def conv(cin: int, cout: int, side: int, taps: int, dilation: int, pad: int):
        weight = np.random.default_rng(0).standard_normal((cout, cin, taps, taps)).astype(np.float32) * 0.1
        node = helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[taps, taps], dilations=[dilation] * 2,
                                pads=[pad] * 4)
        m = one_node(node, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, side, side])],
                     TensorProto.FLOAT, [numpy_helper.from_array(weight, "w")])
        return m, {"x": np.random.default_rng(1).standard_normal((1, cin, side, side)).astype(np.float32)}

    m, feeds = conv(128, 128, 28, 3, 1, 1)
    mac_ns = ms_of(m, feeds, threads, least=0.3) * 1e6 / from_onnx(m).macs
    print(f"\nconvolutions in NCHWc whose taps read padding (a multiply-add {mac_ns:.4f} ns)\n"
          f"{'convolution':44s} {'ms':>8s} {'share':>6s} {'estimate':>9s} {'×':>5s} {'every tap':>9s} {'×':>5s}")
    ratios, dense = [], []
    for cin, cout, side, taps, dilation, pad in cases:
        m, feeds = conv(cin, cout, side, taps, dilation, pad)
        ms = ms_of(m, feeds, threads)
        g = from_onnx(m)
        every = g.macs * mac_ns * 1e-6
        share = float(g.work_share[0, -1])
        ratios.append(every * share / ms)
        dense.append(every / ms)
        label = f"{cin}->{cout} ch, {side}², {taps}×{taps}, dilation {dilation}, pad {pad}"
        print(f"{label:44s} {ms:8.3f} {share:6.3f} {every * share:9.3f} {ratios[-1]:5.2f} {every:9.3f} "
              f"{dense[-1]:5.2f}")
    print(f"estimate / measured: {spread(ratios, 2)}; every tap counted: {spread(dense, 2)}")


# (channels, positions per side, groups, stride): 3×3 int8 convolutions as ResNeXt and RegNet have them (2-32
# channels a group), beside ungrouped ones (a depthwise one has a kernel of its own, the fingerprint's)
QLINEAR_CASES = [(104, 28, 1, 1), (104, 28, 13, 1), (104, 28, 26, 1), (104, 28, 52, 1), (208, 14, 26, 1),
                 (48, 112, 6, 2), (256, 28, 8, 1), (256, 28, 32, 1), (256, 28, 64, 1), (512, 14, 32, 1),
                 (128, 56, 32, 1), (64, 56, 1, 1)]


def qlinear_convolutions(threads: int, cases: list = QLINEAR_CASES) -> None:
    """Grouped QLinearConvs (uint8 activations, int8 weights; ONNX Runtime runs them in NHWC, a group at a time),
    each timed against the physical terms' estimate at rates measured in the same run: its multiply-adds at an
    ungrouped one's rate, its patch matrix (`graph.im2col_bytes`: a copy per position, tap and group) at a
    copy's (Relu on 4 MiB); beside it, the multiply-adds alone. Ungrouped ones gather none."""
    from onnx import TensorProto, helper, numpy_helper

    from edgeatlas.predictor.graph import from_onnx

    def conv(channels: int, side: int, groups: int, stride: int):
        rng = np.random.default_rng(0)
        consts = {"w": rng.integers(-100, 100, (channels, channels // groups, 3, 3)).astype(np.int8),
                  "xs": np.array(0.02, np.float32), "xz": np.array(128, np.uint8), "ws": np.array(0.01, np.float32),
                  "wz": np.array(0, np.int8), "ys": np.array(0.05, np.float32), "yz": np.array(128, np.uint8)}
        node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"], group=groups,
                                pads=[1] * 4, kernel_shape=[3, 3], strides=[stride] * 2)
        m = one_node(node, [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, channels, side, side])],
                     TensorProto.UINT8, [numpy_helper.from_array(v, k) for k, v in consts.items()])
        return m, {"x": rng.integers(0, 255, (1, channels, side, side)).astype(np.uint8)}

    copy_ns_per_byte = ns_per_element(model("Relu"), threads, -3, 3) / 8
    m, feeds = conv(256, 28, 1, 1)
    mac_ns = ms_of(m, feeds, threads, least=0.3) * 1e6 / from_onnx(m).macs
    print(f"\ngrouped int8 convolutions (a multiply-add {mac_ns:.4f} ns, a byte copied {copy_ns_per_byte:.4f} ns)\n"
          f"{'convolution':36s} {'ms':>8s} {'ns/MAC':>7s} {'estimate':>9s} {'×':>5s} {'MACs only':>9s} {'×':>5s}")
    ratios, bare = [], []
    for channels, side, groups, stride in cases:
        m, feeds = conv(channels, side, groups, stride)
        ms, macs, alone, estimate = patched_estimate(m, feeds, threads, mac_ns, copy_ns_per_byte, tensors=False)
        ratios.append(estimate / ms)
        bare.append(alone / ms)
        label = f"{channels} ch, {side}², {groups} groups, stride {stride}"
        print(f"{label:36s} {ms:8.3f} {ms * 1e6 / macs:7.3f} {estimate:9.3f} {ratios[-1]:5.2f} {alone:9.3f} "
              f"{bare[-1]:5.2f}")
    print(f"estimate / measured: {spread(ratios, 2)}; multiply-adds alone: {spread(bare, 2)}")


def patched_estimate(m, feeds: dict, threads: int, mac_ns: float, copy_ns_per_byte: float,
                     tensors: bool) -> tuple[float, float, float, float]:
    """(ms measured, multiply-adds, ms estimated without the patch matrix, ms with it) of the one-convolution
    graph `m`: its multiply-adds at `mac_ns`, its tensors' bytes too where `tensors`, and the patch matrix
    (`graph.im2col_bytes`, in NCHWc's layout column) at a copied byte's rate."""
    from edgeatlas.predictor.graph import from_onnx

    ms = ms_of(m, feeds, threads)
    g = from_onnx(m)
    bare = (g.macs * mac_ns + (g.act_bytes.sum() * copy_ns_per_byte if tensors else 0.0)) * 1e-6
    return ms, g.macs, bare, bare + g.patches[:, -1].sum() * copy_ns_per_byte * 1e-6


def _domain(op: str) -> tuple[float, float]:
    return {"Log": (0.1, 10), "Acosh": (1, 3), "Atanh": (-0.9, 0.9), "Asin": (-0.9, 0.9), "Acos": (-0.9, 0.9),
            "Pow": (0.1, 3), "Mod": (0.5, 3)}.get(op, (-3, 3) if not op.startswith("Reduce") else (0.5, 1.5))


if __name__ == "__main__":
    raise SystemExit(main())
