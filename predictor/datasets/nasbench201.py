"""NAS-Bench-201 latencies on real devices (as published with HELP, Lee et al., NeurIPS 2021).

Layout of a data directory: `latency_ms.csv` (nb201_index, arch_str, one column per setting),
`settings.yaml` (column → spec sheet, target, batch, runtime), `specs/*.yaml`.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from edgeatlas.protos.errors import InvalidInput
from edgeatlas.protos.records import Setting
from edgeatlas.protos.spec import SpecSheet

CITATION = ("NAS-Bench-201 latency as published with HELP (Lee et al., NeurIPS 2021, MIT licence); "
            "Pixel 3 values from HW-NAS-Bench (Li et al., ICLR 2021)")
SAMPLE_DIR = Path(__file__).parent / "nasbench201_sample"


@dataclass(frozen=True)
class Column:
    """One setting column: which device, which processor, which batch and framework."""

    name: str
    spec: SpecSheet
    target: str
    batch: int  # 0 where the publishers did not say
    runtime: str

    def setting(self) -> Setting:
        return Setting(target=self.target, runtime=self.runtime, runtime_version="", execution_provider="",
                       batch=self.batch, threads=0, precision="fp32", scenario="published")

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

    def row(self, index: int) -> Row:
        for r in self.rows:
            if r.index == index:
                return r
        raise InvalidInput(f"NAS-Bench-201 index {index} is not in {self.root}")


def load(root: str | Path) -> Dataset:
    root = Path(root)
    settings_path, csv_path = root / "settings.yaml", root / "latency_ms.csv"
    if not settings_path.is_file() or not csv_path.is_file():
        raise InvalidInput(f"{root} is not a NAS-Bench-201 data directory (settings.yaml, latency_ms.csv)")
    settings = yaml.safe_load(settings_path.read_text()) or {}
    columns = {}
    for name, entry in settings.items():
        spec = SpecSheet.load(root / entry["spec"])
        columns[name] = Column(name=name, spec=spec, target=entry.get("target") or "cpu",
                               batch=int(entry.get("batch") or 0), runtime=entry.get("runtime") or "unknown")
    rows = []
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        missing = set(columns) - set(reader.fieldnames or [])
        if missing:
            raise InvalidInput(f"{csv_path}: columns {sorted(missing)} named in settings.yaml are missing")
        for record in reader:
            values = {}
            for name in columns:
                text = record.get(name, "")
                if text:
                    value = float(text)
                    if math.isfinite(value) and value > 0:
                        values[name] = value
            rows.append(Row(index=int(record["nb201_index"]), arch=record["arch_str"], latency_ms=values))
    return Dataset(root=root, columns=columns, rows=rows)


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
