"""GGUF files (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md): one reader for every room.

The header is read in one walk that checks every count against the file's size: a 94-byte file declaring
a 2^40-item array grew a coordinator to 20 GB under a reader that trusts the counts. The walk also gives
what `gguf.GGUFReader` would (scalars, strings, array lengths, tensor shapes and types), in a tenth of
the time: GGUFReader maps every vocabulary entry as its own numpy view, 11.3 s for a 262,144-token
vocabulary against 0.4 s here, and it did so twice per `models add`. The `gguf` package gives the ggml
types and their block sizes; it is imported only here, and only when a file is read.
"""

from __future__ import annotations

import math
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from edgeatlas.protos.errors import InvalidInput


@dataclass(frozen=True)
class FileType:
    name: str  # the setting's precision, e.g. q4_k_m
    bits: float  # bits per weight, block scales included


# general.file_type → llama.cpp's LLAMA_FTYPE_* (llama.h); bits per weight from ggml's block sizes, the
# mixed K-quant types as llama.cpp's quantize tool reports them.
FILE_TYPES = {0: FileType("fp32", 32), 1: FileType("fp16", 16), 2: FileType("q4_0", 4.5),
              3: FileType("q4_1", 5.0), 7: FileType("q8_0", 8.5), 8: FileType("q5_0", 5.5),
              9: FileType("q5_1", 6.0), 10: FileType("q2_k", 2.6), 11: FileType("q3_k_s", 3.4),
              12: FileType("q3_k_m", 3.9), 13: FileType("q3_k_l", 4.6), 14: FileType("q4_k_s", 4.5),
              15: FileType("q4_k_m", 4.8), 16: FileType("q5_k_s", 5.5), 17: FileType("q5_k_m", 5.7),
              18: FileType("q6_k", 6.6), 19: FileType("iq2_xxs", 2.06), 20: FileType("iq2_xs", 2.31),
              23: FileType("iq3_xxs", 3.06), 24: FileType("iq1_s", 1.56), 25: FileType("iq4_nl", 4.5),
              26: FileType("iq3_s", 3.44), 28: FileType("iq2_s", 2.5), 30: FileType("iq4_xs", 4.25),
              31: FileType("iq1_m", 1.75), 32: FileType("bf16", 16)}


def file_type_name(file_type: int) -> str:
    """The precision a setting names for a general.file_type (-1: the file did not say)."""
    known = FILE_TYPES.get(file_type)
    return known.name if known else (f"type{file_type}" if file_type >= 0 else "unknown")


@dataclass(frozen=True)
class GGUFHeader:
    """A GGUF file's key-value metadata (an array is given by its length) and its tensors' totals."""

    name: str  # the file's name, for messages
    metadata: dict
    parameters: int  # every tensor's elements, as llama.cpp's llama_model_n_params counts them
    tensor_types: dict = field(default_factory=dict)  # ggml type name → tensors
    tensors: dict = field(default_factory=dict)  # tensor name → elements

    def value(self, key: str, default=None):
        return self.metadata.get(key, default)

    @property
    def architecture(self) -> str | None:
        arch = self.metadata.get("general.architecture")
        return arch if isinstance(arch, str) and arch else None

    def check_model(self) -> "GGUFHeader":
        """Itself, when it is a model a runtime can load; otherwise InvalidInput naming what is missing."""
        if not self.architecture:
            raise InvalidInput(f"{self.name} is a GGUF file without general.architecture: not a model")
        if self.parameters == 0:
            raise InvalidInput(f"{self.name} holds no tensors")
        return self


def read_header(path: str | Path) -> GGUFHeader:
    """The checked header of a GGUF file, or one InvalidInput line naming the first thing wrong."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"model file {path} does not exist")
    try:
        metadata, tensors = _walk(path)
    except OSError as exc:
        raise InvalidInput(f"model {path}: {exc.strerror or exc}") from None
    return GGUFHeader(name=path.name, metadata=metadata,
                      parameters=int(sum(math.prod(dims) for _, dims in tensors.values())),
                      tensor_types=dict(Counter(kind for kind, _ in tensors.values()).most_common()),
                      tensors={name: math.prod(dims) for name, (_, dims) in tensors.items()})


SCALAR_FORMATS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q",
                  12: "<d"}
SCALAR_BYTES = {kind: struct.calcsize(fmt) for kind, fmt in SCALAR_FORMATS.items()}
STRING, ARRAY = 8, 9
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_ITEMS = 1 << 24  # an array's items: vocabularies and merges are ~10^5-10^6


def _bad(path: Path, what: str) -> InvalidInput:
    return InvalidInput(f"{path.name} is not a valid GGUF model: {what}")


def check_bounds(path: Path) -> None:
    """The header's every count and length checked against the file; one InvalidInput line naming the first lie."""
    _walk(path)


def _walk(path: Path) -> tuple[dict, dict]:
    """(metadata, tensors) of a GGUF header: a key's scalar or string value (an array by its length), and a
    tensor's (ggml type name, shape). Every count and length is checked against the bytes the file has
    left, and every tensor's extent against its data section."""
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    size = path.stat().st_size
    with open(path, "rb") as f:
        def take(n: int, what: str) -> bytes:
            if n > size - f.tell():
                raise _bad(path, f"{what} runs past the end of the file ({size} bytes)")
            return f.read(n)

        def number(fmt: str, what: str) -> int:
            return struct.unpack(fmt, take(struct.calcsize(fmt), what))[0]

        def string(what: str) -> bytes:
            return take(number("<Q", f"{what}'s length"), what)

        def value(kind: int, what: str, depth: int = 0):
            if kind in SCALAR_BYTES:
                return number(SCALAR_FORMATS[kind], what)
            if kind == STRING:
                return string(what).decode("utf-8", "replace")
            if kind == ARRAY and depth == 0:
                item, count = number("<I", what), number("<Q", f"{what}'s count")
                least = SCALAR_BYTES.get(item, 8)  # a string or an array takes at least its 8-byte length
                if count > MAX_ITEMS or count * least > size - f.tell():
                    raise _bad(path, f"{what} declares {count} items, more than the file holds")
                if item in SCALAR_BYTES:
                    f.seek(count * least, 1)
                elif item == STRING:
                    for _ in range(count):  # each length checked, the bytes skipped
                        n = number("<Q", f"{what}'s item length")
                        if n > size - f.tell():
                            raise _bad(path, f"{what} runs past the end of the file ({size} bytes)")
                        f.seek(n, 1)
                else:
                    for _ in range(count):
                        value(item, what, depth + 1)
                return count
            raise _bad(path, f"{what} has value type {kind}, not one GGUF defines")

        if f.read(4) != b"GGUF":
            raise InvalidInput(f"{path.name} is not a GGUF file (no GGUF magic)")
        version = number("<I", "version")
        if version not in (2, 3):
            raise _bad(path, f"version {version} is not 2 or 3")
        n_tensors, n_kv = number("<Q", "tensor count"), number("<Q", "key count")
        if n_kv * 12 > size - f.tell() or n_tensors * 24 > size - f.tell():  # the smallest key and tensor entry
            raise _bad(path, f"header declares {n_kv} keys and {n_tensors} tensors, more than {size} bytes hold")
        alignment = 32
        metadata: dict = {}
        for _ in range(n_kv):
            key = string("key").decode("utf-8", "replace")
            kind = number("<I", f"value type of {key[:60]}")
            metadata[key] = value(kind, f"value of {key[:60]}")
            if key == "general.alignment":
                alignment = metadata[key]
                if kind != 4 or alignment == 0 or alignment & (alignment - 1):
                    raise _bad(path, f"general.alignment {alignment} is not a power of two")
        extents, tensors = [], {}
        for _ in range(n_tensors):
            full = string("tensor name").decode("utf-8", "replace")
            name = full[:60]
            if full in tensors:
                raise _bad(path, f"tensor {name} is named twice")
            n_dims = number("<I", f"tensor {name}'s dimensions")
            if not 1 <= n_dims <= MAX_DIMS:
                raise _bad(path, f"tensor {name} has {n_dims} dimensions (1..{MAX_DIMS})")
            dims = [number("<Q", f"tensor {name}'s shape") for _ in range(n_dims)]
            kind, offset = number("<I", f"tensor {name}'s type"), number("<Q", f"tensor {name}'s offset")
            try:
                ggml_type = GGMLQuantizationType(kind)
                block, type_bytes = GGML_QUANT_SIZES[ggml_type]
            except (ValueError, KeyError):
                raise _bad(path, f"tensor {name} has type {kind}, not one ggml defines") from None
            tensors[full] = (ggml_type.name, dims)
            if dims[0] % block:
                raise _bad(path, f"tensor {name}'s rows of {dims[0]} are not whole blocks")
            extents.append((name, offset, math.prod(dims) // block * type_bytes))
        data_start = -(-f.tell() // alignment) * alignment
        for name, offset, nbytes in extents:
            if data_start + offset + nbytes > size:
                raise _bad(path, f"tensor {name} ({nbytes} bytes at {offset}) runs past the end of the file")
    return metadata, tensors
