"""ONNX → operator graph: per node its op, FLOPs, bytes and weights at batch 1; edges follow tensors.

FLOPs count a multiply-add as two. Bytes are what a node reads (activations and weights) and writes;
views (Reshape, Flatten, ...) move nothing. Everything is at batch 1: FLOPs and activation bytes scale
with the batch, weight bytes do not (`at_batch`).
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx
from onnx import shape_inference

from edgeatlas.predictor import classic_ml, detection
from edgeatlas.protos import onnx_model
from edgeatlas.protos.errors import InvalidInput

# Op categories: the GNN's one-hot, and the tabular model's op histogram.
CATEGORIES = ("conv", "conv_dw", "conv_1x1", "matmul", "norm", "activation", "elementwise", "pool",
              "global_pool", "softmax", "view", "copy", "gather", "reduce", "quantize", "other")
_CATEGORY = {
    "Gemm": "matmul", "MatMul": "matmul", "BatchNormalization": "norm", "LayerNormalization": "norm",
    "InstanceNormalization": "norm", "GroupNormalization": "norm",
    "Relu": "activation", "Clip": "activation", "Sigmoid": "activation", "Tanh": "activation",
    "Erf": "activation", "LeakyRelu": "activation", "HardSigmoid": "activation", "HardSwish": "activation",
    "Gelu": "activation", "Elu": "activation", "Softplus": "activation", "PRelu": "activation",
    "Add": "elementwise", "Sub": "elementwise", "Mul": "elementwise", "Div": "elementwise", "Pow": "elementwise",
    "Sqrt": "elementwise", "Exp": "elementwise", "Log": "elementwise", "Neg": "elementwise",
    "Where": "elementwise", "Max": "elementwise", "Min": "elementwise", "Cast": "elementwise",
    "AveragePool": "pool", "MaxPool": "pool", "GlobalAveragePool": "global_pool", "GlobalMaxPool": "global_pool",
    "Softmax": "softmax", "LogSoftmax": "softmax",
    "Reshape": "view", "Flatten": "view", "Squeeze": "view", "Unsqueeze": "view", "Identity": "view",
    "Shape": "view", "Constant": "view", "Dropout": "view",
    "Transpose": "copy", "Concat": "copy", "Split": "copy", "Slice": "copy", "Pad": "copy", "Expand": "copy",
    "Resize": "copy", "Tile": "copy", "Gather": "gather", "GatherElements": "gather",
    "ReduceMean": "reduce", "ReduceSum": "reduce", "ReduceMax": "reduce", "ReduceL2": "reduce",
}
# FLOPs per element of the catalogue's ops that are more than an add or a multiply. Those ONNX Runtime computes
# with MLAS's vector approximations count the work those issue, as the peak counts it (a vector instruction on
# every lane): Erf is two polynomials and an exp, Tanh and the logistic a rational function and its division,
# the GELUs an erf or a tanh besides, a square root the slow divide-and-root unit, a layer norm two passes
# over its row and a third to scale it. Counted as 4-9 they took ×0.11-0.66 of their time on one x86 core; the
# counts below are their time there beyond a copy's memory traffic, at the core's vector peak
# (`bench/scalar_ops.py`, its vector section).
_FLOPS_PER_ELEMENT = {"BatchNormalization": 2, "LayerNormalization": 32, "InstanceNormalization": 8,
                      "GroupNormalization": 8, "Softmax": 16, "LogSoftmax": 16, "Sigmoid": 18, "Tanh": 15,
                      "Erf": 40, "Gelu": 50, "FastGelu": 37, "BiasGelu": 68, "QuickGelu": 38, "HardSwish": 4,
                      "Exp": 7, "Sqrt": 22}
_T = onnx.TensorProto
# Bytes per element, by ONNX's element types: 4-bit ones are packed two to a byte (ONNX's INT4 and UINT4 from
# opset 21); a type not here weighs FP32's four.
_DTYPE_BYTES = {_T.FLOAT: 4, _T.FLOAT16: 2, _T.BFLOAT16: 2, _T.DOUBLE: 8, _T.INT8: 1, _T.UINT8: 1, _T.INT16: 2,
                _T.UINT16: 2, _T.INT32: 4, _T.UINT32: 4, _T.INT64: 8, _T.UINT64: 8, _T.BOOL: 1, _T.COMPLEX64: 8,
                _T.COMPLEX128: 16, _T.FLOAT8E4M3FN: 1, _T.FLOAT8E4M3FNUZ: 1, _T.FLOAT8E5M2: 1, _T.FLOAT8E5M2FNUZ: 1,
                _T.INT4: 0.5, _T.UINT4: 0.5, _T.FLOAT4E2M1: 0.5}
NODE_FEATURES = len(CATEGORIES) + 11
FLOAT_WIDTH = 4  # bytes per element of FP32, and of a tensor whose type is not known
WIDTH_COLUMNS = (NODE_FEATURES - 3, NODE_FEATURES - 2)  # the element widths read and written, 1 for FP32


def integer_kernel(op: str) -> bool:
    """Whether an operator computes on quantized integers (or converts to or from them). By ONNX's and ONNX
    Runtime's naming, not a list: ConvInteger, MatMulInteger, QLinear*, QGemm, QAttention, *Quantize*, and
    MatMulNBits where it multiplies on int8 (`integer_node`).
    The same layer can cost a fraction of its float kernel or many times it (ONNX Runtime's ConvInteger on
    a CPU is 6-10x slower than its Conv; a fused DynamicQuantizeMatMul 2x faster than MatMul), so the
    GNN sees the difference and learns it from data in that runtime."""
    return "Integer" in op or "Quantize" in op or (len(op) > 1 and op[0] == "Q" and op[1].isupper())


def integer_node(node: onnx.NodeProto) -> bool:
    """`integer_kernel` of one node: a MatMulNBits is one where it multiplies on int8 (`nbits_matmul`); where
    it dequantizes its weights to float it is a float MatMul whose weights weigh a few bits each."""
    nbits = nbits_matmul(node)
    if node.op_type == "QMoE":
        return qmoe_int8(node)
    return nbits[1] if nbits is not None else integer_kernel(node.op_type)


@dataclass
class OpGraph:
    """One network as operators. Arrays are per node, at batch 1."""

    name: str
    ops: list[str]
    category: np.ndarray  # int index into CATEGORIES
    flops: np.ndarray
    act_bytes: np.ndarray  # activations read + written
    weight_bytes: np.ndarray
    kernel: np.ndarray  # spatial kernel size (0 where none)
    stride: np.ndarray
    channels: np.ndarray  # output channels / features (0 where unknown)
    edges: np.ndarray  # int64 [2, E]: producer → consumer
    params: int
    shapes_known: float  # share of nodes whose output shape was inferred
    macs: float = 0.0  # multiply-accumulates of the linear ops (biases not counted)
    uncounted: dict = field(default_factory=dict)  # op → nodes whose FLOPs are not known (counted as 0)
    observed: dict = field(default_factory=dict)  # tensor → shape seen in a run where inference could not tell
    branches: dict = field(default_factory=dict)  # If's first output → whether its then-branch was featurized
    loops: dict = field(default_factory=dict)  # Loop's or Scan's first output → the iterations featurized
    data_work: dict = field(default_factory=dict)  # a detection node's first output → its operations, from a run
    # bytes per element of each node's first input and first output (None: FLOAT_WIDTH everywhere): an int8
    # kernel that reads and writes int8 (QLinearConv) is not one that accumulates to int32 (ConvInteger)
    in_width: np.ndarray | None = None
    out_width: np.ndarray | None = None
    # [nodes, len(LAYOUTS)]: per layout, the output columns of the matrix product each node runs as (0: none;
    # `gemm_columns`): where they are fewer than a vector's lanes, or not a multiple of them, part of each
    # vector instruction is wasted
    lanes: np.ndarray | None = None
    # [nodes, len(LAYOUTS)]: per layout, whether the node runs inside the convolution before it, no kernel of
    # its own (`nchwc_fusions`)
    fused: np.ndarray | None = None
    # [nodes] int: the signedness of an int8 multiply-add's activations and weights, an index into
    # OPERAND_PAIRS (`int8_operands`; 0, the quantizers' default, for every other node)
    operands: np.ndarray | None = None
    # [nodes, len(LAYOUTS)]: per layout, the bytes ONNX Runtime's NCHWc pass copies between layouts for the node
    # (`nchwc_layouts`): whole tensors
    reordered: np.ndarray | None = None
    # [nodes, len(LAYOUTS)]: per layout, the bytes a convolution ONNX Runtime leaves in NCHW moves building its
    # patch matrix (`im2col_bytes`), a segment at a time: traffic that stays in cache
    patches: np.ndarray | None = None
    # [nodes, len(LAYOUTS)]: per layout, the share of each node's counted work its kernel runs as: an NCHWc
    # convolution skips the taps that read padding (`nchwc_work_share`); 1 for every other node and layout
    work_share: np.ndarray | None = None
    # [nodes]: of weight_bytes, the bytes read again of weights already read once (a recurrent cell's R, once a
    # step: `_recurrent_rereads`): traffic, but no larger a working set (`models.streamed_bytes`)
    rereads: np.ndarray | None = None
    # [nodes, len(LAYOUTS)]: per layout, each node's fixed cost in ONNX Runtime, in element-wise operators' worth
    # (`dispatch_units`; none where it runs inside the convolution before it), and that of the copies between
    # layouts charged to it (`REORDER_UNITS`)
    dispatch: np.ndarray | None = None
    # [nodes] bool: whether each computes on quantized integers (`integer_node`); None: by its op's name
    integer: np.ndarray | None = None
    # why the run that observes the shapes inference cannot tell failed ("" where it ran or was not needed):
    # an int4 Llama's attention refuses a mask of zeros, and every operator after it went uncounted
    unobserved: str = ""

    @property
    def nodes(self) -> int:
        return len(self.ops)

    def at_batch(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """(FLOPs, bytes) per node at a batch size."""
        return self.flops * batch, self.act_bytes * batch + self.weight_bytes

    def integer_flags(self) -> np.ndarray:
        """[nodes] whether each computes on quantized integers (`integer_node`; by its op's name alone,
        `integer_kernel`, where the graph does not record it)."""
        if self.integer is not None:
            return self.integer.astype(bool)
        return np.array([integer_kernel(op) for op in self.ops], dtype=bool)

    def int8_work(self) -> np.ndarray:
        """[nodes] whether each multiplies and adds on int8 (`int8_work`)."""
        return int8_work(self.category, self.integer_flags())

    def node_features(self) -> np.ndarray:
        """[nodes, NODE_FEATURES] float32: op one-hot, then log-scaled sizes and attributes, the element
        widths it reads and writes (1 for FP32), then whether the op computes on integers (`integer_kernel`:
        always the last column)."""
        onehot = np.eye(len(CATEGORIES), dtype=np.float32)[self.category]
        total = self.act_bytes + self.weight_bytes
        intensity = np.log1p(self.flops) - np.log1p(total)
        float_width = np.full(self.nodes, float(FLOAT_WIDTH))
        widths = [(float_width if w is None else w) / FLOAT_WIDTH for w in (self.in_width, self.out_width)]
        numeric = np.stack([np.log1p(self.flops) / 10, np.log1p(self.act_bytes) / 10,
                            np.log1p(self.weight_bytes) / 10, intensity / 3, self.kernel / 5, self.stride / 2,
                            np.log1p(self.channels) / 5, (self.flops == 0).astype(np.float64), *widths,
                            self.integer_flags().astype(np.float64)], axis=1)
        return np.concatenate([onehot, numeric.astype(np.float32)], axis=1)

    def summary(self) -> dict[str, float]:
        """Whole-graph features (the tabular model's inputs)."""
        out = {"nodes": float(self.nodes), "log_flops": math.log1p(float(self.flops.sum())),
               "log_act_bytes": math.log1p(float(self.act_bytes.sum())),
               "log_weight_bytes": math.log1p(float(self.weight_bytes.sum())),
               "depth": float(_depth(self.nodes, self.edges))}
        counts = np.bincount(self.category, minlength=len(CATEGORIES))
        flops = np.bincount(self.category, weights=self.flops, minlength=len(CATEGORIES))
        for i, name in enumerate(CATEGORIES):
            out[f"n_{name}"] = float(counts[i])
            out[f"log_flops_{name}"] = math.log1p(float(flops[i]))
        return out


def _depth(n: int, edges: np.ndarray) -> int:
    """Longest path in nodes (the graph is a DAG in topological order, as ONNX requires)."""
    depth = np.ones(n, dtype=np.int64)
    for src, dst in sorted(zip(edges[0].tolist(), edges[1].tolist()), key=lambda e: e[1]):
        depth[dst] = max(depth[dst], depth[src] + 1)
    return int(depth.max()) if n else 0


def load_onnx(path: str | Path, check: bool = False) -> onnx.ModelProto:
    """The parsed ModelProto (checked by onnx.checker when `check`), or one InvalidInput line naming the file.
    Weights stored beside it (ONNX's external data: a language model's .onnx.data) stay there
    (`_keep_external`): featurizing needs their shapes, not their values, and a 2.7 GB model read whole took 45 s
    and 13 GB of memory to be answered."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"model {path}: no such file")
    try:
        model = onnx.load(str(path), load_external_data=False)
        if check:
            onnx.checker.check_model(str(path))  # by path: it finds the external data, and takes > 2 GB
        _keep_external(model, Path(os.path.abspath(path.parent)))
    except InvalidInput as exc:
        raise InvalidInput(f"{path.name} is not a valid ONNX model: {exc}") from None
    except Exception as exc:  # protobuf DecodeError, onnx ValidationError, ...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InvalidInput(f"{path.name} is not a valid ONNX model: {first[:300]}") from None
    return model


# External tensors up to this many elements are read at load: the constants the counter reads (shapes, axes,
# scalars) are among them, where an exporter stored every tensor outside (size_threshold=0).
EXTERNAL_READ_MAX = 4096
_BASE = "basepath"  # onnx's ExternalDataInfo key for the folder its location is relative to


def _keep_external(model: onnx.ModelProto, folder: Path) -> None:
    """Check each tensor stored outside the file (its location inside `folder`, its bytes there), read the
    small ones in, and mark the others with their file's folder (`_BASE`), for ONNX Runtime to find them
    (`_ort_bytes`). InvalidInput names a tensor whose data is not where the file says. A location may be a
    symbolic link (a Hugging Face cache's snapshot links each file to its blob), as ONNX Runtime allows."""
    from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors

    for tensor in _get_all_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = ExternalDataInfo(tensor)
        where = Path(os.path.normpath(folder / str(info.location)))  # by name: a symbolic link may lead
        if not where.is_relative_to(folder):  # elsewhere (a Hugging Face cache's files all do), as in ORT
            raise InvalidInput(f"tensor {tensor.name!r}: its external data {info.location!r} lies outside the "
                               "model's folder")
        end = (info.offset or 0) + (info.length or math.ceil(_tensor_bytes(tensor)))
        if not where.is_file() or where.stat().st_size < end:
            raise InvalidInput(f"tensor {tensor.name!r}: its external data {info.location!r} is missing or "
                               f"shorter than the {end} bytes the model says")
        if math.prod(tensor.dims) <= EXTERNAL_READ_MAX:  # read here: onnx's reader refuses a symbolic link
            with open(where, "rb") as f:
                f.seek(info.offset or 0)
                tensor.raw_data = f.read(end - (info.offset or 0))
            tensor.data_location = onnx.TensorProto.DEFAULT
            del tensor.external_data[:]
        else:  # named by the file a link leads to: ONNX Runtime refuses a symbolic link in a model from bytes
            real = Path(os.path.realpath(where))
            next(e for e in tensor.external_data if e.key == "location").value = real.name
            tensor.external_data.add(key=_BASE, value=str(real.parent))


def _external_bytes(model: onnx.ModelProto) -> tuple[str | None, float]:
    """(the folder of the model's weights stored outside its file, or None; their bytes)."""
    from onnx.external_data_helper import _get_all_tensors

    folder, size = None, 0.0
    for tensor in _get_all_tensors(model):
        base = next((e.value for e in tensor.external_data if e.key == _BASE), None)
        if base is not None:
            folder, size = base, size + _tensor_bytes(tensor)
    return folder, size


def _tensor_bytes(tensor: onnx.TensorProto) -> float:
    """The bytes a stored tensor's elements take (`_DTYPE_BYTES`; a type not there weighs FP32's four)."""
    return math.prod(tensor.dims) * _DTYPE_BYTES.get(tensor.data_type, 4)


def _ort_bytes(model: onnx.ModelProto, options) -> bytes:
    """The model as ONNX Runtime loads it from bytes: its external weights' folder given in `options` (ONNX
    Runtime refuses the folder key in the file)."""
    from onnx.external_data_helper import _get_all_tensors

    folder, _ = _external_bytes(model)
    if folder is None:
        return model.SerializeToString()
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for tensor in _get_all_tensors(copy):
        kept = [(e.key, e.value) for e in tensor.external_data if e.key != _BASE]
        del tensor.external_data[:]
        for key, value in kept:
            tensor.external_data.add(key=key, value=value)
    options.add_session_config_entry("session.model_external_initializers_file_folder_path", folder)
    return copy.SerializeToString()


RUNTIME_VIEW_MAX_BYTES = 1 << 30  # past this the original graph is featurized (the optimizer holds a copy)


def as_runtime_runs(model: onnx.ModelProto, runtime: str) -> onnx.ModelProto:
    """The graph a runtime executes, in standard ONNX operators. ONNX Runtime: its basic graph
    optimizations (constant folding, BatchNormalization folded into the convolution before it, Identity
    and Dropout removed): a folded operator moves no activations. Other runtimes, an ONNX Runtime that is
    not installed or fails on the graph: the graph as given. `runtime_graph` featurizes its fusions too."""
    if runtime.lower() != "onnxruntime":
        return model
    return _ort_view(model, "basic") or model


# The passes of ONNX Runtime's default level (ORT_ENABLE_ALL) that its "fused" view leaves out, because they
# depend on the processor and `LAYOUTS` models them per layout instead: NCHWc (x86 only, the block the vector's
# width), its NHWC form of quantized convolutions, and a convolution's residual Add and activation folded
# into it in NCHW. What the level's other passes do stays: a float16 weight that one node alone uses, where the
# CPU provider has no float16 kernel, is converted to float32 once, at load (FuseInitializersTransformer), where
# the extended level left a Cast of it on every run (one that two nodes share keeps its Cast).
LAYOUT_PASSES = ("NchwcTransformer", "NhwcTransformer", "ConvAddActivationFusion")


def _ort_view(model: onnx.ModelProto, level: str) -> onnx.ModelProto | None:
    """The graph ONNX Runtime's CPU provider keeps after its `level` optimizations (basic; fused: its default
    level without `LAYOUT_PASSES`), or None where it is not installed, the graph is too large to copy, or it
    cannot load the graph."""
    folder, external = _external_bytes(model)  # weights it does not change stay there, named as they were
    if model.ByteSize() + external > RUNTIME_VIEW_MAX_BYTES:
        return None
    try:
        import tempfile

        import onnxruntime as ort
    except ImportError:
        return None
    options = ort.SessionOptions()
    options.graph_optimization_level = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                        "fused": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[level]
    options.log_severity_level = 4
    with tempfile.TemporaryDirectory() as tmp:
        options.optimized_model_filepath = str(Path(tmp) / f"{level}.onnx")
        try:
            ort.InferenceSession(_ort_bytes(model, options), options, providers=["CPUExecutionProvider"],
                                 disabled_optimizers=list(LAYOUT_PASSES) if level == "fused" else None)
            optimized = onnx.load(options.optimized_model_filepath, load_external_data=folder is None)
            if folder is not None:
                _keep_external(optimized, Path(folder))
        except Exception:  # a graph ORT cannot load is featurized as given; its own errors come later
            return None
    optimized.graph.name = model.graph.name
    return optimized


MAX_BRANCH_DEPTH = 32  # If nodes nested deeper than this are left as they are (and their work not counted)


def check_operators(model: onnx.ModelProto, name: str) -> None:
    """Refuse (InvalidInput) a model with an operator that no runtime loads: one of ONNX's own domains that
    ONNX does not define at the opset the model imports (NoSuchOp; Gelu below opset 20), or one of ONNX
    Runtime's own domains (com.microsoft) that ONNX Runtime does not register. ONNX Runtime refuses such a
    model at load ("No Op registered for ..."); answered, its work went uncounted and the answer too fast.
    A custom domain's operator is left to the runtime (a custom-op library can provide it) and is named in
    the answer as not counted; so is a model's own function."""
    firsts, known_domains = _first_versions(), _known_domains()
    imported = {_domain(o.domain): o.version for o in model.opset_import}
    local = {(_domain(f.domain), f.name) for f in model.functions}
    stack = [model.graph]
    while stack:
        graph = stack.pop()
        for node in graph.node:
            stack.extend(a.g for a in node.attribute if a.HasField("g"))
            stack.extend(g for a in node.attribute for g in a.graphs)
            key = (_domain(node.domain), node.op_type)
            if key in local or key[0] not in known_domains:
                continue
            standard, first = key[0] in _STANDARD_DOMAINS, firsts.get(key)
            version = imported.get(key[0]) if standard else None
            if first is not None and (version is None or first <= version):  # none imported: ORT takes its latest
                continue
            where = f"node {node.name!r} ({node.op_type})" if node.name else f"a {node.op_type} node"
            opset = f"{key[0] or 'ai.onnx'} opset {version}" if version is not None else key[0] or "ai.onnx"
            since = f" (it is defined from opset {first} on)" if first is not None else ""
            raise InvalidInput(f"model {name}: {where} is no operator of {opset}{since}: ONNX Runtime refuses to "
                               "load the model")


_STANDARD_DOMAINS = ("", "ai.onnx.ml")  # ONNX's own, versioned by the model's opset imports


def _missing_imports(model: onnx.ModelProto) -> list:
    """Opset imports, at ONNX's latest, for the standard domains the graph's nodes use and the model does not
    import: ONNX Runtime loads such a model at its latest, where strict inference stops at the first node."""
    imported = {_domain(o.domain) for o in model.opset_import}
    used = {_domain(n.domain) for n in model.graph.node} & set(_STANDARD_DOMAINS)
    latest = onnx.defs.onnx_opset_version(), onnx.defs.onnx_ml_opset_version()
    return [onnx.helper.make_opsetid(d, latest[_STANDARD_DOMAINS.index(d)]) for d in sorted(used - imported)]


def _domain(domain: str) -> str:
    return "" if domain == "ai.onnx" else domain


@functools.cache
def _first_versions() -> dict[tuple[str, str], int]:
    """{(domain, operator): the first opset that defines it} from ONNX's schemas and, where ONNX Runtime is
    installed, its registry (its contrib domains, and the experimental operators it still loads from ONNX's
    domain: ImageScaler, Crop). Read once. ONNX's checker knows neither of those, and refuses more than ONNX
    Runtime does (a graph output without a shape); a session would load the whole model to say it."""
    firsts: dict[tuple[str, str], int] = {}
    for s in list(onnx.defs.get_all_schemas_with_history()) + list(_ort_schemas()):
        key = (_domain(s.domain), s.name)
        firsts[key] = min(firsts.get(key, s.since_version), s.since_version)
    return firsts


@functools.cache
def _ort_schemas() -> tuple:
    """ONNX Runtime's registry of operator schemas, read once; empty where it is not installed."""
    try:
        from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

        return tuple(ort_state.get_all_operator_schema())
    except (ImportError, AttributeError):
        return ()


@functools.cache
def _known_domains() -> frozenset[str]:
    """The domains `_first_versions` has operators of: the ones `check_operators` can judge."""
    return frozenset(domain for domain, _ in _first_versions())


def inline_branches(model: onnx.ModelProto, feeds: dict | None = None,
                    taken: dict | None = None) -> tuple[onnx.ModelProto, dict[str, bool]]:
    """(the model with each If node replaced by the branch it runs, {If's first output: then-branch taken}).

    An If's work is in its branches, which the graph it sits in does not show: a model exported with
    control flow (Silero VAD's whole network sits in one If on the sample rate) was featurized as the few
    nodes around it and answered a hundredth of its time. Which branch runs: `taken` where it says (the
    choices a registration run observed), else the condition where it is a constant, else the condition
    one unoptimised run at `feeds` computed, else the branch with more multiply-add operators (the costlier
    path: an answer for the work the model can do). The branch's nodes and constants join the graph and
    an Identity gives each branch output the If's output name (ONNX Runtime's basic optimizations remove
    it). Nested Ifs come up a level per pass. A branch whose names collide with the graph's is left."""
    taken = dict(taken or {})
    if not any(node.op_type == "If" for node in model.graph.node):
        return model, taken
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for _ in range(MAX_BRANCH_DEPTH):
        ifs = [node for node in out.graph.node if node.op_type == "If" and node.output]
        if not ifs:
            break
        constants = _constant_conditions(out.graph)
        for node in ifs:
            if node.output[0] not in taken and node.input[0] in constants:
                taken[node.output[0]] = constants[node.input[0]]
        open_ = [node for node in ifs if node.output[0] not in taken]
        if open_ and feeds is not None:
            taken.update(_observed_conditions(out, open_, feeds))
        names = {t for node in out.graph.node for t in list(node.input) + list(node.output)} | \
            {t.name for t in out.graph.initializer} | {i.name for i in out.graph.input}
        nodes, inlined = [], False
        for node in out.graph.node:
            branch, then = _branch(node, taken) if node.op_type == "If" and node.output else (None, False)
            if branch is None or _collides(branch, names):
                nodes.append(node)
                continue
            taken.setdefault(node.output[0], then)
            nodes += list(branch.node)
            nodes += [onnx.helper.make_node("Identity", [b.name], [y], name=f"{y}/branch")
                      for b, y in zip(branch.output, node.output) if y]
            out.graph.initializer.extend(branch.initializer)
            out.graph.value_info.extend(branch.value_info)
            inlined = True
        if not inlined:
            break
        del out.graph.node[:]
        out.graph.node.extend(nodes)
    return out, taken


def _attr_graph(node: onnx.NodeProto, name: str):
    return next((a.g for a in node.attribute if a.name == name and a.HasField("g")), None)


def _branch(node: onnx.NodeProto, taken: dict) -> tuple:
    """(the branch graph an If runs, whether it is the then-branch), by `inline_branches`' order of
    evidence; (None, False) for an If without both branches."""
    then, other = _attr_graph(node, "then_branch"), _attr_graph(node, "else_branch")
    if then is None or other is None:
        return None, False

    def weight(g) -> tuple[int, int]:
        ops = [n.op_type for n in onnx_model.nodes(g)]
        return sum(op in _MAC_NAMES for op in ops), len(ops)
    is_then = taken[node.output[0]] if node.output[0] in taken else weight(then) >= weight(other)
    return (then if is_then else other), is_then


def _collides(branch, names: set) -> bool:
    """Whether a branch defines a name the graph already has (ONNX asks for unique names across
    scopes, but not every exporter keeps to it): inlined, it would rewire the graph."""
    defined = {o for n in onnx_model.nodes(branch) for o in n.output} | {t.name for t in branch.initializer}
    return bool(defined & names)


def _constant_conditions(graph) -> dict[str, bool]:
    """{tensor: value} of the single-element boolean constants (initializers and Constant nodes)."""
    return {name: bool(v) for name, v in _single_constants(graph, (onnx.TensorProto.BOOL,)).items()}


def _float_scalars(graph) -> dict[str, float]:
    """{tensor: value} of the single-element float constants: a Pow's exponent (`scalar_loop`). A float Cast
    of one is one too (a float16 model's exponent, which ONNX Runtime casts to float32 on each run, where its
    CPU kernel is float32 only: the kernel reads the value, wherever it came from)."""
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16)
    values = {name: float(v) for name, v in _single_constants(graph, floats).items()}
    for node in graph.node:  # in graph order: a Cast of a Cast follows
        if node.op_type == "Cast" and node.input and node.input[0] in values and node.output and \
                _attr(node, "to", 0) in floats:
            values[node.output[0]] = values[node.input[0]]
    return values


def _single_constants(graph, types: tuple[int, ...]) -> dict:
    """{tensor: value} of the graph's single-element constants of the element `types`, initializers and
    Constant nodes alike."""
    return {name: values[0] for name, values in _small_constants(graph, types, 1).items() if len(values) == 1}


def nhwc_pool(node: onnx.NodeProto, readers: dict[str, list[str]]) -> bool:
    """Whether ONNX Runtime runs a QLinearAveragePool in NHWC: laid out so (`channels_last`), or read only by
    int8 convolutions, which its NhwcTransformer lays out in NHWC and the pool with them; where anything else
    reads it, the transposes around it stay and it runs in NCHW. readers: tensor → the ops that read it."""
    if node.op_type != "QLinearAveragePool":
        return False
    read = readers.get(node.output[0], []) if node.output else []
    return bool(_attr(node, "channels_last", 0)) or (bool(read) and all(op == "QLinearConv" for op in read))


def _zero_points(graph) -> dict[str, int]:
    """{tensor: value} of the single-element 8- and 16-bit integer constants: a quantized tensor's zero point
    (`concat_lookups`)."""
    types = (onnx.TensorProto.UINT8, onnx.TensorProto.INT8, onnx.TensorProto.UINT16, onnx.TensorProto.INT16)
    return {name: int(v) for name, v in _single_constants(graph, types).items()}


def concat_lookups(node: onnx.NodeProto, ins: list, scales: dict[str, float], points: dict[str, int]) -> float:
    """The elements a QLinearConcat maps through a table (`LOOKUP_OPS`): those of each input whose scale or
    zero point is not a constant equal to the output's (ONNX Runtime copies the others as they are); 0 for
    another node. Its inputs: the output's scale and zero point, then a tensor, its scale and its zero point
    for each input. scales, points: the graph's single-element float and integer constants."""
    if node.op_type != "QLinearConcat" or len(node.input) < 5:
        return 0.0
    wanted = (scales.get(node.input[0]), points.get(node.input[1]))
    looked = 0.0
    for at in range(2, len(node.input) - 2, 3):
        x = ins[at] if at < len(ins) else None
        mine = (scales.get(node.input[at + 1]), points.get(node.input[at + 2]))
        if _known(x) and (None in wanted or mine != wanted):
            looked += _elems(x)
    return looked


def _int_constants(graph) -> dict[str, list[int]]:
    """{tensor: values} of the graph's integer constants of up to 16 elements: a reduction's axes (`index_walk`)."""
    ints = (onnx.TensorProto.INT64, onnx.TensorProto.INT32)
    return {name: [int(v) for v in values] for name, values in _small_constants(graph, ints, 16).items()}


def _small_constants(graph, types: tuple[int, ...], most: int) -> dict:
    """{tensor: flat values} of the graph's constants of the element `types` and at most `most` elements,
    initializers and Constant nodes alike."""
    from onnx import numpy_helper

    named = [(t.name, t) for t in graph.initializer]
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            named += [(node.output[0], a.t) for a in node.attribute if a.name == "value" and a.HasField("t")]
    return {name: numpy_helper.to_array(t).reshape(-1) for name, t in named
            if t.data_type in types and math.prod(t.dims) <= most}


def _observed_conditions(model: onnx.ModelProto, ifs: list, feeds: dict) -> dict[str, bool]:
    """{If's first output: its condition's value} in one unoptimised CPU run at `feeds` (empty where
    onnxruntime is absent or the run fails)."""
    conds = list(dict.fromkeys(node.input[0] for node in ifs))
    values = _run_for(model, conds, feeds)
    return {node.output[0]: bool(np.asarray(values[node.input[0]]).reshape(-1)[0])
            for node in ifs if node.input[0] in values and np.asarray(values[node.input[0]]).size == 1}


def _run_for(model: onnx.ModelProto, tensors: list[str], feeds: dict, errors: list | None = None) -> dict:
    """{tensor: value} of `tensors` in one unoptimised CPU run at `feeds`; empty where onnxruntime is
    absent or the run fails (why, in one line, appended to `errors` where given)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return {}
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    have = {o.name for o in probe.graph.output}
    for name in tensors:
        if name not in have:
            probe.graph.output.append(onnx.ValueInfoProto(name=name))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 4
    try:
        session = ort.InferenceSession(_ort_bytes(probe, options), options, providers=["CPUExecutionProvider"])
        return dict(zip(tensors, session.run(tensors, feeds)))
    except Exception as exc:
        if errors is not None:
            errors.append(" ".join(str(exc).split())[:300])
        return {}


def runtime_graph(model: onnx.ModelProto, runtime: str, name: str = "", specs: tuple = (),
                  shapes: dict | None = None, feeds: dict | None = None, branches: dict | None = None,
                  loops: dict | None = None, data_work: dict | None = None) -> OpGraph:
    """The operator graph a runtime executes (`from_onnx`'s arguments). ONNX Runtime: the kernels its default
    level runs less `LAYOUT_PASSES`, read from the graph as given (its basic view optimized again lost fusions,
    or failed: wav2vec2's), fusions included (a convolution with its activation as FusedConv,
    MatMulInteger with its scales as DynamicQuantizeMatMul, GELU, SkipLayerNormalization): a fused
    kernel is one node, and its intermediate tensors move no bytes. An int8 transformer's MatMuls run
    fused and 2x faster than in float, its convolutions do not (`integer_kernel`). Shape inference does
    not know ONNX Runtime's own operators, so tensor shapes are read by name from the basic view, whose
    operators are standard and which the fusions keep the tensor names of. Other runtimes, or where ONNX
    Runtime cannot load the graph: the graph as given (`as_runtime_runs`). An If runs one of its branches,
    and that branch is what is featurized (`inline_branches`; `branches`: the choices observed before); a Loop
    its body, as many times as it iterates (`loops`: the iterations observed before); NonMaxSuppression and
    RoiAlign the work a run's values give them (`data_work`: counted before; `detection`)."""
    model, taken = inline_branches(model, feeds, branches)
    basic = as_runtime_runs(model, runtime)
    fused = _ort_view(model, "fused") if basic is not model else None
    if fused is None:
        return from_onnx(basic, name=name, specs=specs, shapes=shapes, feeds=feeds, branches=taken, loops=loops,
                         data_work=data_work)
    known, _ = _tensor_shapes(basic, specs, name, shapes, feeds)
    return from_onnx(fused, name=name, specs=specs, shapes=shapes, feeds=feeds, known=known, branches=taken,
                     loops=loops, data_work=data_work)


def observed_shapes(model: onnx.ModelProto, feeds: dict, missing: list[str],
                    errors: list | None = None) -> dict[str, list[int]]:
    """The shapes of `missing` tensors in one unoptimised CPU run at `feeds`: where static inference stops
    (contrib operators, shapes computed from data), the runtime knows. Empty when onnxruntime is absent or
    the run fails (those tensors then stay unknown and their ops are named as not counted; why the run
    failed goes to `errors`)."""
    return {name: list(np.shape(v)) for name, v in _run_for(model, missing, feeds, errors).items()}


def onnx_summary(model: onnx.ModelProto, specs: tuple = (), shapes: dict | None = None,
                 feeds: dict | None = None, branches: dict | None = None, loops: dict | None = None,
                 data_work: dict | None = None) -> dict:
    """A model reference's summary at the spec's shapes, batch 1: parameters (initializers and Constant
    nodes), multiply-accumulates of the linear ops (Conv, MatMul, Gemm, their integer and quantised forms,
    recurrent cells, Einsum, Attention), FLOPs of every op counted (2 per MAC), the ops not counted, the
    precision of the weights, the op histogram and the opset; with `feeds`, the shapes a run observed where
    inference could not tell (`shapes`, for a featurizer that does not run models: the coordinator's)."""
    graph = from_onnx(model, specs=specs, shapes=shapes, feeds=feeds, branches=branches, loops=loops,
                      data_work=data_work)
    summary = {"parameters": graph.params, "macs": int(graph.macs), "flops": int(graph.flops.sum()),
               "precision": onnx_model.precision(model), "uncounted": graph.uncounted,
               "ops": dict(Counter(graph.ops).most_common()),
               "opset": max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=None)}
    if graph.observed:
        summary["shapes"] = graph.observed
    if graph.unobserved and graph.uncounted:
        summary["unobserved"] = graph.unobserved
    if graph.branches:
        summary["branches"] = graph.branches
    if graph.loops:
        summary["loops"] = graph.loops
    if graph.data_work:
        summary["data_work"] = graph.data_work
    return summary


def _infer(model: onnx.ModelProto, specs: tuple, name: str) -> onnx.ModelProto:
    """The model with every tensor's shape and type inferred at the spec's input shapes. Strict: a node
    that ONNX's own inference rejects (an axis outside its input's rank, a Transpose whose perm repeats an
    axis, a MatMul whose inner dimensions the given input shapes make disagree) is one InvalidInput naming
    it, as ONNX Runtime, which runs the same inference when it loads a model, refuses the model. A shape
    the file declares that inference disagrees with is no error: ONNX Runtime falls back to a lenient merge
    there, and so does this (non-strict inference keeps the file's). Nor is an error ONNX Runtime does not
    raise, where it is installed to say: ONNX's inference of a function's body fails where ONNX Runtime
    runs the operator (a MeanVarianceNormalization without its axes: "One and only one of the attributes
    'value', ... must be specified for a Constant node"), and such a model was refused."""
    fixed = _fix_symbolic_dims(model, specs)
    try:
        return shape_inference.infer_shapes(fixed, strict_mode=True, data_prop=True)
    except Exception as exc:
        found = _inference_errors(exc)
        errors = [e for e in found if not e[2].startswith(_DECLARED_SHAPE_DIFFERS)]
        if (errors or not found) and not _runtime_loads(fixed):
            op, node, what = errors[0] if errors else ("", "", (str(exc).strip().splitlines() or ["?"])[0])
            where = f"{op} node {node!r}: " if node else f"{op}: " if op else ""
            raise InvalidInput(f"model {name}: ONNX shape inference rejects it: {where}{what[:300]}") from None
    try:
        return shape_inference.infer_shapes(fixed, strict_mode=False, data_prop=True)
    except Exception as exc:
        raise InvalidInput(f"model {name}: ONNX shape inference failed ({str(exc).splitlines()[0]})") from None


_DECLARED_SHAPE_DIFFERS = "Inferred shape and existing shape differ"  # onnx's mergeInShapeInfo


def _runtime_loads(model: onnx.ModelProto) -> bool:
    """Whether ONNX Runtime's CPU provider loads the model (its own shape inference runs at load, at the
    model's input shapes); False where it is not installed or the model is too large to hand it."""
    return _ort_view(model, "basic") is not None


def _inference_errors(exc: Exception) -> list[tuple[str, str, str]]:
    """(op type, node name or "", what) of each node error an ONNX strict shape inference raised."""
    return [m.groups("") for m in re.finditer(r"\(op_type:([\w.]+)(?:, node name: ([^)]*))?\): (?:\[\w+\] )?([^\n]*)",
                                             str(exc))]


def _tensor_shapes(model: onnx.ModelProto, specs: tuple, name: str, shapes_given: dict | None,
                   feeds: dict | None, known: dict | None = None, errors: list | None = None) -> tuple[dict, dict]:
    """({tensor: (dims or None, element type)} by shape inference at the spec's shapes, then where it
    cannot tell, `known` (another view's), `shapes_given` (observed before) or one run at `feeds`;
    {tensor: dims} that run observed). A tensor whose element type inference does not know (the output of
    an operator it does not know: ONNX Runtime's QLinearAdd) has the type its producer's schema binds it to
    (`output_types`): a uint8 activation weighs one byte, not a float's four."""
    graph = _infer(model, specs, name).graph
    shapes_given = shapes_given or {}
    shapes: dict[str, tuple[list[int] | None, int]] = {}
    for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
        shapes[vi.name] = _shape(vi.type)
    for tensor, entry in (known or {}).items():
        if shapes.get(tensor, (None, 0))[0] is None and entry[0] is not None:
            shapes[tensor] = entry
    missing = [o for node in model.graph.node for o in node.output if o and shapes.get(o, (None, 0))[0] is None]
    ran = observed_shapes(model, feeds, missing, errors) if feeds is not None and missing and not shapes_given else {}
    weights = {init.name: init.data_type for init in model.graph.initializer}
    for node in model.graph.node:  # in graph order: a producer's inputs are typed before its outputs
        typed = [shapes.get(t, (None, 0))[1] or weights.get(t, 0) if t else 0 for t in node.input]
        for out, dtype in zip(node.output, output_types(node, typed)):
            if out and not shapes.get(out, (None, 0))[1]:
                shapes[out] = (shapes.get(out, (None, 0))[0], dtype)
    for tensor, dims in (shapes_given or ran).items():
        if shapes.get(tensor, (None, 0))[0] is None and isinstance(dims, list) and \
                all(isinstance(d, int) and d >= 0 for d in dims):
            shapes[tensor] = (dims, shapes.get(tensor, (None, 0))[1] or onnx.TensorProto.FLOAT)
    return shapes, ran


def output_types(node: onnx.NodeProto, typed: list[int]) -> list[int]:
    """The element type of each of a node's outputs, from its inputs' (`typed`; 0 where not known), as its
    schema in ONNX Runtime's registry binds them (ONNX's inference does not know ONNX Runtime's operators):
    the type of the first input bound to the same type parameter, else the parameter's one allowed type, else
    the node's first input's. QAttention's output is float like its bias (T3), where it was taken for its
    uint8 input's: its 67 M multiply-adds were counted as writing a byte an element."""
    first = typed[0] if typed else 0
    rule = _type_rules().get((_domain(node.domain), node.op_type))
    if rule is None:
        return [first] * len(node.output)
    ins, outs, single = rule
    out = []
    for i in range(len(node.output)):
        param = outs[min(i, len(outs) - 1)] if outs else ""
        bound = (t for j, t in enumerate(typed) if t and ins and ins[min(j, len(ins) - 1)] == param)
        out.append(next(bound, single.get(param) or _tensor_type(param) or first))
    return out


@functools.cache
def _type_rules() -> dict[tuple[str, str], tuple[tuple[str, ...], tuple[str, ...], dict[str, int]]]:
    """{(domain, operator): (its inputs' type parameters, its outputs', {parameter: its one allowed element
    type})} of ONNX Runtime's own operators (domains ONNX does not define), at their latest version. Empty
    where ONNX Runtime is not installed."""
    schemas = [s for s in _ort_schemas() if _domain(s.domain) not in _STANDARD_DOMAINS]
    rules: dict = {}
    for s in sorted(schemas, key=lambda s: s.since_version):
        single = {c.type_param_str: _tensor_type(c.allowed_type_strs[0]) for c in s.type_constraints
                  if len(c.allowed_type_strs) == 1 and _tensor_type(c.allowed_type_strs[0])}
        rules[(s.domain, s.name)] = (tuple(i.typeStr for i in s.inputs), tuple(o.typeStr for o in s.outputs), single)
    return rules


def _tensor_type(text: str) -> int:
    """ONNX's element type of a schema's type string ("tensor(float)"), 0 for a parameter's name or another kind."""
    name = text[len("tensor("):-1].upper() if text.startswith("tensor(") and text.endswith(")") else ""
    return onnx.TensorProto.DataType.Value(name) if name in onnx.TensorProto.DataType.keys() else 0


def from_onnx(model: onnx.ModelProto, name: str = "", specs: tuple = (), shapes: dict | None = None,
              feeds: dict | None = None, known: dict | None = None, branches: dict | None = None,
              loops: dict | None = None, data_work: dict | None = None) -> OpGraph:
    """The operator graph of an ONNX model at the spec's input shapes (batch 1); dimensions no spec gives
    are set to 1. Where inference cannot tell a tensor's shape, `known` (another view of the same graph,
    `runtime_graph`) or `shapes` (observed before) says, or else one run at `feeds` observes it
    (`observed_shapes`; kept in `OpGraph.observed`). An If is featurized as the branch it runs
    (`inline_branches`; the choices kept in `OpGraph.branches`), a Loop or Scan as its body as many times as it
    iterates (`with_loop_bodies`; `loops`: iterations observed before, kept in `OpGraph.loops`), a
    NonMaxSuppression or an adaptive RoiAlign at the work its input values give it in that run (`detection`;
    `data_work`: counted before, kept in `OpGraph.data_work`)."""
    check_operators(model, name or model.graph.name)
    params = onnx_model.parameters(model.graph)  # the file's, every branch's weights included
    model, taken = inline_branches(model, feeds, branches)
    graph = model.graph
    if not graph.node:
        raise InvalidInput(f"model {name or graph.name}: the ONNX graph has no operators")
    unobserved: list[str] = []
    shapes, ran = _tensor_shapes(model, specs, name, shapes, feeds, known, unobserved)
    weights = {}
    for init in graph.initializer:
        weights[init.name] = _tensor_bytes(init)
        shapes[init.name] = (list(init.dims), init.data_type)
    for node in graph.node:  # weights held by Constant nodes weigh as initializers do
        if node.op_type == "Constant" and node.output:
            t = next((a.t for a in node.attribute if a.name == "value" and a.HasField("t")), None)
            if t is not None and math.prod(t.dims) > 64:
                weights[node.output[0]] = _tensor_bytes(t)
                shapes.setdefault(node.output[0], (list(t.dims), t.data_type))
    constants, ints, points = _float_scalars(graph), _int_constants(graph), _zero_points(graph)
    readers: dict[str, list[str]] = {}  # tensor → the ops that read it
    for node in graph.node:
        for t in node.input:
            readers.setdefault(t, []).append(node.op_type)
    counted = detection.read(model, shapes, data_work or {},
                             lambda tensors: _run_for(model, tensors, feeds) if feeds is not None else {})
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    producer: dict[str, int] = {}
    n = len(graph.node)
    category = np.zeros(n, np.int64)
    arrays = {k: np.zeros(n) for k in ("flops", "macs", "act", "weight", "kernel", "stride", "channels", "in_width",
                                       "out_width", "operands", "rereads", "integer", "im2col", "work_share")}
    arrays["lanes"] = np.zeros((n, len(LAYOUTS)))
    edges: list[tuple[int, int]] = []
    known = 0
    ops = []
    uncounted: Counter = Counter()
    blocked: list[tuple[bool, ...]] = []  # per node, per NCHWc block: whether ONNX Runtime lays it out so
    dispatch: list[np.ndarray] = []  # per node, its fixed cost per layout (`dispatch_units`)
    for i, node in enumerate(graph.node):
        ops.append(node.op_type)
        outs = [shapes.get(o, (None, 0))[0] for o in node.output]
        ins = [shapes.get(t, (None, 0))[0] if t else None for t in node.input]
        ml = classic_ml.work(node, ins[0] if ins else None) if classic_ml.ml_node(node) else \
            _detection_work(node, ins, outs, counted) if detection.detection_node(node) else None
        category[i] = CATEGORIES.index(ml.category if ml is not None else _category(node, shapes))
        for inp in node.input:
            if inp in producer:
                edges.append((producer[inp], i))
        for out in node.output:
            producer[out] = i
        if outs and outs[0] is not None:
            known += 1
        arrays["rereads"][i] = _recurrent_rereads(node, ins, weights)
        w_bytes = _weights_read(node, ins, weights) + arrays["rereads"][i]
        reduction = _reduction_path_of(node, ins[0] if ins else None, ints)
        walk = index_walk(node, ins, ints, opset, reduction)
        looked = concat_lookups(node, ins, constants, points)
        scalar = ml.scalar if ml is not None else walk is not None or scalar_loop(node, constants, reduction) or \
            cumulative_scalar(node, ins[0] if ins else None, ints) or looked > 0
        flops, macs, kernel, stride, channels = _flops(node, ins, outs, scalar, nhwc_pool(node, readers))
        if walk is not None:
            flops = walk
        if looked > 0:
            flops = looked * LOOKUP_OPS
        if ml is not None:  # an ONNX-ML model's operator: its weights are its attributes
            flops, macs = ml.flops, ml.macs
            w_bytes += ml.weight_bytes
            params += ml.parameters
        if flops is None:  # an op that computes, whose cost is not known here: named, not hidden as 0
            uncounted[node.op_type] += 1
            flops = 0.0
        arrays["flops"][i], arrays["macs"][i], arrays["kernel"][i], arrays["stride"][i], arrays["channels"][i] = (
            flops, macs, kernel, stride, channels)
        arrays["weight"][i] = w_bytes
        at = _CONV_WEIGHT.get(node.op_type)
        # what ONNX Runtime lays out in NCHWc: constant float weights, and a constant bias if any (a float16 bias
        # two convolutions share, which its CPU provider casts on each run, is none; nor a computed one)
        constant = at is not None and len(node.input) > at and all(
            t in weights and shapes[t][1] == onnx.TensorProto.FLOAT for t in node.input[at:at + 2] if t)
        blocked.append(tuple(constant and nchwc_runs(node.op_type, ins[at], _attr(node, "group", 1), block)
                             for block in NCHWC_BLOCKS))
        dispatch.append(dispatch_units(node, CATEGORIES[category[i]], ins[at] if at is not None and len(ins) > at
                                       else None, blocked[-1], ins))
        arrays["im2col"][i] = im2col_bytes(node, ins, outs)
        arrays["work_share"][i] = nchwc_work_share(node, ins, outs)
        arrays["lanes"][i] = (ml.columns,) * len(LAYOUTS) if ml is not None and ml.columns else \
            gemm_columns(node.op_type, CATEGORIES[category[i]], outs[0] if outs else None, blocked[-1], scalar)
        arrays["operands"][i] = int8_operands(node, shapes)
        arrays["integer"][i] = integer_node(node)
        for key, tensors in (("in_width", node.input), ("out_width", node.output)):
            arrays[key][i] = _DTYPE_BYTES.get(shapes.get(tensors[0], (None, 0))[1], FLOAT_WIDTH) \
                if tensors and tensors[0] else FLOAT_WIDTH
        if CATEGORIES[category[i]] != "view":
            act_in = sum(_bytes(shapes.get(t)) for t in node.input if t and t not in weights)
            act_out = sum(_bytes(shapes.get(o)) for o in node.output)
            arrays["act"][i] = act_in + act_out + moe_materialized(node, ins)
    fused, reordered, copies = nchwc_layouts(list(graph.node), blocked, shapes, _static_inputs(graph),
                                             frozenset(o.name for o in graph.output))
    # a node folded into the convolution before it runs no kernel of its own; the copies charged to it do run
    dispatch = (np.stack(dispatch) if n else np.zeros((0, len(LAYOUTS)))) * ~fused + copies * REORDER_UNITS
    in_blocks = np.array(blocked, dtype=bool).reshape(n, -1)
    patches = np.zeros((n, len(LAYOUTS)))
    patches[:, 1:] = arrays["im2col"][:, None] * ~in_blocks
    work_share = np.ones((n, len(LAYOUTS)))
    work_share[:, 1:] = np.where(in_blocks, arrays["work_share"][:, None], 1.0)
    bodies = _loop_bodies(model, shapes, ints, feeds, name or graph.name, loops or {})
    for at in bodies:  # the node itself only runs its body: the body's nodes carry the work
        category[at] = CATEGORIES.index("view")
        dispatch[at] = 1.0
    whole = OpGraph(name=name or graph.name, ops=ops, category=category, flops=arrays["flops"],
                   act_bytes=arrays["act"], weight_bytes=arrays["weight"], kernel=arrays["kernel"],
                   stride=arrays["stride"], channels=arrays["channels"],
                   edges=np.array(edges, dtype=np.int64).reshape(-1, 2).T.copy(), params=params,
                   shapes_known=known / n, macs=float(arrays["macs"].sum()),
                   uncounted=dict(uncounted.most_common()), observed=ran, branches=taken, in_width=arrays["in_width"],
                   out_width=arrays["out_width"], lanes=arrays["lanes"], operands=arrays["operands"].astype(np.int8),
                   integer=arrays["integer"].astype(bool), unobserved=unobserved[0] if unobserved else "",
                   fused=fused, reordered=reordered, patches=patches, work_share=work_share, rereads=arrays["rereads"],
                   dispatch=dispatch, loops={graph.node[at].output[0]: n for at, (_, n) in bodies.items()},
                   data_work={k: v for k, v in counted.items() if k in producer})
    return with_loop_bodies(whole, bodies) if bodies else whole


def _detection_work(node: onnx.NodeProto, ins: list, outs: list, counted: dict) -> classic_ml.Work | None:
    """A NonMaxSuppression's or RoiAlign's work (`detection.node_work`) as a scalar loop's, or None (named as
    not counted) where no run told it."""
    ops = detection.node_work(node, ins, outs, counted)
    return None if ops is None else classic_ml.Work(ops)


# A Loop or Scan runs its body once an iteration, and its work is there: a k-nearest-neighbours classifier as
# skl2onnx writes it computes its distances in a Scan over the training samples (41 ms for 1,000 rows, answered
# 1.2 while the Scan went uncounted). The body is featurized as a graph of its own, at the shapes the node
# hands it, and joins the graph in copies, each charged its share of the iterations: as many copies as the
# iterations, up to LOOP_NODES_MAX nodes of them (past it, fewer copies carry more work each, and the
# operators' launches between them go uncharged).
LOOP_NODES_MAX = 8192
ITERATIONS_MAX = (1 << 31) - 1  # a trip count past this (a while loop's INT64_MAX) is no count
_LOOPS = ("Loop", "Scan")


def _loop_bodies(model: onnx.ModelProto, shapes: dict, ints: dict, feeds: dict | None, name: str,
                 given: dict) -> dict[int, tuple[OpGraph, int]]:
    """{node index: (its body's graph, iterations)} of the graph's Loops and Scans whose iterations are known
    (`given`: {first output: iterations} observed before, where a run read them; else `_iterations`) and whose
    body can be featurized; the others stay as they are, named as not counted."""
    out = {}
    for i, node in enumerate(model.graph.node):
        if node.op_type not in _LOOPS or _domain(node.domain) != "" or _attr_graph(node, "body") is None:
            continue
        seen = given.get(node.output[0]) if node.output else None
        iterations = seen if isinstance(seen, int) and 0 <= seen <= ITERATIONS_MAX else \
            _iterations(model, node, shapes, ints, feeds)
        body = _body_model(model, node, shapes) if iterations is not None else None
        if body is None:
            continue
        try:
            out[i] = (from_onnx(body, name=f"{name}/{node.name or node.output[0]}"), iterations)
        except InvalidInput:
            continue
    return out


def _iterations(model: onnx.ModelProto, node: onnx.NodeProto, shapes: dict, ints: dict,
                feeds: dict | None) -> int | None:
    """How many times a Loop or Scan runs its body: a Scan, its first scan input's length along its axis; a
    Loop, its scan outputs' length, else its trip count (a constant, or its value in one run at `feeds`) where
    nothing else can end it (no condition, or a body that passes it through unchanged). None where not told:
    a while loop whose condition the data decides and that stacks nothing."""
    def dims(tensor):
        return shapes.get(tensor, (None, 0))[0] if tensor else None

    if node.op_type == "Scan":
        scans = int(_attr(node, "num_scan_inputs", 0) or 0)
        first = len(node.input) - scans
        x = dims(node.input[first]) if 0 < scans and 0 <= first < len(node.input) else None
        if not _known(x) or not x:
            return None
        axis = int((list(_attr(node, "scan_input_axes", None) or []) or [0])[0])
        return int(x[axis % len(x)]) if -len(x) <= axis < len(x) else None
    carried = len(node.input) - 2
    stacked = [dims(o) for o in node.output[carried:]]
    if stacked and _known(stacked[0]) and stacked[0]:
        return int(stacked[0][0])
    trip = node.input[0] if node.input else ""
    ends = len(node.input) > 1 and node.input[1] and not _passes_condition(_attr_graph(node, "body"), model.graph)
    if not trip or ends:
        return None
    value = ints.get(trip)
    if value is None and feeds is not None:
        seen = np.asarray(_run_for(model, [trip], feeds).get(trip, [])).reshape(-1)
        value = [int(seen[0])] if seen.size == 1 else None
    return int(value[0]) if value and len(value) == 1 and 0 <= value[0] <= ITERATIONS_MAX else None


def _passes_condition(body, outer) -> bool:
    """Whether a Loop's body hands its condition on unchanged or sets it true (its first output is its
    condition input or a true constant of the body or of the `outer` graph, or an Identity of one: torch's
    exporter writes the latter): then only the trip count ends the loop."""
    if len(body.input) < 2 or not body.output:
        return False
    given, out = body.input[1].name, body.output[0].name
    true = {t for g in (body, outer) for t, v in _constant_conditions(g).items() if v}
    producer = next((n for n in body.node if out in n.output), None)
    if producer is not None and producer.op_type == "Identity":
        out = producer.input[0]
    return out == given or out in true


def _body_model(model: onnx.ModelProto, node: onnx.NodeProto, shapes: dict) -> onnx.ModelProto | None:
    """A Loop's or Scan's body as a model of its own: its inputs at the shapes the node gives them (a Scan's
    scan inputs one slice each, a Loop's iteration number and condition scalars), the outer tensors it reads
    as inputs of their shapes, the outer constants as its own. None where an input's shape is not known."""
    body = _attr_graph(node, "body")
    g = onnx.GraphProto()
    g.CopyFrom(body)
    given: list[tuple[list | None, int]] = []
    if node.op_type == "Scan":
        scans = int(_attr(node, "num_scan_inputs", 0) or 0)
        states = len(node.input) - scans
        axes = list(_attr(node, "scan_input_axes", None) or []) or [0] * scans
        for k, tensor in enumerate(node.input):
            dims, dtype = shapes.get(tensor, (None, 0))
            if k >= states and dims is not None and k - states < len(axes):
                axis = int(axes[k - states]) % max(len(dims), 1)
                dims = dims[:axis] + dims[axis + 1:]
            given.append((dims, dtype))
    else:
        given = [([], onnx.TensorProto.INT64), ([], onnx.TensorProto.BOOL)] + \
            [shapes.get(t, (None, 0)) for t in node.input[2:]]
    if len(given) != len(g.input):
        return None
    for vi, (dims, dtype) in zip(g.input, given):
        if vi.type.WhichOneof("value") not in (None, "tensor_type"):
            continue  # a sequence carried through (torch's list of outputs) keeps the type the body declares
        if _known(dims) and dtype:
            vi.type.CopyFrom(onnx.helper.make_tensor_type_proto(dtype, dims))
        elif not vi.type.tensor_type.elem_type:
            return None  # neither the node nor the body says
    defined, used = set(), set()
    for sub in onnx_model.subgraphs(g):
        defined |= {i.name for i in sub.input} | {t.name for t in sub.initializer} | \
            {o for n in sub.node for o in n.output}
        used |= {t for n in sub.node for t in n.input if t}
    outer = used - defined
    constants = {t.name: t for t in model.graph.initializer if t.name in outer}
    for n in model.graph.node:
        if n.op_type == "Constant" and n.output and n.output[0] in outer:
            value = next((a.t for a in n.attribute if a.name == "value" and a.HasField("t")), None)
            if value is not None:
                constants[n.output[0]] = onnx.TensorProto()
                constants[n.output[0]].CopyFrom(value)
                constants[n.output[0]].name = n.output[0]
    for tensor in sorted(outer):
        if tensor in constants:
            g.initializer.append(constants[tensor])
            continue
        dims, dtype = shapes.get(tensor, (None, 0))
        if not _known(dims) or not dtype:
            return None
        g.input.append(onnx.helper.make_tensor_value_info(tensor, dtype, dims))
    m = onnx.helper.make_model(g, opset_imports=list(model.opset_import))
    m.ir_version = model.ir_version
    return m


def with_loop_bodies(g: OpGraph, loops: dict[int, tuple[OpGraph, int]]) -> OpGraph:
    """The graph with each Loop's or Scan's body (`_loop_bodies`: {node: (body graph, iterations)}) joined in
    copies (`LOOP_NODES_MAX`), each charged its share of the iterations; the copies follow one another, the
    first the node. The node is no longer named as not counted; what its body could not count is."""
    per_node = ("category", "flops", "act_bytes", "weight_bytes", "kernel", "stride", "channels", "in_width",
                "out_width", "lanes", "fused", "operands", "reordered", "patches", "work_share", "rereads", "integer",
                "dispatch")
    scaled = ("flops", "act_bytes", "weight_bytes", "reordered", "patches", "rereads", "dispatch")
    parts = {k: [getattr(g, k)] for k in per_node}
    ops, edges, offset = list(g.ops), [g.edges], g.nodes
    uncounted, macs = Counter(g.uncounted), g.macs
    for at, (body, iterations) in loops.items():
        uncounted[g.ops[at]] -= 1
        uncounted.update({op: n * (iterations > 0) for op, n in body.uncounted.items()})
        macs += body.macs * iterations
        copies = max(1, min(iterations, LOOP_NODES_MAX // max(body.nodes, 1)))
        share = iterations / copies
        heads = np.array(sorted(set(range(body.nodes)) - set(body.edges[1].tolist())), np.int64)
        tail = min(set(range(body.nodes)) - set(body.edges[0].tolist()))  # a body's graph has no cycle
        before = at
        for _ in range(copies):
            for k in per_node:
                parts[k].append(getattr(body, k) * share if k in scaled else getattr(body, k))
            ops += body.ops
            edges += [body.edges + offset, np.stack([np.full(len(heads), before), heads + offset])]
            before = offset + tail
            offset += body.nodes
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    return replace(g, ops=ops, edges=np.concatenate(edges, axis=1).astype(np.int64), macs=macs,
                   uncounted={op: n for op, n in uncounted.most_common() if n > 0}, **arrays)


def _fix_symbolic_dims(model: onnx.ModelProto, specs: tuple = ()) -> onnx.ModelProto:
    """A light copy for shape inference: inputs at the spec's shapes (batch 1), other symbolic dimensions
    set to 1, large weights as typed inputs, an STFT's `onesided` said where it is left at its default.

    Small initializers keep their values: Reshape's target shape and the like are read by inference.
    """
    g = model.graph
    names = {vi.name for vi in g.input}
    small = [t for t in g.initializer if math.prod(t.dims) <= 64]
    as_inputs = [onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                 for t in g.initializer if math.prod(t.dims) > 64 and t.name not in names]
    graph = onnx.helper.make_graph(list(g.node), g.name, list(g.input) + as_inputs, list(g.output), small)
    light = onnx.helper.make_model(graph, opset_imports=list(model.opset_import) + _missing_imports(model))
    light.ir_version = model.ir_version
    light.functions.extend(model.functions)
    for node in light.graph.node:  # ONNX's inference (1.23) takes it for two-sided there; the operator, one-sided
        if node.op_type == "STFT" and node.domain in ("", "ai.onnx") and \
                not any(a.name == "onesided" for a in node.attribute):
            node.attribute.append(onnx.helper.make_attribute("onesided", 1))
    given = {s.name: s.shape_at(1) for s in specs}
    for is_input, vi in [(True, v) for v in light.graph.input] + [(False, v) for v in light.graph.output]:
        if not vi.type.HasField("tensor_type"):
            continue
        shape = vi.type.tensor_type.shape
        if is_input and vi.name in given:
            shape.ClearField("dim")
            for d in given[vi.name]:
                shape.dim.add().dim_value = d
            continue
        if not is_input:  # an output's declared shape would pin what inference finds: let it find
            if any(not d.HasField("dim_value") or d.dim_value <= 0 for d in shape.dim):
                vi.type.tensor_type.ClearField("shape")
            continue
        for dim in shape.dim:
            if not dim.HasField("dim_value") or dim.dim_value <= 0:
                dim.ClearField("dim_param")
                dim.dim_value = 1
    return light


def _shape(type_proto: onnx.TypeProto) -> tuple[list[int] | None, int]:
    if not type_proto.HasField("tensor_type"):
        return None, 0
    tt = type_proto.tensor_type
    if not tt.HasField("shape"):
        return None, tt.elem_type
    dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tt.shape.dim]
    return (None if any(d is None for d in dims) else dims), tt.elem_type


def _bytes(entry: tuple[list[int] | None, int] | None) -> float:
    if not entry or entry[0] is None:
        return 0.0
    return float(math.prod(entry[0])) * _DTYPE_BYTES.get(entry[1], 4)


_attr = onnx_model.attribute


# The categories whose operators are multiply-adds: on int8 they run at the processor's int8 peak.
MAC_CATEGORIES = ("conv", "conv_dw", "conv_1x1", "matmul")


def int8_work(category: np.ndarray, integer: np.ndarray) -> np.ndarray:
    """[N] whether each node multiplies and adds on int8: an integer kernel (`integer_kernel`) of a MAC
    category. A DynamicQuantizeLinear is an integer kernel too, but its arithmetic is a float one."""
    macs = np.isin(category, [CATEGORIES.index(c) for c in MAC_CATEGORIES])
    return macs & np.asarray(integer, dtype=bool)


# The signedness of an int8 multiply-add's two operands, activations × weights. ONNX Runtime's quantizers write
# the first by default (uint8 activations, int8 weights), and each pair runs on kernels of its own: on one x86
# machine (ONNX Runtime 1.32, one thread, AVX-512 VNNI) a 256-deep MatMulInteger took 0.044 ms u8×s8, 0.11
# u8×u8, 0.50 s8×u8 and 0.56 s8×s8; a 3×3 QLinearConv 0.58, 1.6 and 7.3 ms (u8×s8, u8×u8, s8×s8), where
# ConvInteger ran the other way (u8×u8 0.2-0.9 of its float Conv's time, u8×s8 3.6-6.2 times it).
OPERAND_PAIRS = ("u8×s8", "u8×u8", "s8×s8", "s8×u8",
                 "s8×u4", "s8×u2")  # MatMulNBits' on int8 (`nbits_matmul`): weights of 4 or 2 bits (8: s8×u8)
_SIGNED = {onnx.TensorProto.INT8: True, onnx.TensorProto.UINT8: False}


def int8_operands(node: onnx.NodeProto, shapes: dict) -> int:
    """The index in OPERAND_PAIRS of an integer multiply-add's operands (`integer_kernel`, of a MAC op):
    its first input's element type and its weight's (`_CONV_WEIGHT`, `_MATMUL_INPUTS`; a recurrent cell's
    and an attention's second input). A float first input is quantized as the kernel runs, to uint8 (ONNX
    Runtime's DynamicQuantize* kernels, as DynamicQuantizeLinear); a type not known is the default's. 0 for
    every other node."""
    op = node.op_type
    nbits = nbits_matmul(node)
    if nbits is not None:  # int8 activations (quantized as it runs) × unsigned weights of a few bits
        return OPERAND_PAIRS.index(f"s8×u{nbits[0]}") if nbits[1] and f"s8×u{nbits[0]}" in OPERAND_PAIRS else 0
    at = _CONV_WEIGHT.get(op, _MATMUL_INPUTS.get(op, (0, 1 if op in _RECURRENT or "Attention" in op else None))[1])
    if not integer_kernel(op) or at is None or len(node.input) <= at or not node.input[0]:
        return 0
    activations = _SIGNED.get(shapes.get(node.input[0], (None, 0))[1], False)
    weights = _SIGNED.get(shapes.get(node.input[at], (None, 0))[1], True)
    return OPERAND_PAIRS.index(f"{'s8' if activations else 'u8'}×{'s8' if weights else 'u8'}")


_CONV_WEIGHT = {"Conv": 1, "ConvTranspose": 1, "ConvInteger": 1, "QLinearConv": 3, "FusedConv": 1}
_MATMUL_INPUTS = {"MatMul": (0, 1), "Gemm": (0, 1), "MatMulInteger": (0, 1), "MatMulIntegerToFloat": (0, 1),
                  "DynamicQuantizeMatMul": (0, 1), "QLinearMatMul": (0, 3), "QGemm": (0, 3),
                  "FusedMatMul": (0, 1), "FusedGemm": (0, 1), "MatMulNBits": (0, 1)}


def nbits_matmul(node: onnx.NodeProto) -> tuple[int, bool] | None:
    """(bits per weight, whether it multiplies on int8) of ONNX Runtime's MatMulNBits (int4 language models:
    onnxruntime-genai's, ORT's MatMulNBitsQuantizer), None for every other node. Its weights are packed in
    blocks of K with a scale each; `accuracy_level` 4 quantizes the activations to int8 and multiplies on
    int8, any other level dequantizes the weights to float. On one x86 core (ONNX Runtime 1.32), two
    1024×4096 layers at 1 token took 0.60 ms in float and 0.16 in int8, the float MatMul 1.36 (its 33 MB
    streamed); at 64 tokens 12.4, 8.4 and 11.9 ms."""
    if node.op_type != "MatMulNBits":
        return None
    return int(_attr(node, "bits", 4) or 4), int(_attr(node, "accuracy_level", 0) or 0) == 4


def _nbits_extra(node: onnx.NodeProto, a: list) -> float:
    """FLOPs a MatMulNBits does beside its multiply-adds (`nbits_matmul`): in float, each weight dequantized
    once a call (`NBITS_DEQUANTIZE`); in int8, each activation quantized once (a DynamicQuantizeLinear's 4).
    0 for every other node."""
    nbits = nbits_matmul(node)
    k, n = int(_attr(node, "K", 0) or 0), int(_attr(node, "N", 0) or 0)
    if nbits is None or k <= 0 or n <= 0:
        return 0.0
    if nbits[1]:
        return _ELEMENTWISE["DynamicQuantizeLinear"] * _elems(a)
    return NBITS_DEQUANTIZE * k * n


# Operations a packed weight takes to become a float one: unpacked from its byte (a shift and a mask), less
# its block's zero point, times its block's scale (a DequantizeLinear of a whole byte does the last two).
NBITS_DEQUANTIZE = 4
# ONNX Runtime's mixtures of experts (onnxruntime-genai's Mixtral, Phi-3.5-MoE, gpt-oss): each token runs
# through the k experts its router picks, each expert two or three layers ({op: the inputs of the first,
# second and third layer's weights [experts, rows, columns], packed in QMoE}). A token's multiply-adds are
# k experts' weights; the weights read are those of the experts some token picks (`experts_touched`), which
# QMoE dequantizes once a call, as MatMulNBits does.
_MOE = {"MoE": (2, 4, 6), "QMoE": (2, 5, 8)}


def qmoe_int8(node: onnx.NodeProto) -> bool:
    """Whether ONNX Runtime's QMoE multiplies on int8: block-wise experts run MatMulNBits' kernel, on int8 at
    accuracy level 4, and always at 8 bits (it has no float kernel for them); experts with a scale a row are
    dequantized to float and multiplied in float (`moe_materialized`)."""
    blockwise = int(_attr(node, "block_size", 0) or 0) > 0
    bits = int(_attr(node, "expert_weight_bits", 4) or 4)
    return blockwise and (bits == 8 or int(_attr(node, "accuracy_level", 0) or 0) == 4)


def moe_materialized(node: onnx.NodeProto, ins: list) -> float:
    """The bytes a QMoE with a scale per row (no `block_size`) moves through float copies of its experts'
    weights: each expert some token picks dequantized into a float buffer (4 bytes an element written), which
    its GEMM then reads (4 more). A 1024 × 2048 layer pair of 16 experts, k = 2, took 2.6 ms a token where
    its block-wise twin took 0.68. 0 for every other node."""
    if node.op_type != "QMoE" or int(_attr(node, "block_size", 0) or 0) > 0:
        return 0.0
    route, per_expert = _moe_routing(node, ins), _expert_weights(node, ins)
    return 0.0 if route is None or per_expert is None else 8.0 * route[3] * per_expert


def experts_touched(tokens: float, k: int, experts: int) -> float:
    """The experts some token routes to, on average, where each token picks k of `experts` at random: one
    token reads k experts' weights, a long prompt nearly all of them."""
    if experts <= 0:
        return 0.0
    return experts * (1.0 - (1.0 - min(k, experts) / experts) ** max(tokens, 0.0))


def _moe_routing(node: onnx.NodeProto, ins: list) -> tuple[float, int, int, float] | None:
    """(tokens, k, experts, experts touched: `experts_touched`) of a mixture of experts (`_MOE`); None where its
    input's or its first layer's shape is not known."""
    x = ins[0] if ins else None
    at = _MOE[node.op_type][0]
    first = ins[at] if at < len(ins) else None
    if not _known(x) or not x or not _known(first) or not first:
        return None
    tokens, experts = _elems(x) / max(x[-1], 1), first[0]
    k = max(1, min(int(_attr(node, "k", 1) or 1), max(experts, 1)))
    return tokens, k, experts, experts_touched(tokens, k, experts)


def _expert_weights(node: onnx.NodeProto, ins: list) -> float | None:
    """The weight elements of one expert of a mixture of experts (`_MOE`), its layers' [experts, rows, columns]
    unpacked (a packed QMoE weight holds 8 / bits of them a byte); None where its first two layers' shapes
    are not known."""
    layers = [ins[i] if i < len(ins) else None for i in _MOE[node.op_type]]
    if not all(_known(w) and len(w) == 3 for w in layers[:2]):
        return None
    bits = int(_attr(node, "expert_weight_bits", 4) or 4) if node.op_type == "QMoE" else 0
    elements = 0.0
    for i, w in enumerate(layers):
        if w is not None and _known(w) and len(w) == 3:
            own = int(_attr(node, f"fc{i + 1}_expert_weight_bits", bits) or bits) if bits else 0
            elements += w[1] * w[2] * (8 / own if own else 1)
    return elements


def _moe_flops(node: onnx.NodeProto, ins: list) -> tuple[float | None, float]:
    """(FLOPs, MACs) of a mixture of experts (`_MOE`): each token through k experts' layers, whose multiply-adds
    are their weights' elements (`_expert_weights`); in QMoE, the experts touched dequantized
    (`NBITS_DEQUANTIZE` an element)."""
    route, per_expert = _moe_routing(node, ins), _expert_weights(node, ins)
    if route is None or per_expert is None:
        return None, 0.0
    tokens, k, _, touched = route
    macs = tokens * k * per_expert
    dequantized = NBITS_DEQUANTIZE * touched * per_expert if node.op_type == "QMoE" else 0
    return 2 * macs + dequantized, macs
_RECURRENT = ("LSTM", "GRU", "RNN", "DynamicQuantizeLSTM")


def _weights_read(node: onnx.NodeProto, ins: list, weights: dict) -> float:
    """The bytes of constant inputs a node reads: each whole, but a table a node gathers rows of only in the
    rows it gathers, where its indices' shape is known (`_GATHERED`: an embedding reads its tokens' rows:
    BERT-base's 94 MB table, 128 tokens, 0.4 MB; counted whole, multilingual-e5-small's 384 MB was read each
    query)."""
    read = sum(weights.get(t, 0) for t in node.input)
    route = _moe_routing(node, ins) if node.op_type in _MOE else None
    if route is not None:  # the experts its tokens are routed to, not all of them
        share = route[3] / max(route[2], 1)
        return sum(weights.get(t, 0) * (share if i >= 2 else 1) for i, t in enumerate(node.input))
    tables, at, axis = _GATHERED.get(node.op_type, ((), 0, ""))
    indices = ins[at] if at < len(ins) else None
    if indices is None or any(not isinstance(d, int) for d in indices):
        return read
    for t in tables:
        table = ins[t] if t < len(ins) and node.input[t] in weights else None
        rows = table[int(_attr(node, axis, 0)) % len(table)] if table else None  # no attribute "": the first
        if isinstance(rows, int) and rows > 0:
            whole = weights[node.input[t]]
            read += whole * (min(1.0, _elems(indices) / rows) - 1)
    return read


# The nodes that read rows of constant tables (`_weights_read`): {op: (the tables' inputs, the input whose
# elements say how many rows, the attribute naming the tables' axis of rows, or "" for their first)}. ONNX
# Runtime's EmbedLayerNormalization (BERT's three embeddings, summed and normalized: its transformers
# optimizer writes it) reads a row of each table per token; GatherBlockQuantized (a quantized embedding) a
# row of its packed table, of its scales and of its zero points per index.
_GATHERED = {"Gather": ((0,), 1, "axis"), "EmbedLayerNormalization": ((2, 3, 4), 0, ""),
             "QEmbedLayerNormalization": ((2, 3, 4), 0, ""), "GatherBlockQuantized": ((0, 2, 3), 1, "gather_axis")}


def _recurrent_rereads(node: onnx.NodeProto, ins: list, weights: dict) -> float:
    """The bytes a recurrent cell reads of its recurrence weights R beyond their first read: each time step
    multiplies the state by R, one matrix-vector product after another, so R is read once a step (per
    direction; the input's weights W are applied to every step in one matrix product). A 20-step
    bidirectional LSTM of 512 units reads its 8.4 MB of R 20 times: ONNX Runtime took 4.0 ms for it on one
    x86 core, where its multiply-adds at the calibrated peak and one read of its weights came to 1.9. Not
    multiplied by the batch: a step reads R once for the whole batch. 0 for every other node."""
    if node.op_type not in _RECURRENT or len(node.input) < 3 or len(ins) < 1 or ins[0] is None or len(ins[0]) < 3:
        return 0.0
    steps = ins[0][1] if _attr(node, "layout", 0) == 1 else ins[0][0]
    return max(float(steps) - 1, 0.0) * weights.get(node.input[2], 0)


# How a CPU runtime lays a convolution's tensors out (`gemm_columns`' columns, in this order): NCHW, and ONNX
# Runtime's NCHWc on x86, channels in blocks of one vector's FP32 lanes (4, 8 or 16)
NCHWC_BLOCKS = (4, 8, 16)
LAYOUTS = ("nchw",) + tuple(f"nchwc{b}" for b in NCHWC_BLOCKS)
_ATTENTION = ("Attention", "MultiHeadAttention", "GroupQueryAttention", "QAttention",
              "DecoderMaskedMultiHeadAttention")
# ONNX Runtime's attentions that take the layer's input and its packed Q, K and V weights ([hidden, 3 ×
# hidden]) and project it themselves: Attention, and QAttention, its int8 form (input and weights quantized,
# as ORT's transformers optimizer and quantize_dynamic write BERT, as optimum ships it).
_PACKED_ATTENTION = frozenset({("com.microsoft", "Attention"), ("com.microsoft", "QAttention")})
# Each attention's past keys, by (domain, op): its input, and that input's rank ([batch, kv heads, past,
# head] where the cache is split in keys and values, [2, batch, heads, past, head] for ONNX Runtime's
# Attention). A decoding step attends to its past and its new tokens: an int4 Llama's GroupQueryAttention
# at 1 token over 511 past was counted over 1.
_ATTENTION_PAST = {("com.microsoft", "Attention"): (4, 5), ("", "Attention"): (4, 4),
                   ("com.microsoft", "MultiHeadAttention"): (6, 4), ("com.microsoft", "GroupQueryAttention"): (3, 4),
                   ("com.microsoft", "QAttention"): (8, 5),
                   ("com.microsoft", "DecoderMaskedMultiHeadAttention"): (5, 4)}  # a shared buffer: its length
_MAC_NAMES = frozenset(_CONV_WEIGHT) | frozenset(_MATMUL_INPUTS) | frozenset(_RECURRENT) | frozenset(_ATTENTION) | \
    frozenset(_MOE)
# Ops that move, view or describe data: no arithmetic, 0 FLOPs by definition (not "unknown").
_NO_ARITHMETIC = frozenset({
    "Shape", "Size", "ConstantOfShape", "Range", "NonZero", "GatherND", "ScatterND", "ScatterElements",
    "Scatter", "OneHot", "Compress", "SpaceToDepth", "DepthToSpace", "ReverseSequence", "EyeLike",
    "SequenceConstruct", "SplitToSequence", "ConcatFromSequence", "SequenceAt", "Trilu", "Upsample",
    "SequenceEmpty", "SequenceInsert", "SequenceErase", "SequenceLength", "Optional", "OptionalGetElement",
    "OptionalHasElement", "BitCast", "TensorScatter", "MaxUnpool"})  # the last two: a zeroed or copied tensor, updated
# MLAS's QLinearAdd and QLinearMul widen both int8 inputs to float, dequantize, add or multiply and requantize
# in vectors: 0.16-0.19 and 0.24 ns an element on one x86 core, where a uint8 copy takes 0.05 (`bench/
# scalar_ops.py --only lookups`): at the vector kernels' 0.011 ns per FLOP beyond a copy (`_FLOPS_PER_ELEMENT`),
# 12 and 18.
QLINEAR_ADD, QLINEAR_MUL = 12, 18
# Per-element cost of ops outside the catalogue above (comparisons, logic, rounding, quantisation, fusions;
# those ONNX Runtime runs as scalar loops: `SCALAR_KERNELS`).
_ELEMENTWISE = {"Equal": 1, "Greater": 1, "GreaterOrEqual": 1, "Less": 1, "LessOrEqual": 1, "Not": 1, "And": 1,
                "Or": 1, "Xor": 1, "Abs": 1, "Reciprocal": 1, "Floor": 1, "Ceil": 1, "Round": 1, "IsNaN": 1,
                "IsInf": 1, "ThresholdedRelu": 1, "QuantizeLinear": 3, "DequantizeLinear": 2,
                "DynamicQuantizeLinear": 4, "SimplifiedLayerNormalization": 6, "RMSNormalization": 6,
                "CumSum": 1, "BiasAdd": 1, "Sum": 1, "Mean": 1, "QLinearAdd": QLINEAR_ADD, "QLinearMul": QLINEAR_MUL,
                "ArgMax": 1, "ArgMin": 1, "TopK": 2, "ReduceMin": 1, "QLinearGlobalAveragePool": 1,
                "RotaryEmbedding": 3,  # each element times its cosine, plus its pair's times its sine
                "CumProd": 1, "BitwiseNot": 1, "HannWindow": 1, "HammingWindow": 1, "BlackmanWindow": 1,
                "AffineGrid": 1}  # vector loops: 0.10-0.15 ns an element on one x86 core (bench/scalar_ops.py)
_REDUCE_INPUT = frozenset({"GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceSum", "ReduceMax",
                           "ReduceL2", "ArgMax", "ArgMin", "TopK", "ReduceMin", "ReduceProd", "ReduceL1",
                           "ReduceSumSquare", "ReduceLogSumExp", "QLinearGlobalAveragePool", "CumSum",
                           "CumProd"})
_RESIZE_TAPS = {"nearest": 1, "linear": 4, "cubic": 16}  # reads per output element (2-D)
_CATEGORY.update({op: "matmul" for op in list(_MATMUL_INPUTS) + list(_RECURRENT) + list(_ATTENTION) + list(_MOE) +
                  ["Einsum"]})
_CATEGORY.update({op: "elementwise" for op in _ELEMENTWISE if op not in _REDUCE_INPUT})
_CATEGORY.update({op: "reduce" for op in _REDUCE_INPUT if op not in _CATEGORY})
_CATEGORY.update({op: "copy" for op in _NO_ARITHMETIC})
_CATEGORY.update({op: "quantize" for op in ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear")})
# ONNX Runtime's fused kernels (`runtime_graph`) keep the category of what they fuse
_CATEGORY.update({op: "norm" for op in ("SkipLayerNormalization", "SimplifiedLayerNormalization",
                                         "SkipSimplifiedLayerNormalization", "RMSNormalization",
                                         "EmbedLayerNormalization", "QEmbedLayerNormalization")})
_CATEGORY["GatherBlockQuantized"] = "gather"
_CATEGORY.update({"LRN": "norm", "MeanVarianceNormalization": "norm", "LpNormalization": "norm",
                  "Softsign": "activation", "Shrink": "activation", "Hardmax": "softmax", "GridSample": "copy"})
# MLAS's and Eigen's vector kernels of these, at the vector section's 0.011 ns per FLOP beyond a copy: Softsign
# 0.22 ns an element (an absolute value, an add, a divide), Hardmax 0.35 (its row's maximum, then a row of
# zeros and a one), MeanVarianceNormalization 0.62-0.66 over its innermost axes (passes for the mean, the
# deviations, their mean square and the divide), 0.99-1.5 over ONNX's default axes of an image, [0, 2, 3]
# (MVN_OTHER_AXES; 2.6 over the first of two)
_FLOPS_PER_ELEMENT.update({"Softsign": 10, "Hardmax": 22, "MeanVarianceNormalization": 46})
MVN_OTHER_AXES = 90
_CATEGORY.update({op: "activation" for op in ("FastGelu", "BiasGelu", "QuickGelu")})
# and its QOperator kernels of a statically quantized graph keep the category of their float twin
_CATEGORY.update({"QLinearSoftmax": "softmax", "QLinearLeakyRelu": "activation", "QLinearConcat": "copy",
                  "QLinearAveragePool": "pool", "QLinearSigmoid": "activation"})


# ONNX Runtime's CPU kernels that compute one element at a time, in no vector: its DFT and STFT are loops of
# std::complex arithmetic (core/providers/cpu/signal/dft.cc). Such a loop keeps one lane busy, and issues its
# multiplies and adds apart where the peak counts a fused multiply-add as two FLOPs: half a lane's peak
# (SCALAR_COLUMNS as `gemm_columns`' columns), one operation a cycle on a core with one FMA unit. On an AVX-512
# core whose convolutions ran at 104 GFLOP/s, STFTs of 400 and 512 points ran at 3.5-4.1: ×0.54-0.64 of one
# lane's peak, ×1.1-1.3 of half of it.
FOURIER_KERNELS = ("DFT", "STFT")
# Its element-wise kernels that call the C library's scalar routine once per element (Eigen's unaryExpr over
# std::log, std::pow, std::sin, ...; MLAS vectorizes Exp, Tanh, Sigmoid and Erf, Eigen Sqrt and the arithmetic),
# each at its operations per element: the routine's cycles on one x86 core (`bench/scalar_ops.py` times them:
# 0.20-0.35 ns per operation counted, median 0.29, a cycle at 3.5 GHz; other cores' libraries and clocks move
# them, `commands.SCALAR_RANGE`). Charged as vector code they were ×0.01-0.12 of their time there: Log took
# 1.8 ns an element where Exp took 0.18, Pow 4.5, Softplus 11.3, Asinh 21. An expm1 (Elu, Selu, Celu) costs
# about a log; Mish is a softplus and a tanh. Its SkipLayerNormalization and the simplified form are row loops
# it leaves scalar too: 5.1 and 1.15 ns an element, where LayerNormalization took 0.55. So is its
# EmbedLayerNormalization (BERT's three embedding rows summed, then normalized: two sums an element, each an
# add's latency, 3; and the scaling), 2.0 ns an element, 2.9 with its rows dequantized (QEmbedLayerNormalization:
# three more); and GatherBlockQuantized (a quantized embedding), which dequantizes each element it gathers:
# `NBITS_DEQUANTIZE` at 4 bits, 1.3 ns an element; a DequantizeLinear's 2 at 8, 0.53 (`scalar_count`).
# Its QOperator kernels that map each int8 element through a table of 256 values (QLinearLeakyRelu and
# QLinearSigmoid: contrib_ops/cpu/quantization/qlinear_lookup_table.cc; QLinearConcat for each input whose
# scale or zero point is not the output's, `concat_lookups`: a table built once where they are constants) read,
# look up and write an element at a time, LOOKUP_OPS each: 0.25-0.26 ns an element on one x86 core, where
# QLinearConcat of inputs at the output's scale copies them at 0.04 (`bench/scalar_ops.py`). Its QLinearSoftmax
# looks up each element's exponential and divides its row by their sum element by element: 2.8-3.1 ns an
# element over rows of 16-3,136 (10). Its QLinearAveragePool dequantizes each input element, sums a window's
# taps and requantizes each output in loops of its own (QLINEAR_POOL_*, `_flops`): 4.7-10.6 ns an output over
# 2×2-5×5 windows in NHWC, where ONNX Runtime's NhwcTransformer lays it out with the int8 convolutions that read
# it (`nhwc_pool`: Inception-v3's), 8.5-15 in NCHW, where it stays when something else reads it (DenseNet's,
# read by concatenations).
LOOKUP_OPS = 1
QLINEAR_POOL_OUTPUT_OPS = {"nhwc": 7, "nchw": 20}
QLINEAR_POOL_TAP_OPS, QLINEAR_POOL_INPUT_OPS = 1.2, 1
SCALAR_ELEMENTWISE = {"Log": 6, "Sin": 7, "Cos": 7, "Tan": 47, "Asin": 4, "Acos": 3, "Atan": 4, "Sinh": 59,
                      "Cosh": 20, "Asinh": 70, "Acosh": 50, "Atanh": 72, "Pow": 15, "Softplus": 38, "Mish": 40,
                      "Elu": 7, "Selu": 7, "Celu": 7, "Mod": 19, "Sign": 3, "SkipLayerNormalization": 17,
                      "SkipSimplifiedLayerNormalization": 4, "EmbedLayerNormalization": 7,
                      "QEmbedLayerNormalization": 10, "GatherBlockQuantized": NBITS_DEQUANTIZE,
                      "LRN": 88, "Shrink": 22, "GridSample": 7, "LpNormalization": 4,
                      "BitwiseAnd": 2, "BitwiseOr": 2, "BitwiseXor": 2, "BitShift": 2,
                      "RandomNormal": 36, "RandomNormalLike": 36, "RandomUniform": 14, "RandomUniformLike": 14,
                      "QLinearLeakyRelu": LOOKUP_OPS, "QLinearSigmoid": LOOKUP_OPS, "QLinearSoftmax": 10}
# And the older vision kernels (`scalar_count`): LRN (AlexNet's, GoogLeNet's: its window's running sum of
# squares, then each element raised to -beta by Eigen's exact vector pow, 25 ns an element; 1.5 where beta is
# 1 and there is no power, 5); Shrink's branch per element (6.5 ns); GridSample per output element, by its
# mode (linear 2.1 ns, nearest 8.8, cubic 36: 7, 31 and 124); LpNormalization a sum of squares an element
# (an add's latency) and the scaling, 1.0 ns along the last axis, 9.0 along another (strided: 31).
# The bitwise kernels and the random generators (an element each, from one generator through the standard
# library's distributions): And, Or, Xor and a shift by under the width 0.6-0.8 ns an element (element by
# element, where an integer Add takes 0.19 in vectors; Not is a vector loop), a normal draw 9-12, a uniform one 4.
_SCALAR_BY = {("LRN", "beta", 1.0): 5, ("GridSample", "mode", "nearest"): 31, ("GridSample", "mode", "cubic"): 124}
STRIDED_NORM_OPS = 31
# Pow's exponents it computes in a vector (core/providers/cpu/math/element_wise_ops.cc: a constant 2 or 3 is a
# square or a cube); 0.5 and 1.7 took 4.5 ns an element, as a tensor of exponents did.
VECTOR_POWERS = (2.0, 3.0)
# Its reductions that accumulate element by element (ReduceAggregatorSumSquare, L1, L2, Prod, LogSum; Sum,
# Mean, Max and Min have vectorized paths): a chain of dependent adds, about an add's latency an element (3
# cycles), LogSumExp an exp each besides. Timed there over rows of 1,024: 0.80 ns an element, 4.0 for
# LogSumExp; over the first axis of [1024, 1024] they took 3.0-3.6 (strided access: not counted).
# LpPool raises each tap to its p with the C library's pow, 13-14 ns a tap of a 3×3 window at p = 2 or 3
# (GlobalLpPool: 11-17 ns an element); a MaxPool asked for its indices too leaves its vector path for a loop that
# tracks them: 18-29 ns an output element of 2×2 and 3×3 windows, where the values alone take 0.9-1.7.
LP_TAP_OPS = 48
INDEXED_POOL_OPS, INDEXED_TAP_OPS = 47, 6
SCALAR_REDUCTIONS = {"ReduceSumSquare": 3, "ReduceL1": 3, "ReduceL2": 3, "ReduceProd": 3, "ReduceLogSum": 3,
                     "ReduceLogSumExp": 13, "GlobalLpPool": LP_TAP_OPS}
# A running sum or product along an axis nothing lies inside of (the last, or those after it all 1) adds element
# after element: 3.4 ns an element on one x86 core, where along an outer axis it adds whole rows in vectors (0.15).
CUMULATIVE_OPS = 12
SCALAR_KERNELS = FOURIER_KERNELS + tuple(SCALAR_ELEMENTWISE) + tuple(SCALAR_REDUCTIONS) + ("LpPool",
                                                                                          "QLinearAveragePool")
SCALAR_COLUMNS = 0.5
_CATEGORY.update({op: "elementwise" for op in SCALAR_ELEMENTWISE if op not in _CATEGORY})
_CATEGORY.update({"LpPool": "pool", "GlobalLpPool": "global_pool"})
_CATEGORY.update({op: "reduce" for op in SCALAR_REDUCTIONS if op not in _CATEGORY})


# Its kernels that walk a tensor by index, one element at a time, where a shape sends them to their generic loop
# (`index_walk`; `bench/scalar_ops.py` times them), each in a core's operations as above:
# - Transpose (core/providers/cpu/tensor/transpose.cc) copies a tensor whose axes longer than 1 keep their order,
#   and moves a single axis with MLAS's transpose or a copy per block; any other permutation walks the output
#   by a multi-index, an element at a time where the last axis moves (TRANSPOSE_ELEMENT_OPS: 4.0-4.7 ns an
#   element there), else a memcpy per block of the trailing axes it leaves (TRANSPOSE_BLOCK_OPS per block:
#   1.3 ns an element in blocks of 4, beside 0.1 for a copy).
# - Softmax and LogSoftmax (opset 13 on) over an axis other than the last transpose it last and back: counted
#   as those two walks (13-14 ns an element there), its own vector work beside them not.
# - A reduction (core/providers/cpu/reduction/reduction_ops.cc) of ReduceSum, Mean, Max or Min has vector
#   kernels where its shape, with adjacent axes of one kind merged, is kept-reduced, reduced-kept (more than
#   16 rows reduced, and more than 256 of either), kept-reduced-kept (at least 2 outer rows) or
#   reduced-kept-reduced (at least 2 kept); one over every axis is one vector pass, in every aggregator. Every
#   other reduction runs its generic loop: an add's latency an element (`SCALAR_REDUCTIONS`' counts, 3 for
#   these) and REDUCE_OUTPUT_OPS per output to set up. Over a leading axis of 2 (a power spectrum's real and
#   imaginary parts) ReduceSumSquare took 1.8 ns an element where it was charged 0.86.
# The thresholds are one thread's: ONNX Runtime scales them by the threads it runs.
TRANSPOSE_ELEMENT_OPS = 14
TRANSPOSE_BLOCK_OPS = 16
REDUCE_OUTPUT_OPS = 8
_FAST_REDUCTIONS = frozenset({"ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin"})
_SOFTMAXES = ("Softmax", "LogSoftmax")


def transpose_walk(perm: list[int], shape: list[int]) -> tuple[str, int]:
    """How ONNX Runtime 1.32's CPU Transpose moves a tensor of `shape` by `perm`: ("copy", 0) where the axes
    longer than 1 keep their order, ("single", 0) where one axis moves and the others keep theirs (its
    single-axis kernels), otherwise by its multi-index walk: ("elements", n) one element at a time where the
    last axis moves, else ("blocks", n), a copy per block of the trailing axes `perm` leaves in place."""
    rank = len(shape)
    longer = [p for p in perm if shape[p] > 1]
    if longer == sorted(longer):
        return "copy", 0
    for start in range(rank):
        rest = [a for a in range(rank) if a != start]
        if any(rest[:end] + [start] + rest[end:] == list(perm) for end in range(rank)):
            return "single", 0
    suffix, axis = 1, rank - 1
    while axis >= 0 and perm[axis] == axis:
        suffix, axis = suffix * shape[axis], axis - 1
    return ("elements" if suffix == 1 else "blocks"), math.prod(shape) // suffix


def reduction_path(op: str, shape: list[int], axes: list[int] | None, noop: bool = False) -> str:
    """Which of ONNX Runtime 1.32's CPU reduction kernels runs `op` over `axes` of `shape` (None: every axis,
    unless `noop`, its noop_with_empty_axes): "copy" (no axis, noop), "whole" (every axis: one vector pass),
    "fast" (a vector kernel of ReduceSum, Mean, Max or Min: the comment above `TRANSPOSE_ELEMENT_OPS`) or
    "loop" (its generic loop, an element at a time). One thread's thresholds."""
    rank = len(shape)
    if not axes:
        return "copy" if noop else "whole"
    reduced = {a % rank for a in axes} if rank else set()
    if len(reduced) == rank:
        return "whole"
    merged: list[list] = []  # [reduced, size] of adjacent axes of one kind
    for a, d in enumerate(shape):
        if merged and merged[-1][0] == (a in reduced):
            merged[-1][1] *= d
        else:
            merged.append([a in reduced, d])
    if op not in _FAST_REDUCTIONS or len(merged) not in (2, 3):
        return "loop"
    sizes = [d for _, d in merged]
    if len(merged) == 2:
        fast = not merged[0][0] or (sizes[0] > 16 and max(sizes) > 256)
    else:
        fast = sizes[0] >= 2 if not merged[0][0] else sizes[1] >= 2
    return "fast" if fast else "loop"


def index_walk(node: onnx.NodeProto, ins: list, ints: dict[str, list[int]], opset: int,
               reduction: str | None = None) -> float | None:
    """The operations ONNX Runtime's CPU kernel for this node spends walking its tensors an element at a time
    (the comment above `TRANSPOSE_ELEMENT_OPS`), or None where it runs its own rule (a vector kernel, a copy,
    a kernel `scalar_loop` names) or the input's shape is not known. ints: the graph's small integer constants
    (a reduction's axes); opset: the graph's ONNX opset; reduction: a reduction node's `reduction_path`, where
    known (`_reduction_path_of`)."""
    op = node.op_type
    x = ins[0] if ins else None
    if not _known(x):
        return None
    if op == "Transpose" or (op in _SOFTMAXES and opset >= 13 and len(x) > 1):
        if op == "Transpose":
            perm, times = list(_attr(node, "perm", []) or range(len(x) - 1, -1, -1)), 1
        else:
            axis = _attr(node, "axis", -1) % max(len(x), 1)
            perm, times = list(range(len(x))), 2  # the axis swapped with the last, and back
            perm[axis], perm[-1] = perm[-1], perm[axis]
        if sorted(perm) != list(range(len(x))):
            return None
        kind, count = transpose_walk(perm, x)
        ops = {"elements": TRANSPOSE_ELEMENT_OPS, "blocks": TRANSPOSE_BLOCK_OPS}.get(kind)
        return None if ops is None else float(times * ops * count)
    if reduction != "loop":
        return None
    reduced = {a % len(x) for a in _reduction_axes(node, ints) or range(len(x))}
    outputs = math.prod(d for a, d in enumerate(x) if a not in reduced)
    return float(SCALAR_REDUCTIONS.get(op, 3) * math.prod(x) + REDUCE_OUTPUT_OPS * outputs)


def _reduction_axes(node: onnx.NodeProto, ints: dict[str, list[int]]) -> list[int] | None:
    """A reduction's axes, from its attribute (opsets before 18) or its constant second input; None where
    they are computed as the graph runs, [] where none are given."""
    if len(node.input) > 1 and node.input[1]:
        return ints.get(node.input[1])
    return list(_attr(node, "axes", []) or [])


def _reduction_path_of(node: onnx.NodeProto, x: list | None, ints: dict[str, list[int]]) -> str | None:
    """`reduction_path` of a reduction node on its input's shape `x`; None for another node, or where its
    shape or axes are not known."""
    op = node.op_type
    if not (op.startswith("Reduce") and (op in _REDUCE_INPUT or op in SCALAR_REDUCTIONS)) or not _known(x):
        return None
    axes = _reduction_axes(node, ints)
    return None if axes is None else reduction_path(op, x, axes or None, bool(_attr(node, "noop_with_empty_axes", 0)))


def _known(shape: list | None) -> bool:
    """Whether a tensor's shape is known, every dimension a whole number."""
    return shape is not None and all(isinstance(d, int) and d >= 0 for d in shape)


def scalar_loop(node: onnx.NodeProto, constants: dict[str, float], reduction: str | None = None) -> bool:
    """Whether ONNX Runtime's CPU kernel for this node is written as scalar loops (`SCALAR_KERNELS`): a Pow
    whose exponent is a constant in `VECTOR_POWERS` is not, nor a reduction over every axis (one vector pass:
    its `reduction` path "whole", or "copy", where its shape and axes are known). constants: {tensor: value}
    of the graph's single-element float constants."""
    if reduction in ("whole", "copy"):
        return False
    if node.op_type == "Pow":
        return not (len(node.input) > 1 and constants.get(node.input[1]) in VECTOR_POWERS)
    if node.op_type == "MaxPool":
        return len(node.output) > 1 and bool(node.output[1])  # its indices asked for too
    return node.op_type in SCALAR_KERNELS


def cumulative_scalar(node: onnx.NodeProto, x: list | None, ints: dict[str, list[int]]) -> bool:
    """Whether a CumSum or CumProd runs along an axis nothing lies inside of (`CUMULATIVE_OPS`): its axis, a
    constant, the last of `x` or followed by axes of 1 only."""
    if node.op_type not in ("CumSum", "CumProd") or len(node.input) < 2 or not _known(x) or not x:
        return False
    axis = ints.get(node.input[1])
    return bool(axis) and len(axis) == 1 and -len(x) <= axis[0] < len(x) and _innermost(axis, x)


# A float convolution ONNX Runtime's CPU provider runs in NCHW (MLAS: one the NCHWc pass leaves, a 1-D or 3-D
# one, a float16 one cast to float32, one whose weights are computed) copies its input into a patch matrix
# (im2col: for each group, each of its K = in/group × kernel taps, each output position) and multiplies that:
# the matrix is written and read, 4 bytes an element each way (`IM2COL_ELEMENT_BYTES`), a depthwise
# convolution's whole cost, where its product is one row per group; and it is copied a span of output
# positions at a time (an output row per tap), each span reading and writing two cache lines beyond its
# elements (`IM2COL_SPAN_BYTES`: an unaligned span straddles two, and a 7-pixel row costs about what a 16-pixel
# one does). Charged to the layouts the node runs NCHW in (`GraphSet.patches`, x86's NCHWc layouts). On this
# project's x86 core, depthwise convolutions of 3-31 taps over 7-500 positions ran at 0.14-0.68 ns a multiply-add
# in NCHW (0.03-0.1 in NCHWc). Along a row strided by more than 1 it copies an element at a time, where a unit
# stride moves four (`IM2COL_STRIDED`). An estimate at the rates of a multiply-add and a copied byte measured
# beside them (`bench/scalar_ops.py --only nchw`) was ×0.04-0.96 (median ×0.13) of 18 shapes' time without the
# patch matrix, ×0.64-1.09 (×0.97) with it; on 12 shapes not used to set these, ×0.08 → ×0.91 (0.44-1.05). What
# is left: a dispatch per group (about 0.1 µs here), which 1-D depthwise ones of 60-100 positions feel (×0.44-0.64).
# A pointwise one (1×1 taps, stride 1, no padding) multiplies its input in place: none. MLAS builds the matrix a
# segment of output positions at a time, in a working buffer of 64 KiB a thread (its ExpandThenGemmSegmented;
# where the filters outnumber the positions, the whole matrix, which is then small), so these bytes move in
# cache and do not grow the node's working set (`models.streamed_bytes`): counted as a tensor, a 3-D
# convolution's (R3D-18's 3×3×3 at 8×56², 0.5 GB) streamed from memory and R3D-18 was ×1.27 (×1.04 without).
IM2COL_ELEMENT_BYTES = 8
IM2COL_SPAN_BYTES = 256
IM2COL_STRIDED = 4


# ONNX Runtime runs a grouped QLinearConv (neither ungrouped nor depthwise: ResNeXt's, RegNet's) in NHWC, one group
# at a time: its patch matrix is gathered a group's channels at a time, one copy per output position, tap and
# group (a span, `IM2COL_SPAN_BYTES`), each element a byte written and read. Ungrouped, it runs MLAS's indirect
# convolution; depthwise, its own kernel: neither copies. On this project's x86 core, 3×3 ones of 2-32 channels a
# group over 14²-112² took 4.3-5.1 ns a span and 0.08-1.1 ns a multiply-add, where ungrouped ones took 0.005:
# charged by multiply-adds alone, int8 RegNetY-400MF was answered ×0.36 and ResNeXt-50 ×0.58 (with the spans,
# ×0.89 and ×1.01). `bench/scalar_ops.py --only qlinear`: at a copied byte's rate (Relu's), ×0.72-0.89 (without,
# ×0.00-0.47); the fingerprint's memory rate, which prices them in a network, is slower than that copy's.
QLINEAR_ELEMENT_BYTES = 2


def _grouped_qlinear_patches(node: onnx.NodeProto, ins: list, outs: list) -> float:
    """The bytes a grouped QLinearConv moves gathering its patch matrix (0: not one, pointwise, or its shapes
    not known)."""
    group = _attr(node, "group", 1)
    x, w, y = (ins[0] if ins else None), (ins[3] if len(ins) > 3 else None), (outs[0] if outs else None)
    if not (isinstance(group, int) and group > 1 and _known(x) and _known(w) and _known(y)) or len(w) < 3 or \
            w[1] <= 1 or len(y) != len(w):
        return 0.0
    taps = math.prod(w[2:])
    strides, pads = _attr(node, "strides", None) or [1], _attr(node, "pads", None) or []
    if taps == 1 and all(s == 1 for s in strides) and not any(pads):  # pointwise: the input is the matrix
        return 0.0
    copies = y[0] * group * math.prod(y[2:]) * taps
    return float(copies * (IM2COL_SPAN_BYTES + QLINEAR_ELEMENT_BYTES * w[1]))


def im2col_bytes(node: onnx.NodeProto, ins: list, outs: list) -> float:
    """The bytes a float convolution run in NCHW moves building its patch matrix (`IM2COL_ELEMENT_BYTES` an
    element, `IM2COL_STRIDED` times that along a strided row, `IM2COL_SPAN_BYTES` a span; 0: a pointwise one,
    not a float Conv, or its shapes not known), and a grouped QLinearConv its own (`_grouped_qlinear_patches`)."""
    if node.op_type == "QLinearConv":
        return _grouped_qlinear_patches(node, ins, outs)
    if node.op_type not in ("Conv", "FusedConv") or len(ins) < 2 or not outs:
        return 0.0
    w, y = ins[1], outs[0]
    if not (_known(w) and _known(y)) or len(y) < 3 or len(w) != len(y):
        return 0.0
    taps = w[2:]
    group = _attr(node, "group", 1)
    group = group if isinstance(group, int) and group > 0 else 1  # ONNX Runtime refuses another anyway
    strides, pads = _attr(node, "strides", []), _attr(node, "pads", [])
    if all(k == 1 for k in taps) and all(s == 1 for s in strides) and not any(pads) and \
            _attr(node, "auto_pad", b"NOTSET") in (b"NOTSET", b"VALID"):
        return 0.0
    k = w[1] * math.prod(taps)  # per group: its input channels × taps
    positions = math.prod(y[2:])
    rows = math.prod(y[2:-1]) if len(y) > 3 else 1  # a 1-D convolution's row is all of its positions
    element = IM2COL_ELEMENT_BYTES * (IM2COL_STRIDED if strides and strides[-1] != 1 else 1)
    return float(y[0] * group * k * (element * positions + IM2COL_SPAN_BYTES * rows))


# ONNX Runtime's NCHWc convolution (MLAS, x86) computes only the taps that read its input: a kernel row that
# falls in the top or bottom padding is skipped for that output row, and an output whose taps reach into the left
# or right padding is computed alone, each tap checked and those in the padding skipped, at about two-thirds the
# rate of the outputs it computes in blocks (`NCHWC_PADDED_TAP`). Counted densely, a dilated convolution on a small
# map was charged up to 9 times its work: DeepLabV3's ASPP (3×3 at dilations 12, 24, 36 on a 16² map, pads
# equal to them), where all but the centre tap read padding. On this project's x86 core (`bench/scalar_ops.py
# --only padded`: 16 shapes, dilations 1-36, maps of 1-64 a side) the estimate at a multiply-add's rate was
# ×0.95 of the time (median; every tap counted, ×1.07, up to ×6); on 12 shapes not used to set this, ×0.94
# (0.55-1.03; every tap, ×1.20, 0.71-5.64). Maps of a few positions a side with a kernel as wide run at
# ×0.70-0.84 of that rate even unpadded (a cost per output row this does not model), and padded at ×0.55-0.75.
# A depthwise one runs at memory speed whatever its taps (at dilations 1-24 on a 16² map, the same time): dense.
NCHWC_PADDED_TAP = 1.5
NCHWC_TAPS_MAX = 1 << 16  # a kernel wider than this (a hostile file's) is counted densely


def nchwc_work_share(node: onnx.NodeProto, ins: list, outs: list) -> float:
    """The share of a 2-D convolution's counted multiply-adds that ONNX Runtime's NCHWc kernel runs as (1: not
    such a convolution, a depthwise one, or its shapes not known): per output row the kernel rows that read
    the input, per output column its taps that do, at `NCHWC_PADDED_TAP` each where any of its taps reads
    padding."""
    if node.op_type not in ("Conv", "FusedConv") or len(ins) < 2 or not outs:
        return 1.0
    x, w, y = ins[0], ins[1], outs[0]
    if not (_known(x) and _known(w) and _known(y)) or not len(x) == len(w) == len(y) == 4 or w[1] == 1:
        return 1.0
    size, taps, out = x[2:], w[2:], y[2:]
    strides, dilations, pads = (_attr(node, key, None) or default for key, default in
                                (("strides", [1, 1]), ("dilations", [1, 1]), ("pads", [0, 0, 0, 0])))
    auto_pad = _attr(node, "auto_pad", b"NOTSET")
    if not all(isinstance(v, list) and len(v) == n and all(isinstance(d, int) for d in v)
               for v, n in ((strides, 2), (dilations, 2), (pads, 4))):
        return 1.0  # a hostile file's attribute: ONNX Runtime refuses that graph
    begin = []
    for axis in range(2):
        if auto_pad in (b"SAME_UPPER", b"SAME_LOWER"):
            total = max(0, (out[axis] - 1) * strides[axis] + (taps[axis] - 1) * dilations[axis] + 1 - size[axis])
            begin.append(total // 2 if auto_pad == b"SAME_UPPER" else total - total // 2)
        else:
            begin.append(0 if auto_pad == b"VALID" else pads[axis])
    if any(d <= 0 for d in (*size, *taps, *out, *strides, *dilations)) or max(taps) > NCHWC_TAPS_MAX:
        return 1.0

    def outputs(axis: int, first: int, last: int) -> int:  # outputs o whose taps first..last (offsets) read inside
        low = -((first - begin[axis]) // strides[axis])  # ceil((begin - first) / stride)
        high = (size[axis] - 1 + begin[axis] - last) // strides[axis]
        return max(0, min(high, out[axis] - 1) - max(low, 0) + 1)

    def reads(axis: int) -> tuple[int, int]:  # (taps that read the input, over all outputs; outputs all of whose do)
        step = dilations[axis]
        return (sum(outputs(axis, t * step, t * step) for t in range(taps[axis])),
                outputs(axis, 0, (taps[axis] - 1) * step))

    rows = reads(0)[0] / (taps[0] * out[0])
    inside, whole = reads(1)
    interior = whole * taps[1]
    return rows * (interior + NCHWC_PADDED_TAP * (inside - interior)) / (taps[1] * out[1])


def gemm_columns(op: str, category: str, out: list | None, blocked: tuple[bool, ...] = (False,) * len(NCHWC_BLOCKS),
                 scalar: bool = False) -> tuple[float, ...]:
    """Per layout (`LAYOUTS`), the output columns of the matrix product a node runs as, which a CPU's GEMM
    kernel spreads over a vector's lanes (0: it runs as none, or its shape is not known). A MatMul or Gemm:
    its last dimension, in every layout. A convolution in NCHW is im2col then filters × positions (ONNX
    Runtime's MLAS, per image): its output positions. In an NCHWc layout, a convolution ONNX Runtime
    reorders into blocks of output channels (`blocked`, per block of `NCHWC_BLOCKS`: `nchwc_runs`)
    vectorizes those channels, a block at a time: its output channels; one it leaves in NCHW, its
    positions. A depthwise convolution has a kernel of its own, and a transposed one scatters its
    product: 0. A kernel written as scalar loops (`scalar`: `scalar_loop`, `index_walk`): `SCALAR_COLUMNS`."""
    if scalar:
        return (SCALAR_COLUMNS,) * len(LAYOUTS)
    if not out or any(not isinstance(d, int) or d <= 0 for d in out):
        return (0.0,) * len(LAYOUTS)
    if op in _MATMUL_INPUTS or op in _MOE:
        return (float(out[-1]),) * len(LAYOUTS)
    if op in _CONV_WEIGHT and op != "ConvTranspose" and category != "conv_dw" and len(out) >= 3:
        positions = float(math.prod(out[2:]))
        return (positions,) + tuple(float(out[1]) if runs else positions for runs in blocked)
    return (0.0,) * len(LAYOUTS)


# ONNX Runtime's fixed cost of an operator (its kernel's dispatch, the shapes it checks, the output it allocates),
# by category, in units of an element-wise operator's (Relu, Add, Mul: 0.29 µs on this project's x86 core at one
# thread), which a fingerprint's `overhead` network prices (`models.physical_terms`' operator column). Each kind
# was timed there alone, in chains on tensors of a few elements (`bench/dispatch_cost.py`): an NCHWc convolution
# cost 1.7 units whatever its kernel, a reduction or a LayerNorm 2.1, a Slice 2.8, a query 26-27. Counted as 1
# each and the query as none, the zoo's small MobileNet was answered ×0.71 of its time on a fingerprint, and a
# network's query was priced by how many operators it has. A category not here counts 1.
DISPATCH_UNITS = {"conv": 1.7, "conv_dw": 1.7, "conv_1x1": 1.7, "matmul": 1.3, "norm": 1.7, "pool": 1.2,
                  "global_pool": 2.0, "softmax": 1.7, "copy": 2.0, "gather": 1.9, "reduce": 2.1}
# ops whose cost is not their category's: DynamicQuantizeLinear finds its tensor's range before it quantizes; a
# Slice computes its steps per axis, a Transpose of a few elements is a copy
DISPATCH_OP_UNITS = {"DynamicQuantizeLinear": 2.5, "Slice": 2.8, "Transpose": 1.1}
# A convolution ONNX Runtime leaves in NCHW (every one on an Arm CPU; on x86 those `nchwc_runs` refuses): MLAS's
# NCHW convolution, im2col and a GEMM (a 1×1 one, stride 1 and no padding, multiplies its input in place), and a
# float or ConvInteger one a group at a time (`NCHW_GROUP_UNITS` each after the first: depthwise ones of 16 and 64
# channels took 13 and 45 units). QLinearConv runs its own kernels, depthwise ones included, in NHWC.
NCHW_CONV_UNITS = {"pointwise": 2.6, "spatial": 5.5}
NCHW_GROUP_UNITS = 0.66
QLINEAR_CONV_UNITS = {"pointwise": 2.3, "spatial": 3.4}
REORDER_UNITS = 1.0  # a copy ONNX Runtime's NCHWc pass inserts between layouts (`nchwc_layouts`)
# A query's own cost as the agent times it (LoadGen issuing it, the runner's Python call, ONNX Runtime binding
# inputs and outputs and starting its executor): 7.7 µs there, 4.7 of them in `session.run`. A network's operator
# column is its operators' units plus this.
RUN_UNITS = 27.0
_GROUPED_NCHW = ("Conv", "FusedConv", "ConvInteger")
# ONNX Runtime's binary element-wise kernels broadcast a span at a time (`broadcast_span`): each span, whatever its
# length, costs a call and a step of its iterators, 9-11 ns on that core (0.035 units). A span is short where a
# tensor's innermost axes broadcast: an NHWC tensor times a vector of its C channels (a span of C), and, as that
# broadcaster builds its iterators, a tensor whose last axis is 1 times a one-element vector of rank 1, or a
# scalar ([1, H, W, 1] × [1]: a span of one element). Basic-pitch's three such Muls and Adds, 53-106 thousand
# elements each, took 1.7 ms of its 31 (10 ns an element, where the same Mul over [1, H, W] took 0.18).
BROADCAST_OPS = frozenset({"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "Equal", "Less", "Greater",
                           "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor", "PRelu", "Mod", "BitShift"})
BROADCAST_SPAN_UNITS = 0.035


def broadcast_span(a: list, b: list) -> int:
    """The elements ONNX Runtime's CPU broadcaster hands its kernel at a time for a binary element-wise op of
    inputs shaped `a` and `b` (its Broadcaster, core/providers/cpu/math/element_wise_ops.h, step for step): from
    the innermost axis out, each input's run of axes in which it keeps moving, or keeps broadcasting, is one
    level of its iterator; the span is the shorter of the two innermost levels. Trailing axes of 1 in both are
    passed over, but not the shorter shape's first axis (a scalar's is the longer shape's last), nor the
    longer shape's own: [H, W, 1] × [1] runs a span of 1, [H, W, 1] × [1, 1] one of H·W."""
    levels: list[list[list]] = [[], []]  # per input: [moving, elements] of each level, innermost first

    def open_(i: int, axis: int, largest: int) -> None:
        levels[i].append([axis > 1, largest])

    def extend(i: int, axis: int, largest: int) -> None:
        if (axis > 1) != levels[i][-1][0]:  # starts or stops broadcasting: a level of its own
            levels[i].append([axis > 1, 1])
        levels[i][-1][1] *= largest

    ra, rb = list(reversed(a)), list(reversed(b))
    short, longest = min(len(a), len(b)), max(len(a), len(b))
    index = 0
    if short == 0:  # a scalar: it broadcasts over the other's last axis
        axis = (ra or rb or [1])[0]
        open_(0, axis if ra else 1, axis)
        open_(1, axis if rb else 1, axis)
        index = 1
    while index < short:
        x, y = ra[index], rb[index]
        index += 1
        if max(x, y) == 1 and index < short:
            continue
        open_(0, x, max(x, y))
        open_(1, y, max(x, y))
        break
    for x, y in zip(ra[index:short], rb[index:short]):
        if max(x, y) > 1:
            extend(0, x, max(x, y))
            extend(1, y, max(x, y))
    for axis in (ra if len(a) == longest else rb)[max(index, short):longest]:
        extend(0, axis if len(a) == longest else 1, axis)
        extend(1, axis if len(a) != longest else 1, axis)
    return int(min(levels[0][0][1], levels[1][0][1]))


def dispatch_units(node: onnx.NodeProto, category: str, weight: list | None, blocked: tuple[bool, ...],
                   ins: list | None = None) -> np.ndarray:
    """[len(LAYOUTS)] a node's fixed cost in ONNX Runtime in each layout, in units of an element-wise operator's
    (`DISPATCH_UNITS`): a convolution it runs in NCHW (the NCHW layout; an NCHWc one where `blocked`, per block
    of `NCHWC_BLOCKS`, says it is not laid out in blocks) at MLAS's NCHW cost, a QLinearConv at its own; a
    binary element-wise op, its spans beyond the first (`broadcast_span`; `ins`: its inputs' shapes)."""
    units = np.full(len(LAYOUTS), DISPATCH_OP_UNITS.get(node.op_type, DISPATCH_UNITS.get(category, 1.0)))
    if node.op_type in BROADCAST_OPS and ins is not None and len(ins) == 2 and all(
            shape is not None and all(isinstance(d, int) and d > 0 for d in shape) for shape in ins):
        elements = math.prod(max(x, y) for x, y in itertools.zip_longest(
            reversed(ins[0]), reversed(ins[1]), fillvalue=1))
        units += (elements // broadcast_span(ins[0], ins[1]) - 1) * BROADCAST_SPAN_UNITS
    if node.op_type not in _CONV_WEIGHT or not category.startswith("conv"):
        return units
    taps = weight[2:] if weight is not None and len(weight) > 2 else []
    pointwise = "pointwise" if bool(taps) and all(isinstance(k, int) and k == 1 for k in taps) and \
        all(v == 1 for v in _attr(node, "strides", [1])) and not any(_attr(node, "pads", [0])) else "spatial"
    if node.op_type == "QLinearConv":
        return np.full(len(LAYOUTS), QLINEAR_CONV_UNITS[pointwise])
    group = max(int(_attr(node, "group", 1)), 1) if node.op_type in _GROUPED_NCHW else 1
    if weight is not None and weight and isinstance(weight[0], int) and weight[0] > 0:
        group = min(group, weight[0])  # no more groups than filters, whatever the attribute says
    nchw = NCHW_CONV_UNITS[pointwise] + NCHW_GROUP_UNITS * (group - 1)
    units[0] = nchw
    units[1:] = np.where(blocked, units[1:], nchw)
    return units


def nchwc_runs(op: str, weight: list | None, group: int, block: int) -> bool:
    """Whether ONNX Runtime's NCHWc layout (its x86 CPU kernels; the block: the vector's FP32 lanes) runs a
    convolution with this constant float weight [out, in / group, kh, kw] (None: not constant, or not
    float), as its NchwcTransformer decided in ONNX Runtime 1.32 (every case of
    tests/predictor/test_featurizers.py, on an AVX-512 machine): 2-D; ungrouped with fewer input channels
    than a block (read from NCHW) or a multiple of 4 of them (padded to blocks); depthwise always (channels
    padded to blocks); otherwise grouped with whole blocks of input and output channels per group."""
    if op not in ("Conv", "FusedConv") or weight is None or len(weight) != 4 or group < 1:
        return False
    out_channels, in_channels = weight[0], weight[1]
    if group == 1:
        return in_channels < block or in_channels % 4 == 0
    if in_channels == 1 and out_channels == group:
        return True
    return in_channels % block == 0 and out_channels % group == 0 and (out_channels // group) % block == 0


_NCHWC_ACTIVATIONS = ("Relu", "Sigmoid", "Tanh")  # what ONNX Runtime fuses into an NCHWc convolution
# what it runs on an NCHWc tensor as it is, apart (SiLU, which its fusions make QuickGelu, and GELU: ONNX Runtime
# 1.32); Elu, Softplus, Abs, Exp, PRelu and an Add, Div or Mul of a constant the convolution does not absorb,
# it reorders back to NCHW for
_NCHWC_ELEMENTWISE = ("QuickGelu", "Gelu")
_NCHWC_POOLS = ("MaxPool", "AveragePool", "GlobalMaxPool", "GlobalAveragePool")


def _static_inputs(graph) -> bool:
    """Whether every input the graph declares has a fixed size on each axis after the first (the batch)."""
    weights = {init.name for init in graph.initializer}
    return all(d.HasField("dim_value") and d.dim_value > 0 for i in graph.input if i.name not in weights
               for d in list(i.type.tensor_type.shape.dim)[1:])


def nchwc_fusions(nodes: list, blocked: list[tuple[bool, ...]], shapes: dict, static: bool = True) -> np.ndarray:
    """[nodes, len(LAYOUTS)] per layout, whether ONNX Runtime's NCHWc pass folds a node into the convolution
    before it (NCHW: none). `blocked`: per node, per block of `NCHWC_BLOCKS`, whether it lays the node out
    in NCHWc (`nchwc_runs`). As its NchwcTransformer does, in topological order: a tensor stays in NCHWc
    through pools, activations (SiLU and GELU too), batch norms, Add/Sum/Mul of NCHWc tensors alike in shape,
    channel Concats of whole blocks and nearest upsampling by whole numbers; an Add or Sum of two such
    tensors, one the output of a convolution with no activation and no other use, becomes that convolution's
    accumulation (a ResNet block's residual), and a Relu, Sigmoid or Tanh of a convolution's only use, or
    its x · HardSigmoid(x) (HardSwish as ONNX Runtime expands it), becomes its activation. Those run inside the
    convolution: no kernel, no tensor written of their own (the addend it reads is not counted). Where the
    model declares an input of a size not fixed after its batch axis (`static` False), ONNX Runtime, which
    sees the model as declared, cannot always show that two addends are alike, and reshapes them instead
    (PaddleOCR's classifier, 48 × any width): no Add is taken as folded there."""
    return nchwc_layouts(nodes, blocked, shapes, static)[0]


def nchwc_layouts(nodes: list, blocked: list[tuple[bool, ...]], shapes: dict, static: bool = True,
                  outputs: frozenset = frozenset()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(`nchwc_fusions`, reordered, copies): one walk of the graph as ONNX Runtime's NCHWc pass makes it, and per
    layout the bytes that pass copies between layouts for each node (NCHW: none), each copy reading its tensor and
    writing it again, and how many copies those are (each a kernel of its own: `REORDER_UNITS`). A tensor in NCHWc
    that some node, or the graph's `outputs`, takes in NCHW is reordered back once (ReorderOutput, charged to the
    node that wrote it); a convolution laid out in NCHWc whose input is in NCHW, with a block of channels or more,
    or a pool that lays its input out itself, reorders that input once (ReorderInput, charged to the first node that
    needs it). An op ONNX Runtime cannot run in NCHWc between two convolutions costs two copies of its input's size:
    PaddleOCR's detector (HardSwish as Add, Clip, Mul and Div) took 11.6 ms of its 106 in them on one x86 core."""
    out = np.zeros((len(nodes), len(LAYOUTS)), dtype=bool)
    copied = np.zeros((len(nodes), len(LAYOUTS)))
    copies = np.zeros((len(nodes), len(LAYOUTS)))
    uses: Counter = Counter(t for node in nodes for t in node.input if t)
    producer = {t: i for i, node in enumerate(nodes) for t in node.output if t}
    consumers: dict[str, list[int]] = {}
    for i, node in enumerate(nodes):
        for t in node.input:
            consumers.setdefault(t, []).append(i)
    for column, block in enumerate(NCHWC_BLOCKS, start=1):
        def whole_blocks(tensor: str, rank: int = 0, block: int = block) -> bool:
            dims = shapes.get(tensor, (None, 0))[0]
            return dims is not None and len(dims) > 1 and (not rank or len(dims) == rank) and \
                isinstance(dims[1], int) and dims[1] > 0 and dims[1] % block == 0

        def whole_channels(tensor: str, block: int = block) -> bool:
            dims = shapes.get(tensor, (None, 0))[0]
            return dims is not None and len(dims) > 1 and isinstance(dims[1], int) and dims[1] >= block

        layout: set[str] = set()  # tensors in NCHWc
        needed: set[str] = set()  # of those, the ones a node takes in NCHW
        reordered_in: set[str] = set()
        swish: dict[int, int] = {}  # the Mul of a convolution's x · HardSigmoid(x) → that convolution
        conv_of: dict[str, int] = {}  # tensor → the NCHWc convolution that writes it
        summed: set[int] = set()
        activated: set[int] = set()
        for i, node in enumerate(nodes):
            op, ins = node.op_type, [t for t in node.input if t]
            result = node.output[0] if node.output else ""
            inherited = bool(ins) and ins[0] in layout
            if op in ("Conv", "FusedConv"):
                if blocked[i][column - 1]:
                    layout.add(result)
                    conv_of[result] = i
                    if op == "FusedConv":  # ONNX Runtime's Conv with its activation already fused
                        activated.add(i)
            elif op in _NCHWC_POOLS or op == "BatchNormalization":
                # a max or average pool lays its input out in NCHWc itself where its channels fill blocks
                if inherited or (op in ("MaxPool", "AveragePool") and whole_blocks(ins[0], 4)):
                    layout.add(result)
                    if op == "BatchNormalization":  # a depthwise 1×1 NCHWc convolution
                        conv_of[result] = i
            elif op in ("Add", "Sum", "Mul"):
                dims = [shapes.get(t, (None, 0))[0] for t in ins]
                if ins and all(t in layout for t in ins) and dims[0] is not None and all(d == dims[0] for d in dims):
                    layout.add(result)
                    if i in swish:  # x · HardSigmoid(x): the convolution's HardSwish
                        out[i, column] = True
                        activated.add(swish[i])
                        conv_of[result] = swish[i]
                    if op != "Mul" and len(ins) == 2 and static:
                        for t in ins:
                            conv = conv_of.get(t)
                            if conv is not None and uses[t] == 1 and conv not in summed and conv not in activated:
                                out[i, column] = True
                                summed.add(conv)
                                conv_of[result] = conv
                                break
            elif op == "Concat":
                if _attr(node, "axis", 0) == 1 and ins and all(t in layout and whole_blocks(t) for t in ins):
                    layout.add(result)
            elif (op in _NCHWC_ELEMENTWISE or (op in ("Resize", "Upsample") and _nchwc_upsample(node, ins, shapes))) \
                    and inherited:
                layout.add(result)
            elif op == "HardSigmoid" and inherited and (conv := _swish_of(node, i, nodes, consumers, uses, conv_of)) \
                    is not None and conv not in activated:
                layout.add(result)
                out[i, column] = True
                swish[consumers[result][0]] = conv
            elif op in _NCHWC_ACTIVATIONS and inherited:
                layout.add(result)
                conv = conv_of.get(ins[0])
                if conv is not None and uses[ins[0]] == 1 and conv not in activated:
                    out[i, column] = True
                    activated.add(conv)
                    conv_of[result] = conv
            if result in layout and ins and ins[0] not in layout and ins[0] not in reordered_in and (
                    op in _NCHWC_POOLS or (op in ("Conv", "FusedConv") and whole_channels(ins[0]))):
                reordered_in.add(ins[0])  # ReorderInput, once a tensor
                copied[i, column] += 2 * _bytes(shapes.get(ins[0]))
                copies[i, column] += 1
            for t in ins if result not in layout else ins[1:] if op in ("Conv", "FusedConv") else ():
                needed.update([t] if t in layout else [])
        for t in needed | (layout & outputs):  # ReorderOutput, once a tensor
            if t in producer:
                copied[producer[t], column] += 2 * _bytes(shapes.get(t))
                copies[producer[t], column] += 1
    return out, copied, copies


def _swish_of(node: onnx.NodeProto, i: int, nodes: list, consumers: dict, uses: Counter, conv_of: dict) -> int | None:
    """The NCHWc convolution whose output x a HardSigmoid (1/6, 1/2) at node i turns into HardSwish with the
    Mul that alone takes it, x · HardSigmoid(x), where x goes nowhere else: ONNX Runtime 1.32 runs a HardSwish
    it expands so (MobileNetV3's) as that convolution's activation. None otherwise."""
    x, out = (node.input[0] if node.input else ""), (node.output[0] if node.output else "")
    if abs(_attr(node, "alpha", 0.2) - 1 / 6) > 1e-4 or abs(_attr(node, "beta", 0.5) - 0.5) > 1e-6 or \
            x not in conv_of or uses[x] != 2 or len(consumers.get(out, [])) != 1:
        return None
    mul = nodes[consumers[out][0]]
    return conv_of[x] if mul.op_type == "Mul" and sorted(mul.input) == sorted([x, out]) else None


def _nchwc_upsample(node: onnx.NodeProto, ins: list, shapes: dict) -> bool:
    """Whether ONNX Runtime runs a Resize (or Upsample) on an NCHWc tensor as it is: nearest, whole-number
    scales of the two spatial axes only, a Resize's coordinates asymmetric and rounded down (an FPN's 2x
    upsampling, as YOLOv8 and PaddleOCR's detector have it). An opset-10 Resize, which names neither, is
    taken as not: it stays a copy too many, never one too few."""
    mode = _attr(node, "mode", b"nearest")
    if (mode.decode() if isinstance(mode, bytes) else mode) != "nearest" or not node.output:
        return False
    if node.op_type == "Resize" and any((_attr(node, k, b"").decode() if isinstance(_attr(node, k, b""), bytes)
                                         else _attr(node, k, "")) != v for k, v in
                                        (("coordinate_transformation_mode", "asymmetric"), ("nearest_mode", "floor"))):
        return False
    x, y = (ins[0] if ins else None), shapes.get(node.output[0], (None, 0))[0]
    if x is None or y is None or len(x) != 4 or len(y) != 4 or x[:2] != y[:2]:
        return False
    return all(isinstance(a, int) and a > 0 and b % a == 0 for a, b in zip(x[2:], y[2:]))


def _category(node: onnx.NodeProto, shapes) -> str:
    if node.op_type in _CONV_WEIGHT:
        at = _CONV_WEIGHT[node.op_type]
        w = shapes.get(node.input[at], (None, 0))[0] if len(node.input) > at else None
        group = _attr(node, "group", 1)
        if group > 1 and w is not None and w[1] == 1:
            return "conv_dw"
        if w is not None and all(k == 1 for k in w[2:]):
            return "conv_1x1"
        return "conv"
    return _CATEGORY.get(node.op_type, "other")


def _elems(shape) -> float:
    return float(math.prod(shape)) if shape is not None else 0.0


def _flops(node: onnx.NodeProto, ins: list, outs: list, scalar: bool = False,
           nhwc: bool = False) -> tuple[float | None, float, float, float, float]:
    """(FLOPs, MACs, kernel size, stride, output channels) of one node. FLOPs are None where the op
    computes but its cost is not known here (an op this counter does not know, or shapes not inferred).
    scalar: ONNX Runtime runs it as scalar loops (`scalar_loop`), at its operations per element; nhwc: it runs
    an int8 pool in NHWC (`nhwc_pool`)."""
    op = node.op_type
    out = outs[0] if outs else None
    out_elems = _elems(out)
    channels = float(out[1]) if out is not None and len(out) > 1 else (float(out[-1]) if out else 0.0)

    def arg(i):
        return ins[i] if i < len(ins) else None

    if op in _CONV_WEIGHT:
        w, x = arg(_CONV_WEIGHT[op]), arg(0)
        if w is None or out is None or (op == "ConvTranspose" and x is None):
            return None, 0.0, 0.0, 0.0, channels
        kernel_elems = float(math.prod(w[2:]))
        stride = float(max(_attr(node, "strides", [1]) or [1]))
        macs = (_elems(x) if op == "ConvTranspose" else out_elems) * w[1] * kernel_elems
        bias = arg(8 if op == "QLinearConv" else 2) if op != "ConvInteger" else None
        flops = 2 * macs + (out_elems if bias is not None else 0)
        return flops, macs, float(max(w[2:]) if len(w) > 2 else 1), stride, float(w[0])
    if op in _MOE:
        flops, macs = _moe_flops(node, ins)
        return flops, macs, 0.0, 0.0, float(ins[0][-1]) if ins and ins[0] else channels  # its output: its input's
    if op in _MATMUL_INPUTS:
        a, _ = (arg(i) for i in _MATMUL_INPUTS[op])
        if a is None or out is None:
            return None, 0.0, 0.0, 0.0, channels
        macs = out_elems * _contracted(node, a)
        bias = op in ("Gemm", "FusedGemm") and len(ins) > 2
        return 2 * macs + (out_elems if bias else 0) + _nbits_extra(node, a), macs, 0.0, 0.0, float(out[-1])
    if op in _RECURRENT:  # every step multiplies the input by W and the state by R, per direction
        x, w, r = arg(0), arg(1), arg(2)
        if x is None or w is None or r is None:
            return None, 0.0, 0.0, 0.0, channels
        steps = _elems(x) / x[-1]  # sequence × batch
        macs = steps * (_elems(w) + _elems(r))
        hidden = float(_attr(node, "hidden_size", 0) or (r[-2] if op == "DynamicQuantizeLSTM" else r[-1]))
        return 2 * macs + 10 * steps * hidden, macs, 0.0, 0.0, hidden
    if op == "Einsum":
        macs = _einsum_macs(_attr(node, "equation", b""), ins)
        return (None if macs is None else 2 * macs), macs or 0.0, 0.0, 0.0, channels
    if op in _ATTENTION:
        q = arg(0)
        packed = (_domain(node.domain), op) in _PACKED_ATTENTION  # ONNX's own (opset 23) takes Q, K, V
        k = arg(1) if not packed else None
        if q is None or out is None:
            return None, 0.0, 0.0, 0.0, channels
        macs = 0.0
        if packed and arg(1) is not None and len(arg(1)) == 2:  # packed QKV projection
            macs += _elems(q) * arg(1)[-1]
            keys = q[-2]
        else:
            keys = k[-2] if k is not None and len(k) >= 3 else q[-2]
        at, rank = _ATTENTION_PAST.get((_domain(node.domain), op), (-1, 0))
        past = arg(at) if at >= 0 else None  # a decoder's cache: its keys are attended too
        keys += past[-2] if past is not None and len(past) == rank else 0
        macs += 2 * out_elems * keys  # scores, then their weighted sum of values
        return 2 * macs + 5 * out_elems / max(out[-1], 1) * keys + _fused_rotary(node, out), macs, 0.0, 0.0, \
            float(out[-1])
    if op == "Resize":
        mode = _attr(node, "mode", b"nearest")
        mode = mode.decode() if isinstance(mode, bytes) else str(mode)
        return out_elems * _RESIZE_TAPS.get(mode, 4), 0.0, 0.0, 0.0, channels
    if op in ("AveragePool", "MaxPool", "LpPool", "QLinearAveragePool"):
        kernel = list(_attr(node, "kernel_shape", [1]))
        x = arg(0)
        if x is not None and len(x) == len(kernel) + 2:
            # a window reads no more than the input it lies on: a kernel larger than the input (a global
            # pool written as AveragePool with ceil_mode, padding) costs what the input has, per output
            spatial = x[1:-1] if _attr(node, "channels_last", 0) else x[2:]
            kernel = [min(k, max(d, 1)) if isinstance(d, int) else k for k, d in zip(kernel, spatial)]
        taps = float(math.prod(kernel))
        stride = float(max(_attr(node, "strides", [1])))
        if op == "QLinearAveragePool":
            per_output = QLINEAR_POOL_OUTPUT_OPS["nhwc" if nhwc else "nchw"] + taps * QLINEAR_POOL_TAP_OPS
            work = None if x is None or out is None else out_elems * per_output + _elems(x) * QLINEAR_POOL_INPUT_OPS
            return work, 0.0, float(max(kernel)), stride, channels
        per_output = taps * LP_TAP_OPS if op == "LpPool" else \
            INDEXED_POOL_OPS + taps * INDEXED_TAP_OPS if scalar else taps
        return out_elems * per_output, 0.0, float(max(kernel)), stride, channels
    if op in FOURIER_KERNELS:
        return _fourier_flops(node, ins, out), 0.0, 0.0, 0.0, channels
    if scalar and op in ("CumSum", "CumProd"):
        x = arg(0)
        return (None if x is None else _elems(x) * CUMULATIVE_OPS), 0.0, 0.0, 0.0, channels
    if scalar and op in SCALAR_REDUCTIONS:
        x = arg(0)
        return (None if x is None else _elems(x) * SCALAR_REDUCTIONS[op]), 0.0, 0.0, 0.0, channels
    if scalar and op in SCALAR_ELEMENTWISE:
        return (None if out is None else out_elems * scalar_count(node, arg(0))), 0.0, 0.0, 0.0, channels
    if op in _REDUCE_INPUT:
        x = arg(0)
        return (None if x is None else _elems(x) * _ELEMENTWISE.get(op, 1)), 0.0, 0.0, 0.0, channels
    category = _CATEGORY.get(op, "other")
    if category in ("view", "copy", "gather"):
        return 0.0, 0.0, 0.0, 0.0, channels
    if category == "other" or out is None:
        return None, 0.0, 0.0, 0.0, channels
    if op == "MeanVarianceNormalization" and not _innermost(_attr(node, "axes", [0, 2, 3]), arg(0)):
        return out_elems * MVN_OTHER_AXES, 0.0, 0.0, 0.0, channels
    return out_elems * _FLOPS_PER_ELEMENT.get(op, _ELEMENTWISE.get(op, 1)), 0.0, 0.0, 0.0, channels


def _innermost(axes, x: list | None) -> bool:
    """Whether `axes` are the innermost axes of a tensor of shape `x` (those after them all of size 1)."""
    if not x:
        return True
    kept = set(range(len(x))) - {int(a) % len(x) for a in axes}
    return all(i < min(int(a) % len(x) for a in axes) or x[i] == 1 for i in kept) if axes else True


def scalar_count(node: onnx.NodeProto, x: list | None) -> float:
    """Operations per output element of a scalar-loop kernel (`SCALAR_ELEMENTWISE`), where its attributes
    or its input's shape `x` change them: a GatherBlockQuantized of whole bytes only subtracts the zero point
    and scales (a DequantizeLinear's 2), a packed one unpacks first (`NBITS_DEQUANTIZE`); `_SCALAR_BY`; an
    LpNormalization along an axis that is not the innermost one walks memory strided (`STRIDED_NORM_OPS`)."""
    op = node.op_type
    if op == "GatherBlockQuantized":
        return NBITS_DEQUANTIZE if int(_attr(node, "bits", 4) or 4) < 8 else _ELEMENTWISE["DequantizeLinear"]
    if op == "LpNormalization" and x:
        inner = x[int(_attr(node, "axis", -1)) % len(x) + 1:]
        return STRIDED_NORM_OPS if any(d != 1 for d in inner) else SCALAR_ELEMENTWISE[op]
    for (name, attr, value), count in _SCALAR_BY.items():
        given = _attr(node, attr, None)
        if name == op and (given.decode() if isinstance(given, bytes) else given) == value:
            return count
    return SCALAR_ELEMENTWISE[op]


def _fused_rotary(node: onnx.NodeProto, out: list) -> float:
    """FLOPs of the rotary embedding an attention applies to its new queries and keys itself (`do_rotary`:
    onnxruntime-genai's GroupQueryAttention), as RotaryEmbedding's (`_ELEMENTWISE`) per element; 0 without."""
    heads = int(_attr(node, "num_heads", 0) or 0)
    if not _attr(node, "do_rotary", 0) or heads <= 0 or not out:
        return 0.0
    kv_heads = int(_attr(node, "kv_num_heads", 0) or heads)
    tokens, head = _elems(out) / max(out[-1], 1), out[-1] / heads
    return _ELEMENTWISE["RotaryEmbedding"] * tokens * (heads + kv_heads) * head


def _fourier_flops(node: onnx.NodeProto, ins: list, out: list | None) -> float | None:
    """FLOPs of a DFT or STFT as ONNX Runtime's CPU kernel computes it: one transform of N points per frame
    (STFT: [batch, frames, bins, 2] out; N: its window's length) or per line along the axis (DFT: its
    `axis`, or the one axis whose length the transform changes), each as `fft_flops`. None where the
    shapes are not known."""
    if out is None or len(out) < 3 or not ins or ins[0] is None:
        return None
    x = ins[0]
    onesided = _attr(node, "onesided", 1 if node.op_type == "STFT" else 0)
    if node.op_type == "STFT":
        axis, window = len(out) - 2, ins[2] if len(ins) > 2 else None
        n = window[0] if window else (2 * (out[axis] - 1) if onesided else out[axis])
        bins = n // 2 + 1 if onesided else n
    else:
        changed = [i for i in range(len(out) - 1) if i < len(x) and out[i] != x[i]]
        axis = _attr(node, "axis", changed[0] if len(changed) == 1 else 1) % len(out)
        bins = out[axis]
        given = len(node.input) > 1 and bool(node.input[1])  # dft_length: a value shapes do not say
        n = bins if not onesided else (x[axis] if not given and axis < len(x) else 2 * (bins - 1))
    transforms = _elems(out) / max(out[axis] * out[-1], 1)
    return transforms * fft_flops(int(n), int(bins))


def fft_flops(n: int, bins: int) -> float:
    """FLOPs of one N-point transform in ONNX Runtime's CPU kernel (1.16 onwards), `bins` of its outputs
    kept. N a power of 2: a radix-2 FFT, log2 N stages of N/2 butterflies of two complex multiplies and two
    complex adds (16 FLOPs), after the windowed input is read. Otherwise Bluestein's chirp-z: the power of 2
    M ≥ 2N - 1, an FFT of M points forward and one back, a complex product per point between them and the
    scaling after, the chirp applied to the N inputs and to the outputs kept. A 400-point window (Whisper's)
    costs about 4.7× a 512-point one."""
    if n < 2:
        return 2.0 * max(n, 0)
    if n & (n - 1) == 0:
        return 8.0 * n * math.log2(n) + 2 * n
    m = 1 << (2 * n - 2).bit_length()
    return 16.0 * m * math.log2(m) + 8 * m + 8 * n + 12 * bins


def _contracted(node: onnx.NodeProto, a: list) -> int:
    """The dimension a matrix product sums over, read from its first input A: A's last, unless A is
    transposed. Gemm's transA: its first (A is 2-D). ONNX Runtime's FusedMatMul (a MatMul with the Transpose
    before it folded in) transposes A's last two dimensions with transA, and with transBatchA moves A's first
    dimension behind its batch ones, so transA then sums over that first. A mel filter bank applied to a
    spectrogram's transpose (NeMo's and Kaldi's front ends: [1, 257, 3001]ᵀ × [257, 128]) was counted
    over 3001 where it sums over 257: 12× its work."""
    if not _attr(node, "transA", 0):
        return a[-1]
    if node.op_type in ("Gemm", "QGemm", "FusedGemm") or (node.op_type == "FusedMatMul" and
                                                           _attr(node, "transBatchA", 0)):
        return a[0]
    return a[-2] if len(a) >= 2 else a[-1]


def _einsum_macs(equation, ins: list) -> float | None:
    """Multiply-adds of a one- or two-operand Einsum: the product of every index's size."""
    eq = (equation.decode() if isinstance(equation, bytes) else str(equation)).replace(" ", "")
    lhs = eq.split("->")[0]
    operands = lhs.split(",")
    if "..." in eq or len(operands) != len([i for i in ins if i is not None]) or len(operands) > 2:
        return None
    sizes: dict[str, int] = {}
    for letters, shape in zip(operands, ins):
        if shape is None or len(letters) != len(shape):
            return None
        for letter, size in zip(letters, shape):
            sizes[letter] = max(sizes.get(letter, 1), size)
    return float(math.prod(sizes.values()))
