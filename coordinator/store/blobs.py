"""Content-addressed blobs (models, reference data, checkpoints) in chunks, and the models registered on them."""

from __future__ import annotations

from typing import Iterable, Iterator

from sqlalchemy import or_
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlmodel import select

from edgeatlas.coordinator.store.engine import now_ms
from edgeatlas.coordinator.store.records import OPEN_TASK
from edgeatlas.coordinator.tables import BlobChunkRow, BlobRow, ModelRow, TaskRow
from edgeatlas.protos.errors import Conflict, NotFound

BLOB_CHUNKS_PER_COMMIT = 8  # 8 MiB a transaction: short enough that other writers barely wait


class Blobs:
    """The Store's methods for blobs and models (its engine, writer and caches are set up in sql.Store)."""

    def put_blob(self, sha256: str, size_bytes: int, chunks: Iterable[bytes]) -> None:
        """Stores a verified blob; chunks are the caller's, already checked against sha256.

        The chunks are written a few at a time in transactions of their own, without the store's write
        lock, so a 500 MiB upload does not hold up enrollments and reports; the blob exists (BlobRow, under
        the lock) only once all of them are in. Chunks left by an upload that died are replaced."""
        if self.blob(sha256) is not None:
            return
        with self.session() as s:
            s.connection().execute(BlobChunkRow.__table__.delete().where(BlobChunkRow.sha256 == sha256))
            s.commit()
        n, pending = 0, []
        for n, data in enumerate(chunks, start=1):
            pending.append({"sha256": sha256, "idx": n - 1, "data": data})
            if len(pending) >= BLOB_CHUNKS_PER_COMMIT:
                self._put_chunks(pending)
                pending = []
        if pending:
            self._put_chunks(pending)
        with self._write, self.session() as s:
            if s.get(BlobRow, sha256) is None:
                s.add(BlobRow(sha256=sha256, size_bytes=size_bytes, n_chunks=n, created_ms=now_ms()))
                s.commit()

    def _put_chunks(self, rows: list[dict]) -> None:
        with self.session() as s:
            try:
                s.connection().execute(BlobChunkRow.__table__.insert(), rows)
                s.commit()
            except SAIntegrityError:
                raise Conflict(f"blob {rows[0]['sha256'][:12]} is being uploaded by another call: retry") from None

    def blob(self, sha256: str) -> BlobRow | None:
        with self.session() as s:
            return s.get(BlobRow, sha256)

    def blob_chunks(self, sha256: str, start_idx: int = 0) -> Iterator[bytes]:
        blob = self.blob(sha256)
        if blob is None:
            raise NotFound(f"no blob {sha256}")
        for idx in range(start_idx, blob.n_chunks):
            with self.session() as s:
                yield s.get(BlobChunkRow, (sha256, idx)).data

    def fetchable(self, agent_id: str, sha256: str) -> bool:
        """Whether an open task of this agent needs these bytes (its model or the model's reference data):
        an agent may fetch nothing else, not a checkpoint, not another campaign's model."""
        with self.session() as s:
            needs = (select(TaskRow.id).join(ModelRow, ModelRow.sha256 == TaskRow.model_sha256)
                     .where(TaskRow.agent_id == agent_id, TaskRow.status.in_(OPEN_TASK),
                            or_(ModelRow.sha256 == sha256, ModelRow.reference_sha256 == sha256)).limit(1))
            return s.exec(needs).first() is not None

    def add_model(self, name: str, fmt: str, sha256: str, reference_sha256: str, summary_json: str,
                  inputs_json: str = "") -> ModelRow:
        model_blob = self.blob(sha256)
        if model_blob is None:
            raise NotFound(f"model bytes {sha256[:12]} were not uploaded")
        ref_blob = self.blob(reference_sha256) if reference_sha256 else None
        if reference_sha256 and ref_blob is None:
            raise NotFound(f"reference bytes {reference_sha256[:12]} were not uploaded")
        with self._write, self.session() as s:
            existing = s.get(ModelRow, sha256)
            if existing is not None:
                if existing.inputs_json != inputs_json:  # one registration per file: its shapes are its identity
                    raise Conflict(f"these model bytes are already registered as {existing.name!r} with other "
                                   f"inputs; one file is registered once")
                return existing
            if s.exec(select(ModelRow).where(ModelRow.name == name)).first() is not None:
                raise Conflict(f"a different model is already named {name!r}")
            row = ModelRow(sha256=sha256, name=name, format=fmt, size_bytes=model_blob.size_bytes,
                           reference_sha256=reference_sha256,
                           reference_size_bytes=ref_blob.size_bytes if ref_blob else 0,
                           summary_json=summary_json, inputs_json=inputs_json, created_ms=now_ms())
            s.add(row)
            s.commit()
            return row

    def list_models(self) -> list[ModelRow]:
        with self.session() as s:
            return list(s.exec(select(ModelRow).order_by(ModelRow.created_ms, ModelRow.name)).all())

    def resolve_models(self, wanted: list[str]) -> list[ModelRow]:
        """Names or sha256 prefixes (≥ 8 hex) → models, in the order asked; unknown ones are an error."""
        models = self.list_models()
        found = []
        for want in wanted:
            hits = [m for m in models if m.name == want] or (
                [m for m in models if m.sha256.startswith(want)] if len(want) >= 8 else [])
            if len(hits) != 1:
                raise NotFound(f"model {want!r} is {'ambiguous' if hits else 'not registered'}")
            found.append(hits[0])
        return found
