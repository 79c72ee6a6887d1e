"""One heat-map record, many views: long table, model × hardware matrix, CSV, JSON."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass

from edgeatlas.protos.errors import InvalidInput
from edgeatlas.protos.metrics import METRICS
from edgeatlas.v1 import admin_pb2

METRIC_UNITS = {name: metric.unit for name, metric in METRICS.items()}
# Beside latency and throughput, the summary names what else a cell knows, briefly.
EXTRA_METRICS = (("ttft_ms", "TTFT"), ("decode_tps", "decode"), ("energy_mj", ""), ("server_qps", "server"))
SUMMARY_METRICS = ("latency_p50_ms", "latency_p99_ms", "throughput_ips")


@dataclass(frozen=True)
class FlatCell:
    model: str
    hardware_class: str
    setting: str
    source: str
    n_devices: int
    n_reports: int
    metric: str
    value: float
    low: float
    high: float


def flatten(heatmap: admin_pb2.Heatmap) -> list[FlatCell]:
    rows = []
    for cell in heatmap.cells:
        if cell.suppressed:
            rows.append(FlatCell(cell.model_name, cell.hardware_class, cell.setting_key, cell.source,
                                 cell.n_devices, cell.n_reports, "suppressed", math.nan, math.nan, math.nan))
        for metric in sorted(cell.metrics):
            m = cell.metrics[metric]
            rows.append(FlatCell(cell.model_name, cell.hardware_class, cell.setting_key, cell.source,
                                 cell.n_devices, cell.n_reports, metric, m.value, m.low, m.high))
    return rows


def _num(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if value < 1 else f"{value:.2f}"


def _table(header: list[str], rows: list[list[str]], text_columns: int = 1) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)] if rows else [len(h) for h in header]
    def line(cells):
        return "  ".join(str(c).ljust(w) if i < text_columns else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _batch_threads(setting_key: str) -> list[str]:
    """The batch and threads parts of a setting key, e.g. ['b1', 't1'] ('b?' where unpublished)."""
    return [p for p in setting_key.split("/") if p[:1] in ("b", "t") and p[1:].replace("?", "").isdigit()
            or p in ("b?", "t?")]


def _columns(heatmap: admin_pb2.Heatmap) -> dict[tuple[str, str, str], str]:
    """(hardware class, setting, source) → column label, short where the class alone is unique."""
    keys = sorted({(c.hardware_class, c.setting_key, c.source) for c in heatmap.cells})
    per_class: dict[str, int] = {}
    for hw, _, _ in keys:
        per_class[hw] = per_class.get(hw, 0) + 1
    labels = {}
    for hw, setting, source in keys:
        short = "/".join(_batch_threads(setting))
        labels[(hw, setting, source)] = hw if per_class[hw] == 1 else f"{hw} [{short} {source}]"
    return labels


def matrix(heatmap: admin_pb2.Heatmap, metric: str) -> str:
    """Models × hardware classes for one metric."""
    if metric not in METRIC_UNITS:
        raise InvalidInput(f"metric {metric!r} is not one of {', '.join(METRIC_UNITS)}")
    labels = _columns(heatmap)
    columns = sorted(set(labels.values()))
    models: dict[str, dict[str, str]] = {}
    for cell in heatmap.cells:
        label = labels[(cell.hardware_class, cell.setting_key, cell.source)]
        if cell.suppressed:
            models.setdefault(cell.model_name, {})[label] = f"<k ({cell.n_devices})"
        elif metric in cell.metrics:
            models.setdefault(cell.model_name, {})[label] = _num(cell.metrics[metric].value)
    header = [f"{metric} ({METRIC_UNITS[metric]})"] + columns
    return _table(header, [[m] + [vals.get(c, "") for c in columns] for m, vals in sorted(models.items())])


def by_hardware(heatmap: admin_pb2.Heatmap, metric: str, models: list[str] | None = None) -> str:
    """Hardware classes (with setting and source) × models, for one metric: the tall view of the matrix."""
    if metric not in METRIC_UNITS:
        raise InvalidInput(f"metric {metric!r} is not one of {', '.join(METRIC_UNITS)}")
    cells = [c for c in heatmap.cells if metric in c.metrics and (models is None or c.model_name in models)]
    columns = models or sorted({c.model_name for c in cells})
    rows: dict[tuple[str, str, str], dict[str, str]] = {}
    for c in cells:
        runtime = c.setting_key.split("/")[1]
        key = (c.hardware_class, f"{runtime} {' '.join(_batch_threads(c.setting_key))}", c.source)
        rows.setdefault(key, {})[c.model_name] = _num(c.metrics[metric].value)
    order = sorted(rows, key=lambda k: (k[2] == "imported", k[0], k[1]))  # this fleet first
    table = [[hw, setting, source] + [rows[(hw, setting, source)].get(m, "") for m in columns]
             for hw, setting, source in order]
    return _table([f"hardware class ({metric}, {METRIC_UNITS[metric]})", "setting", "source"] + columns,
                  table, text_columns=3)


def summary(heatmap: admin_pb2.Heatmap) -> str:
    """One row per cell: latency p50/p99 and throughput with their 95 % intervals, devices, source."""
    rows = []
    for cell in sorted(heatmap.cells, key=lambda c: (c.model_name, c.hardware_class, c.setting_key)):
        m = cell.metrics
        if cell.suppressed:
            values = [f"suppressed: {cell.n_devices} of k={cell.min_devices} devices", "", ""]
        else:
            values = [_with_interval(m[k]) if k in m else "-" for k in SUMMARY_METRICS]
        extra = ", ".join(f"{label + ' ' if label else ''}{_num(m[k].value)} {METRIC_UNITS[k]}"
                          for k, label in EXTRA_METRICS if k in m and not cell.suppressed)
        needed = f"+{_count(cell.devices_needed)}" if cell.devices_needed else ""
        rows.append([cell.model_name, cell.hardware_class, cell.setting_key.split("/", 2)[-1]] + values
                    + [extra or "-", str(cell.n_devices), needed, cell.privacy or cell.source])
    return _table(["model", "hardware class", "setting", "p50 ms", "p99 ms",
                   f"throughput {METRIC_UNITS['throughput_ips']}", "LLM, energy, server",
                   "devices", "needed", "source"], rows, text_columns=3)


def _count(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(n)


def _with_interval(m: admin_pb2.MetricValue) -> str:
    if math.isnan(m.low):
        return _num(m.value)
    return f"{_num(m.value)} [{_num(m.low)}, {_num(m.high)}]"


def secure_cells(cells, truth: dict[str, list]) -> str:
    """Secure cells' p50 and 95 % interval beside the synthetic truth their devices held (model →
    [devices, geometric mean ms]), and the error as a factor."""
    rows = []
    for c in cells:
        m = c.metrics.get("latency_p50_ms")
        if m is None:
            continue
        held = truth.get(c.model_name)
        error = f"×{max(m.value / held[1], held[1] / m.value):.2f}" if held else "-"
        rows.append([c.model_name, c.hardware_class, c.privacy, _with_interval(m), str(c.n_devices),
                     _num(held[1]) if held else "-", error])
    return _table(["model", "hardware class", "privacy", "p50 ms [95 %]", "devices", "synthetic truth", "error"],
                  rows, text_columns=3)


def to_csv(heatmap: admin_pb2.Heatmap) -> str:
    buf = io.StringIO()
    fields = list(FlatCell.__dataclass_fields__)
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in flatten(heatmap):
        writer.writerow(asdict(row))
    return buf.getvalue()


def to_json(heatmap: admin_pb2.Heatmap) -> str:
    def clean(x):
        return None if isinstance(x, float) and math.isnan(x) else x
    return json.dumps([{k: clean(v) for k, v in asdict(r).items()} for r in flatten(heatmap)], indent=1)


def run_json(result, specs: tuple = ()) -> str:
    """A run's exact result (agent/report.exact_record) as JSON, with the inputs it was fed."""
    from edgeatlas.agent.report import exact_record
    from edgeatlas.protos.inputs import to_json

    record = exact_record(result)
    if specs:
        record["inputs"] = json.loads(to_json(specs))
    return json.dumps(record, indent=1)


def run_text(model: str, result, specs: tuple = ()) -> str:
    """A run's result for a person: the setting and inputs that ran, latency, throughput, LLM figures,
    energy, validity."""
    from edgeatlas.protos.inputs import describe

    lines: list[str] = []
    s, st, figures = result.stats, result.setting, result.figures()
    lines.append(f"{model}: {st.runtime} {st.runtime_version} {st.execution_provider}, "
                 f"batch {st.batch}, threads {st.threads or 'default'}, {st.precision}, {st.scenario}"
                 + (f" {st.scenario_params}" if st.scenario_params else "")
                 + f", driven by {result.outcome.driver}")
    if specs:
        lines.append(f"  inputs      {describe(specs)}")
    unit = "requests" if result.llm else "queries"
    lines.append(f"  {unit:10}  {s.iterations} in {s.duration_s:.2f} s")
    lines.append(f"  latency ms  p50 {s.p50_ms:.4g}  p90 {s.p90_ms:.4g}  p99 {s.p99_ms:.4g}  "
                 f"mean {s.mean_ms:.4g}  stdev {s.stdev_ms:.3g}")
    lines.append(f"  throughput  {s.throughput_ips:,.1f} {'requests' if result.llm else 'inferences'}/s")
    if result.llm:
        lines.append(f"  LLM         TTFT {figures['ttft_ms']:.4g} ms  prefill {figures['prefill_tps']:,.0f} tokens/s"
                     + (f"  TPOT {figures['tpot_ms']:.4g} ms  decode {figures['decode_tps']:,.1f} tokens/s  "
                  f"ITL p50/p90/p99 {figures['itl_p50_ms']:.3g}/{figures['itl_p90_ms']:.3g}/"
                  f"{figures['itl_p99_ms']:.3g} ms" if "tpot_ms" in figures else ""))
    for name in ("early_stopping_p90_ms", "early_stopping_p99_ms", "server_qps", "offline_ips"):
        if name in figures:
            lines.append(f"  {name:11} {figures[name]:.4g}")
    if result.energy:
        lines.append(f"  energy      {figures['energy_mj']:.4g} mJ per {'request' if result.llm else 'inference'}, "
                     f"{figures['power_w']:.3g} W average ({result.energy.meter})")
    else:
        lines.append(f"  energy      not measured ({result.energy_absent})")
    fid = result.fidelity
    lines.append(f"  fidelity    {'passed' if fid.passed else 'FAILED' if fid.checked else 'not checked'}"
                 + (f" (max abs error {fid.max_abs_error:.2g})" if fid.checked else f" ({fid.detail})"))
    lines.append(f"  verdict     {result.outcome.driver} {result.outcome.verdict}")
    lines.append(f"  valid       {'yes' if result.valid else 'no: ' + result.invalid_reason}")
    return "\n".join(lines)
