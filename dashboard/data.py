"""What the dashboard's pages show, as plain tables: no Streamlit here, so every rule is testable alone.

Everything comes from the coordinator's admin API (protobuf messages in, pandas frames out).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import pandas as pd

from edgeatlas.protos.errors import InvalidInput
from edgeatlas.protos.metrics import METRICS as CATALOGUE
from edgeatlas.protos.records import parse_selector
from edgeatlas.protos.spec import SpecSheet
from edgeatlas.v1 import admin_pb2

# Metric → (label, unit, lower is better), from the catalogue; metrics not in it are shown by their key.
METRICS = {name: (m.label or name, m.unit, m.lower_is_better) for name, m in CATALOGUE.items()}
SOURCES = ("fleet", "trusted", "imported", "simulated")
SOURCE_MARKS = {"fleet": "", "trusted": " ·trusted", "imported": " ·imported", "simulated": " ·simulated"}
CELL_COLUMNS = ["model", "hardware_class", "device_class", "source", "mode", "setting", "target", "runtime", "batch",
                "threads", "n_devices", "n_reports", "suppressed", "min_devices", "privacy", "citation"]


def cell_mode(source: str, privacy: str) -> str:
    """What a cell's values rest on: secure, ldp, trusted, imported or simulated (DESIGN.md, privacy model)."""
    if source in ("imported", "simulated", "trusted"):
        return source
    word = privacy.split(" ", 1)[0]
    return word if word in ("secure", "ldp") else privacy or source


def metric_label(metric: str) -> str:
    label, unit, _ = METRICS.get(metric, (metric, "", True))
    return f"{label} ({unit})" if unit else label


def cells_frame(heatmap: admin_pb2.Heatmap, hardware: list[admin_pb2.HardwareInfo] = ()) -> pd.DataFrame:
    """One row per cell and metric; a suppressed cell is one row with metric None and no value."""
    device_class = {h.hardware_class: h.device_class for h in hardware}
    rows = []
    for c in heatmap.cells:
        base = {"model": c.model_name, "hardware_class": c.hardware_class,
                "device_class": device_class.get(c.hardware_class, "") or "unknown", "source": c.source,
                "mode": cell_mode(c.source, c.privacy),
                "setting": c.setting_key, "target": c.setting.target, "runtime": c.setting.runtime,
                "batch": c.setting.batch, "threads": c.setting.threads, "n_devices": c.n_devices,
                "n_reports": c.n_reports, "suppressed": c.suppressed, "min_devices": c.min_devices,
                "privacy": c.privacy or ("exact (published)" if c.source == "imported" else ""),
                "citation": c.citation}
        if c.suppressed or not c.metrics:
            rows.append({**base, "metric": None, "value": math.nan, "low": math.nan, "high": math.nan})
        for name in sorted(c.metrics):
            m = c.metrics[name]
            rows.append({**base, "metric": name, "value": m.value, "low": m.low, "high": m.high})
    return pd.DataFrame(rows, columns=CELL_COLUMNS + ["metric", "value", "low", "high"])


def metrics_in(frame: pd.DataFrame) -> list[str]:
    present = set(frame["metric"].dropna())
    return [m for m in METRICS if m in present] + sorted(present - set(METRICS))


def commonest_metric(frame: pd.DataFrame, metrics: list[str]) -> str:
    """The metric most cells have a value of (the first shown)."""
    counts = frame["metric"].value_counts()
    return max(metrics, key=lambda m: (counts.get(m, 0), -metrics.index(m)))


def classes_by_coverage(frame: pd.DataFrame, metric: str) -> list[str]:
    """Hardware classes, those with values of `metric` for the most models first."""
    have = frame[frame["metric"] == metric].groupby("hardware_class")["model"].nunique()
    return sorted(frame["hardware_class"].unique(), key=lambda h: (-have.get(h, 0), h))


@dataclass
class Filters:
    sources: tuple[str, ...] = ()       # empty: all
    device_classes: tuple[str, ...] = ()
    runtimes: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    models: tuple[str, ...] = ()        # a campaign's: its models,
    hardware_classes: tuple[str, ...] = ()  # the classes of the devices it ran on,
    batch: int = 0                      # and its batch and threads (0: any)
    threads: int | None = None


def for_campaign(f: Filters, campaign: admin_pb2.Campaign) -> Filters:
    """The cells a campaign's reports fold into: its models, on its devices' classes, in its batch/threads."""
    f.models = tuple(campaign.models)
    f.hardware_classes = tuple(campaign.by_hardware)
    f.batch, f.threads = campaign.setting.batch or 1, campaign.setting.threads
    return f


def apply(frame: pd.DataFrame, f: Filters) -> pd.DataFrame:
    keep = pd.Series(True, index=frame.index)
    for column, wanted in (("source", f.sources), ("device_class", f.device_classes), ("runtime", f.runtimes),
                           ("target", f.targets), ("model", f.models), ("hardware_class", f.hardware_classes)):
        if wanted:
            keep &= frame[column].isin(wanted)
    if f.batch:
        keep &= frame["batch"] == f.batch
    if f.threads is not None:
        keep &= frame["threads"] == f.threads
    return frame[keep]


def column_label(row) -> str:
    """The heat-map column: hardware class, marked by where its numbers come from."""
    return f"{row.hardware_class}{SOURCE_MARKS.get(row.source, ' ·' + row.source)}"


@dataclass
class Matrix:
    models: list[str]
    columns: list[str]
    z: list[list[float]]          # log10 of the value; NaN where nothing (or suppressed)
    text: list[list[str]]         # what each cell says
    hover: list[list[str]]


def matrix(frame: pd.DataFrame, metric: str) -> Matrix:
    """Models × hardware columns for one metric. Several settings in one cell: the first (batch 1 first)."""
    rows = frame[(frame["metric"] == metric) | frame["suppressed"]].copy()
    rows = rows.sort_values(["batch", "threads", "setting"], kind="stable")
    rows["column"] = [column_label(r) for r in rows.itertuples()]
    rows = rows.drop_duplicates(["model", "column"], keep="first")
    models = sorted(rows["model"].unique())
    columns = sorted(rows["column"].unique(), key=lambda c: (c.split(" ·")[1] if " ·" in c else "", c))
    unit = METRICS.get(metric, ("", "", True))[1]
    z = [[math.nan] * len(columns) for _ in models]
    text = [[""] * len(columns) for _ in models]
    hover = [[f"{m}<br>{c}<br>no measurement" for c in columns] for m in models]
    mi, ci = {m: i for i, m in enumerate(models)}, {c: j for j, c in enumerate(columns)}
    for r in rows.itertuples():
        i, j = mi[r.model], ci[r.column]
        where = (f"{r.model}<br>{r.hardware_class} ({r.device_class})<br>source: {r.source}<br>setting: {r.setting}"
                 f"<br>devices: {r.n_devices}, reports: {r.n_reports}<br>privacy: {r.privacy or '—'}")
        if r.suppressed:
            text[i][j] = f"k<{r.min_devices}"
            hover[i][j] = f"{where}<br>suppressed: {r.n_devices} of the {r.min_devices} devices k-anonymity needs"
            continue
        z[i][j] = math.log10(r.value) if r.value > 0 else math.nan
        text[i][j] = fmt(r.value)
        interval = f" (95 % CI {fmt(r.low)}–{fmt(r.high)})" if not math.isnan(r.low) else ""
        cite = f"<br>cited: {r.citation[:80]}" if r.citation else ""
        hover[i][j] = f"{where}<br>{metric_label(metric)}: {fmt(r.value)} {unit}{interval}{cite}"
    return Matrix(models, columns, z, text, hover)


def fmt(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"


def export_csv(frame: pd.DataFrame) -> str:
    out = frame.copy()
    out["suppressed"] = out["suppressed"].astype(bool)
    return out.to_csv(index=False)


# ---- fleet ------------------------------------------------------------------------------------------
def agents_frame(agents: list[admin_pb2.AgentInfo], now_ms: int) -> pd.DataFrame:
    rows = [{"name": a.name, "device_class": a.device_class or "unknown", "hardware_class": a.hardware_class,
             "status": "online" if a.online else "offline", "state": a.state, "simulated": a.simulated,
             "last_seen_s": max(0, (now_ms - a.last_seen_ms) // 1000), "tasks_done": a.tasks_done,
             "epsilon_24h": a.epsilon_24h, "releases_24h": a.releases_24h, "agent_id": a.agent_id}
            for a in agents]
    return pd.DataFrame(rows, columns=["name", "device_class", "hardware_class", "status", "state", "simulated",
                                       "last_seen_s", "tasks_done", "epsilon_24h", "releases_24h", "agent_id"])


def composition(agents: pd.DataFrame) -> pd.DataFrame:
    """Devices per device class, online and offline."""
    if agents.empty:
        return pd.DataFrame(columns=["device_class", "status", "devices"])
    return (agents.groupby(["device_class", "status"]).size().rename("devices").reset_index()
            .sort_values(["device_class", "status"]))


def privacy_by_class(agents: pd.DataFrame) -> pd.DataFrame:
    """ε released per device in the last 24 h, summarised per device class (simulated devices left out)."""
    real = agents[~agents["simulated"]]
    if real.empty:
        return pd.DataFrame(columns=["device_class", "devices", "releases_24h", "mean_epsilon_24h",
                                     "max_epsilon_24h"])
    out = real.groupby("device_class").agg(devices=("agent_id", "count"), releases_24h=("releases_24h", "sum"),
                                           mean_epsilon_24h=("epsilon_24h", "mean"),
                                           max_epsilon_24h=("epsilon_24h", "max")).reset_index()
    return out


# ---- campaigns --------------------------------------------------------------------------------------
STATES = ("pending", "leased", "done", "failed", "declined", "cancelled")


def counts_dict(counts: admin_pb2.TaskCounts) -> dict[str, int]:
    return {s: getattr(counts, s) for s in STATES}


def progress(counts: admin_pb2.TaskCounts) -> float:
    c = counts_dict(counts)
    total = sum(c.values())
    return (c["done"] + c["failed"] + c["declined"] + c["cancelled"]) / total if total else 0.0


def campaigns_frame(campaigns: list[admin_pb2.Campaign]) -> pd.DataFrame:
    rows = [{"id": c.campaign_id, "name": c.name, "status": c.status, "priority": c.priority,
             "models": len(c.models), "agents": c.agents, "progress": round(100 * progress(c.counts)),
             **counts_dict(c.counts),
             "setting": f"b{c.setting.batch} t{c.setting.threads} {c.setting.target}",
             "privacy": (f"{c.privacy.mechanism} ε={c.privacy.epsilon:g}" if c.privacy.mechanism else
                         f"federated DP-SGD ε={c.federated.epsilon:g}/measurement" if c.HasField("federated")
                         else "")}
            for c in sorted(campaigns, key=lambda c: -c.campaign_id)]
    return pd.DataFrame(rows, columns=["id", "name", "status", "priority", "models", "agents", "progress", *STATES,
                                       "setting", "privacy"])


def federated_rounds(campaign: admin_pb2.Campaign) -> pd.DataFrame:
    """A federated-train campaign's rounds: the devices' loss before and after, and the privacy spent so far."""
    rows = [{"round": r.round, "loss before": r.loss_before, "loss after": r.loss_after,
             "ε per measurement": r.epsilon_measurement, "ε per device": r.epsilon_device}
            for r in campaign.federated_rounds]
    return pd.DataFrame(rows, columns=["round", "loss before", "loss after", "ε per measurement", "ε per device"])


def learning_curve(campaign: admin_pb2.Campaign) -> pd.DataFrame:
    """An adaptive campaign's rounds: measurements so far, the validation MAPE then (NaN: too few), cells asked."""
    rows = [{"round": r.round, "measurements": r.measurements, "validation_mape": r.validation_mape,
             "picked": r.picked} for r in campaign.rounds]
    return pd.DataFrame(rows, columns=["round", "measurements", "validation_mape", "picked"])


def hardware_progress(campaign: admin_pb2.Campaign) -> pd.DataFrame:
    rows = [{"hardware_class": hw, "progress": round(100 * progress(c)), **counts_dict(c)}
            for hw, c in sorted(campaign.by_hardware.items())]
    return pd.DataFrame(rows, columns=["hardware_class", "progress", *STATES])


def parse_selectors(text: str) -> dict[str, str]:
    """Selector lines (or comma-separated): KEY=VALUE, KEY>=N, KEY!=VALUE...; one clear error naming the bad one."""
    return dict(parse_selector(part) for part in _parts(text))


def _parts(text: str) -> list[str]:
    return [p for p in (p.strip() for line in text.splitlines() for p in line.split(",")) if p]


def parse_key_values(text: str, what: str, example: str) -> dict[str, str]:
    """KEY=VALUE lines (or comma-separated); one clear error naming the bad one."""
    out = {}
    for part in _parts(text):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise InvalidInput(f"{what} {part!r} is not KEY=VALUE (e.g. {example})")
        out[key.strip()] = value.strip()
    return out


def parse_scenario(scenario: str, text: str) -> dict[str, str]:
    """Scenario parameters as typed (KEY=VALUE), checked against the scenario's contract."""
    from edgeatlas.protos import scenarios

    params = parse_key_values(text, "scenario parameter", "latency_bound_ms=20, prompt_tokens=128")
    scenarios.check(scenario, params)
    return params


# ---- predictor and compare --------------------------------------------------------------------------
def parse_spec(text: str, origin: str = "spec sheet") -> SpecSheet:
    """A pasted or uploaded sheet; InvalidInput names the field and why."""
    if not text or not text.strip():
        raise InvalidInput(f"{origin}: empty; paste YAML or JSON (schema edgeatlas.spec/v1)")
    return SpecSheet.from_text(text, origin)


def uploaded_spec(model: bytes, flags: str) -> str:
    """The input spec of an uploaded ONNX graph (protos/inputs.py, as JSON) from flags typed as on the
    command line ("--input x=batchx3x224x224 --dim seq=128"); InvalidInput names what is missing."""
    import shlex

    import onnx

    from edgeatlas.protos import inputs, onnx_model

    try:
        argv = shlex.split(flags or "")
        proto = onnx.load_from_string(model)
    except ValueError as exc:
        raise InvalidInput(f"input flags: {exc}") from None
    except Exception as exc:  # protobuf's DecodeError
        raise InvalidInput(f"the uploaded file is not an ONNX model ({type(exc).__name__})") from None
    declared, outputs = onnx_model.declared_inputs(proto)
    return inputs.to_json(inputs.resolve(declared, inputs.request_from_argv(argv), outputs, values_needed=False))


RUNTIMES = ("onnxruntime", "pytorch", "tflite", "llama.cpp")


def runtime_coverage(version: admin_pb2.PredictorVersion) -> str:
    """Which runtimes the version's training data covers, and what an answer for another one means."""
    if not version.runtimes:
        return "Its training data does not record the runtimes it was measured in."
    # "runtime/target" entries (a version that records the processor each runtime ran on), or runtimes
    covered = [entry.replace("/", " on ") for entry in version.runtimes]
    missing = [r for r in RUNTIMES if r not in {entry.split("/")[0] for entry in version.runtimes}]
    other = " (or on another processor)" if any("/" in entry for entry in version.runtimes) else ""
    return (f"Its training data covers {', '.join(covered)}"
            + (f"; for {', '.join(missing)}{other} the answer says so and its interval reaches down to the "
               f"roofline, unless a device's fingerprint calibrates it." if missing or other else "."))


def fingerprint_upload(raw: bytes) -> tuple[str, dict | None]:
    """(the JSON text to send, its setting) of an uploaded fingerprint; the setting is None when it is not
    JSON. The coordinator checks everything else."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return "", None
    if not isinstance(data, dict):
        return "", None
    return raw.decode(), {"threads": data.get("threads", 0), "batch": data.get("batch", 1),
                          "runtime": str(data.get("runtime", "onnxruntime"))[:40]}


def predictions_frame(answers: list[tuple[str, admin_pb2.PredictResponse]]) -> pd.DataFrame:
    rows = [{"model": label, "latency_ms": a.latency_ms, "low_ms": a.latency_ms_low, "high_ms": a.latency_ms_high,
             "roofline_ms": a.roofline_latency_ms, "tabular_ms": a.tabular_latency_ms, "gflops": a.gflops,
             "weight_mb": a.weight_mb, "accuracy": a.accuracy if a.HasField("accuracy") else math.nan,
             "zero_shot_ms": a.zero_shot_latency_ms or math.nan, "version": a.version, "note": a.note}
            for label, a in answers]
    return pd.DataFrame(rows, columns=["model", "latency_ms", "low_ms", "high_ms", "zero_shot_ms", "roofline_ms",
                                       "tabular_ms", "gflops", "weight_mb", "accuracy", "version", "note"])


def pareto(frame: pd.DataFrame) -> tuple[str, list[bool]]:
    """(the other axis, on-the-front flags): lower latency against higher accuracy where every model carries
    one, else against lower GFLOPs."""
    use_acc = len(frame) > 0 and frame["accuracy"].notna().all()
    axis = "accuracy" if use_acc else "gflops"
    lat = frame["latency_ms"].tolist()
    other = frame[axis].tolist() if use_acc else [-g for g in frame["gflops"].tolist()]  # higher is better
    front = []
    for i in range(len(lat)):
        dominated = any(lat[j] <= lat[i] and other[j] >= other[i] and (lat[j] < lat[i] or other[j] > other[i])
                        for j in range(len(lat)) if j != i)
        front.append(not dominated)
    return axis, front


def spec_choices(hardware: list[admin_pb2.HardwareInfo]) -> dict[str, str]:
    """label → spec JSON of every known hardware class."""
    out = {}
    for h in hardware:
        label = f"{h.name or h.hardware_class} — {h.hardware_class}"
        out[label] = h.spec_json
    return out


def spec_yaml(spec_json: str) -> str:
    return SpecSheet.from_json(spec_json).to_yaml()


def compare_hardware(frame: pd.DataFrame, metric: str, a: str, b: str) -> pd.DataFrame:
    """Per model: the metric measured on hardware classes a and b (best source each), and b / a."""
    rows = frame[(frame["metric"] == metric) & frame["hardware_class"].isin([a, b])]
    rows = rows.sort_values(["batch", "threads", "setting"], kind="stable")
    rows = rows.drop_duplicates(["model", "hardware_class"], keep="first")
    wide = rows.pivot(index="model", columns="hardware_class", values="value")
    src = rows.pivot(index="model", columns="hardware_class", values="source")
    out = pd.DataFrame(index=wide.index)
    out[f"{a} measured"] = wide.get(a)
    out[f"{a} source"] = src.get(a)
    out[f"{b} measured"] = wide.get(b)
    out[f"{b} source"] = src.get(b)
    out["ratio b/a"] = out[f"{b} measured"] / out[f"{a} measured"]
    return out.reset_index()


def compare_models(frame: pd.DataFrame, metric: str, a: str, b: str) -> pd.DataFrame:
    """Per hardware column: the metric for models a and b, and b / a."""
    rows = frame[(frame["metric"] == metric) & frame["model"].isin([a, b])].copy()
    rows["column"] = [column_label(r) for r in rows.itertuples()]
    rows = rows.sort_values(["batch", "threads", "setting"], kind="stable")
    rows = rows.drop_duplicates(["model", "column"], keep="first")
    wide = rows.pivot(index="column", columns="model", values="value")
    out = pd.DataFrame(index=wide.index)
    out[f"{a}"] = wide.get(a)
    out[f"{b}"] = wide.get(b)
    out["ratio b/a"] = out[b] / out[a]
    return out.reset_index().rename(columns={"column": "hardware"})


def evaluation_summary(version: admin_pb2.PredictorVersion) -> str:
    figures = json.loads(version.evaluation_json or "{}")
    return ", ".join(f"{k}: MAPE {f['mape']:.1f} %" for k, f in figures.items() if "mape" in f)
