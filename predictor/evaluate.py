"""Side-by-side evaluation of roofline, tabular and GNN on hardware (or networks) held out of training."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from edgeatlas.predictor.data import Samples
from edgeatlas.predictor.models import GNNEnsemble, Predictor, Tabular, TrainConfig
from edgeatlas.protos.errors import InvalidInput

# gnn-raw: the GNN alone; gnn: the GNN with its per-setting level anchored by the trees (models.Predictor).
PREDICTORS = ("roofline", "tabular", "gnn-raw", "gnn")
SPLITS = ("leave-hardware-out", "leave-model-out")


@dataclass(frozen=True)
class Scores:
    mape: float  # %
    within10: float  # % of predictions within ±10 %
    spearman: float
    r2_log: float
    n: int


def score(pred_log: np.ndarray, latency_ms: np.ndarray) -> Scores:
    from scipy.stats import spearmanr

    y = np.log(latency_ms)
    ape = np.abs(np.exp(pred_log) - latency_ms) / latency_ms
    ss_res, ss_tot = float(np.sum((pred_log - y) ** 2)), float(np.sum((y - y.mean()) ** 2))
    rho = spearmanr(pred_log, y)[0] if len(y) > 2 and np.ptp(y) > 0 else math.nan
    return Scores(mape=100 * float(ape.mean()), within10=100 * float(np.mean(ape <= 0.1)),
                  spearman=float(rho), r2_log=1 - ss_res / ss_tot if ss_tot > 0 else math.nan, n=len(y))


def calibration_split(samples: Samples, share: float = 0.05, seed: int = 0) -> tuple[Samples, Samples]:
    """(kept, held out): a share of the networks held out on every device (for intervals, or leave-model-out)."""
    held = np.random.default_rng(seed).random(len(samples.graphs)) < share
    return samples.where(~held[samples.graph]), samples.where(held[samples.graph])


def fit_all(train: Samples, cfg: TrainConfig, seed: int = 0, say=lambda _: None, anchors: int = 64) -> Predictor:
    """Trains the tabular model and the GNN ensemble on `train`; intervals calibrated on held-out networks."""
    fit, calib = calibration_split(train, seed=seed)
    start = time.monotonic()
    tabular = Tabular().fit(fit, calib, seed=seed)
    say(f"  tabular trained in {time.monotonic() - start:.0f} s")
    start = time.monotonic()
    gnn = GNNEnsemble().fit(fit, calib, cfg, seed=seed, say=say)
    say(f"  GNN ({cfg.members} members) trained in {time.monotonic() - start:.0f} s")
    pool = np.unique(fit.graph)
    picks = np.sort(np.random.default_rng(seed).choice(pool, min(anchors, len(pool)), replace=False))
    return Predictor(tabular=tabular, gnn=gnn, anchors=train.graphs.subset(picks))


def evaluate(samples: Samples, split: str, cfg: TrainConfig, seed: int = 0, devices: list[str] | None = None,
             say=lambda _: None) -> list[dict]:
    """Rows of {held_out, predictor, scores, coverage}, per held-out device."""
    if split not in SPLITS:
        raise InvalidInput(f"split {split!r} is not one of {', '.join(SPLITS)}")
    rows: list[dict] = []
    device = samples.device_of()
    if split == "leave-hardware-out":
        folds = devices or samples.devices()
        unknown = [name for name in folds if not np.any(device == name)]
        if unknown:  # before any training: a typo should not cost the folds before it
            raise InvalidInput(f"--device {unknown[0]!r} is not in the data (devices: {', '.join(samples.devices())})")
        for name in folds:
            say(f"held out: {name}")
            train, test = samples.where(device != name), samples.where(device == name)
            rows += _score_all(name, test, fit_all(train, cfg, seed, say))
    else:
        train, test = calibration_split(samples, share=0.2, seed=seed + 1)
        say(f"held out: {len(np.unique(test.graph))} networks (one in five), on every device")
        predictor = fit_all(train, cfg, seed, say)
        test_device = test.device_of()
        for name in sorted(set(test_device)):
            rows += _score_all(name, test.where(test_device == name), predictor)
    return rows


def _score_all(name: str, test: Samples, predictor: Predictor) -> list[dict]:
    y = np.log(test.latency_ms)
    rows = []
    for p in PREDICTORS:
        mean, lo, hi = predictor.predict(test, p)
        coverage = 100 * float(np.mean((y >= lo) & (y <= hi))) if p != "roofline" else math.nan
        rows.append({"held_out": name, "predictor": p, "scores": score(mean, test.latency_ms),
                     "coverage": coverage})
    return rows


def table(rows: list[dict]) -> str:
    """The per-device table, then the mean over held-out devices per predictor."""
    lines = [f"{'held out':28s} {'predictor':9s} {'MAPE %':>8s} {'±10 %':>7s} {'Spearman':>9s} {'R² log':>7s} "
             f"{'n':>6s} {'80% int.':>8s}"]
    for r in rows:
        s = r["scores"]
        cov = "" if math.isnan(r["coverage"]) else f"{r['coverage']:.0f} %"
        lines.append(f"{r['held_out'][:28]:28s} {r['predictor']:9s} {s.mape:8.1f} {s.within10:7.1f} "
                     f"{s.spearman:9.3f} {s.r2_log:7.3f} {s.n:6d} {cov:>8s}")
    lines.append("")
    lines.append("mean over held-out devices:")
    for p in PREDICTORS:
        mine = [r["scores"] for r in rows if r["predictor"] == p]
        lines.append(f"{'':28s} {p:9s} {np.mean([s.mape for s in mine]):8.1f} "
                     f"{np.mean([s.within10 for s in mine]):7.1f} {np.nanmean([s.spearman for s in mine]):9.3f} "
                     f"{np.nanmean([s.r2_log for s in mine]):7.3f}")
    return "\n".join(lines)
