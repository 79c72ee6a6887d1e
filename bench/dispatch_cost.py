"""ONNX Runtime's fixed cost per operator, by kind, and per query: what `graph.dispatch_units` and
`graph.RUN_UNITS` count (`models.physical_terms`' operator column, which a fingerprint's `overhead` network
prices: `predictor/fingerprint.py`).

Each kind runs as a chain of 8 and of 72 links on tensors of a few elements (so that the work is nothing
beside the dispatch), one thread; the difference over 64 is one link's fixed cost. A kind that cannot follow
itself (a reduction, a slice) runs beside an Add that restores the shape, whose cost is taken off; int8
convolutions run on a tensor quantized once before the chain; ConvInteger's link is the dynamic quantizer's
four operators. Convolutions run in both layouts on x86: NCHWc (ONNX Runtime's default there) and NCHW (its
NCHWc pass off, as on an Arm CPU). The chains are timed in rounds, every chain once a round, and each chain's
median over the rounds is kept: on a shared machine a quiet minute and a busy one meet every chain alike.
Printed per link: µs, units (its cost over an element-wise operator's, the `overhead` network's kind), the
units the predictor counts for the chains as it featurizes them (`graph.runtime_graph`, in that layout), and
their ratio. A query's own cost is a one-operator graph's time less one element-wise operator's: through
`session.run`, and as the agent times a query (its runner under LoadGen's single stream), which is what
`graph.RUN_UNITS` counts.

    python bench/dispatch_cost.py [--threads 1] [--rounds 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SHORT, LONG = 8, 72


def _chain(kind: str, n: int, channels: int, side: int):
    """A graph of `n` links of `kind` on x [1, channels, side, side] (each followed by an Add where the
    kind changes the shape), and the number of those Adds."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, consts = [], []

    def const(name, value):
        consts.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def weights(i, *shape):
        return const(f"w{i}", (rng.standard_normal(shape) * 0.1).astype(np.float32))

    x, adds = "x", 0
    c, s = channels, side
    for i in range(n):
        y, extra = f"t{i}", None
        if kind == "Relu" or kind == "Sigmoid":
            nodes.append(helper.make_node(kind, [x], [y]))
        elif kind in ("Add", "Mul"):
            nodes.append(helper.make_node(kind, [x, "x"], [y]))
        elif kind == "Conv 1x1":
            nodes.append(helper.make_node("Conv", [x, weights(i, c, c, 1, 1)], [y]))
        elif kind == "Conv 3x3":
            nodes.append(helper.make_node("Conv", [x, weights(i, c, c, 3, 3)], [y], pads=[1] * 4))
        elif kind.startswith("Conv depthwise"):
            nodes.append(helper.make_node("Conv", [x, weights(i, c, 1, 3, 3)], [y], pads=[1] * 4, group=c))
        elif kind == "MaxPool":
            nodes.append(helper.make_node("MaxPool", [x], [y], kernel_shape=[3, 3], pads=[1] * 4))
        elif kind == "MatMul":
            nodes.append(helper.make_node("MatMul", [x, weights(i, s, s)], [y]))
        elif kind == "Softmax":
            nodes.append(helper.make_node("Softmax", [x], [y], axis=-1))
        elif kind == "LayerNormalization":
            nodes.append(helper.make_node(kind, [x, const(f"g{i}", np.ones(s, np.float32))], [y], axis=-1))
        elif kind == "BatchNormalization":
            stats = [const(f"b{i}{j}", np.full(c, v, np.float32)) for j, v in enumerate((1.0, 0.0, 0.0, 1.0))]
            nodes.append(helper.make_node(kind, [x] + stats, [y]))
        elif kind == "GlobalAveragePool":
            nodes.append(helper.make_node(kind, [x], [f"r{i}"]))
            extra = f"r{i}"
        elif kind == "ReduceMean":
            nodes.append(helper.make_node(kind, [x, const(f"a{i}", np.array([-1], np.int64))], [f"r{i}"]))
            extra = f"r{i}"
        elif kind == "Transpose":
            nodes.append(helper.make_node(kind, [x], [f"r{i}"], perm=[0, 1, 3, 2]))
            extra = f"r{i}"
        elif kind == "Slice":
            ends = [const(f"{k}{i}", np.array([v], np.int64)) for k, v in (("s", 0), ("e", 1), ("a", 1))]
            nodes.append(helper.make_node(kind, [x] + ends, [f"r{i}"]))
            extra = f"r{i}"
        elif kind == "Gather":
            nodes.append(helper.make_node(kind, [x, const(f"i{i}", np.array([0], np.int64))], [f"r{i}"], axis=1))
            extra = f"r{i}"
        elif kind.startswith("QLinearConv"):  # on uint8 tensors: quantized once before the chain
            if i == 0:
                nodes.append(helper.make_node("QuantizeLinear", [x, const("s", np.float32(0.05)),
                                                                 const("z", np.uint8(128))], ["q"]))
                x = "q"
            depthwise = "depthwise" in kind
            w = rng.integers(-20, 20, (c, 1 if depthwise else c, 3 if depthwise else 1,
                                       3 if depthwise else 1)).astype(np.int8)
            nodes.append(helper.make_node(
                "QLinearConv", [x, "s", "z", const(f"w{i}", w), const(f"ws{i}", np.float32(0.01)),
                                const(f"wz{i}", np.int8(0)), "s", "z"], [y],
                **({"group": c, "pads": [1] * 4} if depthwise else {})))
            if i == n - 1:
                nodes.append(helper.make_node("DequantizeLinear", [y, "s", "z"], ["dq"]))
                y = "dq"
        elif kind == "ConvInteger":  # as the dynamic quantizer writes it: quantize, convolve, back to float
            q, scale, zero, acc = f"q{i}", f"qs{i}", f"qz{i}", f"acc{i}"
            nodes.append(helper.make_node("DynamicQuantizeLinear", [x], [q, scale, zero]))
            w = rng.integers(-20, 20, (c, c, 1, 1)).astype(np.int8)
            nodes.append(helper.make_node(kind, [q, const(f"w{i}", w), zero], [acc]))
            nodes.append(helper.make_node("Cast", [acc], [f"f{i}"], to=TensorProto.FLOAT))
            nodes.append(helper.make_node("Mul", [f"f{i}", scale], [y]))
        elif kind == "Split + Concat":  # two copies a link: the channels split in halves, joined swapped
            parts = [f"p{i}a", f"p{i}b"]
            halves = const(f"h{i}", np.array([c // 2, c - c // 2], np.int64))
            nodes.append(helper.make_node("Split", [x, halves], parts, axis=1))
            nodes.append(helper.make_node("Concat", parts[::-1], [y], axis=1))
        else:
            raise ValueError(kind)
        if extra is not None:
            nodes.append(helper.make_node("Add", [x, extra], [y]))
            adds += 1
        x = y
    nodes.append(helper.make_node("Identity", [x], ["out"]))
    graph = helper.make_graph(nodes, kind, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, s, s])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], consts)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), adds




# label → (channels, side, the layouts it runs in: "nchwc" where ONNX Runtime's NCHWc pass runs, "nchw" where
# it does not, as on an Arm CPU; "any" for kinds the pass leaves alone)
KINDS = {
    "Relu": (16, 2, "any"), "Sigmoid": (16, 2, "any"), "Add": (16, 2, "any"), "Mul": (16, 2, "any"),
    "Conv 1x1": (16, 2, "both"), "Conv 3x3": (16, 1, "both"), "Conv depthwise": (16, 2, "both"),
    "Conv depthwise 64": (64, 2, "both"), "QLinearConv 1x1": (16, 2, "any"), "QLinearConv depthwise": (16, 2, "any"),
    "QLinearConv depthwise 64": (64, 2, "any"), "ConvInteger": (16, 2, "any"),
    "MaxPool": (16, 2, "any"), "GlobalAveragePool": (16, 2, "any"),
    "MatMul": (2, 4, "any"), "Softmax": (2, 4, "any"), "LayerNormalization": (2, 4, "any"),
    "BatchNormalization": (16, 2, "any"), "ReduceMean": (2, 4, "any"), "Transpose": (2, 4, "any"),
    "Slice": (16, 2, "any"), "Split + Concat": (16, 2, "any"), "Gather": (16, 2, "any"),
}
ELEMENTWISE = ("Relu", "Add", "Mul")  # the unit: the kind of the fingerprint's `overhead` network


def _session(model, threads: int, layouts: bool):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    if not layouts:  # ONNX Runtime's NCHWc pass runs at its top level only: without it, NCHW, as on an Arm CPU
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _counted(model, column: int) -> float:
    """The units `graph.dispatch_units` counts for a model's operators in one layout, as the predictor reads
    the graph ONNX Runtime runs (its fusions made, nodes it folds into a convolution not counted)."""
    from edgeatlas.predictor.graph import runtime_graph

    g = runtime_graph(model, "onnxruntime")
    return float(np.sum(g.dispatch[:, column]))


def _lanes() -> int:
    """This CPU's FP32 vector lanes on x86 (its NCHWc block), as the agent's probe reads its SIMD; 0 elsewhere."""
    from edgeatlas.agent.probe import Probe, probe_cpu
    from edgeatlas.predictor.hardware import SIMD_LANES

    cpu, _ = probe_cpu(Probe())
    return SIMD_LANES.get(cpu.get("simd") or "", 0) if cpu.get("arch") == "x86_64" else 0


def _runner_query(model, threads: int) -> float:
    """µs a one-operator model takes a query as the agent times it (`console/fingerprints.time_alone`: its ONNX
    Runtime runner under LoadGen's single stream, as every measurement the predictor learns from or is
    calibrated on), the least of three runs."""
    import tempfile

    import onnx

    from edgeatlas.console.fingerprints import time_alone

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "one.onnx"
        onnx.save(model, path)
        return min(time_alone(path, threads) for _ in range(3)) * 1e3


# a broadcast's spans (`graph.broadcast_span`): (input shape, the other input's), each beside the same elements in
# one span
SPANS = [([1, 172, 309, 1], [1]), ([1, 172, 309, 3], [3]), ([1, 896, 56, 8], [8]), ([1, 224, 56, 32], [32]),
         ([1, 56, 56, 128], [128])]


def _mul(shape: list, other: list):
    from onnx import TensorProto, helper, numpy_helper

    scale = numpy_helper.from_array(np.full(other, 0.5, np.float32), "s")
    graph = helper.make_graph([helper.make_node("Mul", ["x", "s"], ["out"])], "mul",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], [scale])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def main() -> int:
    from onnx import TensorProto, helper

    from edgeatlas.predictor.graph import BROADCAST_SPAN_UNITS, LAYOUTS, RUN_UNITS, broadcast_span

    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--calls", type=int, default=200, help="calls a chain is timed for, each round")
    args = parser.parse_args()
    if args.threads < 1 or args.rounds < 1 or args.calls < 1:
        print("--threads, --rounds and --calls must be at least 1")
        return 2
    block = f"nchwc{_lanes()}"
    if block not in LAYOUTS:  # not an x86 CPU: ONNX Runtime runs every convolution in NCHW
        print("no NCHWc layout on this CPU (ONNX Runtime lays convolutions out in blocks on x86 only): NCHW alone")
        block = "nchw"
    chains = {}  # (label, layout) → (session of SHORT, of LONG, units counted a link, Adds a link holds, feed)
    for label, (channels, side, where) in KINDS.items():
        for layout in {"both": ("nchwc", "nchw") if block != "nchw" else ("nchw",), "any": ("any",)}[where]:
            (short, adds), (long, _) = (_chain(label, n, channels, side) for n in (SHORT, LONG))
            column = LAYOUTS.index("nchw" if layout == "nchw" else block)
            counted = (_counted(long, column) - _counted(short, column)) / (LONG - SHORT)
            feed = {"x": np.random.default_rng(1).standard_normal((1, channels, side, side)).astype(np.float32)}
            chains[label, layout] = (_session(short, args.threads, layout != "nchw"),
                                     _session(long, args.threads, layout != "nchw"), counted, adds // SHORT, feed)
    one = helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["x"], ["out"])], "one",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 2, 2])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)]), opset_imports=[helper.make_opsetid("", 18)])
    call = _session(one, args.threads, True)
    times: dict = {key: ([], []) for key in chains}
    calls: list[float] = []

    def median_call(session, feed) -> float:
        spent = []
        for _ in range(args.calls):
            start = time.perf_counter()
            session.run(None, feed)
            spent.append(time.perf_counter() - start)
        return statistics.median(spent) * 1e6

    spans = {}  # (shape, other) → (session of the broadcast, of the same elements in one span, feed)
    for shape, other in SPANS:
        feed = {"x": np.random.default_rng(2).standard_normal(shape).astype(np.float32)}
        spans[str(shape), str(other)] = (_session(_mul(shape, other), args.threads, True),
                                         _session(_mul([1, int(np.prod(shape))], [1]), args.threads, True), feed,
                                         int(np.prod(shape)) // broadcast_span(shape, other))
    spent_spans: dict = {key: ([], []) for key in spans}
    for short, long, _, _, feed in chains.values():  # every session warmed before the rounds
        median_call(short, feed), median_call(long, feed)
    for _ in range(args.rounds):
        for key, (short, long, _, _, feed) in chains.items():
            times[key][0].append(median_call(short, feed))
            times[key][1].append(median_call(long, feed))
        calls.append(median_call(call, chains["Relu", "any"][4]))
        for key, (spanned, whole, feed, _) in spans.items():
            spent_spans[key][0].append(median_call(spanned, feed))
            spent_spans[key][1].append(median_call(whole, {"x": feed["x"].reshape(1, -1)}))
    link = {key: (statistics.median(b) - statistics.median(a)) / (LONG - SHORT) for key, (a, b) in times.items()}
    unit = statistics.mean([link[name, "any"] for name in ELEMENTWISE])
    print(f"ONNX Runtime's fixed cost per operator, {args.threads} thread(s): chains of {SHORT} and {LONG} on "
          f"tensors of a few elements, the median of {args.rounds} rounds; 1 unit = an element-wise operator's "
          f"{unit:.3f} µs (the mean of {', '.join(ELEMENTWISE)}); a link's Add, where it has one, taken off")
    print(f"  {'a link of':26s} {'layout':6s} {'µs':>7s} {'units':>6s} {'counted':>8s} {'counted/measured':>17s}")
    ratios = []
    for (label, layout), cost in link.items():
        _, _, counted, adds, _ = chains[label, layout]
        each = (cost - adds * link["Add", "any"]) / unit
        counted -= adds  # the Add a link holds, counted as an element-wise operator
        ratios.append(counted / each)
        print(f"  {label:26s} {layout:6s} {cost - adds * link['Add', 'any']:7.3f} {each:6.2f} {counted:8.2f} "
              f"{counted / each:17.2f}")
    run = statistics.median(calls) - link["Relu", "any"]
    print(f"  {'a call (session.run)':26s} {'':6s} {run:7.3f} {run / unit:6.2f}")
    query = _runner_query(one, args.threads) - link["Relu", "any"]
    print(f"  {'a query (the agent, LoadGen)':26s} {'':6s} {query:7.3f} {query / unit:6.2f} {RUN_UNITS:8.2f} "
          f"{RUN_UNITS / (query / unit):17.2f}")
    print(f"a broadcast's spans (Mul by a constant, {BROADCAST_SPAN_UNITS} units a span counted), beside the same "
          f"elements in one span:")
    print(f"  {'input':18s} {'by':6s} {'spans':>7s} {'µs':>8s} {'one span':>9s} {'ns a span':>10s} {'units':>6s} "
          f"{'counted/measured':>17s}")
    for (shape, other), (spanned, whole) in spent_spans.items():
        count = spans[shape, other][3]
        a, b = statistics.median(spanned), statistics.median(whole)
        each = (a - b) / max(count - 1, 1)
        ratios.append(BROADCAST_SPAN_UNITS / (each / unit))
        print(f"  {shape:18s} {other:6s} {count:7d} {a:8.1f} {b:9.1f} {each * 1e3:10.2f} {each / unit:6.3f} "
              f"{ratios[-1]:17.2f}")
    ratios.sort()
    print(f"counted / measured over the {len(ratios)} links and broadcasts: median {statistics.median(ratios):.2f}, "
          f"{ratios[0]:.2f}-{ratios[-1]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
