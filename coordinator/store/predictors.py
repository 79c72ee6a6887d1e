"""Predictor versions: checkpoints stored as blobs, newest first."""

from __future__ import annotations

from sqlmodel import select

from edgeatlas.coordinator.store.engine import by_id
from edgeatlas.coordinator.tables import PredictorRow
from edgeatlas.protos.errors import NotFound


class Predictors:
    """The Store's methods for predictor versions (its engine, writer and caches are set up in sql.Store)."""

    def add_predictor(self, row: PredictorRow) -> PredictorRow:
        if self.blob(row.checkpoint_sha256) is None:
            raise NotFound(f"checkpoint bytes {row.checkpoint_sha256[:12]} were not stored")
        with self._write, self.session() as s:
            s.add(row)
            s.commit()
            s.refresh(row)
            return row

    def predictors(self) -> list[PredictorRow]:
        with self.session() as s:
            return list(s.exec(select(PredictorRow).order_by(PredictorRow.version)).all())

    def predictor(self, version: int = 0) -> PredictorRow:
        """A version, or the newest for 0."""
        with self.session() as s:
            row = (by_id(s, PredictorRow, version) if version else
                   s.exec(select(PredictorRow).order_by(PredictorRow.version.desc())).first())
        if row is None:
            raise NotFound(f"no predictor version {version}" if version else
                           "no predictor trained yet (TrainPredictor, or wait for enough cells)")
        return row
