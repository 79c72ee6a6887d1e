"""The three predictors side by side: roofline, tabular (gradient-boosted trees), GNN (deep ensemble).

Each predicts log-latency (ms) for (graph, setting) pairs. Intervals: the ensemble's spread combined
with a split-conformal quantile of the absolute log-error on networks held out of training (80 %).
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field, replace

import numpy as np

from edgeatlas.predictor.data import GraphSet, Samples, runtime_target
from edgeatlas.predictor.graph import LAYOUTS, RUN_UNITS
from edgeatlas.predictor.hardware import FEATURES

COVERAGE = 0.8
Z80 = 1.2816
# With fewer than LEVEL_MIN_DEVICES training devices there is no device to leave out and learn from: an
# unseen sheet's level is then taken as unknown to a factor of two either way (stated, not measured).
LEVEL_MIN_DEVICES = 3
LEVEL_PRIOR = math.log(2)
FAMILY_MIN = 2  # named families needed to leave one out; below it, LEVEL_PRIOR
NOVELTY_QUANTILE = 0.99
LEAVE_OUT_FOLDS = 12  # models fitted to measure level errors, whatever the number of devices or families
MAX_OFFSETS = 1000  # level errors kept (and read from a checkpoint) per kind
FLOOR_QUANTILE = 0.01  # of a device's measurements may lie below its floor (one slip moves nothing)
MAX_FLOOR_SHIFT = math.log(1000)  # the most a checkpoint may lower a floor (its record is checked)
# The setting features that say how a device is run, not what it is: a known device at another batch
# size or thread count is still known hardware.
RUN_FEATURES = ("log_batch", "log_batch_missing", "log_threads", "log_threads_missing")


def roofline_log(samples: Samples) -> np.ndarray:
    """[S] log ms of each sample's roofline estimate (Σ over its operators of `roofline.node_seconds`), one
    vectorised pass per setting."""
    from edgeatlas.predictor.roofline import node_seconds

    gs = samples.graphs
    starts, sizes = gs.node_ptr[:-1], np.diff(gs.node_ptr)
    int8 = gs.int8_work()
    out = np.empty(len(samples))
    for s in np.unique(samples.setting):
        rows = samples.setting == s
        setting = samples.settings[s]
        b = setting.effective_batch
        t = node_seconds(gs.flops * b, gs.act_bytes * b + gs.weight_bytes, setting.proc, int8)
        per_graph = np.where(sizes > 0, np.add.reduceat(np.append(t, 0.0), starts), 0.0) * 1e3
        out[rows] = np.log(np.maximum(per_graph[samples.graph[rows]], 1e-9))
    return out


def lane_use(columns: np.ndarray | None, lanes: int, layout: int = 0) -> np.ndarray | float:
    """[N] the share of a CPU's `lanes` FP32 vector lanes each node's matrix product keeps busy: its output
    columns in the `layout` it runs in (`graph.gemm_columns`, `graph.LAYOUTS`) over those rounded up to
    whole vectors (a 5-position convolution on 16 lanes: 5/16; a scalar loop, `graph.SCALAR_COLUMNS`: 1/32).
    1 where a node runs no matrix product, or the lanes or columns are not known. Silero VAD's 1-D
    convolutions (4-5 output positions) ran at a fifth to a quarter of the rate this machine's 3×3
    convolutions at 56×56 did, and its fingerprint answers were ×0.34-0.61 of measured."""
    if columns is None or lanes <= 1:
        return 1.0
    c = np.asarray(columns, dtype=np.float64)[:, layout]
    return np.where(c > 0, c / (np.ceil(np.maximum(c, 1.0) / lanes) * lanes), 1.0)


def cores_used(setting) -> int:
    """How many cores a CPU setting's threads run on (0 threads: the runtime's default, all the sheet's
    cores), or its thread count where the sheet does not say how many cores it has."""
    units = setting.proc.values.get("log_units", math.nan)
    return int(round(math.exp(units))) if math.isfinite(units) else max(setting.threads, 0)


def nearest_threads(threads: int, cores: int, counts: list[int]) -> int:
    """Of the thread counts `counts` the training data ran a runtime with (0: the runtime's default), the
    one a query at `threads` on `cores` cores is answered at: the most that is no more than its cores,
    else the fewest; the default where that is all the training data gave."""
    given = sorted(c for c in set(counts) if c > 0)
    if not given:
        return 0
    below = [c for c in given if c <= max(cores, 1)]
    return below[-1] if below else given[0]


def layout_of(setting) -> int:
    """The index in `graph.LAYOUTS` of the layout a setting's convolutions run in: ONNX Runtime on an x86 CPU
    lays them out in NCHWc, in blocks of the vector's FP32 lanes (its NchwcTransformer); otherwise NCHW."""
    proc = setting.proc
    block = f"nchwc{proc.lanes}"
    x86 = proc.flags.get("cpu_x86", 0.0) > 0
    return LAYOUTS.index(block) if setting.runtime == "onnxruntime" and x86 and block in LAYOUTS else 0


def physical_terms(samples: Samples, nodes: np.ndarray | None = None) -> np.ndarray:
    """[S, 4]: each network's compute time and memory time (ms) at its sheet's peaks, each summed over its operators
    (0 where the sheet lacks that peak; int8 multiply-adds at the int8 peak; a matrix product at the share of the
    peak its vector lanes allow in the setting's layout, `lane_use`), its operators' fixed costs (in ONNX Runtime,
    each operator's in element-wise operators' worth in the setting's layout, `GraphSet.dispatch`, and a query's,
    `graph.RUN_UNITS`; in another runtime, one an operator), and the memory time (ms at the sheet's bandwidth) of
    the traffic that streams from memory past the last-level cache (`streamed_bytes`: a node's tensors by its
    working set, a weight's first read in a query by the query's footprint, `query_footprint`; the memory time
    is the rest).
    In a layout where a node runs inside the convolution before it (`GraphSet.fused`: ONNX Runtime's NCHWc on x86),
    it is no operator and moves no tensor of its own; the copies that layout makes between a node and NCHW move
    theirs (`GraphSet.reordered`), a convolution it leaves in NCHW its patch matrix, which never leaves the cache
    (`GraphSet.patches`), and one it runs in NCHWc computes the taps that read its input (`GraphSet.work_share`).
    nodes: [N] bool, the nodes summed (all of them by default)."""
    gs = samples.graphs
    starts = gs.node_ptr[:-1]
    int8 = gs.int8_work()

    def per_graph(values: np.ndarray) -> np.ndarray:
        if nodes is not None:
            values = np.where(nodes, values, 0.0)
        return np.add.reduceat(values, starts) if len(values) else np.zeros(len(starts))

    keys = np.array([(st.proc.lanes, layout_of(st), st.effective_batch,
                      st.proc.cache_bytes if st.proc.cache_bytes > 0 else 0.0, st.runtime == "onnxruntime")
                     for st in samples.settings], dtype=np.float64)[samples.setting]
    flops, int8_flops, moved, streamed, count = (np.zeros(len(samples)) for _ in range(5))
    for width, layout, batch, cache, ort in np.unique(keys.reshape(-1, 5), axis=0):  # a pass per kind of setting
        rows = np.all(keys == (width, layout, batch, cache, ort), axis=1)
        g = samples.graph[rows]
        kernel = np.ones(len(gs.flops)) if gs.fused is None else (~gs.fused[:, int(layout)]).astype(np.float64)
        share = 1.0 if gs.work_share is None else gs.work_share[:, int(layout)]
        work = gs.flops * share / lane_use(gs.lanes, int(width), int(layout))
        flops[rows] = per_graph(np.where(int8, 0.0, work))[g] * batch
        int8_flops[rows] = per_graph(np.where(int8, work, 0.0))[g] * batch
        copied = 0.0 if gs.reordered is None else gs.reordered[:, int(layout)]
        activations = (gs.act_bytes * kernel + copied) * batch
        tensors = activations + gs.weight_bytes
        again = 0.0 if gs.rereads is None else gs.rereads
        first = gs.weight_bytes - again  # each weight's first read in a query: reused by the next query only
        reuse = np.repeat(query_footprint(first, activations, gs.node_ptr), np.diff(gs.node_ptr))
        past = streamed_bytes(tensors - first, tensors - again, cache) + streamed_bytes(first, reuse, cache)
        patches = 0.0 if gs.patches is None else gs.patches[:, int(layout)] * batch  # in cache, always
        moved[rows] = per_graph(tensors + patches - past)[g]
        streamed[rows] = per_graph(past)[g]
        if ort and gs.dispatch is not None:
            count[rows] = per_graph(gs.dispatch[:, int(layout)])[g] + RUN_UNITS
        else:
            count[rows] = per_graph(kernel)[g]
    peak = np.array([st.proc.peak_flops for st in samples.settings], dtype=np.float64)
    ratio = np.array([st.proc.int8_peak / st.proc.peak_flops if st.proc.peak_flops > 0 else 1.0
                      for st in samples.settings], dtype=np.float64)  # int8 ops per FP32 one
    bandwidth = np.array([st.proc.bandwidth for st in samples.settings], dtype=np.float64)
    s = samples.setting
    with np.errstate(invalid="ignore", divide="ignore"):
        compute = np.where(peak[s] > 0, (flops + int8_flops / ratio[s]) / peak[s] * 1e3, 0.0)
        memory, past = (np.where(bandwidth[s] > 0, b / bandwidth[s] * 1e3, 0.0) for b in (moved, streamed))
    return np.stack([compute, memory, count, past], axis=1)


def query_footprint(first_reads: np.ndarray, activations: np.ndarray, node_ptr: np.ndarray) -> np.ndarray:
    """[G] bytes: what one query of each graph touches between two reads of the same weight, the reuse distance
    of its weights in a loop of queries: every weight once (`first_reads`, per node) and the largest node's
    activations (`activations`, per node: ONNX Runtime's arena reuses its buffers, so the live activations
    are at least those of the node that holds the most). A weight is read once a query (a recurrent cell's R
    again each step, at the cell's own distance), so whether the cache still holds it when the next query
    comes is a matter of the whole query's footprint, not of its node's (`streamed_bytes` on it). On this
    project's machine (32 MiB L3, a 20 GB/s sheet; `bench/cache_cliff.py`) chains of matrix-vector products
    of 1 MiB of weights each ran at 58-67 GB/s from 2 to 8 MiB in all and at 18-20 GB/s from 32 MiB: this rule's
    rate was ×1.25-1.51 of theirs from 32 MiB up, each product's own working set's (the cache's rate) ×3.1-3.6;
    a fingerprint's `gemv` (two layers of 12.6 MB) ran at 25-37 GB/s, the zoo's mlp-l (9.5 MB) at 57 or more."""
    starts, some = node_ptr[:-1], np.diff(node_ptr) > 0
    weights = np.add.reduceat(np.append(first_reads, 0.0), starts)  # the 0: a last graph without nodes
    live = np.maximum.reduceat(np.append(activations, 0.0), starts)
    return np.where(some, weights + live, 0.0)


def streamed_bytes(traffic: np.ndarray, working_set: np.ndarray, cache: float) -> np.ndarray:
    """Per node, the bytes of its traffic (`traffic`: the tensors it reads and writes, weights included) that
    stream from memory: the share of it that its working set (`working_set`: those tensors, each once; a
    recurrent cell's weights once, not once a step) holds beyond half the last-level cache (`cache` bytes;
    0: not known, and nothing streams). A node whose tensors fit is served from the cache at the rate a
    fingerprint's networks, all of which fit, calibrate; a larger one thrashes it and streams at the memory's
    bandwidth, which is the sheet's. Half: the cache holds more than this node's tensors. On this project's
    machine (32 MiB L3, a 21 GB/s sheet; `bench/cache_cliff.py`), ONNX Runtime's Add and Relu ran at 46-73
    GB/s on working sets of 1-16 MiB and 21-41 GB/s on 32-128 MiB; from 32 MiB up this rule's rate was
    ×0.76-1.09 of theirs, the cache's rate alone ×2.1."""
    if not cache > 0:
        return np.zeros_like(traffic)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(working_set > cache / 2, 1 - cache / 2 / working_set, 0.0)
    return traffic * share


def unpaired_int8(samples: Samples) -> np.ndarray:
    """[S] ms: each network's compute time at its sheet's int8 peak (`physical_terms`) of the int8
    multiply-adds whose operands are not the quantizers' default pair (`graph.OPERAND_PAIRS`): no reference
    network runs those kernels, so nothing says they reach the int8 peak (on one x86 machine they took
    ×0.43-3.7 of their float kernels' time, where the default pair took ×0.26-0.29, or ×3.6-6.2 for
    ConvInteger). `commands.int8_on_fingerprint` charges them as float multiply-adds."""
    gs = samples.graphs
    if gs.operands is None or not gs.operands.any():
        return np.zeros(len(samples))
    return physical_terms(samples, gs.int8_work() & (gs.operands != 0))[:, 0]


def scalar_loops(samples: Samples) -> np.ndarray:
    """[S] ms: each network's compute time (`physical_terms`) in kernels written as scalar loops
    (`GraphSet.scalar`: ONNX Runtime's DFT and STFT, its C library calls an element, its generic loops),
    charged at half of one lane's peak. No reference network runs one, so how near a device's scalar code
    comes to that is not measured (`commands.scalar_spread`)."""
    nodes = samples.graphs.scalar()
    return physical_terms(samples, nodes)[:, 0] if nodes.any() else np.zeros(len(samples))


def _compute_floor(terms: np.ndarray) -> np.ndarray:
    """log ms of the compute time at peak (-inf where the sheet gives no peak: no floor)."""
    with np.errstate(divide="ignore"):
        return np.log(terms[:, 0])


def boost_log(samples: Samples) -> np.ndarray:
    """[S] log of how far above its sheet's peak each sample's processor may compute (`Processor.boost`):
    where the sheet gives only a base clock, an interval's low end reaches below the floor by that much,
    while the answer stays at the floor (a core holds its base clock; how far it boosts, the sheet does not
    say). 0 where the sheet's clock is the maximum."""
    return np.log([st.proc.boost for st in samples.settings])[samples.setting]


def floor_shifts(samples: Samples) -> dict[str, float]:
    """Per hardware key (`hardware_key`), how far (log, ≤ 0) below its sheet's compute floor the hardware
    ran: the FLOOR_QUANTILE-th quantile of log measured - log floor, where that is below zero. A sheet
    can understate its hardware (a VM reports its nominal clock while the cores boost); what the
    hardware did in the training data lowers its floor, and nothing else does."""
    below = np.log(samples.latency_ms) - _compute_floor(physical_terms(samples))
    keys = np.array([hardware_key(st) for st in samples.settings])[samples.setting]
    out = {}
    for key in sorted(set(keys)):
        mine = below[(keys == key) & np.isfinite(below)]
        out[key] = max(-MAX_FLOOR_SHIFT, min(0.0, float(np.quantile(mine, FLOOR_QUANTILE)))) if len(mine) else 0.0
    return out


def tabular_features(samples: Samples) -> np.ndarray:
    """Whole-graph summary, setting features and the roofline estimate, one row per sample."""
    hw = np.stack([s.features for s in samples.settings])
    return np.concatenate([samples.graphs.summary[samples.graph], hw[samples.setting],
                           roofline_log(samples)[:, None]], axis=1).astype(np.float32)


@dataclass
class Tabular:
    """Histogram gradient-boosted trees on tabular_features → log latency."""

    model: object = None
    half_width: float = 0.0
    half_widths: dict = field(default_factory=dict)  # per runtime and target, where held-out networks had one

    def fit(self, train: Samples, calib: Samples | None, seed: int = 0, max_iter: int = 300) -> "Tabular":
        self.model = self.regressor(seed, max_iter)
        self.model.fit(tabular_features(train), np.log(train.latency_ms))
        if calib is not None and len(calib):
            self.half_width, self.half_widths = interval_halves(self.predict_log(calib), calib)
        return self

    @staticmethod
    def regressor(seed: int = 0, max_iter: int = 300, learning_rate: float = 0.1):
        from sklearn.ensemble import HistGradientBoostingRegressor

        return HistGradientBoostingRegressor(max_iter=max_iter, learning_rate=learning_rate, max_leaf_nodes=63,
                                             random_state=seed)

    def predict_log(self, samples: Samples) -> np.ndarray:
        return self.model.predict(tabular_features(samples))

    def predict(self, samples: Samples) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        mean = self.predict_log(samples)
        half = halves_of(samples, self.half_width, self.half_widths)
        return mean, mean - half, mean + half

    def to_bytes(self) -> bytes:
        """The fitted trees in skops's format: data, loaded back without pickle (see from_bytes)."""
        import skops.io

        return skops.io.dumps(self.model)

    @classmethod
    def from_bytes(cls, blob: bytes, half_width: float, half_widths: dict | None = None) -> "Tabular":
        """Only the types a fitted HistGradientBoostingRegressor is made of are built; anything else is
        refused before it is constructed (skops never unpickles)."""
        import skops.io
        from sklearn.ensemble import HistGradientBoostingRegressor

        untrusted = set(skops.io.get_untrusted_types(data=blob)) - TREE_TYPES
        if untrusted:
            raise ValueError(f"tabular model holds types outside the allow-list: {sorted(untrusted)[:3]}")
        model = skops.io.loads(blob, trusted=sorted(TREE_TYPES))
        if not isinstance(model, HistGradientBoostingRegressor):
            raise ValueError(f"tabular model is a {type(model).__name__}, not a HistGradientBoostingRegressor")
        return cls(model=model, half_width=half_width, half_widths=dict(half_widths or {}))


# A runtime's own interval half-width needs this many of its networks held out; below it, the overall one.
HALF_MIN_NETWORKS = 2


def interval_halves(pred_log: np.ndarray, calib: Samples) -> tuple[float, dict[str, float]]:
    """(overall, {"runtime/target": half}): the split-conformal 80 % half-width of the absolute log-error
    on held-out networks, over all of them and per runtime and processor where HALF_MIN_NETWORKS of its
    networks were held out. One number is the families' that dominate the held-out set: on the demo's
    data, NAS-Bench-201's ±0.16-0.18 (log), while the zoo's networks in ONNX Runtime were off by up to 0.9,
    and 6 of 17 real networks held out fell outside (`bench/predict_here.py`). The conformal rank
    (ceil((n + 1) × 80 %)-th smallest, the largest where n is small) keeps 80 % in expectation whatever n
    is."""
    err = np.abs(pred_log - np.log(calib.latency_ms))
    key = calib.runtime_target_of()
    per = {}
    for name in sorted(set(key.tolist())):
        mine = key == name
        if name.split("/")[0] and len(np.unique(calib.graph[mine])) >= HALF_MIN_NETWORKS:
            per[name] = conformal_half(err[mine])
    return conformal_half(err), per


def conformal_half(err: np.ndarray, coverage: float = COVERAGE) -> float:
    """The ceil((n + 1) × coverage)-th smallest of n errors (the largest, where that rank passes n)."""
    ordered = np.sort(np.asarray(err, dtype=np.float64))
    return float(ordered[min(len(ordered), math.ceil((len(ordered) + 1) * coverage)) - 1])


def halves_of(samples: Samples, overall: float, per: dict) -> np.ndarray:
    """[S] each sample's half-width: its runtime and target's (`interval_halves`), else the overall one."""
    if not per:
        return np.full(len(samples), overall)
    return np.array([per.get(runtime_target(s), overall) for s in samples.settings])[samples.setting]


# What skops does not trust by default, of a fitted HistGradientBoostingRegressor: its trees.
TREE_TYPES = {"sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"}


@dataclass
class TrainConfig:
    members: int = 3
    epochs: int = 6
    graphs_per_step: int = 32
    settings_per_graph: int = 8
    lr: float = 3e-3
    max_graphs: int = 0  # 0 = all; else a random subset per member (bagging)
    hw_noise: float = 0.3  # Gaussian noise on standardized spec features: smooth between known devices
    weight_decay: float = 1e-3


@dataclass
class GNNEnsemble:
    states: list[dict] = field(default_factory=list)
    hw_mean: np.ndarray | None = None
    hw_std: np.ndarray | None = None
    half_width: float = 0.0
    half_widths: dict = field(default_factory=dict)  # per runtime and target (`interval_halves`)
    config: dict = field(default_factory=dict)

    def _standardize(self, samples: Samples):
        import torch

        hw = np.stack([s.features for s in samples.settings])
        return torch.from_numpy(((hw - self.hw_mean) / self.hw_std).astype(np.float32))

    def fit(self, train: Samples, calib: Samples | None, cfg: TrainConfig = TrainConfig(), seed: int = 0,
            say=lambda _: None) -> "GNNEnsemble":
        import torch

        from edgeatlas.predictor.gnn import Batcher, CostGNN, GNNConfig

        used = np.unique(train.setting)
        hw = np.stack([s.features for s in train.settings])[used]
        self.hw_mean, self.hw_std = hw.mean(0), hw.std(0) + 1e-3
        self.config = {"gnn": GNNConfig().__dict__, "train": cfg.__dict__}
        hw_t = self._standardize(train)
        batcher = Batcher(train.graphs, train.settings)
        order = np.argsort(train.graph, kind="stable")
        by_graph_ptr = np.searchsorted(train.graph[order], np.arange(len(train.graphs) + 1))
        graphs_with_data = np.flatnonzero(np.diff(by_graph_ptr) > 0)
        target = torch.from_numpy(np.log(train.latency_ms).astype(np.float32))
        for m in range(cfg.members):
            rng = np.random.default_rng(seed * 1000 + m)
            torch.manual_seed(seed * 1000 + m)
            model = CostGNN(train.graphs.x.shape[1], len(FEATURES), GNNConfig())
            opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
            pool = graphs_with_data
            if cfg.max_graphs and len(pool) > cfg.max_graphs:
                pool = rng.choice(pool, cfg.max_graphs, replace=False)
            steps = cfg.epochs * math.ceil(len(pool) / cfg.graphs_per_step)
            warm = max(1, steps // 10)  # linear warm-up, then cosine decay
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: (k + 1) / warm if k < warm else
                                                      0.5 * (1 + math.cos(math.pi * (k - warm) / max(1, steps - warm))))
            start, running = time.monotonic(), []
            for epoch in range(cfg.epochs):
                perm = rng.permutation(pool)
                for i in range(0, len(perm), cfg.graphs_per_step):
                    gids = np.sort(perm[i:i + cfg.graphs_per_step])
                    picks = []
                    for g in gids:
                        rows = order[by_graph_ptr[g]:by_graph_ptr[g + 1]]
                        if len(rows) > cfg.settings_per_graph:
                            rows = rng.choice(rows, cfg.settings_per_graph, replace=False)
                        picks.append(rows)
                    lengths = np.array([len(p) for p in picks])
                    rows = np.concatenate(picks)
                    pair_graph = np.repeat(np.arange(len(gids)), lengths)
                    noisy = hw_t + cfg.hw_noise * torch.randn_like(hw_t)
                    h = model.hardware(noisy)
                    loss = self._loss(model, batcher, h, gids, pair_graph, train.setting[rows], target[rows])
                    opt.zero_grad()
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
                    opt.step()
                    sched.step()
                    running.append(float(loss.detach()))
                say(f"  member {m + 1}/{cfg.members} epoch {epoch + 1}/{cfg.epochs}: "
                    f"loss {np.mean(running[-50:]):.4f} (smooth L1 of log ms) ({time.monotonic() - start:.0f} s)")
            self.states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        if calib is not None and len(calib):
            self.half_width, self.half_widths = interval_halves(self._predict(calib)[0], calib)
        return self

    @staticmethod
    def _loss(model, batcher, h, gids, pair_graph, pair_setting, target):
        import torch

        x, adj, mask, node = batcher.graph_batch(gids)
        emb = model.node_embeddings(x, adj)
        pg = torch.from_numpy(pair_graph)
        pred = model(emb[pg], h[torch.from_numpy(pair_setting)], batcher.log_roofline(node[pair_graph], pair_setting),
                     mask[pg])
        return torch.nn.functional.smooth_l1_loss(pred, target, beta=0.5)

    def _models(self):
        from edgeatlas.predictor.gnn import CostGNN, GNNConfig, upgrade_state

        out = []
        for state in self.states:
            model = CostGNN(state["embed.weight"].shape[1], len(FEATURES), GNNConfig(**self.config["gnn"]))
            model.load_state_dict(upgrade_state(state))
            model.eval()
            out.append(model)
        return out

    def fixed_share(self, samples: Samples) -> np.ndarray:
        """[S] the share of each prediction that is fixed cost (per operator and per call), members averaged."""
        return self._predict(samples, share=True)[1]

    def _predict(self, samples: Samples, graphs_per_batch: int = 64,
                 pairs_per_call: int = 2048, share: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(mean, spread) over members of the log-latency; share: (mean, fixed share) instead."""
        import torch

        from edgeatlas.predictor.gnn import Batcher

        hw_t = self._standardize(samples)
        batcher = Batcher(samples.graphs, samples.settings)
        models = self._models()
        hs = [model.hardware(hw_t).detach() for model in models]
        preds = np.zeros((len(models), len(samples)))
        shares = np.zeros((len(models), len(samples)))
        order = np.argsort(samples.graph, kind="stable")
        gids_all = np.unique(samples.graph)
        with torch.no_grad():
            for i in range(0, len(gids_all), graphs_per_batch):
                gids = gids_all[i:i + graphs_per_batch]
                lo = np.searchsorted(samples.graph[order], gids[0])
                hi = np.searchsorted(samples.graph[order], gids[-1], side="right")
                rows = order[lo:hi]
                pair_graph = np.searchsorted(gids, samples.graph[rows])
                x, adj, mask, node = batcher.graph_batch(gids)
                embs = [model.node_embeddings(x, adj) for model in models]
                # pairs in slices: each holds [pairs, N, rank] of embeddings
                for j in range(0, len(rows), pairs_per_call):
                    part = slice(j, j + pairs_per_call)
                    pg, ps = pair_graph[part], samples.setting[rows[part]]
                    logr = batcher.log_roofline(node[pg], ps)
                    pg_t, ps_t = torch.from_numpy(pg), torch.from_numpy(ps)
                    for k, model in enumerate(models):
                        fixed, work = model.parts(embs[k][pg_t], hs[k][ps_t], logr, mask[pg_t])
                        preds[k, rows[part]] = torch.logaddexp(fixed, work).numpy()
                        shares[k, rows[part]] = torch.sigmoid(fixed - work).numpy()
        return (preds.mean(0), shares.mean(0)) if share else (preds.mean(0), preds.std(0))

    def predict(self, samples: Samples) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        mean, spread = self._predict(samples)
        half = np.sqrt(halves_of(samples, self.half_width, self.half_widths) ** 2 + (Z80 * spread) ** 2)
        return mean, mean - half, mean + half

    def to_dict(self) -> dict:
        return {"states": self.states, "hw_mean": self.hw_mean, "hw_std": self.hw_std,
                "half_width": self.half_width, "half_widths": self.half_widths, "config": self.config}

    @classmethod
    def from_dict(cls, data: dict) -> "GNNEnsemble":
        return cls(states=data["states"], hw_mean=np.asarray(data["hw_mean"]), hw_std=np.asarray(data["hw_std"]),
                   half_width=float(data["half_width"]), half_widths=dict(data.get("half_widths") or {}),
                   config=data["config"])



_KEY_AT = [i for i, name in enumerate(FEATURES) if name not in RUN_FEATURES]  # the features a hardware key holds
# A probe measures a machine's memory bandwidth, and a shared machine's moves with its load: 30 re-probes of
# one read ×1.23 apart at most (the median of 15 copies; the best of 5: ×1.54, `bench/probe_bandwidth.py`).
# Sheets that differ only there, by less than this factor, are one machine measured again; the same processor
# with another memory (a channel more or less) is ×1.5 or more apart.
BANDWIDTH_REMEASURED = math.log(1.25)
# where in a hardware key the bandwidth and the ridge (peak / bandwidth) are
_BANDWIDTH_AT = [k for k, i in enumerate(_KEY_AT) if FEATURES[i] in ("log_bandwidth_gbs", "log_ridge")]


def hardware_key(setting) -> str:
    """What identifies a setting's hardware to the predictor: its spec-sheet features, less how it is run
    (batch, threads). Two sheets with equal keys are one device to every model here."""
    return ",".join(f"{v:.5g}" for v in setting.features[_KEY_AT])


def known_hardware(setting, keys) -> str | None:
    """The one of `keys` (`hardware_key`s) that is the setting's hardware: its own key, else one whose sheet
    differs only in memory bandwidth, by less than BANDWIDTH_REMEASURED (and the ridge by as much: its
    peak is the same); None where there is none."""
    key = hardware_key(setting)
    keys = set(keys)
    if key in keys:
        return key
    mine = key.split(",")
    rest = [v for i, v in enumerate(mine) if i not in _BANDWIDTH_AT]
    for other in sorted(keys):
        parts = other.split(",")
        if len(parts) != len(mine) or [v for i, v in enumerate(parts) if i not in _BANDWIDTH_AT] != rest:
            continue
        try:
            apart = max(abs(float(parts[i]) - float(mine[i])) for i in _BANDWIDTH_AT)
        except ValueError:  # a key that is no list of numbers matches only itself
            continue
        if apart <= BANDWIDTH_REMEASURED:
            return other
    return None


def _left_out_errors(x: np.ndarray, y: np.ndarray, setting: np.ndarray, groups: np.ndarray,
                     seed: int, scored: np.ndarray | None = None) -> list[float]:
    """For each group (a device, a family) left out: a light tree model trained on the other groups' rows
    (tabular features x, log latency y), and its mean signed log error in each setting of the left-out
    group. One |mean error| per group (the mean over its settings), thinned to MAX_OFFSETS quantiles.
    scored: the rows an error may be read on (all by default); a group with none of them is not measured.

    Up to LEAVE_OUT_FOLDS models: beyond that many groups, each model leaves out a fold of them (a
    coordinator's hundreds of hardware classes cost twelve fits, not hundreds)."""
    scored = np.ones(len(y), bool) if scored is None else scored
    names = np.array(sorted(set(groups[scored])))
    fold_of = dict(zip(names, np.random.default_rng(seed + 41).permutation(len(names)) % LEAVE_OUT_FOLDS))
    folds = np.array([fold_of.get(g, -1) for g in groups])
    out = []
    for fold in np.unique(folds[folds >= 0]):
        mine = folds == fold
        model = Tabular.regressor(seed, max_iter=60, learning_rate=0.15).fit(x[~mine], y[~mine])
        read = mine & scored
        err = model.predict(x[read]) - y[read]
        for name in sorted(set(groups[read])):
            own = groups[read] == name
            out.append(float(np.mean([abs(err[own & (setting[read] == s)].mean())
                                      for s in np.unique(setting[read][own])])))
    return _thinned(out)


def runtime_elsewhere(settings: list, setting: np.ndarray, device: np.ndarray) -> np.ndarray:
    """[S] whether each sample's runtime on its processor ("onnxruntime/cpu") was measured on another
    device too: the samples level errors are measured on. A device that alone ran a runtime, left out,
    shows how far off an unseen runtime is, which an answer says and widens for apart
    (`Predictor.unlearned`): counted as a level error, it made every unseen sheet's interval span decades
    (the demo's one ONNX Runtime machine left out: ×34). Kept in, it is a runtime no other left-out device
    is judged in, and trees place a device by its sheet before its runtime."""
    ids: dict[str, int] = {}
    kind = np.array([ids.setdefault(runtime_target(st), len(ids)) for st in settings], dtype=np.int64)[setting]
    return _two_or_more(kind, device)


def shared_settings(settings: list, setting: np.ndarray, family: np.ndarray) -> np.ndarray:
    """[S] whether each sample's setting (its sheet, batch, threads, runtime: data sets name their settings
    apart) has networks of two families or more measured in it: where a family left out shows how far
    off its networks are, and not how far off an unseen device or runtime is (the zoo timed in ONNX
    Runtime on one machine, NAS-Bench-201 in PyTorch on others)."""
    ids: dict[tuple, int] = {}
    same = np.array([ids.setdefault((hardware_key(st), st.target, (st.runtime or "").lower(), st.effective_batch,
                                     st.threads), len(ids)) for st in settings], dtype=np.int64)[setting]
    return _two_or_more(same, family)


def _two_or_more(key: np.ndarray, value: np.ndarray) -> np.ndarray:
    """[S] whether each sample's key (ints from 0) comes with two values or more among the samples."""
    pairs = np.unique(np.stack([key, np.unique(value, return_inverse=True)[1].reshape(-1)]), axis=1)
    counts = np.bincount(pairs[0], minlength=int(key.max(initial=0)) + 1)
    return counts[key] >= 2


def _thinned(values) -> list[float]:
    """values, or MAX_OFFSETS of their quantiles where there are more (the distribution kept)."""
    values = np.sort(np.asarray(values, dtype=np.float64))
    return (values if len(values) <= MAX_OFFSETS else np.quantile(values, np.linspace(0, 1, MAX_OFFSETS))).tolist()


def _standard(summary: np.ndarray, mean, std) -> np.ndarray:
    return (np.asarray(summary, dtype=np.float64) - np.asarray(mean)) / np.asarray(std)


def nearest_anchor(summary: np.ndarray, anchors: np.ndarray, mean, std) -> np.ndarray:
    """[G] each network's distance (standardized whole-graph summary) to the nearest anchor network."""
    a, b = _standard(summary, mean, std), _standard(anchors, mean, std)
    out = np.empty(len(a))
    for i in range(0, len(a), 1024):  # [1024, anchors, features] at a time
        out[i:i + 1024] = np.sqrt(((a[i:i + 1024, None, :] - b[None, :, :]) ** 2).sum(-1).min(1))
    return out


def zero_shot_info(train: Samples, anchors: GraphSet, seed: int = 0, max_graphs: int = 600) -> dict:
    """What a checkpoint keeps to widen answers that leave its training data (Predictor.widen):

    - hardware: the keys of the hardware it saw; level_errors: per training device, how far off a model
      that never saw it places its level (`_left_out_errors` over devices, in the runtimes two devices or
      more ran: `runtime_elsewhere`; empty below LEVEL_MIN_DEVICES), on up to max_graphs networks drawn as
      the trees that place an answer's level learn them (`_even_draw` by runtimes: in proportion to the
      families within one). A held-out network never shows this part of a zero-shot error: on an unseen
      device every network is off by one factor first (two Xeons with near-equal sheets run these networks
      35 % apart);
    - floor_shifts: per hardware key, how far below its sheet's compute floor it ran (`floor_shifts`);
    - summary_mean, summary_std, anchor_reach: how far from the nearest anchor 99 % of training networks
      lie (beyond it, a network is unlike the training families); family_errors: per named architecture
      family, how far off a model that never saw one of its networks is, read in the settings where
      another family was measured too (`shared_settings`; empty below two families measured so)."""
    used = np.unique(train.graph)
    summary = train.graphs.summary[used]
    mean, std = summary.mean(0), summary.std(0) + 1e-3
    rng = np.random.default_rng(seed + 29)
    probe = summary[rng.choice(len(summary), min(2000, len(summary)), replace=False)]
    reach = float(np.quantile(nearest_anchor(probe, anchors.summary, mean, std), NOVELTY_QUANTILE))
    light = train.where(_even_draw(_runtimes_of(train), used, max_graphs, rng)[train.graph])
    x, y, device = tabular_features(light), np.log(light.latency_ms), light.device_of()
    alike = runtime_elsewhere(light.settings, light.setting, device)
    level = (_left_out_errors(x[alike], y[alike], light.setting[alike], device[alike], seed)
             if len(set(device[alike])) >= LEVEL_MIN_DEVICES else [])
    light = train.where(_even_draw(train.families, used, max_graphs, rng)[train.graph])
    x, y, family = tabular_features(light), np.log(light.latency_ms), light.family_of()
    named = family != ""
    shared = shared_settings(light.settings, light.setting[named], family[named])
    families = (_left_out_errors(x[named], y[named], light.setting[named], family[named], seed, scored=shared)
                if len(set(family[named][shared])) >= FAMILY_MIN else [])
    shifts = floor_shifts(train)
    return {"hardware": sorted(shifts), "floor_shifts": [shifts[k] for k in sorted(shifts)],
            "level_errors": level, "family_errors": families,
            "summary_mean": mean.tolist(), "summary_std": std.tolist(), "anchor_reach": reach}


def _runtimes_of(samples: Samples) -> np.ndarray:
    """[G] the runtimes each network was measured in, as one string ("pytorch,tflite"; "" where none)."""
    runtime = np.array([(st.runtime or "").lower() for st in samples.settings], dtype=object)[samples.setting]
    seen: dict[int, set] = {}
    for g, r in zip(samples.graph.tolist(), runtime.tolist()):
        seen.setdefault(g, set()).add(r)
    return np.array([",".join(sorted(seen.get(g, ()))) for g in range(len(samples.graphs))], dtype=object)


def _even_draw(group: np.ndarray, used: np.ndarray, most: int, rng) -> np.ndarray:
    """[G] up to `most` of the used networks, drawn evenly over their groups (group: [G] a name per network)
    and uniformly within one.

    By family, for family errors: 64 zoo networks beside 16,000 NAS-Bench-201 cells are not two of 600. By
    runtime, for level errors: within a runtime the families keep the proportions the trees that place an
    answer's level were trained on. Drawn evenly over families instead (300 FBNet networks beside 300 of
    NAS-Bench-201's 12,000), the trees left out placed the Xeon Gold 6240 ×1.6 off where the anchored GNN
    was ×1.13, and every unseen device's interval took the wider errors: on the shared data's 12 devices,
    each held out, 80 % intervals held 94 % of the measurements; drawn so, 88.5 %."""
    keep = np.zeros(len(group), bool)
    mine = group[used]
    names = sorted(set(mine))
    left = most
    for k, name in enumerate(sorted(names, key=lambda f: np.sum(mine == f))):  # the smallest first
        pool = used[mine == name]
        take = min(left // (len(names) - k), len(pool))
        keep[rng.choice(pool, take, replace=False)] = True
        left -= take
    return keep


def _level_offsets(errors, least: int) -> np.ndarray:
    """The recorded level errors, or LEVEL_PRIOR alone where fewer than `least` were measured."""
    errors = np.abs(np.asarray(errors or [], dtype=np.float64))
    return errors if len(errors) >= least else np.array([LEVEL_PRIOR])


def mixture_half(sigma: np.ndarray, offsets: np.ndarray, coverage: float = COVERAGE) -> np.ndarray:
    """[S] h with mean_i P(|o_i + e| ≤ h) = coverage, e ~ N(0, sigma²) per sample, offsets o_i equally
    likely (bisection; h ≥ the Gaussian's own half-width)."""
    from scipy.special import ndtr

    sigma = np.maximum(np.asarray(sigma, dtype=np.float64), 1e-6)[:, None]
    o = np.asarray(offsets, dtype=np.float64)[None, :]
    lo, hi = np.zeros(len(sigma)), float(o.max()) + 4 * sigma[:, 0] + 1e-3
    for _ in range(40):
        mid = (lo + hi) / 2
        held = np.mean(ndtr((mid[:, None] - o) / sigma) - ndtr((-mid[:, None] - o) / sigma), axis=1)
        lo, hi = np.where(held < coverage, mid, lo), np.where(held < coverage, hi, mid)
    return hi


@dataclass
class Predictor:
    """What a checkpoint holds: the tabular model, the GNN ensemble and the anchor networks.

    The GNN's answer is its own per-operator prediction, shifted per setting so that its mean over the
    anchor networks (training networks, measured nowhere near the target) matches the tabular model's:
    the GNN ranks networks better, the trees place an unseen device's level better (they fall back to
    the nearest known device where the GNN's hardware encoder extrapolates).
    """

    tabular: Tabular
    gnn: GNNEnsemble
    anchors: GraphSet
    info: dict = field(default_factory=dict)

    def _offsets(self, samples: Samples) -> np.ndarray:
        from edgeatlas.predictor.data import concat

        n = len(self.anchors)
        used = np.unique(samples.setting)
        graphs = concat([self.anchors, samples.graphs])
        probe = Samples(graphs, samples.settings, np.tile(np.arange(n), len(used)), np.repeat(used, n),
                        np.ones(n * len(used)))
        diff = (self.tabular.predict_log(probe) - self.gnn.predict(probe)[0]).reshape(len(used), n)
        tags = np.array(self.info.get("anchor_runtimes") or [""] * n, dtype=object)
        offsets = np.zeros(len(samples.settings))
        for row, u in enumerate(used):  # the anchors drawn for the setting's runtime (evaluate.pick_anchors)
            mine = tags == (samples.settings[u].runtime or "").lower()
            offsets[u] = diff[row, mine].mean() if mine.any() else diff[row].mean()
        return offsets[samples.setting]

    def predict(self, samples: Samples, which: str = "gnn") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(log mean, log low, log high) in ms; which: gnn (anchored), gnn-raw, tabular, roofline.

        On hardware or networks unlike the training data's, the interval also holds how far off the level of
        an unseen device or family was (`widen`)."""
        if which == "roofline":
            r = roofline_log(samples)
            return r, r, r
        at, moved = self.at_trained_threads(samples)
        known = self.as_known(at)
        if which == "tabular":
            mean, lo, hi = self.tabular.predict(known)
        else:
            mean, lo, hi = self.gnn.predict(self.as_learned(known))
        if which == "gnn":
            shift = self._offsets(known)
            mean, lo, hi = mean + shift, lo + shift, hi + shift
        lo, hi = self.widen(known, mean, lo, hi)
        rows = moved[samples.setting]
        if rows.any():  # its work scaled to the query's cores; the interval from no change to that
            scale = np.zeros(len(samples))
            scale[rows] = self.thread_scale(samples.where(rows), at.where(rows))
            mean, lo, hi = mean + scale, np.minimum(lo, lo + scale), np.maximum(hi, hi + scale)
        if which == "tabular":
            return mean, lo, hi
        # No network runs faster than its hardware computes: a floor for networks unlike any in training.
        floor = self.floor(samples)
        lift = np.maximum(floor - mean, 0)
        return mean + lift, np.maximum(lo + lift, floor + self._boost_below(samples)), hi + lift

    def at_trained_threads(self, samples: Samples) -> tuple[Samples, np.ndarray]:
        """(the samples with each CPU setting at a thread count its runtime never ran with in the training
        data moved to the nearest it did (`nearest_threads`), [settings] whether each was moved).

        The models read threads through the sheet's peak over the cores in use and the thread count itself;
        trained on ONNX Runtime at one thread, asked at two on the same machine, they answered ×5-131 of
        measured (intervals up to ×0.1-1000) on 38 networks nobody trained on. A moved setting's answer
        is scaled back to its own cores by `thread_scale`. A checkpoint without the record moves nothing."""
        record = self.info.get("runtime_threads")
        moved = np.zeros(len(samples.settings), dtype=bool)
        if not record:
            return samples, moved
        had: dict[str, list[int]] = {}
        for entry in record:
            head, _, count = entry.rpartition("/")
            if count.isdigit():
                had.setdefault(head, []).append(int(count))
        settings = list(samples.settings)
        for i in np.unique(samples.setting):
            st = settings[i]
            counts = had.get(runtime_target(st))
            if st.target != "cpu" or not counts or max(st.threads, 0) in counts:
                continue
            settings[i] = replace(st, threads=nearest_threads(st.threads, cores_used(st), counts))
            moved[i] = True
        return (replace(samples, settings=settings) if moved.any() else samples), moved

    def thread_scale(self, samples: Samples, at: Samples) -> np.ndarray:
        """[S] log of how much faster (< 0) or slower each sample runs at its own thread count than at the
        one `at_trained_threads` answered it at (`at`): the GNN's fixed costs (per operator and per call)
        as they were, its work by the ratio of the network's roofline on the cores each uses (Amdahl's law
        on the GNN's own split: `GNNEnsemble.fixed_share`). On this project's machine (two cores of a VM),
        bench/predict_here.py at two threads, a checkpoint trained at one with and without the record on the
        same measurements: the zero-shot MAPE over 38 networks 2,341 % → 56 % (at one thread: 47 %), worst
        ×131 → ×6.0 (an int8 kind training lacked, as at one thread), covered 84 → 97 %. Their time at two
        threads was ×0.35-1.18 of that at one in a quiet hour and up to ×2 in a busy one (a thread pool's
        hand-offs cost more than a small operator saves when the other core is taken): no change is kept
        inside the interval."""
        share = self._share(at, "gnn")
        ratio = np.exp(roofline_log(samples) - roofline_log(at))
        return np.log(share + (1 - share) * ratio)

    def as_known(self, samples: Samples) -> Samples:
        """The samples with each setting whose sheet is known hardware re-measured (`known_hardware`) read
        at the bandwidth the training data had for it: the trees split on bandwidth next to the value they
        saw, and this machine probed again at 48.08 GB/s, trained at 48.14, was answered ×2.4 slower."""
        keys = self.info.get("hardware")
        if not keys:
            return samples
        settings, moved = list(samples.settings), False
        for i, st in enumerate(settings):
            key = known_hardware(st, keys)
            if key is None or key == hardware_key(st):
                continue
            features = st.features.copy()
            parts = key.split(",")
            for at in _BANDWIDTH_AT:
                features[_KEY_AT[at]] = float(parts[at])
            settings[i] = replace(st)
            settings[i].features = features  # and the per-operator memory times the models read, alike
            settings[i].proc = replace(st.proc, bandwidth=math.exp(features[FEATURES.index("log_bandwidth_gbs")]) * 1e9)
            moved = True
        return replace(samples, settings=settings) if moved else samples

    def as_learned(self, samples: Samples) -> Samples:
        """The samples as the GNN learned to read them: where its training data had no int8 network (no
        `integer_runtimes`), the integer kernels are read as the float kernels they stand for: the
        integer-kernel feature it never saw set is cleared and their element widths are float's, so a
        weight no gradient reached does not move the answer; the answer is then a float network's, and
        `commands.answer` says so and widens it."""
        from edgeatlas.predictor.graph import WIDTH_COLUMNS

        integer = samples.graphs.x[:, -1] > 0
        if self.info.get("integer_runtimes") or not integer.any():
            return samples
        x = samples.graphs.x.copy()
        x[np.ix_(integer, list(WIDTH_COLUMNS))] = 1.0
        x[:, -1] = 0
        return replace(samples, graphs=replace(samples.graphs, x=x))

    def floor(self, samples: Samples) -> np.ndarray:
        """[S] log ms no answer goes below: the compute time at the sheet's peak FLOP/s (the memory side is
        no floor: caches hold small working sets), lowered by how far below it the hardware ran in the
        training data (`floor_shifts`); on hardware it never saw, by the most any training hardware did.
        A checkpoint without the record: the compute floor as the sheet gives it."""
        return _compute_floor(physical_terms(samples)) + self._floor_shift(samples)

    def reach(self, samples: Samples) -> np.ndarray:
        """[S] log ms an interval reaches down to where the runtime is unknown (an overhead-free runtime):
        the roofline, lowered as `floor` is, and never below the floor; lowered by as far as the cores may
        boost where the sheet gives a base clock (`boost_log`). Finite where the sheet gives either peak (the
        roofline is), so no interval starts at zero."""
        shift = self._floor_shift(samples) + self._boost_below(samples)
        return np.maximum(roofline_log(samples), _compute_floor(physical_terms(samples))) + shift

    def _boost_below(self, samples: Samples) -> np.ndarray:
        """[S] log (≤ 0) an interval's low end goes below `floor` where the sheet gives a base clock: to the
        sheet's compute floor lowered by the boost (`boost_log`), where training lowered it less."""
        return np.minimum(0.0, -boost_log(samples) - self._floor_shift(samples))

    def _floor_shift(self, samples: Samples) -> np.ndarray:
        """[S] the checkpoint's floor shift (≤ 0) for each sample's hardware (0 without the record), at the
        thread count the training data ran its runtime with (`at_trained_threads`)."""
        keys, shifts = self.info.get("hardware"), self.info.get("floor_shifts")
        if keys is None or shifts is None:
            return np.zeros(len(samples))
        samples = self.at_trained_threads(samples)[0]
        known = dict(zip(keys, shifts))
        unseen = min(shifts, default=0.0)
        return np.array([known.get(known_hardware(st, known), unseen) for st in samples.settings])[samples.setting]

    def unseen(self, samples: Samples) -> tuple[np.ndarray, np.ndarray]:
        """([S] on hardware the training data never saw (at the thread count it ran the runtime with:
        `at_trained_threads`), [S] a network farther from every anchor than 99 % of training networks are).
        Both false for a checkpoint without the record (written before it)."""
        info = self.info
        if info.get("hardware") is None:
            return np.zeros(len(samples), bool), np.zeros(len(samples), bool)
        samples = self.at_trained_threads(samples)[0]
        known = set(info["hardware"])
        device = np.array([known_hardware(st, known) is None for st in samples.settings], dtype=bool)[samples.setting]
        if info.get("summary_mean") is None:
            return device, np.zeros(len(samples), bool)
        used, inverse = np.unique(samples.graph, return_inverse=True)
        far = nearest_anchor(samples.graphs.summary[used], self.anchors.summary, info["summary_mean"],
                             info["summary_std"]) > info["anchor_reach"]
        return device, far[inverse]

    def widen(self, samples: Samples, mean, lo, hi) -> tuple[np.ndarray, np.ndarray]:
        """(low, high): the interval of what the training data covers, widened where a sample leaves it.

        An unseen device's answers are all off by one factor first (its level), then each by its own
        network error. The level errors the training devices showed when each was left out in turn
        (`level_errors`; a factor of two, stated, below LEVEL_MIN_DEVICES of them) are taken as equally
        likely, with either sign; the network error is Gaussian with the interval's own spread. The new
        half-width is where that mixture holds 80 %. A network unlike every training family adds the
        families' errors the same way (`family_errors`; a factor of two below two families)."""
        device, far = self.unseen(samples)
        if not (device.any() or far.any()):
            return lo, hi
        levels = _level_offsets(self.info.get("level_errors"), LEVEL_MIN_DEVICES)
        families = _level_offsets(self.info.get("family_errors"), FAMILY_MIN)
        lo, hi = np.array(lo, dtype=np.float64), np.array(hi, dtype=np.float64)
        for on_device, on_family, offsets in (
                (True, False, levels), (False, True, families),
                (True, True, _thinned(np.abs(np.concatenate([np.add.outer(levels, families).ravel(),
                                                             np.subtract.outer(levels, families).ravel()]))))):
            rows = (device == on_device) & (far == on_family)
            if rows.any():
                half = mixture_half((hi[rows] - lo[rows]) / (2 * Z80), offsets)
                lo[rows], hi[rows] = mean[rows] - half, mean[rows] + half
        return lo, hi

    def unlearned(self, samples: Samples) -> tuple[np.ndarray, np.ndarray]:
        """([S] whether the training data has no sample of each one's runtime on its processor (the
        runtime's name alone where the checkpoint does not record `runtime_targets`), [S] whether it has no int8
        network in it, or none with an int8 kernel of each kind the sample's network has
        (`GraphSet.int8_kinds`), where the sample is one). A checkpoint that does not record its runtimes
        lacks nothing; one that does not record the kinds, no kind."""
        known = self.info.get("runtimes")
        if known is None:
            return np.zeros(len(samples), bool), np.zeros(len(samples), bool)
        integer_known = self.info.get("integer_runtimes") or []
        kinds_known = self.info.get("integer_kernels")
        runtime = np.array([(s.runtime or "").lower() for s in samples.settings], dtype=object)[samples.setting]
        no_runtime = np.array([bool(r) and r not in known for r in runtime], dtype=bool)
        on_target = self.info.get("runtime_targets")
        if on_target is not None:  # a checkpoint written before the record: the runtime's name alone
            covered = set(on_target)
            no_runtime |= np.array([bool(s.runtime) and runtime_target(s) not in covered for s in samples.settings],
                                   dtype=bool)[samples.setting]
        no_int8 = samples.graphs.integer()[samples.graph] & np.array([bool(r) and r not in integer_known
                                                                      for r in runtime], dtype=bool) & ~no_runtime
        if kinds_known is not None:  # asked once per network and runtime, not per sample
            kinds = samples.graphs.int8_kinds()
            asked = list(zip(samples.graph.tolist(), runtime.tolist()))
            lacking = {(g, r): bool(r) and bool(self.unlearned_kinds(kinds[g], r)) for g, r in set(asked)}
            no_int8 |= np.array([lacking[pair] for pair in asked], dtype=bool) & ~no_runtime
        return no_runtime, no_int8

    def unlearned_kinds(self, kinds: set[str], runtime: str) -> list[str]:
        """Those of a network's int8 kernel kinds (`GraphSet.int8_kinds`) that the training data had too few
        networks of in `runtime` (`info.integer_kernels`; none where the checkpoint does not record them)."""
        if self.info.get("integer_kernels") is None:
            return []
        learned = set(self.info["integer_kernels"])
        return sorted(k for k in kinds if f"{runtime}/{k}" not in learned)

    def widened(self, samples: Samples, mean, lo, hi, unknown: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) where `unknown` marks answers the training data has no sample of (`unlearned`): down
        to the roofline, lowered by as much as the hardware beat its sheet in training (`reach`), and up by
        the half-width again (an unknown runtime's overheads, or its integer kernels, can cost more too)."""
        return np.where(unknown, np.minimum(lo, self.reach(samples)), lo), np.where(unknown, hi + (hi - mean), hi)

    def calibration(self, shots: Samples, which: str = "gnn", designed: bool = False):
        """The few-shot correction (`fewshot.calibrate`) from measured samples, all in one setting; designed:
        they are a fingerprint's reference networks, chosen one per regime."""
        from edgeatlas.predictor.fewshot import calibrate

        if len(np.unique(shots.setting)) != 1:
            raise ValueError("shots of one setting calibrate that setting only")
        mean, lo, hi = self.predict(shots, which)
        terms = physical_terms(shots)
        return calibrate(mean, shots.latency_ms, float(np.median(hi - lo) / 2), self._share(shots, which),
                         _compute_floor(terms), terms, designed=designed)

    def predict_calibrated(self, samples: Samples, cal, which: str = "gnn",
                           zero_shot: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(log mean, log low, log high) in the calibration's setting; never faster than the sheet's peak
        FLOP/s allow (lowered by as much as a shot ran faster, or the hardware did in training: `floor`).
        zero_shot: `predict(samples, which)[0]`, where already known."""
        terms = physical_terms(samples)
        zero = self.predict(samples, which)[0] if zero_shot is None else zero_shot
        mean = cal.apply(zero, self._share(samples, which) if cal.needs_share else None, terms)
        floor = _compute_floor(terms) + np.minimum(cal.floor_shift, self._floor_shift(samples))
        mean = np.maximum(mean, floor)
        return mean, np.maximum(mean - cal.half_width, floor), mean + cal.half_width

    def _share(self, samples: Samples, which: str) -> np.ndarray | None:
        return self.gnn.fixed_share(self.as_learned(self.as_known(samples))) if which in ("gnn", "gnn-raw") else None

    def save(self, path) -> None:
        """One safetensors file: every array as a tensor, the trees as skops bytes (a uint8 tensor), and
        the rest as JSON in its metadata. Nothing in it is code: see load."""
        from safetensors.numpy import save_file

        arrays = {f"anchors.{k}": np.ascontiguousarray(getattr(self.anchors, k)) for k in ANCHOR_ARRAYS}
        arrays["gnn.hw_mean"], arrays["gnn.hw_std"] = self.gnn.hw_mean, self.gnn.hw_std
        for m, state in enumerate(self.gnn.states):
            arrays.update({f"gnn.{m}.{k}": v.detach().cpu().numpy() for k, v in state.items()})
        arrays["tabular.skops"] = np.frombuffer(self.tabular.to_bytes(), dtype=np.uint8)
        meta = {"members": len(self.gnn.states), "gnn_half_width": self.gnn.half_width,
                "tabular_half_width": self.tabular.half_width, "gnn_half_widths": self.gnn.half_widths,
                "tabular_half_widths": self.tabular.half_widths, "config": self.gnn.config,
                "anchor_names": list(self.anchors.names), "info": self.info}
        save_file(arrays, str(path), metadata={"format": CHECKPOINT_FORMAT, "meta": json.dumps(meta, default=float)})

    @classmethod
    def load(cls, path, origin: str = "") -> "Predictor":
        """A checkpoint, checked against its format and schema before anything is built from it.

        Safe for bytes from anyone: safetensors holds only arrays, skops builds only allow-listed types,
        the rest is JSON; nothing is unpickled. origin: how errors name it (default: the path)."""
        import torch
        from safetensors import SafetensorError, safe_open

        from edgeatlas.protos.errors import InvalidInput

        what = origin or f"checkpoint {path}"
        try:
            with open(path, "rb") as f:
                head = f.read(9)  # safetensors: an 8-byte header length, then its JSON
                if head[8:9] != b"{" and (head[:2] == b"PK" or head[:1] == b"\x80"):  # torch.save's zip, a pickle
                    raise InvalidInput(f"{what}: a pickled (edgeatlas.predictor/v1) checkpoint, which is never "
                                       f"loaded: it could run code. Train it again (edgeatlas predictor train)")
            with safe_open(str(path), framework="numpy") as f:
                header = f.metadata() or {}
                if header.get("format") != CHECKPOINT_FORMAT:
                    older = str(header.get("format")).startswith("edgeatlas.predictor/")
                    raise InvalidInput(f"{what}: not an {CHECKPOINT_FORMAT} checkpoint "
                                       f"(format {str(header.get('format'))[:40]!r})" +
                                       ("; its features are an older featurizer's: train it again (edgeatlas "
                                        "predictor train, or predictor retrain at the coordinator)" if older else ""))
                arrays = {k: f.get_tensor(k) for k in f.keys()}
        except FileNotFoundError:
            raise InvalidInput(f"{what}: no such file") from None
        except (SafetensorError, OSError, ValueError) as exc:
            raise InvalidInput(f"{what}: not a safetensors predictor checkpoint "
                               f"({str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__})") from None
        try:
            meta = _checked_meta(header.get("meta", ""))
            members = meta["members"]
            states = [{} for _ in range(members)]
            for key, value in arrays.items():
                if (m := MEMBER_KEY.fullmatch(key)) is not None:
                    if int(m[1]) >= members:
                        raise ValueError(f"tensor {key} names member {m[1]} of {members}")
                    states[int(m[1])][m[2]] = torch.from_numpy(np.array(value))
                elif key not in FIXED_KEYS:
                    raise ValueError(f"unexpected tensor {key[:80]!r}")
            missing = sorted(FIXED_KEYS - set(arrays))
            if missing:
                raise ValueError(f"tensor {missing[0]} is missing")
            anchors = GraphSet(names=meta["anchor_names"], **{k: arrays[f"anchors.{k}"] for k in ANCHOR_ARRAYS})
            _check_anchors(anchors)
            tags = meta["info"].get("anchor_runtimes")
            if tags is not None and (not isinstance(tags, list) or len(tags) != len(anchors.names) or
                                     not all(isinstance(t, str) and len(t) <= 100 for t in tags)):
                raise ValueError("info.anchor_runtimes is not one runtime name per anchor")
            gnn = GNNEnsemble(states=states, hw_mean=arrays["gnn.hw_mean"], hw_std=arrays["gnn.hw_std"],
                              half_width=meta["gnn_half_width"], half_widths=meta.get("gnn_half_widths") or {},
                              config=meta["config"])
            if gnn.hw_mean.shape != (len(FEATURES),) or gnn.hw_std.shape != (len(FEATURES),):
                raise ValueError(f"hardware standardisation is not {len(FEATURES)} features")
            for model in gnn._models():  # every member's state must fit the network exactly (names and shapes)
                if model.embed.in_features != anchors.x.shape[1]:
                    raise ValueError("a GNN member does not take the anchors' node features")
            tabular = Tabular.from_bytes(arrays["tabular.skops"].tobytes(), meta["tabular_half_width"],
                                         meta.get("tabular_half_widths"))
        except InvalidInput:
            raise
        except Exception as exc:  # a schema mismatch, anything the builders refuse
            raise InvalidInput(f"{what}: does not fit the {CHECKPOINT_FORMAT} schema: "
                               f"{(str(exc).splitlines() or [type(exc).__name__])[0][:200]}") from None
        return cls(tabular=tabular, gnn=gnn, anchors=anchors, info=meta["info"])


# v3: integer kernels in the features; v4: ONNX Runtime's graphs (its anchors, what it learned in that
# runtime) are its fused kernels (`graph.runtime_graph`); v5: int8 multiply-adds' work is at the int8 peak
# (`hardware.INT8_PER_FP32`), which the GNN's work terms learned their efficiency against
CHECKPOINT_FORMAT = "edgeatlas.predictor/v5"
ANCHOR_ARRAYS = ("x", "flops", "act_bytes", "weight_bytes", "edges", "node_ptr", "edge_ptr", "summary")
FIXED_KEYS = {f"anchors.{k}" for k in ANCHOR_ARRAYS} | {"gnn.hw_mean", "gnn.hw_std", "tabular.skops"}
MEMBER_KEY = re.compile(r"gnn\.(\d{1,2})\.([A-Za-z0-9_.]{1,100})")
MAX_MEMBERS = 32
MAX_WIDTH = 1024  # any GNN size in config.gnn: bounds what building a member allocates


def _checked_meta(text: str) -> dict:
    """The checkpoint's JSON metadata, with every field's type checked."""
    meta = json.loads(text)
    kinds = {"members": int, "gnn_half_width": (int, float), "tabular_half_width": (int, float),
             "config": dict, "anchor_names": list, "info": dict}
    if not isinstance(meta, dict):
        raise ValueError("metadata is not an object")
    for key, kind in kinds.items():
        if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
            raise ValueError(f"metadata field {key} is missing or not a {getattr(kind, '__name__', 'number')}")
    if not 1 <= meta["members"] <= MAX_MEMBERS:
        raise ValueError(f"members = {meta['members']} is not in 1..{MAX_MEMBERS}")
    for key in ("gnn_half_width", "tabular_half_width"):
        if not (math.isfinite(meta[key]) and meta[key] >= 0):
            raise ValueError(f"{key} = {meta[key]!r} is not a finite width")
    for key in ("gnn_half_widths", "tabular_half_widths"):  # absent before per-runtime widths: the overall one
        widths = meta.get(key, {})
        if not isinstance(widths, dict) or len(widths) > 1000 or not all(
                isinstance(k, str) and 0 < len(k) <= 120 for k in widths):
            raise ValueError(f"{key} is not an object of runtime names")
        _finite_list(list(widths.values()), key, 1000)
    if not isinstance(meta["config"].get("gnn"), dict) or any(
            type(v) is not int or not 1 <= v <= MAX_WIDTH for v in meta["config"]["gnn"].values()):
        raise ValueError(f"config.gnn is not an object of sizes in 1..{MAX_WIDTH}")
    if not all(isinstance(n, str) for n in meta["anchor_names"]):
        raise ValueError("anchor_names are not all strings")
    _check_zero_shot(meta["info"])
    return meta


def _finite_list(value, name: str, most: int, length: int | None = None, kind: str = "non-negative") -> None:
    """value is a list of up to `most` (exactly `length`) finite numbers of `kind`: any, non-negative, positive."""
    if not isinstance(value, list) or len(value) > most or (length is not None and len(value) != length):
        raise ValueError(f"info.{name} is not a list of {length if length is not None else f'up to {most}'} numbers")
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or \
                (kind == "non-negative" and v < 0) or (kind == "positive" and v <= 0):
            raise ValueError(f"info.{name} holds {str(v)[:40]!r}, not a finite {kind} number".replace(" any", ""))


def _check_zero_shot(info: dict) -> None:
    """The record `Predictor.widen` reads (zero_shot_info), where a checkpoint has one: every field's type and
    range, so a published checkpoint cannot make an answer fail or its interval narrower."""
    from edgeatlas.predictor.data import SUMMARY

    if "hardware" in info and (not isinstance(info["hardware"], list) or len(info["hardware"]) > 100_000 or
                               not all(isinstance(k, str) and len(k) < 4096 for k in info["hardware"])):
        raise ValueError("info.hardware is not a list of hardware keys")
    for name in ("runtimes", "runtime_targets", "runtime_threads", "integer_runtimes", "integer_kernels"):
        if name in info and (not isinstance(info[name], list) or len(info[name]) > 1000 or
                             not all(isinstance(r, str) and 0 < len(r) <= 120 for r in info[name])):
            raise ValueError(f"info.{name} is not a list of runtime names")
    if "floor_shifts" in info:
        _finite_list(info["floor_shifts"], "floor_shifts", 100_000, len(info.get("hardware") or []), "any")
        if any(not -MAX_FLOOR_SHIFT <= v <= 0 for v in info["floor_shifts"]):
            raise ValueError(f"info.floor_shifts are not all in -{MAX_FLOOR_SHIFT:.2f}..0")
    for name in ("level_errors", "family_errors"):
        if name in info:
            _finite_list(info[name], name, MAX_OFFSETS)
    if any(k in info for k in ("summary_mean", "summary_std", "anchor_reach")):
        _finite_list(info.get("summary_mean"), "summary_mean", len(SUMMARY), len(SUMMARY), "any")
        _finite_list(info.get("summary_std"), "summary_std", len(SUMMARY), len(SUMMARY), "positive")
        _finite_list([info.get("anchor_reach")], "anchor_reach", 1, 1)


def _check_anchors(anchors: GraphSet) -> None:
    """The anchor graphs' arrays agree with one another: one row per node, pointers in range."""
    from edgeatlas.predictor.data import SUMMARY
    from edgeatlas.predictor.graph import NODE_FEATURES

    g, nodes = len(anchors.names), len(anchors.x)
    if anchors.x.ndim != 2 or anchors.x.shape[1] != NODE_FEATURES or anchors.summary.ndim != 2 or \
            anchors.summary.shape[1] != len(SUMMARY):
        raise ValueError(f"anchor features are not {NODE_FEATURES} per node and {len(SUMMARY)} per network")
    if anchors.node_ptr.shape != (g + 1,) or anchors.edge_ptr.shape != (g + 1,):
        raise ValueError("anchor pointers do not have one entry per network plus one")
    if anchors.node_ptr[0] != 0 or anchors.node_ptr[-1] != nodes or np.any(np.diff(anchors.node_ptr) < 0):
        raise ValueError("anchor node pointers are not a partition of the nodes")
    if anchors.edges.ndim != 2 or anchors.edges.shape[0] != 2 or anchors.edge_ptr[0] != 0 or \
            anchors.edge_ptr[-1] != anchors.edges.shape[1] or np.any(np.diff(anchors.edge_ptr) < 0):
        raise ValueError("anchor edges and edge pointers do not agree")
    for name in ("flops", "act_bytes", "weight_bytes"):
        if getattr(anchors, name).shape != (nodes,):
            raise ValueError(f"anchors.{name} does not have one value per node")
    if anchors.summary.shape[0] != g:
        raise ValueError("anchors.summary does not have one row per network")
    sizes = np.repeat(np.diff(anchors.node_ptr), np.diff(anchors.edge_ptr))
    if anchors.edges.size and (anchors.edges.min() < 0 or np.any(anchors.edges >= sizes[None, :])):
        raise ValueError("an anchor edge points outside its network")
