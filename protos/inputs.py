"""Input specifications: the shapes and values a model is run with.

One contract for `models add`, `agent bench`, campaigns and `predict`. A model declares its inputs
(name, element type, dimensions, some of them dynamic); a spec fixes, for each input, a shape and where
its values come from. The model reference carries the spec (`ModelRef.inputs_json`), the agent feeds
exactly those inputs, and the reference outputs for the fidelity check are made with them.

Shapes. A dimension is a whole number or `batch`, the task's batch size. A dynamic dimension is never
guessed: axis 0 of an input, when dynamic, is the batch axis (so is any dimension that shares its
symbolic name); every other dynamic dimension must be given, by name (`--dim seq=128`) or with the whole
shape (`--input x=batchx3x640x640`), or the model is refused with one line naming the dimension. A model
without any batch axis runs at batch 1 only.

Values (`--values NAME=SOURCE`):
  normal             standard normal (the default for floating-point inputs)
  uniform:LO:HI      uniform in [LO, HI)
  int:LO:HI          whole numbers in [LO, HI)
  tokens:V           token ids in [0, V) (the default for an integer input that indexes a table of V rows)
  fixed:V            every element V (a sample rate, an attention mask of ones)
  zeros              every element 0
  feedback:OUTPUT    recurrent state: zeros at first, then each run's OUTPUT fed back
  file:PATH.npy      a real sample, one .npy array of the input's shape at batch 1 (or without the batch
                     axis); it travels in the model's reference data (`sample` once read)
Integer and boolean inputs have no default beyond `tokens`: their meaning is the model's, so the spec says.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeatlas.protos.errors import InvalidInput

BATCH = "batch"
MAX_INPUTS = 64
MAX_RANK = 8
MAX_DIM = 1 << 24
MAX_INPUT_BYTES = 1 << 30  # all inputs together, at batch 1
MAX_NAME = 256
SOURCE_KINDS = ("normal", "uniform", "int", "tokens", "fixed", "zeros", "feedback", "sample")
FLOAT_TYPES = ("float16", "float32", "float64", "bfloat16")
INT_TYPES = ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64")
DTYPES = FLOAT_TYPES + INT_TYPES + ("bool",)
_NUMBER = r"-?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?"
_NAME = re.compile(r"[A-Za-z_][\w.]*")  # a symbolic dimension; exporters' '?' or '-1' are unnamed


@dataclass(frozen=True)
class ModelInput:
    """What a model declares for one input. A dimension is an int (static), a symbolic name, or None."""

    name: str
    dtype: str  # numpy name (DTYPES)
    dims: tuple | None  # None: not even the rank is declared
    vocab: int | None = None  # rows of the table this integer input indexes, where the graph says so


@dataclass(frozen=True)
class InputSpec:
    """One input as it is fed: dtype, shape (ints and BATCH) and the source of its values."""

    name: str
    dtype: str
    shape: tuple
    source: str = "normal"

    @property
    def batch_axis(self) -> int | None:
        return self.shape.index(BATCH) if BATCH in self.shape else None

    @property
    def kind(self) -> str:
        return self.source.split(":", 1)[0]

    def shape_at(self, batch: int) -> tuple[int, ...]:
        return tuple(batch if d == BATCH else d for d in self.shape)

    def text(self) -> str:
        dims = "x".join(str(d) for d in self.shape) or "scalar"
        return f"{self.name}={dims} {self.dtype} ({self.source})"


@dataclass(frozen=True)
class InputRequest:
    """What a user asked for: whole shapes by input, sizes of named dimensions, value sources, samples."""

    shapes: dict = field(default_factory=dict)  # input → tuple of ints and names
    dims: dict = field(default_factory=dict)  # symbolic name → int
    values: dict = field(default_factory=dict)  # input → source text
    samples: dict = field(default_factory=dict)  # input → ndarray read from file:PATH

    @property
    def empty(self) -> bool:
        return not (self.shapes or self.dims or self.values)


def declared_dim(d):
    """A dimension as a model declares it: a whole number > 0 (static), a symbolic name, or None (unknown;
    exporters also write '?', -1 or 0 for it)."""
    if isinstance(d, int) and not isinstance(d, bool):
        return d if d > 0 else None
    return d if isinstance(d, str) and _NAME.fullmatch(d) else None


# ---- parsing what a user typed ---------------------------------------------------------------------
def _pair(text: str, flag: str) -> tuple[str, str]:
    name, sep, rest = text.partition("=")
    if not sep or not name.strip() or not rest.strip():
        raise InvalidInput(f"{flag} {text!r}: expected NAME=VALUE")
    if len(name) > MAX_NAME:
        raise InvalidInput(f"{flag}: a name is at most {MAX_NAME} characters")
    return name.strip(), rest.strip()


def parse_shape(text: str, flag: str = "--input") -> tuple:
    """'1x3x640x640', 'batchx3xHxW' (named dimensions), 'batch,max_len' or 'scalar' → ints and names."""
    if text == "scalar":
        return ()
    # 'x' separates dimensions; a name with an x in it needs commas: 'batch,max_len'
    parts = text.split(",") if "," in text else text.split("x")
    dims: list = []
    for part in parts:
        if re.fullmatch(r"\d+", part):
            value = int(part)
            if not 0 < value <= MAX_DIM:
                raise InvalidInput(f"{flag}: dimension {part} is outside 1..{MAX_DIM}")
            dims.append(value)
        elif _NAME.fullmatch(part):
            dims.append(part)
        else:
            raise InvalidInput(f"{flag}: {text!r} is not a shape like 1x3x224x224 or batchx128")
    if len(dims) > MAX_RANK:
        raise InvalidInput(f"{flag}: at most {MAX_RANK} dimensions, got {len(dims)}")
    return tuple(dims)


def check_source(source: str, flag: str = "--values") -> str:
    """The source in its canonical text, or one InvalidInput line saying what is wrong with it."""
    kind, _, arg = source.partition(":")
    if kind not in SOURCE_KINDS or kind == "sample":
        raise InvalidInput(f"{flag}: unknown value source {source!r} (normal, uniform:LO:HI, int:LO:HI, "
                           f"tokens:V, fixed:V, zeros, feedback:OUTPUT, file:PATH.npy)")
    if kind in ("normal", "zeros"):
        if arg:
            raise InvalidInput(f"{flag}: {kind} takes no argument")
        return kind
    if kind == "feedback":
        if not arg or len(arg) > MAX_NAME:
            raise InvalidInput(f"{flag}: feedback needs the output it takes its state from, feedback:OUTPUT")
        return source
    if kind == "tokens":
        if not re.fullmatch(r"\d+", arg) or not 0 < int(arg) <= 1 << 31:
            raise InvalidInput(f"{flag}: tokens needs a vocabulary size, tokens:V with V ≥ 1")
        return f"tokens:{int(arg)}"
    if kind == "fixed":
        if arg.lower() not in ("true", "false") and not re.fullmatch(_NUMBER, arg):
            raise InvalidInput(f"{flag}: fixed needs a number, fixed:V")
        return source
    lo, sep, hi = arg.partition(":")
    if not sep or not re.fullmatch(_NUMBER, lo) or not re.fullmatch(_NUMBER, hi):
        raise InvalidInput(f"{flag}: {kind} needs two numbers, {kind}:LO:HI")
    if not float(lo) < float(hi) or not all(math.isfinite(float(v)) for v in (lo, hi)):
        raise InvalidInput(f"{flag}: {kind}:{lo}:{hi} needs LO < HI")
    if kind == "int" and not (re.fullmatch(r"-?\d+", lo) and re.fullmatch(r"-?\d+", hi)):
        raise InvalidInput(f"{flag}: int:LO:HI takes whole numbers")
    return source


def read_sample(path: str, flag: str = "--values") -> np.ndarray:
    """A sample file: one .npy array (numpy's own format; no pickles)."""
    p = Path(path)
    if p.suffix.lower() != ".npy":
        raise InvalidInput(f"{flag}: a sample is one .npy array (numpy.save), got {p.name}")
    if not p.is_file():
        raise InvalidInput(f"{flag}: sample file {p} does not exist")
    if p.stat().st_size > MAX_INPUT_BYTES + 4096:
        raise InvalidInput(f"{flag}: sample {p.name} is over {MAX_INPUT_BYTES >> 20} MiB")
    try:
        array = np.load(p, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{flag}: {p.name} is not a readable .npy array: {str(exc)[:200]}") from None
    if not isinstance(array, np.ndarray) or array.dtype.name not in DTYPES:
        raise InvalidInput(f"{flag}: {p.name} holds {getattr(array, 'dtype', type(array))}, not numbers")
    return array


def request_from_flags(inputs: list[str] | None = None, dims: list[str] | None = None,
                       values: list[str] | None = None) -> InputRequest:
    """The CLI's --input NAME=SHAPE, --dim NAME=N and --values NAME=SOURCE, checked one by one."""
    shapes, sizes, sources, samples = {}, {}, {}, {}
    for text in inputs or []:
        name, shape = _pair(text, "--input")
        if name in shapes:
            raise InvalidInput(f"--input {name} is given twice")
        shapes[name] = parse_shape(shape)
    for text in dims or []:
        name, size = _pair(text, "--dim")
        if not re.fullmatch(r"\d+", size) or not 0 < int(size) <= MAX_DIM:
            raise InvalidInput(f"--dim {name}={size}: a dimension is a whole number in 1..{MAX_DIM}")
        sizes[name] = int(size)
    for text in values or []:
        name, source = _pair(text, "--values")
        if name in sources:
            raise InvalidInput(f"--values {name} is given twice")
        if source.startswith("file:"):
            samples[name] = read_sample(source[len("file:"):])
            sources[name] = "sample"
        else:
            sources[name] = check_source(source)
    return InputRequest(shapes=shapes, dims=sizes, values=sources, samples=samples)


def request_from_argv(argv: list[str]) -> InputRequest:
    """The same, from a flat list such as ["--input", "x=1x3x8x8", "--dim", "seq=16"] (a zoo entry's flags)."""
    pairs: dict[str, list[str]] = {"--input": [], "--dim": [], "--values": []}
    if len(argv) % 2:
        raise InvalidInput(f"input flags come in pairs, got {argv!r}")
    for flag, value in zip(argv[::2], argv[1::2]):
        if flag not in pairs:
            raise InvalidInput(f"{flag} is not one of --input, --dim, --values")
        pairs[flag].append(value)
    return request_from_flags(pairs["--input"], pairs["--dim"], pairs["--values"])


# ---- a spec from what the model declares and what the user asked ------------------------------------
def _dynamic(d) -> bool:
    return not (isinstance(d, int) and d > 0)


def _label(d) -> str:
    return f" ({d!r})" if isinstance(d, str) else ""


def resolve(declared: list[ModelInput], request: InputRequest | None = None,
            outputs: list[str] | None = None, values_needed: bool = True) -> tuple[InputSpec, ...]:
    """Every declared input's spec, or one InvalidInput line naming the input or dimension to give.
    `values_needed=False` (shapes alone matter: the predictor's featurizer) gives an integer input that
    says nothing of its values zeros instead of refusing it, and ones to one named a mask (`_mask_source`);
    its shape is still never invented."""
    request = request or InputRequest()
    names = [m.name for m in declared]
    for flag, given in (("--input", request.shapes), ("--values", request.values)):
        for name in given:
            if name not in names:
                raise InvalidInput(f"{flag} {name}: the model has no input {name!r} "
                                   f"(it has {', '.join(names) or 'none'})")
    symbolic = {d for m in declared for d in (m.dims or ()) if isinstance(d, str)}
    symbolic |= {d for shape in request.shapes.values() for d in shape if isinstance(d, str)}
    for name in request.dims:
        if name not in symbolic and name != BATCH:
            raise InvalidInput(f"--dim {name}: the model has no dimension named {name!r} "
                               f"(its named dimensions: {', '.join(sorted(symbolic)) or 'none'})")
    batch_names = {m.dims[0] for m in declared if m.dims and isinstance(m.dims[0], str)
                   and m.dims[0] not in request.dims and m.name not in request.shapes}
    specs = []
    for m in declared:
        shape = (_given_shape(m, request.shapes[m.name], request.dims) if m.name in request.shapes
                 else _declared_shape(m, request, batch_names))
        sample = request.samples.get(m.name)
        source = request.values.get(m.name) or (_default_source(m) if values_needed or m.dtype in FLOAT_TYPES
                                                or m.vocab else _mask_source(m))
        if sample is not None:
            shape = _sample_shape(m, shape, sample)
        if source.startswith("feedback:") and outputs is not None and source[len("feedback:"):] not in outputs:
            raise InvalidInput(f"--values {m.name}={source}: the model has no output "
                               f"{source[len('feedback:'):]!r} (it has {', '.join(outputs)})")
        specs.append(InputSpec(m.name, m.dtype, tuple(shape), source))
    check_specs(specs)
    return tuple(specs)


def _given_shape(m: ModelInput, shape: tuple, dims: dict) -> list:
    declared_dims = m.dims if m.dims is not None else (None,) * len(shape)  # rank not declared: any
    if len(shape) != len(declared_dims):
        raise InvalidInput(f"--input {m.name}: the model's input has {len(m.dims)} dimensions "
                           f"({_dims_text(m.dims)}), the shape given has {len(shape)}")
    out = []
    for axis, (given, declared) in enumerate(zip(shape, declared_dims)):
        if isinstance(given, str) and given != BATCH:
            if given not in dims:
                raise InvalidInput(f"--input {m.name}: dimension {axis} is named {given!r}; "
                                   f"give its size with --dim {given}=N")
            given = dims[given]
        if not _dynamic(declared) and given != declared:
            raise InvalidInput(f"--input {m.name}: dimension {axis} is fixed at {declared} in the model, "
                               f"not {given}")
        out.append(given)
    return out


def _declared_shape(m: ModelInput, request: InputRequest, batch_names: set) -> list:
    if m.dims is None:
        raise InvalidInput(f"input {m.name} has no declared rank; give its shape with --input {m.name}=SHAPE")
    out = []
    for axis, d in enumerate(m.dims):
        if not _dynamic(d):
            out.append(d)
        elif isinstance(d, str) and d in request.dims:
            out.append(request.dims[d])
        elif axis == 0 or (isinstance(d, str) and d in batch_names):
            out.append(BATCH)
        elif m.name in request.samples:
            out.append(None)  # the sample says
        else:
            hint = (f"--dim {d}=N or " if isinstance(d, str) else "") + \
                f"--input {m.name}={_dims_text(m.dims, example=True)}"
            raise InvalidInput(f"input {m.name}: dimension {axis}{_label(d)} is dynamic and no size was "
                               f"given; set it with {hint}")
    return out


def _sample_shape(m: ModelInput, shape: list, sample: np.ndarray) -> list:
    """The shape a sample fills: the spec's shape at batch 1, or the same without the batch axis."""
    batch_axis = shape.index(BATCH) if BATCH in shape else None
    want = [1 if d == BATCH else d for d in shape]
    got = list(sample.shape)
    if batch_axis is not None and len(got) == len(want) - 1:
        got.insert(batch_axis, 1)
    if len(got) != len(want) or any(w is not None and w != g for w, g in zip(want, got)):
        raise InvalidInput(f"--values {m.name}=file: the sample's shape {tuple(sample.shape)} does not fit "
                           f"the input's {_dims_text(tuple(shape))}")
    return [BATCH if axis == batch_axis else g for axis, g in enumerate(got)]


def _default_source(m: ModelInput) -> str:
    if m.dtype in FLOAT_TYPES:
        return "normal"
    if m.vocab:
        return f"tokens:{m.vocab}"
    rank = "rank unknown" if m.dims is None else _dims_text(m.dims)
    raise InvalidInput(f"input {m.name} ({m.dtype}, {rank}) has no value source: give one with "
                       f"--values {m.name}=SOURCE (fixed:V, int:LO:HI, tokens:V or file:PATH.npy)")


def _mask_source(m: ModelInput) -> str:
    """The values the featurizer's run feeds an integer or boolean input that says nothing of them: ones where
    its name says it is a mask (an attention mask of zeros masks every position, and ONNX Runtime's
    GroupQueryAttention, which reads its sequence lengths from it, refused to run an int4 Llama at -1: the
    shapes after it went unobserved and 42 of its 49 operators uncounted), zeros otherwise."""
    return "fixed:1" if "mask" in m.name.lower() else "zeros"


def _dims_text(dims: tuple, example: bool = False) -> str:
    if not dims:
        return "scalar"
    if example:
        return "x".join(str(d) if not _dynamic(d) else (BATCH if i == 0 else "N") for i, d in enumerate(dims))
    return "x".join(str(d) if not _dynamic(d) else (d if isinstance(d, str) else "?") for d in dims)


def check_specs(specs: list[InputSpec] | tuple[InputSpec, ...]) -> None:
    """Bounds that hold whoever wrote the spec: a hostile one cannot make a device allocate without end."""
    if len(specs) > MAX_INPUTS:
        raise InvalidInput(f"a model spec has at most {MAX_INPUTS} inputs, got {len(specs)}")
    for s in specs:
        if not isinstance(s.name, str) or not s.name or len(s.name) > MAX_NAME:
            raise InvalidInput("an input needs a name of at most 256 characters")
        if s.dtype not in DTYPES:
            raise InvalidInput(f"input {s.name}: element type {s.dtype!r} is not one the runner feeds")
        if len(s.shape) > MAX_RANK or sum(d == BATCH for d in s.shape) > 1:
            raise InvalidInput(f"input {s.name}: at most {MAX_RANK} dimensions and one batch axis")
        for d in s.shape:
            if d != BATCH and not (isinstance(d, int) and not isinstance(d, bool) and 0 < d <= MAX_DIM):
                raise InvalidInput(f"input {s.name}: dimension {d!r} is not a whole number in 1..{MAX_DIM}")
        kind = s.kind
        if kind != "sample":
            check_source(s.source, flag=f"input {s.name}")
        if kind in ("uniform", "normal") and s.dtype not in FLOAT_TYPES:
            raise InvalidInput(f"input {s.name}: {kind} values are for floating-point inputs; "
                               f"{s.dtype} takes int:LO:HI, tokens:V or fixed:V")
    total = nbytes(specs)
    if total > MAX_INPUT_BYTES:
        raise InvalidInput(f"the inputs take {total / 2**20:.0f} MiB at batch 1; the limit is "
                           f"{MAX_INPUT_BYTES >> 20} MiB")


def _numpy_dtype(dtype: str):
    return np.float32 if dtype == "bfloat16" else np.dtype(dtype)


def nbytes(specs, batch: int = 1) -> int:
    """What the inputs take at a batch size."""
    return int(sum(math.prod(s.shape_at(batch)) * np.dtype(_numpy_dtype(s.dtype)).itemsize for s in specs))


def has_batch_axis(specs) -> bool:
    return any(s.batch_axis is not None for s in specs)


def check_batch(specs, batch: int, model: str = "the model") -> None:
    if batch > 1 and not has_batch_axis(specs):
        shapes = ", ".join(s.text() for s in specs[:3])
        raise InvalidInput(f"{model} has no batch dimension ({shapes}): run it at batch 1, or register it "
                           f"with one, e.g. --input NAME=batchx...")


# ---- values ------------------------------------------------------------------------------------------
def feeds(specs, batch: int = 1, seed: int = 0, samples: dict | None = None) -> dict[str, np.ndarray]:
    """The arrays for every input at a batch size; the same seed gives the same values on every device."""
    rng = np.random.default_rng(seed)
    out = {}
    for s in specs:
        shape, dtype = s.shape_at(1), _numpy_dtype(s.dtype)
        kind, _, arg = s.source.partition(":")
        if kind == "sample":
            if samples is None or s.name not in samples:
                raise InvalidInput(f"input {s.name}: its sample is missing from the model's reference data")
            value = np.asarray(samples[s.name]).reshape(shape).astype(dtype)
        elif kind == "normal":
            value = rng.standard_normal(shape).astype(dtype)
        elif kind == "uniform":
            lo, hi = (float(v) for v in arg.split(":"))
            value = rng.uniform(lo, hi, size=shape).astype(dtype)
        elif kind in ("int", "tokens"):
            lo, hi = (0, int(arg)) if kind == "tokens" else (int(v) for v in arg.split(":"))
            value = rng.integers(lo, hi, size=shape).astype(dtype)
        elif kind == "fixed":
            v = {"true": 1, "false": 0}.get(arg.lower(), None)
            value = np.full(shape, float(arg) if v is None else v).astype(dtype)
        else:  # zeros, feedback
            value = np.zeros(shape, dtype=dtype)
        out[s.name] = value
    return tile(specs, out, batch)


def tile(specs, arrays: dict[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
    """Batch-1 arrays repeated along each input's batch axis; inputs without one stay as they are."""
    if batch == 1:
        return dict(arrays)
    axes = {s.name: s.batch_axis for s in specs}
    return {k: (np.repeat(v, batch, axis=axes[k]) if axes.get(k) is not None else v) for k, v in arrays.items()}


def feedback_pairs(specs) -> list[tuple[str, str]]:
    """(input, output) pairs of recurrent state: the output is fed back as the input after every run."""
    return [(s.name, s.source[len("feedback:"):]) for s in specs if s.kind == "feedback"]


# ---- on the wire -------------------------------------------------------------------------------------
def to_json(specs) -> str:
    return json.dumps([{"name": s.name, "dtype": s.dtype, "shape": list(s.shape), "source": s.source}
                       for s in specs], separators=(",", ":"))


def from_json(text: str) -> tuple[InputSpec, ...]:
    """A spec from a model reference; the same bounds as one typed here (it may come from anyone)."""
    if not text:
        return ()
    if len(text) > 1 << 20:
        raise InvalidInput("an input spec is at most 1 MiB of JSON")
    try:
        raw = json.loads(text)
    except (json.JSONDecodeError, RecursionError):  # deep nesting is refused, not a crash
        raise InvalidInput("the input spec is not JSON") from None
    if not isinstance(raw, list) or len(raw) > MAX_INPUTS:
        raise InvalidInput(f"the input spec is a list of at most {MAX_INPUTS} inputs")
    specs = []
    for item in raw:
        if not isinstance(item, dict) or set(item) != {"name", "dtype", "shape", "source"} \
                or not isinstance(item["shape"], list) or not isinstance(item["source"], str):
            raise InvalidInput("an input spec entry has exactly name, dtype, shape (a list) and source")
        specs.append(InputSpec(item["name"], item["dtype"], tuple(item["shape"]), item["source"]))
    check_specs(specs)
    if len({s.name for s in specs}) != len(specs):
        raise InvalidInput("the input spec names an input twice")
    return tuple(specs)


def describe(specs) -> str:
    return "; ".join(s.text() for s in specs) or "no inputs"


def check_against(declared: list[ModelInput], specs, outputs: list[str] | None = None) -> None:
    """A spec written elsewhere (a client's) fits the model: one spec per input, its element type, rank and
    fixed dimensions the model's, a batch axis only where the model's dimension is dynamic."""
    by = {s.name: s for s in specs}
    names = [m.name for m in declared]
    for name in by:
        if name not in names:
            raise InvalidInput(f"the input spec names {name!r}, which the model does not have "
                               f"(it has {', '.join(names) or 'none'})")
    for m in declared:
        s = by.get(m.name)
        if s is None:
            raise InvalidInput(f"the input spec has nothing for input {m.name}")
        if s.dtype != m.dtype:
            raise InvalidInput(f"input {m.name}: the spec says {s.dtype}, the model {m.dtype}")
        if m.dims is not None and len(s.shape) != len(m.dims):
            raise InvalidInput(f"input {m.name}: the spec has {len(s.shape)} dimensions, the model {len(m.dims)}")
        for axis, (d, want) in enumerate(zip(s.shape, m.dims or s.shape)):
            if not _dynamic(want) and d != want:
                raise InvalidInput(f"input {m.name}: dimension {axis} is {want} in the model, {d} in the spec")
        out = s.source[len("feedback:"):] if s.kind == "feedback" else None
        if out is not None and outputs is not None and out not in outputs:
            raise InvalidInput(f"input {m.name}: feedback from {out!r}, which the model does not output")
