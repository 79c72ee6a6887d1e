"""Side-by-side evaluation of roofline, tabular and GNN on hardware (or networks) held out of training."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import numpy as np

from edgeatlas.predictor.data import Samples, runtime_target
from edgeatlas.predictor.models import GNNEnsemble, Predictor, Tabular, TrainConfig, interval_halves, zero_shot_info
from edgeatlas.protos.errors import InvalidInput

# gnn-raw: the GNN alone; gnn: the GNN with its per-setting level anchored by the trees (models.Predictor).
PREDICTORS = ("roofline", "tabular", "gnn-raw", "gnn")
SPLITS = ("leave-hardware-out", "leave-model-out", "leave-family-out")


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


# Networks of each runtime on each processor whose errors its own interval is read from
# (`models.interval_halves`), where it has CALIB_LEAST_OF times as many: the demo's 24 zoo networks in ONNX
# Runtime beside 600 of the shared families had one held out at 5 %, and the half-width of NAS-Bench-201's.
CALIB_LEAST = 4
CALIB_LEAST_OF = 5


def runtime_top_up(samples: Samples, held: Samples, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """([G] networks of `samples` outside `held` (a split of the same networks) that bring each runtime on
    each processor (`runtime_target`) to CALIB_LEAST held-out networks (fewer where it has under
    CALIB_LEAST_OF times that many), [the runtime/targets they top up]); none where the share does."""
    rng = np.random.default_rng(seed + 17)
    out = np.isin(np.arange(len(samples.graphs)), held.graph)
    extra = np.zeros(len(samples.graphs), dtype=bool)
    key = samples.runtime_target_of()
    short_of = []
    for name in sorted(set(key.tolist())):
        mine = np.unique(samples.graph[key == name])
        short = min(CALIB_LEAST, len(mine) // CALIB_LEAST_OF) - int(out[mine].sum())
        if short > 0:  # less what earlier runtimes' draws already took of its networks
            short_of.append(name)
            extra[rng.choice(mine[~(out | extra)[mine]], max(0, short - int(extra[mine].sum())), replace=False)] = True
    return extra, short_of


def fit_all(train: Samples, cfg: TrainConfig, seed: int = 0, say=lambda _: None, anchors: int = 64) -> Predictor:
    """Trains the tabular model and the GNN ensemble on `train`; intervals calibrated on held-out networks,
    those with an int8 kernel of a kind training had too few of left out: their answers are widened apart
    (`Predictor.widened`), and the demo's one held-out ConvInteger ResNet, ×2.9 off, set the half-width of
    every ONNX Runtime answer. A runtime the share held out too few networks of gets its own interval from
    models trained without more of them (`runtime_halves`)."""
    fit, calib = calibration_split(train, seed=seed)
    covered = runtime_info(train)
    learned = Predictor(tabular=None, gnn=None, anchors=None, info=covered)
    calib = calib.where(~learned.unlearned(calib)[1])
    start = time.monotonic()
    tabular = Tabular().fit(fit, calib, seed=seed)
    say(f"  tabular trained in {time.monotonic() - start:.0f} s")
    start = time.monotonic()
    gnn = GNNEnsemble().fit(fit, calib, cfg, seed=seed, say=say)
    say(f"  GNN ({cfg.members} members) trained in {time.monotonic() - start:.0f} s")
    extra, topped = runtime_top_up(train, calib, seed)
    if topped:
        start = time.monotonic()
        trees, graph = runtime_halves(fit, calib, extra, topped, learned, cfg, seed)
        tabular.half_widths.update(trees)
        gnn.half_widths.update(graph)
        say(f"  {', '.join(sorted(graph))}: {'its own interval' if len(graph) == 1 else 'their own intervals'} "
            f"from {int(extra.sum())} more networks, held out of a second model ({time.monotonic() - start:.0f} s)")
    say(f"  the GNN's 80 % interval: ±{gnn.half_width:.2f} (log) overall" +
        "".join(f", {name} ±{half:.2f}" for name, half in sorted(gnn.half_widths.items())))
    picks, anchor_runtimes = pick_anchors(fit, anchors, seed)
    start = time.monotonic()
    info = {**covered, "anchor_runtimes": anchor_runtimes,
            **zero_shot_info(train, train.graphs.subset(picks), seed)}
    say(f"  unseen devices' and families' levels: {len(info['level_errors'])} devices and "
        f"{len(info['family_errors'])} families left out in turn ({time.monotonic() - start:.0f} s)")
    return Predictor(tabular=tabular, gnn=gnn, anchors=train.graphs.subset(picks), info=info)


def runtime_halves(fit: Samples, calib: Samples, extra: np.ndarray, topped: list[str], learned: Predictor,
                   cfg: TrainConfig, seed: int = 0) -> tuple[dict[str, float], dict[str, float]]:
    """({runtime/target: half} of the trees, of the GNN) for the runtimes `extra` tops up (`runtime_top_up`),
    read on those networks and the share's, by a tree model and a one-member GNN trained on `fit` without
    them. The answering models keep them: four of the demo's 24 zoo networks held out of training put
    its zero-shot error on the held-out real models at 41-61 % where it was 26-35 % (three seeds each).
    A model trained on fewer networks errs more, so these intervals lean wide."""
    scored = merge_split(fit.where(extra[fit.graph]), calib)
    scored = scored.where(np.isin(scored.runtime_target_of(), topped) & ~learned.unlearned(scored)[1])
    rest = fit.where(~extra[fit.graph])
    trees = Tabular().fit(rest, None, seed=seed)
    graph = GNNEnsemble().fit(rest, None, replace(cfg, members=1), seed=seed)
    return ({k: v for k, v in interval_halves(trees.predict_log(scored), scored)[1].items() if k in topped},
            {k: v for k, v in interval_halves(graph._predict(scored)[0], scored)[1].items() if k in topped})


def merge_split(a: Samples, b: Samples) -> Samples:
    """The samples of two parts of one set (the same networks and settings) as one."""
    return Samples(a.graphs, a.settings, np.concatenate([a.graph, b.graph]), np.concatenate([a.setting, b.setting]),
                   np.concatenate([a.latency_ms, b.latency_ms]), a.source, a.families)


def pick_anchors(samples: Samples, n: int = 64, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """(graph indices, the runtime each was drawn for) of n training networks the GNN's level is anchored on
    (`Predictor._offsets`), drawn evenly over the runtimes the samples were measured in, each from the
    networks measured in it. The trees place a runtime's level where they have seen networks in it: NAS-
    Bench-201 cells in ONNX Runtime on a machine whose ONNX Runtime data is the zoo's are extrapolation,
    and anchoring a query there on them moved every answer 4x off (`bench/predict_here.py`)."""
    rng = np.random.default_rng(seed)
    runtime = np.array([s.runtime.lower() for s in samples.settings], dtype=object)[samples.setting]
    names = runtimes(samples) or [""]
    picks: list[int] = []
    tags: list[str] = []
    for k, name in enumerate(names):
        pool = np.setdiff1d(np.unique(samples.graph[runtime == name] if name else samples.graph), picks)
        chosen = rng.choice(pool, min((n - len(picks)) // (len(names) - k), len(pool)), replace=False)
        picks += chosen.tolist()
        tags += [name] * len(chosen)
    order = np.argsort(picks)
    return np.array(picks, dtype=np.int64)[order], [tags[i] for i in order]


# Networks with a kind of int8 kernel that training needs before that kind counts as learned: one or two
# show the GNN too little of how a kernel unlike the others costs (two small ConvInteger networks left it
# answering ResNet-18's at a tenth of its time), and the answer is widened instead.
KIND_MIN_NETWORKS = 3


def runtime_info(samples: Samples) -> dict[str, list[str]]:
    """What a checkpoint's info says its training data covers: the runtimes, the thread counts it ran each
    with on each processor (`runtime_threads`), those in which it had int8 networks (`GraphSet.integer`),
    and the kinds of int8 kernel it learned in each ("runtime/kind", `GraphSet.int8_kinds`: those
    KIND_MIN_NETWORKS networks or more had)."""
    kinds = samples.graphs.int8_kinds()
    integer = samples.graphs.integer()[samples.graph]
    networks: dict[str, set[int]] = {}
    for g, s in set(zip(samples.graph[integer].tolist(), samples.setting[integer].tolist())):
        for kind in kinds[g]:
            networks.setdefault(f"{samples.settings[s].runtime.lower()}/{kind}", set()).add(g)
    return {"runtimes": runtimes(samples), "runtime_targets": runtime_targets(samples),
            "runtime_threads": runtime_threads(samples), "integer_runtimes": runtimes(samples.where(integer)),
            "integer_kernels": sorted(k for k, seen in networks.items() if len(seen) >= KIND_MIN_NETWORKS)}


def runtimes(samples: Samples) -> list[str]:
    """The runtimes the samples were measured in ("" and "unknown" not counted)."""
    used = {samples.settings[i].runtime.lower() for i in np.unique(samples.setting)}
    return sorted(used - {"", "unknown"})


def runtime_targets(samples: Samples) -> list[str]:
    """The runtimes the samples were measured in, each with the processor it ran on ("runtime/target"): a
    runtime's CPU kernels teach nothing of its GPU ones (ONNX Runtime's CUDA provider launches a kernel per
    operator where its CPU one calls MLAS in the same thread)."""
    used = {runtime_target(samples.settings[i]) for i in np.unique(samples.setting)}
    return sorted(k for k in used if k.split("/")[0] not in ("", "unknown"))


def runtime_threads(samples: Samples) -> list[str]:
    """The thread counts each runtime ran with on each processor ("runtime/target/threads"; 0: not given,
    the runtime's default): a count it never ran with is answered at the nearest it did
    (`models.Predictor.at_trained_threads`)."""
    used = {f"{runtime_target(samples.settings[i])}/{max(samples.settings[i].threads, 0)}"
            for i in np.unique(samples.setting)}
    return sorted(k for k in used if k.split("/")[0] not in ("", "unknown"))


def evaluate(samples: Samples, split: str, cfg: TrainConfig, seed: int = 0, devices: list[str] | None = None,
             say=lambda _: None, shots: int = 0, families: list[str] | None = None) -> list[dict]:
    """Rows of {held_out, predictor, scores, coverage}, per held-out device (or family).

    Intervals are scored as answers carry them: widened where the training data has no sample of the
    runtime, or of int8 networks in it (`Predictor.widened`). shots K > 0: in every held-out setting, K of
    its networks are measured (drawn at random) and the rest predicted; each predictor is scored
    zero-shot and calibrated on the K (`fewshot.py`), on the same networks (the K excluded from both)."""
    if split not in SPLITS:
        raise InvalidInput(f"split {split!r} is not one of {', '.join(SPLITS)}")
    if shots < 0:
        raise InvalidInput(f"--shots must not be negative, got {shots}")
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
            rows += _said(_score_all(name, test, fit_all(train, cfg, seed, say), shots, seed), say)
    elif split == "leave-family-out":
        family = samples.family_of()
        present = sorted(set(family))
        folds = families or present
        unknown = [f for f in folds if f not in present]
        if unknown or len(present) < 2:
            raise InvalidInput(f"leave-family-out needs data of two families or more and held-out ones among them "
                               f"(families in the data: {', '.join(present)})")
        for name in folds:
            say(f"held out: the {name} family (trained on {', '.join(f for f in present if f != name)})")
            train, test = samples.where(family != name), samples.where(family == name)
            predictor = fit_all(train, cfg, seed, say)
            test_device = test.device_of()
            for dev in sorted(set(test_device)):
                rows += _said(_score_all(f"{name}: {dev}", test.where(test_device == dev), predictor, shots, seed),
                              say)
    else:
        train, test = calibration_split(samples, share=0.2, seed=seed + 1)
        say(f"held out: {len(np.unique(test.graph))} networks (one in five), on every device")
        predictor = fit_all(train, cfg, seed, say)
        test_device = test.device_of()
        for name in sorted(set(test_device)):
            rows += _score_all(name, test.where(test_device == name), predictor, shots, seed)
    return rows


def _said(rows: list[dict], say) -> list[dict]:
    """A fold's rows, said as they come (a long evaluation shows its folds before its table)."""
    for r in rows:
        say("  " + row_line(r))
    return rows


def _score_all(name: str, test: Samples, predictor: Predictor, shots: int = 0, seed: int = 0) -> list[dict]:
    if shots:
        return _score_shots(name, test, predictor, shots, seed)
    y = np.log(test.latency_ms)
    unknown = np.logical_or(*predictor.unlearned(test))
    rows = []
    for p in PREDICTORS:
        mean, lo, hi = predictor.predict(test, p)
        lo, hi = predictor.widened(test, mean, lo, hi, unknown)  # as answered (`commands.answer`)
        coverage = 100 * float(np.mean((y >= lo) & (y <= hi))) if p != "roofline" else math.nan
        rows.append({"held_out": name, "predictor": p, "scores": score(mean, test.latency_ms),
                     "coverage": coverage})
    return rows


def _score_shots(name: str, test: Samples, predictor: Predictor, shots: int, seed: int) -> list[dict]:
    """Per setting: K networks drawn as shots, the rest predicted zero-shot and calibrated."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list] = {}
    for s in np.unique(test.setting):
        rows = np.flatnonzero(test.setting == s)
        if len(rows) <= shots:
            continue
        pick = np.zeros(len(test), bool)
        pick[rng.choice(rows, shots, replace=False)] = True
        rest = test.where((test.setting == s) & ~pick)
        shot_samples = test.where(pick)
        no_runtime, no_int8 = predictor.unlearned(rest)
        integer = rest.graphs.integer()[rest.graph]
        for p in PREDICTORS:
            zero = predictor.predict(rest, p)
            zero = (zero[0], *predictor.widened(rest, *zero, no_runtime | no_int8))
            cal = predictor.calibration(shot_samples, p)
            tuned = predictor.predict_calibrated(rest, cal, p, zero_shot=zero[0])
            # a calibration answers for the runtime itself, not for int8 kernels it never saw (as answered)
            tuned = (tuned[0], *predictor.widened(rest, *tuned, no_int8 | (no_runtime & integer)))
            for label, (mean, lo, hi) in ((p, zero), (f"{p}+{shots}", tuned)):
                parts.setdefault(label, []).append((mean, lo, hi, rest.latency_ms))
    out = []
    for label, got in parts.items():
        mean, lo, hi, lat = (np.concatenate([g[i] for g in got]) for i in range(4))
        y = np.log(lat)
        coverage = math.nan if label == "roofline" else 100 * float(np.mean((y >= lo) & (y <= hi)))
        out.append({"held_out": name, "predictor": label, "scores": score(mean, lat), "coverage": coverage})
    return out


HEADER = (f"{'held out':28s} {'predictor':12s} {'MAPE %':>8s} {'±10 %':>7s} {'Spearman':>9s} {'R² log':>7s} "
          f"{'n':>6s} {'80% int.':>8s}")


def row_line(r: dict) -> str:
    s = r["scores"]
    cov = "" if math.isnan(r["coverage"]) else f"{r['coverage']:.0f} %"
    return (f"{r['held_out'][:28]:28s} {r['predictor']:12s} {s.mape:8.1f} {s.within10:7.1f} "
            f"{s.spearman:9.3f} {s.r2_log:7.3f} {s.n:6d} {cov:>8s}")


def table(rows: list[dict]) -> str:
    """The per-device table, then the mean over held-out devices per predictor."""
    lines = [HEADER] + [row_line(r) for r in rows]
    lines.append("")
    lines.append("mean over held-out devices:")
    for p in dict.fromkeys(r["predictor"] for r in rows):
        mine = [r for r in rows if r["predictor"] == p]
        sc = [r["scores"] for r in mine]
        cov = np.array([r["coverage"] for r in mine], dtype=float)
        cov_text = f"{np.nanmean(cov):.0f} %" if np.any(~np.isnan(cov)) else ""
        lines.append(f"{'':28s} {p:12s} {np.mean([s.mape for s in sc]):8.1f} "
                     f"{np.mean([s.within10 for s in sc]):7.1f} {np.nanmean([s.spearman for s in sc]):9.3f} "
                     f"{np.nanmean([s.r2_log for s in sc]):7.3f} {'':6s} {cov_text:>8s}")
    return "\n".join(lines)
