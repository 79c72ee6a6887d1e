"""Training data: operator graphs (featurized once, cached) × settings (spec sheet, target, batch, ...).

A sample is (graph, setting, latency). Graphs live in one `GraphSet` (concatenated arrays, so the GNN
slices mini-batches without Python objects per node); settings carry their processor and features.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeatlas.predictor.graph import (CATEGORIES, LAYOUTS, OPERAND_PAIRS, SCALAR_COLUMNS, WIDTH_COLUMNS, OpGraph,
                                       from_onnx, int8_work)
from edgeatlas.predictor.hardware import Processor, feature_vector, processor
from edgeatlas.protos.errors import InvalidInput
from edgeatlas.protos.spec import SpecSheet

# 2: the quantize category and the integer-kernel feature; 3: ONNX Runtime's fusions; 4: a tensor after an
# operator shape inference does not know has its producer's element type; 5: each node's element widths;
# 6: each node's matrix-product columns (`GraphSet.lanes`), and an If counted as the branch it runs; 7: those
# columns per layout (`graph.LAYOUTS`: ONNX Runtime's NCHWc convolutions vectorize output channels), and
# the nodes its NCHWc pass folds into a convolution (`GraphSet.fused`); 8: the signedness of each int8
# multiply-add's operands (`GraphSet.operands`), and a recurrent cell's weight bytes with R read once a
# time step (`graph._recurrent_rereads`); 9: DFT and STFT counted as ONNX Runtime computes them, in scalar
# loops (`graph.fft_flops`, `graph.SCALAR_KERNELS`), and a FusedMatMul's transposed A summed over the right axis;
# 10: the bytes ONNX Runtime's NCHWc pass copies between layouts (`GraphSet.reordered`); 11: the element-wise
# ops and reductions it runs as scalar loops, at their operations per element (`graph.SCALAR_ELEMENTWISE`,
# `graph.SCALAR_REDUCTIONS`), and the inverse and hyperbolic trigonometric ops counted; 12: a recurrent cell's
# re-read weights told apart (`GraphSet.rereads`: they do not grow its working set, `models.streamed_bytes`), and
# the transposes, softmaxes and reductions ONNX Runtime runs in its generic loops counted as walks (`graph.index_walk`);
# 13: ONNX Runtime's graph read at its default level less the layout passes, from the graph as given (a float16
# weight converted at load, not cast on each run), a convolution it runs in NCHW charged its patch matrix
# (`graph.im2col_bytes`), and NCHWc only where the bias is constant too; 14: an NCHWc convolution's work as the
# taps it computes (`GraphSet.work_share`: it skips those that read padding), and the patch matrix apart from
# the copies between layouts (`GraphSet.patches`: built a segment at a time, in cache); 15: a grouped QLinearConv's
# patch matrix, gathered a group at a time (`graph.im2col_bytes`); 18: each node's fixed cost in ONNX Runtime by
# its kind and layout (`GraphSet.dispatch`, `graph.dispatch_units`); 19: a broadcast's spans in it
# (`graph.broadcast_span`)
FEATURIZER_VERSION = "19"
# OpGraph.summary's keys, in a fixed order.
SUMMARY = tuple(["nodes", "log_flops", "log_act_bytes", "log_weight_bytes", "depth"]
                + [f"{k}_{c}" for c in CATEGORIES for k in ("n", "log_flops")])


@dataclass
class GraphSet:
    """Many operator graphs as concatenated arrays; graph i's nodes are node_ptr[i]:node_ptr[i+1]."""

    names: list[str]
    x: np.ndarray  # [N, NODE_FEATURES] float32
    flops: np.ndarray  # [N] at batch 1
    act_bytes: np.ndarray
    weight_bytes: np.ndarray
    edges: np.ndarray  # [2, E], node indices local to their graph
    node_ptr: np.ndarray  # [G + 1]
    edge_ptr: np.ndarray  # [G + 1]
    summary: np.ndarray  # [G, len(SUMMARY)]
    # [N, len(LAYOUTS)]: per layout, the output columns of each node's matrix product (`graph.gemm_columns`)
    lanes: np.ndarray | None = None
    # [N, len(LAYOUTS)]: per layout, whether each node runs inside the convolution before it (`graph.nchwc_fusions`)
    fused: np.ndarray | None = None
    # [N] int8: the signedness of each int8 multiply-add's operands, an index into `graph.OPERAND_PAIRS` (0: the
    # quantizers' default, u8×s8, and every node of a graph featurized before it was recorded)
    operands: np.ndarray | None = None
    # [N, len(LAYOUTS)]: per layout, the bytes ONNX Runtime's NCHWc pass copies between layouts for each node
    # (`graph.nchwc_layouts`); 0 in a graph featurized before they were counted
    reordered: np.ndarray | None = None
    # [N, len(LAYOUTS)]: per layout, the bytes a convolution it leaves in NCHW moves building its patch matrix
    # (`graph.im2col_bytes`), in cache; 0 in a graph featurized before they were counted apart
    patches: np.ndarray | None = None
    # [N, len(LAYOUTS)]: per layout, the share of each node's counted work its kernel runs as: an NCHWc
    # convolution skips the taps that read padding (`graph.nchwc_work_share`); 1 in a graph featurized before
    work_share: np.ndarray | None = None
    # [N]: of weight_bytes, the bytes read again of weights already read (`OpGraph.rereads`; 0 in a graph
    # featurized before they were told apart)
    rereads: np.ndarray | None = None
    # [N, len(LAYOUTS)]: per layout, each node's fixed cost in ONNX Runtime in element-wise operators' worth, and
    # its copies between layouts' (`OpGraph.dispatch`); None in a graph featurized before they were counted
    dispatch: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def from_graphs(cls, graphs: list[OpGraph]) -> "GraphSet":
        if not graphs:
            raise InvalidInput("no model graphs to learn from")
        node_ptr = np.cumsum([0] + [g.nodes for g in graphs])
        edge_ptr = np.cumsum([0] + [g.edges.shape[1] for g in graphs])
        return cls(names=[g.name for g in graphs],
                   x=np.concatenate([g.node_features() for g in graphs]),
                   flops=np.concatenate([g.flops for g in graphs]),
                   act_bytes=np.concatenate([g.act_bytes for g in graphs]),
                   weight_bytes=np.concatenate([g.weight_bytes for g in graphs]),
                   edges=np.concatenate([g.edges for g in graphs], axis=1),
                   node_ptr=node_ptr, edge_ptr=edge_ptr,
                   summary=np.array([[g.summary()[k] for k in SUMMARY] for g in graphs], dtype=np.float32),
                   lanes=_per_layout([g.lanes for g in graphs], [g.nodes for g in graphs], 0.0),
                   fused=_per_layout([g.fused for g in graphs], [g.nodes for g in graphs], False),
                   operands=_per_node([g.operands for g in graphs], [g.nodes for g in graphs]),
                   reordered=_per_layout([g.reordered for g in graphs], [g.nodes for g in graphs], 0.0),
                   patches=_per_layout([g.patches for g in graphs], [g.nodes for g in graphs], 0.0),
                   work_share=_per_layout([g.work_share for g in graphs], [g.nodes for g in graphs], 1.0),
                   rereads=_per_node([g.rereads for g in graphs], [g.nodes for g in graphs], np.float64),
                   dispatch=_per_layout([g.dispatch for g in graphs], [g.nodes for g in graphs], 1.0))

    def int8_work(self) -> np.ndarray:
        """[N] whether each node multiplies and adds on int8 (`graph.int8_work`, from the features' op
        category and integer-kernel columns)."""
        return int8_work(np.argmax(self.x[:, :len(CATEGORIES)], axis=1), self.x[:, -1] > 0)

    def scalar(self) -> np.ndarray:
        """[N] whether each node is a kernel written as scalar loops (`graph.SCALAR_KERNELS`, `graph.index_walk`):
        its columns are `graph.SCALAR_COLUMNS`, a fraction no matrix product has."""
        if self.lanes is None:
            return np.zeros(len(self.flops), dtype=bool)
        return self.lanes[:, 0] == np.float32(SCALAR_COLUMNS)

    def _int8_nodes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(node indices, op category, [n, 2] bytes per element read and written, graph index) of the nodes
        that multiply and add on int8 (`int8_work`): few or none, so a float data set's millions are skipped."""
        nodes = np.flatnonzero(self.int8_work())
        category = np.argmax(self.x[nodes, :len(CATEGORIES)], axis=1)
        widths = np.rint(self.x[np.ix_(nodes, list(WIDTH_COLUMNS))] * 4).astype(int)
        return nodes, category, widths, np.searchsorted(self.node_ptr, nodes, side="right") - 1

    def _int8_names(self, depthwise: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(node indices, graph index, kind) of the int8 multiply-add nodes (`int8_kinds`, `int8_macs`)."""
        nodes, category, widths, graph = self._int8_nodes()
        called = {CATEGORIES.index("matmul"): "matmul"}
        if depthwise:
            called[CATEGORIES.index("conv_dw")] = "depthwise"
        pairs = np.zeros(len(nodes), int) if self.operands is None else self.operands[nodes].astype(int)
        names = np.array([f"{called.get(c, 'conv')} {a}>{b}" + (f" {OPERAND_PAIRS[p]}" if p else "")
                          for c, (a, b), p in zip(category, widths, pairs)], dtype=object)
        return nodes, graph, names

    def int8_kinds(self) -> list[set[str]]:
        """Per graph, the kinds of its int8 multiply-add kernels (`int8_work`): "conv" or "matmul", the
        bytes per element they read and write ("conv 1>1": QLinearConv; "conv 1>4": ConvInteger, which
        accumulates to int32), and the signedness of their activations and weights where it is not the
        quantizers' default, uint8 × int8 ("conv 1>4 u8×u8"; `graph.OPERAND_PAIRS`). Kernels of one kind cost
        alike per multiply-add; of two, up to 10x apart."""
        _, graph, names = self._int8_names(depthwise=False)
        out: list[set[str]] = [set() for _ in range(len(self))]
        for g, name in zip(graph, names):
            out[g].add(name)
        return out

    def int8_macs(self) -> dict[str, np.ndarray]:
        """Per kind of int8 multiply-add kernel, each graph's multiply-adds on it ([G] each). A kind is as in
        `int8_kinds`, with a depthwise convolution (one input channel per group) apart: "depthwise 1>1" for a
        depthwise QLinearConv, which costs many times a dense one per multiply-add. What the fingerprint's
        int8 networks measure (`fingerprint.INT8_KINDS`; `commands.int8_on_fingerprint`)."""
        nodes, graph, names = self._int8_names(depthwise=True)
        macs = self.flops[nodes].astype(np.float64) / 2
        return {kind: np.bincount(graph, weights=macs * (names == kind), minlength=len(self))
                for kind in sorted(set(names))}

    def integer(self) -> np.ndarray:
        """[G] whether each graph has an operator on quantized integers (`graph.integer_kernel`, the
        features' last column)."""
        flags = self.x[:, -1] > 0
        return np.array([flags[a:b].any() for a, b in zip(self.node_ptr[:-1], self.node_ptr[1:])], dtype=bool)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, names=np.array(self.names), x=self.x, flops=self.flops.astype(np.float32),
                            act_bytes=self.act_bytes.astype(np.float32),
                            weight_bytes=self.weight_bytes.astype(np.float32), edges=self.edges.astype(np.int32),
                            node_ptr=self.node_ptr, edge_ptr=self.edge_ptr, summary=self.summary,
                            **({} if self.lanes is None else {"lanes": self.lanes.astype(np.float32)}),
                            **({} if self.fused is None else {"fused": self.fused}),
                            **({} if self.operands is None else {"operands": self.operands}),
                            **({} if self.reordered is None else {"reordered": self.reordered.astype(np.float32)}),
                            **({} if self.patches is None else {"patches": self.patches.astype(np.float32)}),
                            **({} if self.work_share is None else {"work_share": self.work_share.astype(np.float32)}),
                            **({} if self.rereads is None else {"rereads": self.rereads.astype(np.float32)}),
                            **({} if self.dispatch is None else {"dispatch": self.dispatch.astype(np.float32)}))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> "GraphSet":
        with np.load(path) as z:
            return cls(names=[str(n) for n in z["names"]], x=z["x"], flops=z["flops"].astype(np.float64),
                       act_bytes=z["act_bytes"].astype(np.float64),
                       weight_bytes=z["weight_bytes"].astype(np.float64), edges=z["edges"].astype(np.int64),
                       node_ptr=z["node_ptr"], edge_ptr=z["edge_ptr"], summary=z["summary"],
                       lanes=z["lanes"].astype(np.float64) if "lanes" in z.files else None,
                       fused=z["fused"].astype(bool) if "fused" in z.files else None,
                       operands=z["operands"].astype(np.int8) if "operands" in z.files else None,
                       reordered=z["reordered"].astype(np.float64) if "reordered" in z.files else None,
                       patches=z["patches"].astype(np.float64) if "patches" in z.files else None,
                       work_share=z["work_share"].astype(np.float64) if "work_share" in z.files else None,
                       rereads=z["rereads"].astype(np.float64) if "rereads" in z.files else None,
                       dispatch=z["dispatch"].astype(np.float64) if "dispatch" in z.files else None)

    def subset(self, index: list[int] | np.ndarray) -> "GraphSet":
        nodes = [np.arange(self.node_ptr[i], self.node_ptr[i + 1]) for i in index]
        edges = [np.arange(self.edge_ptr[i], self.edge_ptr[i + 1]) for i in index]
        n_idx = np.concatenate(nodes) if nodes else np.zeros(0, np.int64)
        e_idx = np.concatenate(edges) if edges else np.zeros(0, np.int64)
        return GraphSet(names=[self.names[i] for i in index], x=self.x[n_idx], flops=self.flops[n_idx],
                        act_bytes=self.act_bytes[n_idx], weight_bytes=self.weight_bytes[n_idx],
                        edges=self.edges[:, e_idx], node_ptr=np.cumsum([0] + [len(n) for n in nodes]),
                        edge_ptr=np.cumsum([0] + [len(e) for e in edges]), summary=self.summary[list(index)],
                        lanes=None if self.lanes is None else self.lanes[n_idx],
                        fused=None if self.fused is None else self.fused[n_idx],
                        operands=None if self.operands is None else self.operands[n_idx],
                        reordered=None if self.reordered is None else self.reordered[n_idx],
                        patches=None if self.patches is None else self.patches[n_idx],
                        work_share=None if self.work_share is None else self.work_share[n_idx],
                        rereads=None if self.rereads is None else self.rereads[n_idx],
                        dispatch=None if self.dispatch is None else self.dispatch[n_idx])


@dataclass
class SettingInfo:
    """One measurement setting: a device (its spec sheet) running with a target, batch, threads, runtime."""

    key: str
    device: str  # the spec sheet's name: leave-hardware-out holds out all of a device's settings
    spec: SpecSheet
    target: str
    batch: int  # 0 = not published (treated as 1 for FLOPs, flagged missing for the models)
    threads: int
    runtime: str
    proc: Processor = field(init=False)
    features: np.ndarray = field(init=False)

    def __post_init__(self):
        self.proc = processor(self.spec, self.target, self.batch, self.threads, self.runtime)
        self.features = feature_vector(self.proc)

    @property
    def effective_batch(self) -> int:
        return self.batch if self.batch and self.batch > 0 else 1


def runtime_target(setting: SettingInfo) -> str:
    """"runtime/target" of a setting (e.g. "onnxruntime/gpu"): what a checkpoint's `runtime_targets` lists."""
    return f"{(setting.runtime or '').lower()}/{(setting.target or '').lower()}"


@dataclass
class Samples:
    graphs: GraphSet
    settings: list[SettingInfo]
    graph: np.ndarray  # [S] graph index per sample
    setting: np.ndarray  # [S] setting index per sample
    latency_ms: np.ndarray  # [S]
    source: str = ""
    families: np.ndarray | None = None  # [G] the architecture family of each graph ("" where unknown)

    def __post_init__(self):
        if self.families is None:
            self.families = np.full(len(self.graphs), "", dtype=object)

    def __len__(self) -> int:
        return len(self.latency_ms)

    def where(self, mask: np.ndarray) -> "Samples":
        return Samples(self.graphs, self.settings, self.graph[mask], self.setting[mask], self.latency_ms[mask],
                       self.source, self.families)

    def compact(self) -> "Samples":
        """The same samples with only the graphs they use (a partition to ship without all the others)."""
        used, graph = np.unique(self.graph, return_inverse=True)
        return Samples(self.graphs.subset(used), self.settings, graph, self.setting, self.latency_ms, self.source,
                       self.families[used])

    def family_of(self) -> np.ndarray:
        """[S] the architecture family of each sample's network."""
        return self.families[self.graph]

    def devices(self) -> list[str]:
        """The devices that have samples here (settings are shared with the set this one was cut from)."""
        return sorted({self.settings[i].device for i in np.unique(self.setting)})

    def device_of(self) -> np.ndarray:
        names = np.array([s.device for s in self.settings])
        return names[self.setting]

    def runtime_target_of(self) -> np.ndarray:
        """[S] "runtime/target" of each sample's setting (`runtime_target`)."""
        return np.array([runtime_target(s) for s in self.settings], dtype=object)[self.setting]


def cache_dir() -> Path:
    return Path(os.environ.get("EDGEATLAS_CACHE") or Path.home() / ".cache" / "edgeatlas") / "predictor"


def _family_graph(job: tuple[str, str, str]) -> OpGraph:
    family, arch, runtime = job
    if family == "zoo":
        from edgeatlas.predictor.datasets.zoo import build
        from edgeatlas.predictor.graph import runtime_graph
        return runtime_graph(build(arch), runtime, name=arch)
    if family == "fbnet":
        from edgeatlas.predictor.datasets.fbnet import fbnet
        return from_onnx(fbnet(arch, arch, seed=None, check=False), name=arch)
    from edgeatlas.predictor.datasets.nasbench201 import nasbench201
    return from_onnx(nasbench201(arch, arch, seed=None, check=False), name=arch)


FAMILY_NAMES = {"nasbench201": "NAS-Bench-201", "fbnet": "FBNet", "zoo": "real-architecture zoo"}


def family_graphs(family: str, archs: list[str], say=lambda _: None, runtime: str = "") -> GraphSet:
    """The GraphSet of a family's architectures, from the cache when it holds exactly these. runtime: the
    one every measurement of them ran in, where the graph it executes differs from the file's (ONNX
    Runtime's, `graph.runtime_graph`); the published families are featurized as built."""
    runtime = runtime.lower() if family == "zoo" else ""
    digest = hashlib.sha256(("\n".join(archs) + FEATURIZER_VERSION + runtime).encode()).hexdigest()[:20]
    prefix = "nb201" if family == "nasbench201" else family
    path = cache_dir() / f"{prefix}-{digest}.npz"
    if path.is_file():
        try:
            return GraphSet.load(path)
        except Exception:  # a torn or stale cache is rebuilt, not trusted
            path.unlink(missing_ok=True)
    say(f"featurizing {len(archs)} {FAMILY_NAMES[family]} networks as ONNX operator graphs (cached in {path.parent})")
    jobs = [(family, a, runtime) for a in archs]
    workers = min(os.cpu_count() or 1, 8)
    if workers > 1 and len(archs) > 50:
        with ProcessPoolExecutor(workers) as pool:
            graphs = list(pool.map(_family_graph, jobs, chunksize=64))
    else:
        graphs = [_family_graph(j) for j in jobs]
    graph_set = GraphSet.from_graphs(graphs)
    graph_set.save(path)
    return graph_set


def load_dir(root: str | Path, say=lambda _: None, limit: int = 0) -> Samples:
    """A directory in the nasbench201 layout (NAS-Bench-201, FBNet or the zoo) as samples: every cell.

    NAS-Bench-201 architectures whose cells do not connect input to output are left out (see
    nasbench201.connected).
    """
    from edgeatlas.predictor.datasets import nasbench201 as nb

    data = nb.load(root)
    rows = data.rows[:limit] if limit else data.rows
    if not rows:
        raise InvalidInput(f"{root}: latency_ms.csv has no rows")
    from edgeatlas.predictor.datasets.fbnet import parse_fbnet
    from edgeatlas.predictor.datasets.zoo import parse
    parser = {"fbnet": parse_fbnet, "zoo": parse, "nasbench201": nb.parse_nb201}[data.family]
    for row in rows:  # a malformed row is named before minutes of featurizing
        try:
            parser(row.arch)
        except InvalidInput as exc:
            raise InvalidInput(f"{root}: index {row.index}: {exc}") from None
    ran = {c.runtime.lower() for c in data.columns.values()}
    graphs = family_graphs(data.family, [r.arch for r in rows], say,  # all rows: one cache for every subset
                           runtime=ran.pop() if len(ran) == 1 else "")
    kept = [i for i, r in enumerate(rows) if data.family != "nasbench201" or nb.connected(r.arch)]
    if len(kept) < len(rows):
        say(f"{root}: left out {len(rows) - len(kept)} architectures whose cells do not connect input to output")
        graphs, rows = graphs.subset(kept), [rows[i] for i in kept]
    if not rows:
        raise InvalidInput(f"{root}: latency_ms.csv has no rows with a connected architecture")
    names = list(data.columns)
    settings = [SettingInfo(key=n, device=c.spec.name or n, spec=c.spec, target=c.target, batch=c.batch,
                            threads=c.threads, runtime=c.runtime) for n, c in data.columns.items()]
    g_idx, s_idx, lat = [], [], []
    for gi, row in enumerate(rows):
        for si, name in enumerate(names):
            value = row.latency_ms.get(name)
            if value is not None:
                g_idx.append(gi)
                s_idx.append(si)
                lat.append(value)
    return Samples(graphs, settings, np.array(g_idx), np.array(s_idx), np.array(lat, dtype=np.float64),
                   source=str(root), families=np.full(len(graphs), data.family, dtype=object))


def merge(parts: list[Samples]) -> Samples:
    """Several sources as one: graphs and settings appended, indices shifted."""
    if len(parts) == 1:
        return parts[0]
    g_off, s_off, gsets, settings, g, s, lat = 0, 0, [], [], [], [], []
    families = np.concatenate([p.families for p in parts])
    for p in parts:
        gsets.append(p.graphs)
        settings += p.settings
        g.append(p.graph + g_off)
        s.append(p.setting + s_off)
        lat.append(p.latency_ms)
        g_off += len(p.graphs)
        s_off += len(p.settings)
    return Samples(concat(gsets), settings, np.concatenate(g), np.concatenate(s), np.concatenate(lat),
                   source=", ".join(p.source for p in parts), families=families)


def concat(sets: list[GraphSet]) -> GraphSet:
    node_ptr, edge_ptr = [np.zeros(1, np.int64)], [np.zeros(1, np.int64)]
    n_off = e_off = 0
    for s in sets:
        node_ptr.append(s.node_ptr[1:] + n_off)
        edge_ptr.append(s.edge_ptr[1:] + e_off)
        n_off += s.node_ptr[-1]
        e_off += s.edge_ptr[-1]
    return GraphSet(names=[n for s in sets for n in s.names], x=np.concatenate([s.x for s in sets]),
                    flops=np.concatenate([s.flops for s in sets]),
                    act_bytes=np.concatenate([s.act_bytes for s in sets]),
                    weight_bytes=np.concatenate([s.weight_bytes for s in sets]),
                    edges=np.concatenate([s.edges for s in sets], axis=1), node_ptr=np.concatenate(node_ptr),
                    edge_ptr=np.concatenate(edge_ptr), summary=np.concatenate([s.summary for s in sets]),
                    lanes=None if all(s.lanes is None for s in sets) else
                    _per_layout([s.lanes for s in sets], [len(s.flops) for s in sets], 0.0),
                    fused=None if all(s.fused is None for s in sets) else
                    _per_layout([s.fused for s in sets], [len(s.flops) for s in sets], False),
                    operands=None if all(s.operands is None for s in sets) else
                    _per_node([s.operands for s in sets], [len(s.flops) for s in sets]),
                    reordered=None if all(s.reordered is None for s in sets) else
                    _per_layout([s.reordered for s in sets], [len(s.flops) for s in sets], 0.0),
                    patches=None if all(s.patches is None for s in sets) else
                    _per_layout([s.patches for s in sets], [len(s.flops) for s in sets], 0.0),
                    work_share=None if all(s.work_share is None for s in sets) else
                    _per_layout([s.work_share for s in sets], [len(s.flops) for s in sets], 1.0),
                    rereads=None if all(s.rereads is None for s in sets) else
                    _per_node([s.rereads for s in sets], [len(s.flops) for s in sets], np.float64),
                    dispatch=None if all(s.dispatch is None for s in sets) else
                    _per_layout([s.dispatch for s in sets], [len(s.flops) for s in sets], 1.0))


def _per_node(arrays: list, nodes: list[int], dtype=np.int8) -> np.ndarray:
    """[N]: per-node arrays joined as `dtype`, 0 where a part has none (`operands`: the default pair;
    `rereads`: none)."""
    return np.concatenate([np.zeros(n, dtype) if a is None else np.asarray(a, dtype) for a, n in zip(arrays, nodes)])


def _per_layout(arrays: list, nodes: list[int], missing) -> np.ndarray:
    """[N, len(LAYOUTS)]: per-layout node arrays joined, `missing` in every layout where a part has none."""
    return np.concatenate([np.full((n, len(LAYOUTS)), missing) if a is None else a for a, n in zip(arrays, nodes)])
