"""NAS-Bench-201 latencies on real devices (as published with HELP, Lee et al., NeurIPS 2021).

Layout of a data directory: `latency_ms.csv` (nb201_index, arch_str, one column per setting),
`settings.yaml` (column → spec sheet, target, batch, runtime, and threads where the measurer set them),
`specs/*.yaml`. The FBNet data and the real-architecture zoo (`zoo.py`) have the same layout with an
`fbnet_index` or `zoo_index` column (`INDEX_COLUMNS`: the index column names the family).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import yaml
from onnx import TensorProto, helper

from edgeatlas.predictor.onnx_build import GraphBuilder
from edgeatlas.protos.errors import InvalidInput
from edgeatlas.protos.records import Setting
from edgeatlas.protos.spec import TARGETS, SpecSheet

CITATION = ("NAS-Bench-201 latency as published with HELP (Lee et al., NeurIPS 2021, MIT licence); "
            "Pixel 3 values from HW-NAS-Bench (Li et al., ICLR 2021)")
SAMPLE_DIR = Path(__file__).parent / "nasbench201_sample"
# The first column of latency_ms.csv names the architecture family its arch_str belongs to.
INDEX_COLUMNS = {"nb201_index": "nasbench201", "fbnet_index": "fbnet", "zoo_index": "zoo"}
COUNT_MAX = 1 << 20  # a batch or thread count past this is no setting


@dataclass(frozen=True)
class Column:
    """One setting column: which device, which processor, which batch and framework."""

    name: str
    spec: SpecSheet
    target: str
    batch: int  # 0 where the publishers did not say
    runtime: str
    threads: int = 0  # 0 where the publishers did not say (the runtime's default)

    def setting(self) -> Setting:
        return Setting(target=self.target, runtime=self.runtime, runtime_version="", execution_provider="",
                       batch=self.batch, threads=self.threads, precision="fp32", scenario="published")

    @property
    def hardware_class(self) -> str:
        return self.spec.hardware_class(self.target)


@dataclass(frozen=True)
class Row:
    index: int
    arch: str
    latency_ms: dict[str, float]  # column → published mean latency; missing cells absent


@dataclass(frozen=True)
class Dataset:
    root: Path
    columns: dict[str, Column]
    rows: list[Row]
    family: str = "nasbench201"

    def row(self, index: int) -> Row:
        for r in self.rows:
            if r.index == index:
                return r
        raise InvalidInput(f"NAS-Bench-201 index {index} is not in {self.root}")


def load(root: str | Path) -> Dataset:
    """A data directory's settings and rows, every field checked: a malformed file is named in one line
    (which file, which line or column, what is wrong), never half loaded."""
    root = Path(root)
    settings_path, csv_path = root / "settings.yaml", root / "latency_ms.csv"
    if not settings_path.is_file() or not csv_path.is_file():
        raise InvalidInput(f"{root} is not a data directory of published latencies (settings.yaml, latency_ms.csv)")
    columns = _columns(root, settings_path)
    rows, seen = [], set()
    try:
        with open(csv_path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            missing = set(columns) - set(header)
            if missing:
                raise InvalidInput(f"{csv_path}: columns {sorted(missing)} named in settings.yaml are missing")
            index = next((c for c in INDEX_COLUMNS if c in header), None)
            if index is None or "arch_str" not in header:
                raise InvalidInput(f"{csv_path}: needs arch_str and an index column ({', '.join(INDEX_COLUMNS)})")
            for record in reader:
                row = _row(record, index, columns, f"{csv_path} line {reader.line_num}")
                if row.index in seen:
                    raise InvalidInput(f"{csv_path} line {reader.line_num}: {index} {row.index} appears twice")
                seen.add(row.index)
                rows.append(row)
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{csv_path}: not UTF-8 text (byte {exc.start})") from None
    except csv.Error as exc:
        raise InvalidInput(f"{csv_path}: not CSV ({exc})") from None
    return Dataset(root=root, columns=columns, rows=rows, family=INDEX_COLUMNS[index])


def _columns(root: Path, path: Path) -> dict[str, Column]:
    """settings.yaml: {column: {spec, target, batch, runtime, threads, ...}}, each checked."""
    try:
        settings = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise InvalidInput(f"{path}: not valid YAML{at} ({getattr(exc, 'problem', None) or 'unreadable'})") from None
    if not isinstance(settings, dict) or not settings:
        raise InvalidInput(f"{path}: expected a mapping of column name to its setting")
    sheets: dict[str, SpecSheet] = {}
    columns = {}
    for name, entry in settings.items():
        where = f"{path}: column {str(name)[:40]!r}"
        if not isinstance(entry, dict) or not isinstance(entry.get("spec"), str) or not entry["spec"]:
            raise InvalidInput(f"{where}: expected a mapping with spec: PATH (and target, batch, runtime, threads)")
        if entry["spec"] not in sheets:
            try:
                sheets[entry["spec"]] = SpecSheet.load(root / entry["spec"])
            except InvalidInput as exc:
                raise InvalidInput(f"{where}: {exc}") from None
        target = entry.get("target") or "cpu"
        if target not in TARGETS:
            raise InvalidInput(f"{where}: target {str(target)[:20]!r} is not one of {', '.join(TARGETS)}")
        columns[str(name)] = Column(name=str(name), spec=sheets[entry["spec"]], target=target,
                                    batch=_count(entry, "batch", where), runtime=str(entry.get("runtime") or "unknown"),
                                    threads=_count(entry, "threads", where))
    return columns


def _count(entry: dict, key: str, where: str) -> int:
    """A setting's batch or threads: a whole number from 0 (unsaid) to COUNT_MAX."""
    value = entry.get(key) or 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= COUNT_MAX:
        raise InvalidInput(f"{where}: {key} {str(value)[:20]!r} is not a whole number from 0 to {COUNT_MAX}")
    return value


def _row(record: dict, index: str, columns: dict[str, Column], where: str) -> Row:
    """One line of latency_ms.csv: its index, arch and the cells it has (an empty, NaN, infinite, zero or
    negative cell is missing: publishers write -1 or 0 for a network they did not time)."""
    text = (record.get(index) or "").strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 18):  # '²' is a digit to str.isdigit, not to int
        raise InvalidInput(f"{where}: {index} {text[:20]!r} is not a whole number")
    arch = (record.get("arch_str") or "").strip()
    if not arch:
        raise InvalidInput(f"{where}: arch_str is empty")
    values = {}
    for name in columns:
        cell = (record.get(name) or "").strip()
        if not cell:
            continue
        try:
            value = float(cell)
        except ValueError:
            raise InvalidInput(f"{where}: column {name!r} holds {cell[:20]!r}, not a latency in ms") from None
        if math.isfinite(value) and value > 0:
            values[name] = value
    return Row(index=int(text), arch=arch, latency_ms=values)


def spread_sample(dataset: Dataset, n: int, column: str = "pixel3") -> list[Row]:
    """n architectures spread over the published latency range on one column (no `none` edges)."""
    usable = sorted((r for r in dataset.rows if "none" not in r.arch and column in r.latency_ms),
                    key=lambda r: (r.latency_ms[column], r.index))
    if not usable:
        return []
    picks = [usable[min(len(usable) - 1, round(q * (len(usable) - 1)))] for q in
             ([0.5] if n == 1 else [i / (n - 1) * 0.9 + 0.05 for i in range(n)])]
    seen, out = set(), []
    for r in picks:
        if r.index not in seen:
            seen.add(r.index)
            out.append(r)
    return out


def parse_nb201(arch: str) -> list[list[tuple[str, int]]]:
    """'|op~0|+|op~0|op~1|+|op~0|op~1|op~2|' → [[(op, input node)] for nodes 1, 2, 3]."""
    nodes = []
    for j, group in enumerate(arch.strip().split("+"), start=1):
        edges = [e for e in group.split("|") if e]
        parsed = []
        for edge in edges:
            op, _, src = edge.partition("~")
            if op not in NB201_OPS or not src.isdigit() or int(src) >= j:
                raise InvalidInput(f"arch {arch[:80]!r}: edge {edge[:40]!r} of node {j} is not op~i with i < {j}")
            parsed.append((op, int(src)))
        if sorted(i for _, i in parsed) != list(range(j)):
            raise InvalidInput(f"arch {arch[:80]!r}: node {j} must have one edge from each of nodes 0..{j - 1}")
        nodes.append(parsed)
    if len(nodes) != 3:
        raise InvalidInput(f"arch {arch[:80]!r}: expected 3 node groups separated by '+', got {len(nodes)}")
    return nodes


def connected(arch: str) -> bool:
    """Whether a cell's output depends on its input through some non-`none` path.

    In a disconnected cell the network's output is a constant: some runtimes fold the whole network
    away (Pixel 3's published latencies for these are microseconds), others run every operator.
    """
    reach = {0}
    for j, edges in enumerate(parse_nb201(arch), start=1):
        if any(op != "none" and src in reach for op, src in edges):
            reach.add(j)
    return 3 in reach


NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


def nasbench201(name: str, arch: str, seed: int | None = 0, check: bool = True) -> onnx.ModelProto:
    """The NAS-Bench-201 network for an arch string (Dong & Yang, ICLR 2020), CIFAR-10 head, 32×32 input.

    Operator for operator what NB201's PyTorch code runs: a `none` edge is its Zero op (x · 0), still
    a kernel launch on every device that published latencies for it.
    """
    cell = parse_nb201(arch)
    g = GraphBuilder(seed)
    zero = g.const("zero", np.array(0, np.float32)) if "none" in arch else ""

    def cell_forward(x: str, c: int) -> str:
        states = [x]
        for edges in cell:
            terms = []
            for op, src in edges:
                s = states[src]
                if op == "none":
                    terms.append(g.op("Mul", [s, zero]))
                elif op == "skip_connect":
                    terms.append(s)
                elif op == "nor_conv_1x1":
                    terms.append(g.conv_bn(s, c, c, 1))
                elif op == "nor_conv_3x3":
                    terms.append(g.conv_bn(s, c, c, 3))
                elif op == "avg_pool_3x3":
                    terms.append(g.op("AveragePool", [s], kernel_shape=[3, 3], strides=[1, 1], pads=[1] * 4,
                                      count_include_pad=0))
            total = terms[0]
            for t in terms[1:]:
                total = g.op("Add", [total, t])
            states.append(total)
        return states[-1]

    def reduction(x: str, cin: int, cout: int) -> str:
        a = g.conv_bn(x, cin, cout, 3, stride=2)
        b = g.conv_bn(a, cout, cout, 3)
        pooled = g.op("AveragePool", [x], kernel_shape=[2, 2], strides=[2, 2])
        w = g.weight("conv_w", (cout, cin, 1, 1), fan_in=cin)
        shortcut = g.op("Conv", [pooled, w], kernel_shape=[1, 1])
        return g.op("Add", [b, shortcut])

    x = g.conv_bn("input", 3, 16, 3, relu_first=False)
    for stage, c in enumerate((16, 32, 64)):
        if stage:
            x = reduction(x, c // 2, c)
        for _ in range(5):
            x = cell_forward(x, c)
    x = g.op("Relu", [g.batch_norm(x, 64)])
    x = g.op("Flatten", [g.op("GlobalAveragePool", [x])])
    x = g.gemm(x, 64, 10)
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 32, 32])
    return g.model(name, [inp], x, ["N", 10], check=check)
