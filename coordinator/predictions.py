"""The coordinator's predictor: trained on its own cells, kept as numbered versions, served on the admin API.

Training data: every imported cell and every trusted cell, and fleet cells once they are published
(k distinct devices); simulated cells never. A cell gives (its model's ONNX bytes, the spec sheet of
its hardware class, its setting, its mean latency). Each version keeps its evaluation on networks held
out of its training, so versions can be compared before one is trusted.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from edgeatlas.coordinator.store import Store, now_ms
from edgeatlas.coordinator.tables import PredictorRow
from edgeatlas.protos import onnx_model
from edgeatlas.protos.errors import Conflict, InvalidInput
from edgeatlas.protos.records import Setting
from edgeatlas.protos.spec import SpecSheet
from edgeatlas.protos.wire import CHUNK_BYTES

MIN_CELLS = 20



def training_cells(store: Store, min_devices: int, simulated: bool = False) -> list[tuple[str, str, Setting, float]]:
    """(model sha256, hardware class, setting, mean latency ms) of every cell fit to learn from.

    simulated: only the simulated fleet's cells instead, published or not (an adaptive campaign on
    virtual devices learns from them; no predictor version ever does).
    """
    out = []
    onnx = {m.sha256 for m in store.list_models() if m.format == "onnx"}
    for view in store.heatmap(min_devices=1 if simulated else min_devices):
        cell = view.cell
        if (cell.source == "simulated") != simulated or view.suppressed or cell.model_sha256 not in onnx:
            continue
        setting = Setting(**json.loads(cell.setting_json))
        # The predictor reads ONNX graphs and learns one query's latency: LLM cells and the queueing
        # of server or the overlap of offline runs are not that.
        if setting.runtime == "llama.cpp" or setting.scenario in ("multi-stream", "server", "offline"):
            continue
        est = view.estimates.get("latency_mean_ms") or view.estimates.get("latency_p50_ms")
        if est is None or not (est.value > 0 and math.isfinite(est.value)):
            continue
        out.append((cell.model_sha256, cell.hardware_class, setting, est.value))
    return out


def class_fingerprint(store: Store, min_devices: int, hardware_class: str, setting: Setting):
    """A hardware class's fingerprint from its cells: its published or imported cells of the reference
    networks (`edgeatlas models build --reference --upload`, then a campaign) in the query's setting; None
    below four float ones. Private cells count once they are published (k devices and more), like any cell."""
    from edgeatlas.predictor.fingerprint import INT8_NAMES, NAMES, Fingerprint, reference_sha256

    names = {reference_sha256(n): n for n in NAMES}
    want = (setting.target, max(setting.batch, 1), setting.threads, setting.runtime)
    found = {names[sha]: ms for sha, hw, s, ms in training_cells(store, min_devices)
             if sha in names and hw == hardware_class and (s.target, max(s.batch, 1), s.threads, s.runtime) == want}
    if len(set(found) - set(INT8_NAMES)) < 4:  # the int8 ones calibrate int8 networks only
        return None
    return Fingerprint(latency_ms=found, runtime=setting.runtime, threads=setting.threads, batch=want[1],
                       target=setting.target, device=hardware_class)


def _model_bytes(store: Store, sha256: str) -> bytes:
    return b"".join(store.blob_chunks(sha256))


def setting_info(hw: str, spec: SpecSheet, setting: Setting):
    """The predictor's view of one hardware class in one setting."""
    from edgeatlas.predictor.data import SettingInfo

    key = (hw, setting.target, setting.batch, setting.threads, setting.runtime)
    return SettingInfo(key="/".join(map(str, key)), device=spec.name or hw, spec=spec, target=setting.target,
                       batch=setting.batch, threads=setting.threads, runtime=setting.runtime)


def graph_of(proto, name: str, inputs_json: str = "", summary_json: str = "{}", runtime: str = ""):
    """The operator graph of a model at its input spec's shapes, with the tensor shapes, If branches, loop
    iterations and detection work its summary observed (console/models.prepare) where static inference could
    not tell; for a query in a runtime, as that runtime runs the graph (predictor.graph.runtime_graph)."""
    import json

    from edgeatlas.predictor.graph import runtime_graph
    from edgeatlas.protos import inputs, onnx_model

    specs = inputs.from_json(inputs_json)
    declared, outputs = onnx_model.declared_inputs(proto)
    if specs:
        inputs.check_against(declared, specs, outputs)
    else:  # an unregistered graph sent alone: its own shapes, and a dynamic one is refused in one line
        specs = inputs.resolve(declared, None, outputs, values_needed=False)
    try:
        summary = json.loads(summary_json or "{}")
    except json.JSONDecodeError:
        summary = {}
    shapes, branches, loops, work = (summary.get(key) if isinstance(summary, dict) else None
                                     for key in ("shapes", "branches", "loops", "data_work"))
    branches = {k: v for k, v in branches.items() if isinstance(v, bool)} if isinstance(branches, dict) else None
    loops = {k: v for k, v in loops.items() if type(v) is int} if isinstance(loops, dict) else None
    return runtime_graph(proto, runtime, name=name, specs=specs, shapes=shapes if isinstance(shapes, dict) else None,
                         branches=branches, loops=loops, data_work=work if isinstance(work, dict) else None)


class Graphs:
    """ONNX models of the store as operator graphs (and their stated accuracy), each read once."""

    def __init__(self, store: Store):
        self.store = store
        self._graphs: dict[str, object] = {}
        self._accuracy: dict[str, dict] = {}

    def get(self, sha256: str):
        import onnx

        from edgeatlas.coordinator.tables import ModelRow

        if sha256 not in self._graphs:
            try:
                proto = onnx.load_from_string(_model_bytes(self.store, sha256))
            except Exception as exc:
                raise InvalidInput(f"model {sha256[:12]} is not an ONNX graph ({type(exc).__name__})") from None
            with self.store.session() as s:
                row = s.get(ModelRow, sha256)
            self._graphs[sha256] = graph_of(proto, sha256[:12], row.inputs_json if row else "",
                                            row.summary_json if row else "{}")
            self._accuracy[sha256] = accuracy_of(proto)
        return self._graphs[sha256]

    def accuracy(self, sha256: str) -> float:
        """The model's `accuracy` metadata, 0 when it states none."""
        self.get(sha256)
        return self._accuracy[sha256].get("accuracy", 0.0)


def samples_from_cells(store: Store, cells: list[tuple[str, str, Setting, float]], graphs: Graphs | None = None):
    """Samples of the cells whose hardware class has a spec sheet (a candidate not yet measured carries a
    placeholder latency)."""
    from edgeatlas.predictor.data import GraphSet, Samples

    graphs = graphs or Graphs(store)
    specs = store.hardware_specs()
    models, graph_index, settings, setting_index = [], {}, [], {}
    g_idx, s_idx, lat = [], [], []
    for sha, hw, setting, latency in cells:
        spec = specs.get(hw)
        if spec is None:
            continue
        if sha not in graph_index:
            models.append(graphs.get(sha))
            graph_index[sha] = len(models) - 1
        info = setting_info(hw, spec, setting)
        if info.key not in setting_index:
            settings.append(info)
            setting_index[info.key] = len(settings) - 1
        g_idx.append(graph_index[sha])
        s_idx.append(setting_index[info.key])
        lat.append(latency)
    if not lat:
        return None
    return Samples(GraphSet.from_graphs(models), settings, np.array(g_idx), np.array(s_idx),
                   np.array(lat, dtype=np.float64), source="coordinator")


def samples_from_store(store: Store, min_devices: int):
    samples = samples_from_cells(store, training_cells(store, min_devices))
    n, networks = (len(samples), len(samples.graphs)) if samples is not None else (0, 0)
    if n < MIN_CELLS or networks < 2:
        raise InvalidInput(f"the predictor needs at least {MIN_CELLS} published or imported cells over 2 models; "
                           f"the heat-map has {n} over {networks}")
    return samples


def hold_out_networks(samples):
    """(kept, held out): a fifth of the networks (at least one) held out on every device, the same each time."""
    n = len(samples.graphs)
    held = np.zeros(n, dtype=bool)
    held[np.random.default_rng(7).permutation(n)[:max(1, round(0.2 * n))]] = True
    return samples.where(~held[samples.graph]), samples.where(held[samples.graph])


class Predictors:
    """Training (one at a time) and serving (each version loaded once, then kept in memory) for one coordinator."""

    def __init__(self, store: Store, min_devices: int):
        self.store = store
        self.min_devices = min_devices
        self._train_lock = threading.Lock()
        self._loaded: dict[int, object] = {}

    def cells_now(self) -> int:
        return len(training_cells(self.store, self.min_devices))

    def cells_at_newest(self) -> int:
        versions = self.store.predictors()
        return versions[-1].cells if versions else 0

    def train(self, trigger: str, members: int = 0, epochs: int = 0) -> PredictorRow:
        from edgeatlas.predictor.evaluate import fit_all, score
        from edgeatlas.predictor.models import TrainConfig

        if not self._train_lock.acquire(blocking=False):
            raise Conflict("a predictor is being trained already")
        try:
            start = time.monotonic()
            samples = samples_from_store(self.store, self.min_devices)
            cfg = TrainConfig(members=members or 2, epochs=epochs or 4)
            # Evaluation first: a fifth of the networks held out, every predictor scored on them.
            train, test = hold_out_networks(samples)
            evaluation = {}
            if len(train) >= MIN_CELLS // 2 and len(test):
                probe = fit_all(train, cfg)
                for which in ("roofline", "tabular", "gnn"):
                    evaluation[which] = asdict(score(probe.predict(test, which)[0], test.latency_ms))
            predictor = fit_all(samples, cfg)
            predictor.info = {**predictor.info, "trained_on": "coordinator", "cells": len(samples),
                              "devices": samples.devices()}
            with tempfile.NamedTemporaryFile(suffix=".pt") as f:
                predictor.save(f.name)
                blob = Path(f.name).read_bytes()
            sha = hashlib.sha256(blob).hexdigest()
            self.store.put_blob(sha, len(blob),
                                (blob[i:i + CHUNK_BYTES] for i in range(0, len(blob), CHUNK_BYTES)))
            row = self.store.add_predictor(PredictorRow(
                created_ms=now_ms(), trigger=trigger, checkpoint_sha256=sha, size_bytes=len(blob),
                cells=len(samples), networks=len(samples.graphs), devices=len(samples.devices()),
                evaluation_json=json.dumps(evaluation, allow_nan=True),
                train_seconds=round(time.monotonic() - start, 1), runtimes=runtimes_text(predictor)))
            self._loaded[row.version] = predictor
            return row
        finally:
            self._train_lock.release()

    def hardware_standardization(self) -> tuple[list[float], list[float]]:
        """Mean and spread of the spec features of the settings the coordinator's cells cover: the scale that
        a federated run's devices and the version it makes share."""
        samples = samples_from_store(self.store, self.min_devices)
        hw = np.stack([s.features for s in samples.settings])[np.unique(samples.setting)]
        return hw.mean(0).tolist(), (hw.std(0) + 1e-3).tolist()

    def from_federated(self, outcome, plan, trigger: str) -> PredictorRow:
        """A version from a federated run's GNN weights: scored, anchored and calibrated on the coordinator's
        own cells (a fifth of their networks held out), its privacy spent recorded beside it."""
        from edgeatlas.predictor.evaluate import runtime_info, score
        from edgeatlas.predictor.gnn import GNNConfig
        from edgeatlas.predictor.models import GNNEnsemble, Predictor, Tabular, interval_halves, zero_shot_info

        start = time.monotonic()
        fit, held = hold_out_networks(samples_from_store(self.store, self.min_devices))  # ≥ 2 networks
        gnn = GNNEnsemble(states=[outcome.state], hw_mean=np.array(plan.hw_mean), hw_std=np.array(plan.hw_std),
                          config={"gnn": GNNConfig().__dict__, "train": {"federated": json.loads(plan.to_json())}})
        gnn.half_width, gnn.half_widths = interval_halves(gnn.predict(held)[0], held)
        pool = np.unique(fit.graph)
        anchors = fit.graphs.subset(np.sort(np.random.default_rng(7).choice(pool, min(64, len(pool)), replace=False)))
        predictor = Predictor(tabular=Tabular().fit(fit, held), gnn=gnn, anchors=anchors)
        evaluation = {which: asdict(score(predictor.predict(held, which)[0], held.latency_ms))
                      for which in ("roofline", "tabular", "gnn", "gnn-raw")}
        rounds = [r.__dict__ for r in outcome.rounds]
        privacy = {"delta": plan.delta, "devices": plan.clients, "rounds": rounds,
                   "epsilon_measurement": rounds[-1]["epsilon_measurement"] if rounds else 0.0,
                   "epsilon_device": rounds[-1]["epsilon_device"] if rounds else 0.0}
        predictor.info = {"trained_on": "federated", "devices": plan.clients, "privacy": privacy,
                          **runtime_info(fit), **zero_shot_info(fit, anchors)}
        with tempfile.NamedTemporaryFile(suffix=".pt") as f:
            predictor.save(f.name)
            blob = Path(f.name).read_bytes()
        sha = hashlib.sha256(blob).hexdigest()
        self.store.put_blob(sha, len(blob), (blob[i:i + CHUNK_BYTES] for i in range(0, len(blob), CHUNK_BYTES)))
        row = self.store.add_predictor(PredictorRow(
            created_ms=now_ms(), trigger=trigger, checkpoint_sha256=sha, size_bytes=len(blob), cells=0,
            networks=0, devices=plan.clients, evaluation_json=json.dumps(evaluation, allow_nan=True),
            train_seconds=round(time.monotonic() - start, 1), privacy_json=json.dumps(privacy),
            runtimes=runtimes_text(predictor)))
        self._loaded[row.version] = predictor
        return row

    def publish(self, blob: bytes) -> PredictorRow:
        """A checkpoint trained elsewhere becomes the newest version; nothing is stored unless it loads."""
        from edgeatlas.predictor.models import Predictor

        with tempfile.NamedTemporaryFile(suffix=".pt") as f:
            f.write(blob)
            f.flush()
            predictor = Predictor.load(f.name, "the published checkpoint")  # InvalidInput unless it is one
        sha = hashlib.sha256(blob).hexdigest()
        self.store.put_blob(sha, len(blob), (blob[i:i + CHUNK_BYTES] for i in range(0, len(blob), CHUNK_BYTES)))
        info = predictor.info or {}
        devices = info.get("devices") or []
        row = self.store.add_predictor(PredictorRow(
            created_ms=now_ms(), trigger="published", checkpoint_sha256=sha, size_bytes=len(blob),
            cells=int(info.get("measurements") or info.get("cells") or 0), networks=int(info.get("networks") or 0),
            devices=len(devices) if isinstance(devices, list) else 0, evaluation_json="{}",
            train_seconds=float(info.get("seconds") or 0), runtimes=runtimes_text(predictor)))
        self._loaded[row.version] = predictor
        return row

    def _get(self, version: int):
        from edgeatlas.predictor.models import Predictor

        row = self.store.predictor(version)
        if row.version not in self._loaded:
            blob = b"".join(self.store.blob_chunks(row.checkpoint_sha256))
            with tempfile.NamedTemporaryFile(suffix=".pt") as f:
                f.write(blob)
                f.flush()
                # named by its version: one stored before an upgrade of the format is refused as that
                self._loaded[row.version] = Predictor.load(f.name, f"predictor v{row.version}")
        return row, self._loaded[row.version]

    def predict(self, spec_json: str, model: str | bytes, target: str, batch: int, threads: int, runtime: str,
                version: int, inputs_json: str = "", fingerprint_json: str = "") -> dict:
        """model: a registered model's name or sha256 prefix, or the bytes of an ONNX graph (not stored) with
        its input spec (`inputs_json`); fingerprint_json: a device's fingerprint to calibrate the answer on."""
        import onnx

        from edgeatlas.predictor.commands import answer
        from edgeatlas.predictor.data import GraphSet, Samples
        from edgeatlas.predictor.fingerprint import Fingerprint

        row, predictor = self._get(version)
        spec = SpecSheet.from_json(spec_json, "spec_json")
        fingerprint, fingerprint_from = None, ""
        if fingerprint_json:
            fingerprint = Fingerprint.from_json(fingerprint_json, "fingerprint_json")
            fingerprint.check_setting(target or "cpu", batch, threads, runtime)
        if isinstance(model, bytes):
            name, data, summary_json = "uploaded", model, "{}"
        else:
            found = self.store.resolve_models([model])[0]
            if found.format != "onnx":
                raise InvalidInput(f"model {found.name} is {found.format}; the predictor reads ONNX graphs")
            name, data = found.name, _model_bytes(self.store, found.sha256)
            inputs_json, summary_json = found.inputs_json, found.summary_json
        setting = setting_info("query", spec, Setting(target=target or "cpu", batch=batch, threads=threads,
                                                      runtime=runtime))
        try:
            proto = onnx.load_from_string(data)
            if isinstance(model, bytes):
                name = proto.graph.name or name
            graph = graph_of(proto, name, inputs_json, summary_json, runtime)
        except InvalidInput:
            raise
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise InvalidInput(f"the model is not an ONNX graph the predictor can read: {first[:300]}") from None
        samples = Samples(GraphSet.from_graphs([graph]), [setting], np.zeros(1, np.int64), np.zeros(1, np.int64),
                          np.ones(1))
        if fingerprint is None and runtime:  # the class's own, where its cells hold the reference set
            fingerprint = class_fingerprint(self.store, self.min_devices, spec.hardware_class(target or "cpu"),
                                            Setting(target=target or "cpu", batch=batch, threads=threads,
                                                    runtime=runtime))
            if fingerprint is not None:
                fingerprint_from = f"the fingerprint of {fingerprint.device} from its cells: "
        mean, lo, hi, zero_shot, note = answer(predictor, samples, setting, fingerprint)
        note = (fingerprint_from + note) if fingerprint_from else note
        return {"latency_ms": math.exp(mean[0]), "latency_ms_low": math.exp(lo[0]),
                "latency_ms_high": math.exp(hi[0]), "note": note,
                "zero_shot_latency_ms": math.exp(zero_shot[0]) if fingerprint is not None else 0.0,
                "roofline_latency_ms": math.exp(predictor.predict(samples, "roofline")[0][0]),
                "tabular_latency_ms": math.exp(predictor.predict(samples, "tabular")[0][0]),
                "version": row.version, "model_name": name, "gflops": float(graph.flops.sum()) * max(batch, 1) / 1e9,
                "weight_mb": onnx_model.weight_bytes(proto.graph) / 1e6, **accuracy_of(proto)}


def runtimes_text(predictor) -> str:
    """The checkpoint's runtimes as the version row keeps them, each with its processor ("onnxruntime/cpu")
    where the checkpoint records that; "" where it does not say."""
    info = predictor.info or {}
    known = info.get("runtime_targets", info.get("runtimes"))
    return ",".join(str(r)[:40] for r in known[:20]) if isinstance(known, list) else ""


def accuracy_of(proto) -> dict:
    """{"accuracy": x} from an ONNX metadata property `accuracy` that is a number, else {}."""
    for prop in proto.metadata_props:
        if prop.key == "accuracy":
            try:
                return {"accuracy": float(prop.value)}
            except ValueError:
                return {}
    return {}
