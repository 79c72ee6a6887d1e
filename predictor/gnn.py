"""The GNN cost model: a graph network over operators, conditioned on the spec sheet and setting.

Latency is a sum over operators, as it is on the device: log L = logsumexp_i s_i. Operator i's time on
this hardware is a fixed cost (launch, dispatch, framework) plus its work at some efficiency:

    s_i = logaddexp(<e_i, u_h> + b_h,  r_i + <e_i, v_h> + c_h)

e_i: the operator's embedding from message passing over the graph (hardware-independent: what the op
is, its sizes, what feeds it and what it feeds, so fusion and launch patterns are learnable);
u_h, v_h, b_h, c_h: from the hardware encoder (spec-sheet features and setting);
r_i: the operator's own roofline log-time on this hardware, with coefficient 1: the work term scales
with the peaks the sheet gives, so the model extrapolates to faster or slower hardware as physics
does and learns only the efficiency. One more term, the per-call overhead of the framework, comes
from the hardware encoder alone.

Graphs are dense: each padded to [Nmax] nodes with a mask and a binary adjacency [Nmax, Nmax], built by
torch-geometric's `to_dense_batch` / `to_dense_adj`, and message passing is its `DenseSAGEConv` (mean
over neighbours, every weight in an nn.Linear). That is what lets Opacus compute per-sample gradients
(it cannot for PyG's sparse layers), so the central and the federated DP-SGD predictor are one
architecture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
# Before torch_geometric: skops, as it is imported, looks up each of numpy's and scipy's ~2,600 ufuncs in every
# module loaded so far (skops.io._utils.whichmodule), and torch_geometric loads thousands. A process that
# loads or saves a checkpoint (its trees are skops bytes) took 13.7 s to import skops after it, 1.8 s before.
import skops.io  # noqa: F401
import torch
from torch import nn
from torch_geometric.nn import DenseSAGEConv
from torch_geometric.utils import to_dense_adj, to_dense_batch

from edgeatlas.predictor.data import GraphSet, SettingInfo

LOG_FLOOR_MS = math.log(1e-6)


@dataclass(frozen=True)
class GNNConfig:
    hidden: int = 64
    layers: int = 3
    rank: int = 24
    hw_hidden: int = 64


# Checkpoints written before the layers were torch-geometric's named them as SAGEConv does; the same
# function with the bias on the other linear map (it is added either way).
OLD_NAMES = {"lin_l.weight": "lin_rel.weight", "lin_l.bias": "lin_root.bias", "lin_r.weight": "lin_root.weight"}


def upgrade_state(state: dict) -> dict:
    """A member's state dict with the old message-passing parameter names renamed to DenseSAGEConv's."""
    out = {}
    for key, value in state.items():
        if key.startswith("convs.") and ".".join(key.split(".")[2:]) in OLD_NAMES:
            parts = key.split(".")
            key = ".".join(parts[:2] + [OLD_NAMES[".".join(parts[2:])]])
        out[key] = value
    return out


class CostGNN(nn.Module):
    def __init__(self, node_in: int, hw_in: int, cfg: GNNConfig = GNNConfig()):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Linear(node_in, cfg.hidden)
        self.convs = nn.ModuleList([DenseSAGEConv(cfg.hidden, cfg.hidden) for _ in range(cfg.layers)])
        self.norms = nn.ModuleList([nn.LayerNorm(cfg.hidden) for _ in range(cfg.layers)])
        self.out = nn.Linear(cfg.hidden, cfg.rank)
        self.hw = nn.Sequential(nn.Linear(hw_in, cfg.hw_hidden), nn.SiLU(), nn.Linear(cfg.hw_hidden, cfg.hw_hidden),
                                nn.SiLU(), nn.Linear(cfg.hw_hidden, 2 * cfg.rank + 3))

    def hardware(self, hw: torch.Tensor) -> torch.Tensor:
        """[B, 2·rank + 3] from standardized spec-sheet and setting features [B, hw_in]."""
        return self.hw(hw)

    def node_embeddings(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        """[B, N, rank] from node features x [B, N, F] and a binary adjacency [B, N, N]; padded rows are
        ignored later."""
        h = torch.relu(self.embed(x))
        for conv, norm in zip(self.convs, self.norms):
            h = norm(h + torch.relu(conv(h, adj)))
        return self.out(h)

    def forward(self, emb: torch.Tensor, h: torch.Tensor, logr: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Log-latency (ms) [P] of P (graph, setting) pairs.

        emb: [P, N, rank] its graph's node embeddings; h: [P, 2·rank + 3] its setting's hardware();
        logr: [P, N] each operator's roofline log-time on that setting; mask: [P, N] true for real nodes.
        """
        fixed, work = self.parts(emb, h, logr, mask)
        return torch.logaddexp(fixed, work)

    def parts(self, emb: torch.Tensor, h: torch.Tensor, logr: torch.Tensor,
              mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log of the fixed costs: every operator's plus the framework's per call, log of the work terms)
        [P] each; the latency is their sum. A fingerprint re-weighs the two for its device and runtime."""
        r = self.cfg.rank
        u, v, b, c, overhead = h[:, :r], h[:, r:2 * r], h[:, -3] - 4.0, h[:, -2] + 1.0, h[:, -1]
        # Bounds keep an operator physical on networks unlike any in training: a fixed cost of at most
        # e^3 ≈ 20 ms, and an efficiency between 1.6× better than the roofline and e^8 ≈ 3000× worse.
        fixed = torch.clamp((emb * u[:, None]).sum(-1) + b[:, None], LOG_FLOOR_MS, 3.0).masked_fill(~mask, -math.inf)
        work = (logr + torch.clamp((emb * v[:, None]).sum(-1) + c[:, None], -0.5, 8.0)).masked_fill(~mask, -math.inf)
        # the per-call overhead of the framework is one more fixed term of the sum
        over = torch.clamp(overhead - 1.0, LOG_FLOOR_MS, 6.0)
        return torch.logsumexp(torch.cat([fixed, over[:, None]], dim=1), dim=1), torch.logsumexp(work, dim=1)


class PairCost(nn.Module):
    """CostGNN as one call per (graph, setting) pair, every input batched on dim 0: what Opacus wraps."""

    def __init__(self, cost: CostGNN):
        super().__init__()
        self.cost = cost

    def forward(self, x: torch.Tensor, adj: torch.Tensor, mask: torch.Tensor, logr: torch.Tensor,
                hw: torch.Tensor) -> torch.Tensor:
        return self.cost(self.cost.node_embeddings(x, adj), self.cost.hardware(hw), logr, mask)


class Batcher:
    """Builds dense mini-batches: graphs padded to their largest, and each pair's roofline log-times."""

    def __init__(self, graphs: GraphSet, settings: list[SettingInfo]):
        self.graphs = graphs
        self.flops = graphs.flops
        self.act = graphs.act_bytes
        self.weight = graphs.weight_bytes
        self.inv_peak = np.array([1 / s.proc.peak_flops if s.proc.peak_flops > 0 else 0.0 for s in settings])
        self.inv_int8 = np.array([1 / s.proc.int8_peak if s.proc.int8_peak > 0 else 0.0 for s in settings])
        self.int8 = graphs.int8_work()
        self.inv_bw = np.array([1 / s.proc.bandwidth if s.proc.bandwidth > 0 else 0.0 for s in settings])
        self.batch = np.array([s.effective_batch for s in settings], dtype=np.float64)

    def graph_batch(self, gids: np.ndarray, width: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                                      np.ndarray]:
        """x [G, N, F], adjacency [G, N, N] (undirected, binary), mask [G, N] and the global node index
        [G, N] (-1 where padded) of graphs gids; N = the largest of them, or width if larger."""
        gs = self.graphs
        starts, ends = gs.node_ptr[gids], gs.node_ptr[gids + 1]
        sizes = ends - starts
        n = max(int(sizes.max()), width)
        local = np.arange(n)
        node = np.where(local[None, :] < sizes[:, None], starts[:, None] + local[None, :], -1)
        batch = torch.from_numpy(np.repeat(np.arange(len(gids)), sizes))
        x, mask = to_dense_batch(torch.from_numpy(gs.x[node[node >= 0]]), batch, max_num_nodes=n,
                                 batch_size=len(gids))
        counts = gs.edge_ptr[gids + 1] - gs.edge_ptr[gids]
        edges = gs.edges[:, np.concatenate([np.arange(a, b) for a, b in zip(gs.edge_ptr[gids],
                                                                            gs.edge_ptr[gids + 1])])]
        edges = edges + np.repeat(np.cumsum(sizes) - sizes, counts)[None, :]  # local → position in the batch
        both = torch.from_numpy(np.concatenate([edges, edges[::-1]], axis=1).astype(np.int64))
        adj = to_dense_adj(both, batch, max_num_nodes=n, batch_size=len(gids))
        return x, (adj > 0).float(), mask, node

    def log_roofline(self, node: np.ndarray, setting: np.ndarray) -> torch.Tensor:
        """[P, N] roofline log-time (ms) of each pair's operators; node: [P, N] global indices (-1 padded)."""
        s = setting[:, None]
        b = self.batch[s]
        safe = np.maximum(node, 0)
        inv_peak = np.where(self.int8[safe], self.inv_int8[s], self.inv_peak[s])  # int8 work at the int8 peak
        t = np.maximum(self.flops[safe] * b * inv_peak,
                       (self.act[safe] * b + self.weight[safe]) * self.inv_bw[s]) * 1e3
        return torch.from_numpy(np.log(np.maximum(t, 1e-6)).astype(np.float32))
