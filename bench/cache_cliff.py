"""Where a node's tensors stop fitting the last-level cache, and what the predictor charges either side
(`predictor/models.py`: `streamed_bytes`).

ONNX Runtime's Relu (one tensor read, one written) and Add (two read, one written) run alone, one thread,
on working sets from a quarter of a MiB to four times the last-level cache. For each: the rate measured
(GB/s of the tensors it reads and writes), and the rate the rule gives: the traffic up to half the cache
at the cache's rate (measured here: the median of the working sets from 1 MiB, below which a run's own
cost shows, to a quarter of the cache: what a fingerprint's networks calibrate), the rest at the sheet's
memory bandwidth (the agent's probe: a numpy copy of 64 MiB).

Then weights across queries (`models.query_footprint`): chains of matrix-vector products (MatMul at batch 1)
of 1 MiB of weights each, from one product to four times the cache's worth. Each product's weights fit the
cache alone, however long the chain; whether the next query finds them there depends on what the whole query
touches. For each chain: the rate measured (GB/s of its weights), the rate the rule gives on the query's
footprint and the rate it gave on each product's own (the cache's rate here: the median of the chains of
1 MiB to a quarter of the cache, the kernel's own rate in cache).

    python bench/cache_cliff.py [--sheet SHEET.yaml]
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
from scalar_ops import best_seconds  # this folder's: both time one ONNX Runtime session the same way


def model(op: str, elements: int):
    from onnx import TensorProto, helper

    inputs = ["a", "b"] if op == "Add" else ["a"]
    graph = helper.make_graph([helper.make_node(op, inputs, ["y"])], op,
                              [helper.make_tensor_value_info(i, TensorProto.FLOAT, [elements]) for i in inputs],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 8
    return m, inputs


def seconds(op: str, elements: int) -> float:
    """The best of five passes' mean time of one run of `op` alone (`seconds_of`)."""
    m, inputs = model(op, elements)
    return seconds_of(m, {i: np.random.default_rng(0).standard_normal(elements).astype(np.float32) for i in inputs})


def seconds_of(m, feeds: dict) -> float:
    """The best of five passes' mean time of one run of model `m` at one thread (each pass at least 0.1 s)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(m.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return best_seconds(session, feeds, passes=5, least=0.1)


def chain(layers: int, width: int = 512):
    """x [1, width] through `layers` MatMuls of [width, width] float32 weights (1 MiB each at 512)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array((rng.standard_normal((width, width)) / width).astype(np.float32), f"w{i}")
               for i in range(layers)]
    nodes = [helper.make_node("MatMul", ["x" if i == 0 else f"h{i}", f"w{i}"], [f"h{i + 1}"]) for i in range(layers)]
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])],
                              [helper.make_tensor_value_info(f"h{layers}", TensorProto.FLOAT, None)], weights)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 8
    return m


def weights_across_queries(cache: float, bandwidth: float) -> None:
    from edgeatlas.predictor.models import streamed_bytes

    rows = []
    for layers in [2 ** k for k in range(12) if 2 ** k * 2 ** 20 <= 4 * cache]:
        feeds = {"x": np.random.default_rng(1).standard_normal((1, 512)).astype(np.float32)}
        size = layers * 512 * 512 * 4
        rows.append((layers, size, size / seconds_of(chain(layers), feeds) / 1e9))
    cached = statistics.median(rate for _, size, rate in rows if size <= cache / 4)
    print(f"\nweights across queries: chains of MatMul at batch 1, 1 MiB of weights a product; the kernel's rate in "
          f"cache (chains of up to a quarter of the cache): {cached:.1f} GB/s")
    print(f"{'products':>8s} {'weights':>10s} {'measured GB/s':>14s} {'query rule':>11s} {'/ measured':>11s} "
          f"{'node rule':>10s} {'/ measured':>11s}")
    query, node = [], []
    for layers, size, rate in rows:
        one = np.array([float(size)])
        past = float(streamed_bytes(one, one, cache)[0])  # the query's footprint: all its weights
        rule = size / ((size - past) / cached + past / bandwidth)
        query.append(rule / rate)
        node.append(cached / rate)  # a product's 1 MiB never outgrows the cache
        print(f"{layers:8d} {size / 2**20:6.0f} MiB {rate:14.1f} {rule:11.1f} {query[-1]:11.2f} {cached:10.1f} "
              f"{node[-1]:11.2f}")
    big = [i for i, (_, size, _) in enumerate(rows) if size >= cache]
    if big:
        print(f"rule / measured from the cache's size up: on the query's footprint median "
              f"×{statistics.median(query[i] for i in big):.2f}, on each product's own "
              f"×{statistics.median(node[i] for i in big):.2f}")


def main() -> int:
    from edgeatlas.predictor.hardware import last_level_cache
    from edgeatlas.predictor.models import streamed_bytes
    from edgeatlas.protos.spec import SpecSheet

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sheet", help="this machine's spec sheet (default: probed here, bandwidth measured)")
    args = parser.parse_args()
    if args.sheet:
        sheet = SpecSheet.load(args.sheet)
    else:
        from edgeatlas.agent.probe import probe

        sheet = probe("/", measure_bandwidth=True)
    cache = last_level_cache(sheet, "cpu")
    bandwidth = float(sheet.get("memory.bandwidth_gbs") or "nan")
    if not (cache > 0 and bandwidth > 0):
        print(f"the sheet names no last-level cache ({cache}) or no bandwidth ({bandwidth}): nothing to check")
        return 2
    print(f"last-level cache {cache / 2**20:.0f} MiB, sheet bandwidth {bandwidth:.1f} GB/s")
    sizes = [2 ** k * 2 ** 18 for k in range(20) if 2 ** k * 2 ** 18 <= 4 * cache]
    rows = []
    for op, tensors in (("Relu", 2), ("Add", 3)):
        for size in sizes:  # bytes of the working set
            rows.append((op, size, size / seconds(op, size // (4 * tensors)) / 1e9))
    cached = statistics.median(rate for _, size, rate in rows if 2 ** 20 <= size <= cache / 4)
    print(f"the cache's rate (median of the working sets from 1 MiB to a quarter of the cache): {cached:.1f} GB/s\n")
    print(f"{'op':5s} {'working set':>12s} {'measured GB/s':>14s} {'rule GB/s':>10s} {'rule / measured':>16s}")
    ratios = []
    for op, size, rate in rows:
        past = float(streamed_bytes(np.array([float(size)]), np.array([float(size)]), cache)[0])
        rule = size / ((size - past) / cached + past / bandwidth)  # GB/s
        ratios.append(rule / rate)
        print(f"{op:5s} {size / 2**20:9.2f} MiB {rate:14.1f} {rule:10.1f} {rule / rate:16.2f}")
    big = [r for (_, size, _), r in zip(rows, ratios) if size >= cache]
    print(f"\nrule / measured from the cache's size up: median ×{statistics.median(big):.2f}, range "
          f"×{min(big):.2f}-{max(big):.2f}; charging every working set at the cache's rate instead: "
          f"×{statistics.median(cached / rate for _, size, rate in rows if size >= cache):.2f}")
    weights_across_queries(cache, bandwidth)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
