"""Hardware fingerprints: a device's own latencies on a fixed, versioned set of small reference networks.

HELP (Lee et al., NeurIPS 2021) describes a device by its latencies on a handful of reference networks;
here they are measured by the agent, in the runtime and setting a prediction is for, and the predictor
calibrates its zero-shot answer for that setting on them (`fewshot.py`). The set spans the regimes a
network's time can be bound by, so that the calibration sees each of them on this device:

- `overhead`: 48 tiny element-wise operators (the runtime's per-operator dispatch cost);
- `gemv`: a batch-1 MLP with 24 MB of weights (memory bandwidth);
- `gemm`: a transformer feed-forward block over 256 tokens (dense compute, about 1 GFLOP);
- `conv3x3`: three 3×3 convolutions at 56×56 (direct and im2col convolution kernels: the densest compute
  of the set, where a device shows how far it beats its sheet's peak);
- `attention`: one encoder layer, 128 tokens (softmax, layer norms, batched matmuls, reshapes);
- `activations`: element-wise operators on 112×112×32 feature maps (activation traffic);
- four int8 networks, one per kind of integer kernel people's int8 models run on (`INT8_KINDS`): how
  much more (or less) this device's integer kernels cost than the calibrated float answer says. They
  calibrate int8 networks only (`predictor/commands.int8_on_fingerprint`), never the float answers:
  - `conv3x3_int8`: `conv3x3` as ONNX Runtime's dynamic quantizer writes it (ConvInteger, accumulating to
    int32: 6-10x a float Conv's time on an x86 CPU);
  - `conv3x3_qdq`: `conv3x3` as its static quantizer writes it (QDQ: QLinearConv);
  - `depthwise_qdq`: three inverted-residual blocks at 56×56 through the static quantizer (its 1×1
    convolutions are `conv3x3_qdq`'s kind, so what it adds is the depthwise QLinearConv's cost);
  - `attention_int8`: `attention` through the dynamic quantizer (MatMulInteger, and the
    DynamicQuantizeMatMul that ONNX Runtime fuses where one quantization feeds one projection).

The set is versioned (`REFERENCE_SET`): a fingerprint of another version is refused, never mixed, except
that an earlier set (`EARLIER`) is read as this one without the networks it lacks, and without those this
one dropped (their bytes are not this set's, so they are not used). v3 dropped v2's `depthwise`,
`nasbench201` and `fbnet` for the three int8 networks. On 17 networks nobody trained on, timed on this
project's machine, the int8 answers went from 23-27 % MAPE to 6-8 % (three checkpoints; 13-16 % on
another timing, against 24-25 % for v2 on a third); the float ones were as good or better in every
checkpoint-and-timing pair tried (12.5-15.1 % against 13.9-16.2 %), and the three NAS-Bench-201 cells of
the demo as far off as with v2 (×1.2-1.5). Keeping `depthwise` and
dropping `conv3x3` instead was as good on the float networks but left the floor too high: the device ran
ResNet-style networks faster than its other shots showed it could (`fewshot.calibrate`'s floor_shift). The
shared networks' bytes are v1's and v2's (`reference_sha256` checks it; weights are seeded, so every device
runs the same bytes).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path

import numpy as np

from edgeatlas.protos.errors import InvalidInput

REFERENCE_SET = "edgeatlas.ref/v3"
FORMAT = "edgeatlas.fingerprint/v1"
NAMES = ("overhead", "gemv", "gemm", "conv3x3", "attention", "activations",
         "conv3x3_int8", "conv3x3_qdq", "depthwise_qdq", "attention_int8")
# The int8 networks → the kinds of integer kernel each measures (`GraphSet.int8_macs`), in the order they
# are solved: each may hold kinds an earlier one measures (depthwise_qdq's 1×1 convolutions), never others.
INT8_KINDS = {"conv3x3_int8": ("conv 1>4",), "conv3x3_qdq": ("conv 1>1",), "depthwise_qdq": ("depthwise 1>1",),
              "attention_int8": ("matmul 1>4", "matmul 4>4")}
INT8_NAMES = tuple(INT8_KINDS)  # measured beside the others, never a shot of the float calibration
# An earlier set → its networks. Those also in NAMES are byte for byte this set's; the rest are dropped
# when one of its fingerprints is read.
V2 = ("overhead", "gemv", "gemm", "conv3x3", "depthwise", "attention", "activations", "nasbench201", "fbnet",
      "conv3x3_int8")
EARLIER = {"edgeatlas.ref/v1": V2[:9], "edgeatlas.ref/v2": V2}
MAX_FILE_BYTES = 64 * 1024


def _builder():
    from edgeatlas.predictor.onnx_build import GraphBuilder

    return GraphBuilder(seed=7)


def _input(name: str, shape: list, dtype=None):
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info(name, dtype or TensorProto.FLOAT, shape)


def _overhead():
    g = _builder()
    x = "input"
    for i in range(16):
        x = g.op("Add", [x, g.const("c", np.full(64, 0.01 * (i + 1), np.float32))])
        x = g.op("Mul", [x, g.const("c", np.full(64, 0.99, np.float32))])
        x = g.op("Relu", [x])
    return g.model("overhead", [_input("input", ["N", 64])], x, ["N", 64])


def _gemv():
    g = _builder()
    x = g.op("Relu", [g.gemm("input", 1024, 3072)])
    x = g.gemm(x, 3072, 1024)
    return g.model("gemv", [_input("input", ["N", 1024])], x, ["N", 1024])


def _gemm():
    g = _builder()
    x = g.gelu(g.linear("input", 512, 2048))
    x = g.linear(x, 2048, 512)
    return g.model("gemm", [_input("input", ["N", 256, 512])], x, ["N", 256, 512])


def _conv3x3(integer: bool = False):
    """Three 3×3 convolutions; integer: as ONNX Runtime's dynamic quantizer writes them (ConvInteger)."""
    g = _builder()
    conv = g.conv_integer if integer else g.conv
    x = "input"
    for _ in range(3):
        x = g.op("Relu", [conv(x, 64, 64, 3)])
    name = "conv3x3_int8" if integer else "conv3x3"
    return g.model(name, [_input("input", ["N", 64, 56, 56])], x, ["N", 64, 56, 56])


def _attention(integer: bool = False):
    """One encoder layer; integer: as the dynamic quantizer writes it, its four projections on int8 weights,
    the activations quantized as they run (one quantization of the normed input feeds q, k and v)."""
    g = _builder()
    d, heads, seq = 256, 4, 128
    dh = d // heads
    split = g.const("shape", np.array([0, 0, heads, dh], np.int64))
    merge = g.const("shape", np.array([0, 0, d], np.int64))
    scale = g.const("scale", np.array(1.0 / math.sqrt(dh), np.float32))
    h = g.layer_norm("input", d)
    normed = g.dynamic_quantize(h) if integer else None

    def project(x):
        if not integer:
            return g.linear(x, d, d)
        return g.linear_integer(normed if x == h else g.dynamic_quantize(x), d, d)

    q = g.op("Transpose", [g.op("Reshape", [project(h), split])], perm=[0, 2, 1, 3])
    k = g.op("Transpose", [g.op("Reshape", [project(h), split])], perm=[0, 2, 3, 1])
    v = g.op("Transpose", [g.op("Reshape", [project(h), split])], perm=[0, 2, 1, 3])
    attn = g.op("Softmax", [g.op("Mul", [g.op("MatMul", [q, k]), scale])], axis=-1)
    ctx = g.op("Reshape", [g.op("Transpose", [g.op("MatMul", [attn, v])], perm=[0, 2, 1, 3]), merge])
    x = g.op("Add", ["input", project(ctx)])
    name = "attention_int8" if integer else "attention"
    return g.model(name, [_input("input", ["N", seq, d])], x, ["N", seq, d])


def _activations():
    g = _builder()
    x = "input"
    for i in range(4):
        x = g.op("Sigmoid", [g.op("Mul", [x, g.const("c", np.array(1.0 + 0.1 * i, np.float32))])])
        x = g.op("Add", [x, "input"])
    return g.model("activations", [_input("input", ["N", 32, 112, 112])], x, ["N", 32, 112, 112])


def _conv3x3_qdq():
    """`conv3x3` as the static quantizer writes it: uint8 activations (the ReLU folded into each output's
    range), int8 weights."""
    g = _builder()
    x = g.qdq("input", 1 / 255, 0)
    for i in range(3):
        x = g.conv_qdq(x, 64, 64, 3, in_scale=1 / 255 if i == 0 else 4 / 255, out_scale=4 / 255, out_zero=0)
    return g.model("conv3x3_qdq", [_input("input", ["N", 64, 56, 56])], x, ["N", 64, 56, 56])


def _depthwise_qdq():
    """Three inverted-residual blocks (1×1 expansion to 144 channels, 3×3 depthwise, 1×1 projection, the
    residual Add) as the static quantizer writes them: ReLU6 folded into the ranges, the Add on uint8."""
    g = _builder()
    x, at = g.qdq("input", 8 / 255, 128), 8 / 255
    for _ in range(3):
        y = g.conv_qdq(x, 24, 144, 1, in_scale=at, out_scale=6 / 255, out_zero=0)
        y = g.conv_qdq(y, 144, 144, 3, in_scale=6 / 255, out_scale=6 / 255, out_zero=0, groups=144)
        y = g.conv_qdq(y, 144, 24, 1, in_scale=6 / 255, out_scale=8 / 255, out_zero=128)
        x = g.qdq(g.op("Add", [x, y]), 8 / 255, 128)
    return g.model("depthwise_qdq", [_input("input", ["N", 24, 56, 56])], x, ["N", 24, 56, 56])


BUILDERS = {"overhead": _overhead, "gemv": _gemv, "gemm": _gemm, "conv3x3": _conv3x3, "attention": _attention,
            "activations": _activations, "conv3x3_int8": lambda: _conv3x3(integer=True),
            "conv3x3_qdq": _conv3x3_qdq, "depthwise_qdq": _depthwise_qdq,
            "attention_int8": lambda: _attention(integer=True)}


@cache
def reference_model(name: str):
    """The ONNX model of one reference network (the same bytes on every device)."""
    if name not in BUILDERS:
        raise InvalidInput(f"{name!r} is not a network of {REFERENCE_SET} ({', '.join(NAMES)})")
    return BUILDERS[name]()


def reference_sha256(name: str) -> str:
    return hashlib.sha256(reference_model(name).SerializeToString()).hexdigest()


def write_reference_set(out_dir: str | Path) -> dict[str, Path]:
    """ref-<name>.onnx for every reference network, written once (a file already there with the right
    bytes is kept). Registered with a coordinator and measured by a campaign, their cells are a hardware
    class's fingerprint there (coordinator/predictions.class_fingerprint)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in NAMES:
        data = reference_model(name).SerializeToString()
        path = out / f"ref-{name}.onnx"
        if not path.is_file() or path.read_bytes() != data:
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        paths[name] = path
    return paths


@cache
def reference_graphs(runtime: str = ""):
    """The reference networks as the predictor's GraphSet, NAMES order, as the runtime runs them."""
    from edgeatlas.predictor.data import GraphSet
    from edgeatlas.predictor.graph import runtime_graph

    return GraphSet.from_graphs([runtime_graph(reference_model(n), runtime, name=n) for n in NAMES])


@dataclass
class Fingerprint:
    """One device's mean latencies (ms) on the reference set, in one setting."""

    latency_ms: dict[str, float]
    runtime: str = "onnxruntime"
    runtime_version: str = ""
    execution_provider: str = "CPUExecutionProvider"
    threads: int = 0
    batch: int = 1
    target: str = "cpu"
    device: str = ""  # the spec sheet's name, for the reader; the sheet itself is given beside it
    reference_set: str = REFERENCE_SET
    format: str = FORMAT
    measured_at: str = ""
    spread: dict[str, float] = field(default_factory=dict)  # per network: p90 / p50 of its iterations

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.to_json() + "\n")
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> "Fingerprint":
        """A fingerprint file, every field checked; anything else is refused with a one-line reason."""
        where = f"fingerprint {path}"
        try:
            raw = Path(path).read_bytes()
        except FileNotFoundError:
            raise InvalidInput(f"{where}: no such file") from None
        except OSError as exc:
            raise InvalidInput(f"{where}: {exc.strerror}") from None
        return cls.from_json(raw, where)

    @classmethod
    def from_json(cls, raw: bytes | str, where: str = "fingerprint") -> "Fingerprint":
        """A fingerprint's JSON text (a file's, or a request's field), size and every field checked."""
        size = len(raw.encode() if isinstance(raw, str) else raw)
        if size > MAX_FILE_BYTES:
            raise InvalidInput(f"{where}: {size:,} bytes, more than a fingerprint's {MAX_FILE_BYTES:,}")
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise InvalidInput(f"{where}: not JSON (edgeatlas agent fingerprint writes one)") from None
        return cls.from_dict(data, where)

    @classmethod
    def from_dict(cls, data, where: str = "fingerprint") -> "Fingerprint":
        if not isinstance(data, dict):
            raise InvalidInput(f"{where}: not a JSON object")
        if data.get("format") != FORMAT:
            raise InvalidInput(f"{where}: format {str(data.get('format'))[:40]!r} is not {FORMAT}")
        named = data.get("reference_set")
        names = NAMES if named == REFERENCE_SET else EARLIER.get(named) if isinstance(named, str) else None
        if names is None:
            raise InvalidInput(f"{where}: measured on reference set {str(data.get('reference_set'))[:40]!r}; this "
                               f"predictor uses {REFERENCE_SET}: measure again (edgeatlas agent fingerprint)")
        known = {f for f in cls.__dataclass_fields__}
        extra = sorted(set(data) - known)
        if extra:
            raise InvalidInput(f"{where}: unknown field {extra[0][:40]!r}")
        lat = data.get("latency_ms")
        if not isinstance(lat, dict) or not lat:
            raise InvalidInput(f"{where}: latency_ms is not an object of network → ms")
        for name, value in lat.items():
            if name not in names:
                raise InvalidInput(f"{where}: {str(name)[:40]!r} is not a network of {data['reference_set']}")
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not (0 < value < 1e7):
                raise InvalidInput(f"{where}: latency of {name} is {str(value)[:20]!r}, not a positive number of ms")
        if not set(lat) & (set(NAMES) - set(INT8_NAMES)):
            raise InvalidInput(f"{where}: latency_ms has only {', '.join(sorted(lat))[:60]}: a float network of "
                               f"{REFERENCE_SET} is needed ({', '.join(n for n in NAMES if n not in INT8_NAMES)})")
        for key, kind in (("runtime", str), ("runtime_version", str), ("execution_provider", str), ("target", str),
                          ("device", str), ("measured_at", str)):
            if key in data and (not isinstance(data[key], kind) or len(data[key]) > 200):
                raise InvalidInput(f"{where}: {key} is not a string")
        for key in ("threads", "batch"):
            if key in data and (type(data[key]) is not int or not 0 <= data[key] <= 4096):
                raise InvalidInput(f"{where}: {key} is not a whole number in 0..4096")
        if not re.fullmatch(r"[a-z0-9_.\-]+", str(data.get("runtime", "onnxruntime"))):
            raise InvalidInput(f"{where}: runtime {str(data.get('runtime'))[:40]!r} is not a runtime name")
        spread = data.get("spread", {})
        if not isinstance(spread, dict) or any(
                k not in names or not isinstance(v, (int, float)) or isinstance(v, bool) for k, v in spread.items()):
            raise InvalidInput(f"{where}: spread is not an object of network → ratio")
        ours = {"latency_ms": {n: v for n, v in lat.items() if n in NAMES},  # an earlier set's others dropped
                "spread": {n: v for n, v in spread.items() if n in NAMES}}
        return cls(**{**data, **ours})

    def check_setting(self, target: str, batch: int, threads: int, runtime: str) -> None:
        """A fingerprint calibrates the setting it was measured in, no other: a query in another is refused."""
        mine = {"target": self.target, "batch": self.batch, "threads": self.threads, "runtime": self.runtime}
        asked = {"target": target, "batch": max(batch, 1), "threads": threads, "runtime": runtime or self.runtime}
        for key in mine:
            if mine[key] != asked[key]:
                raise InvalidInput(f"the fingerprint was measured at {key} {mine[key]!r}, the query asks for "
                                   f"{asked[key]!r}: ask in the fingerprint's setting, or measure one in this "
                                   f"(edgeatlas agent fingerprint --{key} ...)")
