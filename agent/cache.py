"""Content-addressed model cache: a file is kept only once its bytes match their sha256."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Iterable

from edgeatlas.protos.errors import IntegrityError, InvalidInput

SHA256 = re.compile(r"[0-9a-f]{64}")
SUFFIXES = ("", ".onnx", ".gguf", ".npz")  # what the agent fetches: a model of a known format, reference data


class ModelCache:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str, suffix: str = "") -> Path:
        """The cache file of these bytes. The coordinator's words are data: a name is built only from a
        sha256 of 64 hex digits and a known suffix, so no task can point the agent outside its cache."""
        if not SHA256.fullmatch(sha256 or ""):
            raise InvalidInput(f"sha256 {sha256[:70]!r} from the coordinator is not 64 hex digits")
        if suffix not in SUFFIXES:
            raise InvalidInput(f"model format {suffix.lstrip('.')[:20]!r} from the coordinator is not onnx or gguf")
        return self.root / f"{sha256}{suffix}"

    def has(self, sha256: str, suffix: str = "") -> bool:
        return self.path(sha256, suffix).is_file()

    def store(self, sha256: str, chunks: Iterable[bytes], suffix: str = "") -> Path:
        """Writes the chunks; keeps the file only if their sha256 is the one asked for."""
        final = self.path(sha256, suffix)
        partial = final.with_name(final.name + ".partial")
        digest = hashlib.sha256()
        with open(partial, "wb") as f:
            for data in chunks:
                digest.update(data)
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if digest.hexdigest() != sha256:
            partial.unlink()
            raise IntegrityError(f"downloaded bytes have sha256 {digest.hexdigest()[:16]}, "
                                 f"expected {sha256[:16]}: refused")
        partial.replace(final)
        return final
