"""The model zoo: real ONNX networks generated locally from seeded weights, no downloads.

Four families at two sizes each: MLP, ResNet-style CNN, MobileNet-style depthwise CNN and a
transformer encoder. The batch dimension is symbolic ("N"). Each is an architecture string of the
predictor's real-architecture family (`predictor/datasets/zoo.py`, where the builders live), and none is
among the networks `predictor measure-zoo` times for training: they stay held out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx

from edgeatlas.predictor.datasets.zoo import build, mlp, mobilenet, parse, resnet, transformer

__all__ = ["ZOO", "ZooEntry", "build_zoo", "mlp", "mobilenet", "resnet", "transformer"]


@dataclass(frozen=True)
class ZooEntry:
    name: str
    arch: str  # its architecture string (predictor/datasets/zoo.py)
    seed: int

    @property
    def family(self) -> str:
        return parse(self.arch)[0]

    def build(self) -> onnx.ModelProto:
        return build(self.arch, self.name, self.seed)


ZOO: list[ZooEntry] = [
    ZooEntry("mlp-s", "mlp:784-256-128-10", 1),
    ZooEntry("mlp-l", "mlp:784-1024-1024-512-10", 2),
    ZooEntry("resnet-s", "resnet:16-32-64:b1:s32", 3),
    ZooEntry("resnet-m", "resnet:32-64-128:b2:s32", 4),
    ZooEntry("mobilenet-s", "mobilenet:w0.5:s64", 5),
    ZooEntry("mobilenet-m", "mobilenet:w1:s96", 6),
    ZooEntry("transformer-s", "transformer:d64:h4:l2:s32:v1000", 7),
    ZooEntry("transformer-m", "transformer:d128:h4:l4:s64:v4000", 8),
]
HELD_OUT = frozenset(e.arch for e in ZOO)  # never timed for training by `predictor measure-zoo`


def build_zoo(out_dir: str | Path, names: list[str] | None = None) -> list[Path]:
    """Writes <name>.onnx for each zoo entry (all by default); returns the paths, zoo order."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    wanted = set(names) if names else None
    paths = []
    for entry in ZOO:
        if wanted is not None and entry.name not in wanted:
            continue
        path = out / f"{entry.name}.onnx"
        onnx.save(entry.build(), str(path))
        paths.append(path)
    return paths


# Per measurement: the fewest queries LoadGen's early stopping accepts for a single-stream run (64), at
# least a fifth of a second; a setting too slow for that within 15 s is left blank.
MEASURE_PARAMS = dict(warmup_iterations=2, min_iterations=64, min_duration_s=0.2, max_duration_s=15.0)


INT8_SHARE = 0.25  # of the networks measure-zoo times, int8 (one of each kind in every fourth round,
# statically and dynamically quantized in turn: `predictor/datasets/zoo.sample_archs`)


def measure_family(out_dir: str | Path, networks: int, threads: list[int], batches: list[int], seed: int = 0,
                   say=lambda _: None, int8_share: float = INT8_SHARE) -> Path:
    """Times `networks` architectures of the zoo family (none of `ZOO`: those stay held out; `int8_share`
    of them quantized to int8) in ONNX Runtime on this machine, at every thread count × batch, and writes
    them as a data directory in the nasbench201 layout (`zoo_index`, one column per setting, this
    machine's probed sheet) that `predictor train / eval --data` read. Returns the directory."""
    import csv
    import platform
    import tempfile
    import time

    import yaml

    from edgeatlas.agent.probe import probe
    from edgeatlas.agent.runners import ModelFacts, make_runner
    from edgeatlas.predictor.datasets.zoo import sample_archs
    from edgeatlas.protos.errors import InvalidInput
    from edgeatlas.protos.records import RunParams, Setting

    if not 1 <= networks <= 2000:
        raise InvalidInput(f"--networks must be in 1..2000, got {networks}")
    if not threads or any(t < 1 or t > 256 for t in threads):
        raise InvalidInput(f"--threads must be whole numbers in 1..256, got {threads}")
    if not batches or any(b < 1 or b > 256 for b in batches):
        raise InvalidInput(f"--batch must be whole numbers in 1..256, got {batches}")
    if not 0.0 <= int8_share <= 1.0:  # NaN too
        raise InvalidInput(f"--int8 must be a share in 0..1, got {int8_share}")
    out = Path(out_dir)
    if (out / "latency_ms.csv").exists():
        raise InvalidInput(f"{out} already holds a data directory; give a new --out")
    out.mkdir(parents=True, exist_ok=True)
    (out / "specs").mkdir(exist_ok=True)
    sheet = probe("/", measure_bandwidth=True)
    (out / "specs" / "here.yaml").write_text(sheet.to_yaml())
    columns = {f"t{t}_b{b}": (t, b) for t in dict.fromkeys(threads) for b in dict.fromkeys(batches)}
    params = RunParams(**MEASURE_PARAMS)
    archs = sample_archs(networks, seed, set(HELD_OUT), int8_share)
    rows, version, start = [], "", time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        for i, arch in enumerate(archs):
            path = Path(tmp) / "net.onnx"
            onnx.save(build(arch, f"zoo-{i}", seed=i), str(path))
            row = {"zoo_index": i, "arch_str": arch}
            for name, (t, b) in columns.items():
                setting = Setting(target="cpu", runtime="onnxruntime", execution_provider="CPUExecutionProvider",
                                  batch=b, threads=t, scenario="single-stream")
                result = make_runner(str(path), setting, None, ModelFacts()).run(params)
                version = version or result.setting.runtime_version
                row[name] = f"{result.stats.mean_ms:.6g}" if result.valid else ""
            rows.append(row)
            say(f"  {i + 1:4d}/{len(archs)} {arch:40s} " + " ".join(f"{row[c] or '—':>9s}" for c in columns))
    with open(out / "latency_ms.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["zoo_index", "arch_str", *columns])
        writer.writeheader()
        writer.writerows(rows)
    settings = {name: {"spec": "specs/here.yaml", "target": "cpu", "batch": b, "threads": t,
                       "runtime": "onnxruntime", "how": "measured"} for name, (t, b) in columns.items()}
    (out / "settings.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    (out / "README.md").write_text(
        f"# The real-architecture zoo, timed here\n\n{len(archs)} networks of `predictor/datasets/zoo.py` "
        f"(seed {seed}; none of the demo's zoo), mean latency in ms of a warm single-stream run "
        f"({MEASURE_PARAMS}) in ONNX Runtime {version} on the CPU of `specs/here.yaml` ({platform.node()}), "
        f"measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Columns: t<threads>_b<batch>.\n")
    say(f"wrote {out}: {len(archs)} networks × {len(columns)} settings in {time.monotonic() - start:.0f} s")
    return out
