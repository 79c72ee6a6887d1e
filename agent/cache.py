"""Content-addressed model cache: a file is kept only once its bytes match their sha256."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable

from edgeatlas.protos.errors import IntegrityError


class ModelCache:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str, suffix: str = "") -> Path:
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
