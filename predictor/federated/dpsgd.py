"""DP-SGD on one set of measurements (Opacus): per-sample clipping, Gaussian noise, an RDP accountant.

One sample is one measurement, a (network, setting, latency) triple, so the privacy unit is one
measurement: ε bounds what the trained weights reveal about any single one. A device runs this on its
own raw data each federated round; the central DP baseline runs it once on everything. Accounting
carries over between calls through `history` (Opacus' RDP history: (noise multiplier, sample rate, steps)).
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from edgeatlas.predictor.data import Samples
from edgeatlas.predictor.graph import NODE_FEATURES
from edgeatlas.predictor.gnn import Batcher, CostGNN, GNNConfig, PairCost
from edgeatlas.predictor.hardware import FEATURES
from edgeatlas.protos.errors import InvalidInput

DELTA = 1e-5
# Rényi orders for the accountant: Opacus' defaults stop at 63, too low for few steps at large ε.
ALPHAS = [1 + k / 10 for k in range(1, 100)] + list(range(12, 64)) + [72, 96, 128, 192, 256, 384, 512, 1024]


@dataclass(frozen=True)
class DPConfig:
    """What one DP-SGD run does; epsilon is the whole budget over `total_epochs` (all rounds together)."""

    epsilon: float = 8.0
    delta: float = DELTA
    max_grad_norm: float = 1.0  # per-sample clipping bound of the gradient (L2)
    batch_size: int = 32  # expected Poisson batch
    epochs: int = 1  # local epochs in this call
    total_epochs: int = 1  # over every call that shares the budget (rounds × local epochs)
    lr: float = 3e-3
    hw_noise: float = 0.3

    def check(self) -> None:
        for name in ("epsilon", "delta", "max_grad_norm", "lr"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise InvalidInput(f"DP-SGD {name} must be a positive number, not {value}")
        if self.delta >= 1:
            raise InvalidInput(f"DP-SGD delta must be below 1, not {self.delta}")
        for name in ("batch_size", "epochs", "total_epochs"):
            if getattr(self, name) < 1:
                raise InvalidInput(f"DP-SGD {name} must be at least 1, not {getattr(self, name)}")


@dataclass
class DPResult:
    loss_before: float  # smooth L1 of log ms over the samples, before and after this call
    loss_after: float
    epsilon: float  # the accountant's total over every call so far, at delta
    noise_multiplier: float
    steps: int
    history: list = field(default_factory=list)


class PairDataset(torch.utils.data.Dataset):
    """Samples as per-sample tensors padded to the widest graph: (x, adj, mask, logr, hw, target)."""

    def __init__(self, samples: Samples, hw_mean: np.ndarray, hw_std: np.ndarray):
        self.samples = samples
        self.batcher = Batcher(samples.graphs, samples.settings)
        used = np.unique(samples.graph)
        sizes = samples.graphs.node_ptr[used + 1] - samples.graphs.node_ptr[used]
        self.width = int(sizes.max())
        hw = np.stack([s.features for s in samples.settings])
        self.hw = torch.from_numpy(((hw - hw_mean) / hw_std).astype(np.float32))
        self.target = torch.from_numpy(np.log(samples.latency_ms).astype(np.float32))

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        g, s = self.samples.graph[i:i + 1], self.samples.setting[i:i + 1]
        x, adj, mask, node = self.batcher.graph_batch(g, width=self.width)
        return x[0], adj[0], mask[0], self.batcher.log_roofline(node, s)[0], self.hw[int(s[0])], self.target[i]


def new_model(seed: int = 0) -> CostGNN:
    torch.manual_seed(seed)
    return CostGNN(NODE_FEATURES, len(FEATURES), GNNConfig())


def loss_of(model: CostGNN, data: PairDataset, batch: int = 128) -> float:
    """Mean smooth L1 of log ms over every sample (no noise, no training)."""
    pair = PairCost(model).eval()
    total = 0.0
    with torch.no_grad():
        for i in range(0, len(data), batch):
            x, adj, mask, logr, hw, y = torch.utils.data.default_collate([data[j] for j in
                                                                          range(i, min(i + batch, len(data)))])
            pred = pair(x, adj, mask, logr, hw)
            total += float(torch.nn.functional.smooth_l1_loss(pred, y, beta=0.5, reduction="sum"))
    return total / len(data)


@functools.lru_cache(maxsize=64)
def noise_multiplier(epsilon: float, delta: float, sample_rate: float, steps: int) -> float:
    """The Gaussian noise (× the clipping bound) at which `steps` steps at this rate spend (ε, δ)."""
    from opacus.accountants.utils import get_noise_multiplier

    return float(get_noise_multiplier(target_epsilon=epsilon, target_delta=delta, sample_rate=sample_rate,
                                      steps=steps, accountant="rdp", alphas=ALPHAS))


def epsilon_of(history: list, delta: float) -> float:
    """ε at delta of an RDP history [(noise multiplier, sample rate, steps), ...]."""
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    accountant.history = [tuple(h) for h in history]
    return float(accountant.get_epsilon(delta, alphas=ALPHAS)) if history else 0.0


def _not_the_empty_batch_warning(record: logging.LogRecord) -> bool:
    """A logging filter: drops Opacus' warning that a first Poisson batch was empty. Here an empty batch is
    expected (a device may have a handful of measurements) and is stepped on with its noise (`train`)."""
    return not record.getMessage().startswith("First batch is empty")


def train(model: CostGNN, samples: Samples, hw_mean: np.ndarray, hw_std: np.ndarray, cfg: DPConfig,
          history: list | None = None) -> DPResult:
    """Trains model in place with DP-SGD for cfg.epochs; the noise is set so that cfg.total_epochs spend cfg.epsilon."""
    import secrets
    import warnings

    from opacus import PrivacyEngine

    cfg.check()
    if len(samples) < 2:
        raise InvalidInput(f"DP-SGD needs at least 2 measurements, not {len(samples)}")
    data = PairDataset(samples, hw_mean, hw_std)
    # At most half of the measurements per step: sampling is what the accountant's amplification rests on.
    rate = min(0.5, cfg.batch_size / len(data))
    steps_per_epoch = max(1, round(1 / rate))
    sigma = noise_multiplier(cfg.epsilon, cfg.delta, rate, cfg.total_epochs * steps_per_epoch)
    before = loss_of(model, data)
    # Batches and noise come from the OS's randomness: a seed anyone could know would undo the privacy.
    generator = torch.Generator().manual_seed(secrets.randbits(63))
    loader = torch.utils.data.DataLoader(data, batch_size=max(1, round(rate * len(data))), shuffle=True,
                                         generator=generator)
    pair = PairCost(model).train()
    optimizer = torch.optim.Adam(pair.parameters(), lr=cfg.lr)
    # secure_mode needs torchcsprng, which no longer builds for current torch; the generator above is
    # seeded from the OS instead (see the README's privacy section for what that leaves).
    warnings.filterwarnings("ignore", message="Secure RNG turned off")
    engine = PrivacyEngine(accountant="rdp")
    engine.accountant.history = [tuple(h) for h in history or []]
    pair, optimizer, loader = engine.make_private(module=pair, optimizer=optimizer, data_loader=loader,
                                                  noise_multiplier=sigma, max_grad_norm=cfg.max_grad_norm,
                                                  noise_generator=generator)
    steps = 0
    warnings.filterwarnings("ignore", message="Full backward hook is firing")  # inputs need no gradient
    logging.getLogger("opacus.data_loader").addFilter(_not_the_empty_batch_warning)  # added once: one object
    for _ in range(cfg.epochs):
        for x, adj, mask, logr, hw, y in loader:
            # A Poisson batch can be empty; it is stepped on all the same, its gradient zero and its noise
            # added, as the accountant assumes of every step. Skipped, the steps of a small store could all
            # be: an update of exactly zero would say so (and Flower's clipping divides by its norm).
            noisy = hw + cfg.hw_noise * torch.randn(hw.shape, generator=generator)
            loss = torch.nn.functional.smooth_l1_loss(pair(x, adj, mask, logr, noisy), y, beta=0.5,
                                                      reduction="sum") / max(len(y), 1)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps += 1
    pair.remove_hooks()
    return DPResult(loss_before=before, loss_after=loss_of(model, data),
                    epsilon=epsilon_of(engine.accountant.history, cfg.delta), noise_multiplier=float(sigma),
                    steps=steps, history=list(engine.accountant.history))
