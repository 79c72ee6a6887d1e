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
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch_geometric.nn import SAGEConv
from torch_geometric.utils import to_undirected

from edgeatlas.predictor.data import GraphSet, SettingInfo

LOG_FLOOR_MS = math.log(1e-6)


@dataclass(frozen=True)
class GNNConfig:
    hidden: int = 64
    layers: int = 3
    rank: int = 24
    hw_hidden: int = 64


class CostGNN(nn.Module):
    def __init__(self, node_in: int, hw_in: int, cfg: GNNConfig = GNNConfig()):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Linear(node_in, cfg.hidden)
        self.convs = nn.ModuleList([SAGEConv(cfg.hidden, cfg.hidden) for _ in range(cfg.layers)])
        self.norms = nn.ModuleList([nn.LayerNorm(cfg.hidden) for _ in range(cfg.layers)])
        self.out = nn.Linear(cfg.hidden, cfg.rank)
        self.hw = nn.Sequential(nn.Linear(hw_in, cfg.hw_hidden), nn.SiLU(), nn.Linear(cfg.hw_hidden, cfg.hw_hidden),
                                nn.SiLU(), nn.Linear(cfg.hw_hidden, 2 * cfg.rank + 3))

    def hardware(self, hw: torch.Tensor) -> torch.Tensor:
        """[settings, 2·rank + 3] from standardized spec-sheet and setting features."""
        return self.hw(hw)

    def node_embeddings(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.embed(x))
        for conv, norm in zip(self.convs, self.norms):
            h = norm(h + torch.relu(conv(h, edge_index)))
        return self.out(h)

    def forward(self, emb: torch.Tensor, h: torch.Tensor, entry_node: torch.Tensor, entry_pair: torch.Tensor,
                entry_logr: torch.Tensor, pair_setting: torch.Tensor, pairs: int) -> torch.Tensor:
        """Log-latency (ms) of each (graph, setting) pair.

        emb: [N, rank] node embeddings; h: [settings, 2·rank + 3] from hardware();
        entry_*: one entry per (pair, node of its graph): the node, the pair, its roofline log-time.
        """
        r = self.cfg.rank
        u, v, b, c, overhead = h[:, :r], h[:, r:2 * r], h[:, -3] - 4.0, h[:, -2] + 1.0, h[:, -1]
        s = pair_setting[entry_pair]
        e = emb[entry_node]
        # Bounds keep an operator physical on networks unlike any in training: a fixed cost of at most
        # e^3 ≈ 20 ms, and an efficiency between 1.6× better than the roofline and e^8 ≈ 3000× worse.
        fixed = torch.clamp((e * u[s]).sum(-1) + b[s], LOG_FLOOR_MS, 3.0)
        work = entry_logr + torch.clamp((e * v[s]).sum(-1) + c[s], -0.5, 8.0)
        score = torch.logaddexp(fixed, work)
        # logsumexp per pair, with the per-call overhead as one more term
        over = torch.clamp(overhead[pair_setting] - 1.0, LOG_FLOOR_MS, 6.0)
        top = torch.full((pairs,), -1e9, dtype=score.dtype).scatter_reduce(0, entry_pair, score, "amax")
        top = torch.maximum(top, over).detach()
        total = torch.zeros(pairs, dtype=score.dtype).index_add(0, entry_pair, torch.exp(score - top[entry_pair]))
        total = total + torch.exp(over - top)
        return top + torch.log(total)


class Batcher:
    """Builds the tensors of a mini-batch: graphs' nodes and edges, and (pair, node) entries."""

    def __init__(self, graphs: GraphSet, settings: list[SettingInfo]):
        self.graphs = graphs
        self.x = torch.from_numpy(graphs.x)
        self.flops = graphs.flops
        self.act = graphs.act_bytes
        self.weight = graphs.weight_bytes
        self.inv_peak = np.array([1 / s.proc.peak_flops if s.proc.peak_flops > 0 else 0.0 for s in settings])
        self.inv_bw = np.array([1 / s.proc.bandwidth if s.proc.bandwidth > 0 else 0.0 for s in settings])
        self.batch = np.array([s.effective_batch for s in settings], dtype=np.float64)

    def graph_batch(self, gids: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
        """x and undirected edge_index of graphs gids, and per graph its first node in the batch and size."""
        gs = self.graphs
        starts, ends = gs.node_ptr[gids], gs.node_ptr[gids + 1]
        sizes = ends - starts
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        node_idx = np.concatenate([np.arange(a, b) for a, b in zip(starts, ends)])
        edge_parts = []
        for g, off in zip(gids, offsets):
            edge_parts.append(gs.edges[:, gs.edge_ptr[g]:gs.edge_ptr[g + 1]] + off)
        edges = torch.from_numpy(np.concatenate(edge_parts, axis=1))
        return self.x[node_idx], to_undirected(edges), offsets, sizes

    def entries(self, gids: np.ndarray, offsets: np.ndarray, sizes: np.ndarray, pair_graph: np.ndarray,
                pair_setting: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For each pair (position in gids, setting), its nodes: batch node index, pair index, roofline log-time."""
        lengths = sizes[pair_graph]
        entry_pair = np.repeat(np.arange(len(pair_graph)), lengths)
        local = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        entry_node = offsets[pair_graph][entry_pair] + local
        global_node = self.graphs.node_ptr[gids[pair_graph]][entry_pair] + local
        s = pair_setting[entry_pair]
        b = self.batch[s]
        t = np.maximum(self.flops[global_node] * b * self.inv_peak[s],
                       (self.act[global_node] * b + self.weight[global_node]) * self.inv_bw[s]) * 1e3
        logr = np.log(np.maximum(t, 1e-6))
        return (torch.from_numpy(entry_node), torch.from_numpy(entry_pair),
                torch.from_numpy(logr.astype(np.float32)))
