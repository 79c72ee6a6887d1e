"""The per-element costs the predictor counts for ONNX Runtime's kernels that are more than an add
(`predictor/graph.py`), each op timed here alone against its count.

Each op runs alone on 1M float elements ([1024, 1024]; reductions and normalizations over rows of 1,024),
one thread, the best of three passes. Two sections:

- scalar loops (SCALAR_ELEMENTWISE, SCALAR_REDUCTIONS): ns per element measured, the operations per element
  counted, and their quotient, ns per counted operation. Where the counts are right it is one figure for every
  op (a cycle of this core's clock); the answer charges them at half a lane's peak.
- vector kernels (`_FLOPS_PER_ELEMENT`: MLAS's approximations): ns per element beyond a copy's (Relu: its
  memory traffic alone), per counted FLOP. Where the counts are right it is one figure too, the core's time
  per FLOP at its vector peak.

    python bench/scalar_ops.py [--threads 1]
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
    attrs = {"Mod": {"fmod": 1}, "Softmax": {"axis": -1}, "LayerNormalization": {"axis": -1}}.get(op, {})
    node = helper.make_node(op, inputs, ["y"], domain=domain, **attrs)
    used = [numpy_helper.from_array(v, k) for k, v in consts.items() if k in inputs]
    graph = helper.make_graph([node], op, [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(SHAPE))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], used)
    opsets = [helper.make_opsetid("", 18)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    m = helper.make_model(graph, opset_imports=opsets)
    m.ir_version = 8
    return m


def ns_per_element(m, threads: int, low: float, high: float) -> float:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(m.SerializeToString(), options, providers=["CPUExecutionProvider"])
    x = {"x": np.random.default_rng(0).uniform(low, high, SHAPE).astype(np.float32)}
    session.run(None, x)
    best = float("inf")
    for _ in range(3):
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < 0.3 or n < 3:
            session.run(None, x)
            n += 1
        best = min(best, (time.perf_counter() - t0) / n)
    return best * 1e9 / (SHAPE[0] * SHAPE[1])


def main() -> int:
    from edgeatlas.predictor.graph import _ELEMENTWISE, _FLOPS_PER_ELEMENT, SCALAR_ELEMENTWISE, SCALAR_REDUCTIONS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    counts = {**_ELEMENTWISE, **_FLOPS_PER_ELEMENT}

    print(f"scalar loops\n{'op':34s} {'ns/element':>10s} {'counted ops':>11s} {'ns/op':>7s}")
    per_op = []
    for op, count in {**SCALAR_ELEMENTWISE, **SCALAR_REDUCTIONS}.items():
        domain = MS if op.startswith("Skip") else ""
        ns = ns_per_element(model(op, domain, 1.7 if op == "Pow" else None), args.threads, *_domain(op))
        per_op.append(ns / count)
        print(f"{op:34s} {ns:10.3f} {count:11.1f} {ns / count:7.3f}")
    print(f"ns per counted operation: median {statistics.median(per_op):.3f}, range {min(per_op):.3f}-"
          f"{max(per_op):.3f} (×{max(per_op) / min(per_op):.2f} apart)")

    copy = ns_per_element(model("Relu"), args.threads, -3, 3)
    print(f"\nvector kernels, beyond a copy (Relu: {copy:.3f} ns an element)\n"
          f"{'op':34s} {'ns/element':>10s} {'counted FLOPs':>13s} {'ns/FLOP beyond':>14s}")
    per_flop = []
    for op, domain in (("Exp", ""), ("Sigmoid", ""), ("Tanh", ""), ("Erf", ""), ("Sqrt", ""), ("Softmax", ""),
                       ("LayerNormalization", ""), ("Gelu", MS), ("BiasGelu", MS), ("FastGelu", MS),
                       ("QuickGelu", MS)):
        ns = ns_per_element(model(op, domain), args.threads, 0.1 if op == "Sqrt" else -3, 3)
        per_flop.append((ns - copy) / counts[op])
        print(f"{op:34s} {ns:10.3f} {counts[op]:13.1f} {per_flop[-1]:14.4f}")
    print(f"ns per counted FLOP beyond a copy: median {statistics.median(per_flop):.4f}, range "
          f"{min(per_flop):.4f}-{max(per_flop):.4f}; Pow with a constant 2 (a square): "
          f"{ns_per_element(model('Pow', exponent=2.0), args.threads, -3, 3):.3f} ns an element")
    return 0


def _domain(op: str) -> tuple[float, float]:
    return {"Log": (0.1, 10), "Acosh": (1, 3), "Atanh": (-0.9, 0.9), "Asin": (-0.9, 0.9), "Acos": (-0.9, 0.9),
            "Pow": (0.1, 3), "Mod": (0.5, 3)}.get(op, (-3, 3) if not op.startswith("Reduce") else (0.5, 1.5))


if __name__ == "__main__":
    raise SystemExit(main())
