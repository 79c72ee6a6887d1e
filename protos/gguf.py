"""GGUF files (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md): one reader for every room.

The header is walked with its every count checked against the file's size (`check_bounds`) before
`gguf.GGUFReader` maps it: the reader trusts the counts, and a 94-byte file declaring a 2^40-item array
grew a coordinator to 20 GB. The `gguf` package is imported only here, and only when a file is read.
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
    parameters: int
    tensor_types: dict = field(default_factory=dict)  # ggml type name → tensors

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
    from gguf import GGUFReader, GGUFValueType

    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"model file {path} does not exist")
    try:
        check_bounds(path)
        reader = GGUFReader(str(path))
    except InvalidInput:
        raise
    except OSError as exc:
        raise InvalidInput(f"model {path}: {exc.strerror or exc}") from None
    except Exception as exc:  # what the walk does not check: the reader's own refusals
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise _bad(path, first[:300]) from None

    def value(f):
        if not f.types:
            return None
        if f.types[0] == GGUFValueType.STRING:
            return bytes(f.parts[f.data[0]]).decode("utf-8", "replace")
        if f.types[0] == GGUFValueType.ARRAY:
            return len(f.data)
        return f.parts[f.data[0]].tolist()[0]

    return GGUFHeader(name=path.name, metadata={key: value(f) for key, f in reader.fields.items()},
                      parameters=int(sum(math.prod(int(d) for d in t.shape) for t in reader.tensors)),
                      tensor_types=dict(Counter(t.tensor_type.name for t in reader.tensors).most_common()))


SCALAR_BYTES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
STRING, ARRAY = 8, 9
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_ITEMS = 1 << 24  # an array's items: vocabularies and merges are ~10^5-10^6


def _bad(path: Path, what: str) -> InvalidInput:
    return InvalidInput(f"{path.name} is not a valid GGUF model: {what}")


def check_bounds(path: Path) -> None:
    """Walks the header checking every count and length against the bytes the file has left, and every
    tensor's extent against its data section; one InvalidInput line naming the first lie."""
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

        def skip(kind: int, what: str, depth: int = 0) -> None:
            if kind in SCALAR_BYTES:
                take(SCALAR_BYTES[kind], what)
            elif kind == STRING:
                string(what)
            elif kind == ARRAY and depth == 0:
                item, count = number("<I", what), number("<Q", f"{what}'s count")
                least = SCALAR_BYTES.get(item, 8)  # a string or an array takes at least its 8-byte length
                if count > MAX_ITEMS or count * least > size - f.tell():
                    raise _bad(path, f"{what} declares {count} items, more than the file holds")
                if item in SCALAR_BYTES:
                    take(count * least, what)
                else:
                    for _ in range(count):
                        skip(item, what, depth + 1)
            else:
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
        for _ in range(n_kv):
            key = string("key").decode("utf-8", "replace")
            kind = number("<I", f"value type of {key[:60]}")
            if key == "general.alignment" and kind == 4:
                alignment = number("<I", key)
                if alignment == 0 or alignment & (alignment - 1):
                    raise _bad(path, f"general.alignment {alignment} is not a power of two")
            else:
                skip(kind, f"value of {key[:60]}")
        extents = []
        for _ in range(n_tensors):
            name = string("tensor name").decode("utf-8", "replace")[:60]
            n_dims = number("<I", f"tensor {name}'s dimensions")
            if not 1 <= n_dims <= MAX_DIMS:
                raise _bad(path, f"tensor {name} has {n_dims} dimensions (1..{MAX_DIMS})")
            dims = [number("<Q", f"tensor {name}'s shape") for _ in range(n_dims)]
            kind, offset = number("<I", f"tensor {name}'s type"), number("<Q", f"tensor {name}'s offset")
            try:
                block, type_bytes = GGML_QUANT_SIZES[GGMLQuantizationType(kind)]
            except (ValueError, KeyError):
                raise _bad(path, f"tensor {name} has type {kind}, not one ggml defines") from None
            if dims[0] % block:
                raise _bad(path, f"tensor {name}'s rows of {dims[0]} are not whole blocks")
            extents.append((name, offset, math.prod(dims) // block * type_bytes))
        data_start = -(-f.tell() // alignment) * alignment
        for name, offset, nbytes in extents:
            if data_start + offset + nbytes > size:
                raise _bad(path, f"tensor {name} ({nbytes} bytes at {offset}) runs past the end of the file")
