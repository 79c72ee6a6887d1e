"""GetHeatmap's answers, kept per (metric, target precision) and brought up to date from the cells folded
into since they were built: a read after a fold re-reads those cells, not every cell."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass

from edgeatlas.coordinator.store import CellView, Store
from edgeatlas.protos import convert
from edgeatlas.protos.records import Setting
from edgeatlas.v1 import admin_pb2, common_pb2

# Cells folded into up to this long before the newest one seen are read again: another replica's batch
# stamps its time before it commits, so it can land just behind a read. The count check below catches
# anything older (a slower commit, a clock that stepped back) by building afresh.
SETTLE_MS = 10_000
KEPT = 16  # answers kept (metric × target precision)


@dataclass
class Built:
    """One answer and what it was built from: the version of the cells it shows (cells, newest update,
    reports: what Store.heatmap_version reads) and every cell's place and row (None: not shown)."""

    version: tuple
    cells: dict[int, tuple]  # cell id → (sort key, n_reports, updated_ms, HeatmapCell | None)
    response: admin_pb2.Heatmap


class Heatmaps:
    def __init__(self, store: Store, min_devices: int):
        self.store = store
        self.min_devices = min_devices
        self._built: dict[tuple, Built] = {}
        self._lock = threading.Lock()
        self._settings: dict[str, common_pb2.Setting] = {}

    def read(self, metric: str, target_precision: float) -> admin_pb2.Heatmap:
        """The heat-map as it is now (blocking: call it in a worker thread)."""
        key = (metric, target_precision)
        with self._lock:
            version = self.store.heatmap_version()
            built = self._built.pop(key, None)
            if built is not None and built.version != version:
                built = self._update(built, metric, target_precision, version)
            if built is None:
                cells: dict[int, tuple] = {}
                self._merge(cells, self.store.heatmap(self.min_devices, target_precision, metric), metric)
                built = Built(summary(cells), cells, response_of(cells))
            self._built[key] = built  # the most recently read last; the oldest goes first
            while len(self._built) > KEPT:
                del self._built[next(iter(self._built))]
            return built.response

    def _update(self, built: Built, metric: str, target_precision: float, version: tuple) -> Built | None:
        """The answer with the cells folded into since it was built; None when that does not add up to the
        cells' present version (build it afresh)."""
        newest = built.version[1] or 0
        cells = dict(built.cells)
        self._merge(cells, self.store.heatmap(self.min_devices, target_precision, metric,
                                              since_ms=newest - SETTLE_MS), metric)
        if summary(cells) != version:  # a commit since the version was read?
            version = self.store.heatmap_version()
            if summary(cells) != version:
                return None
        return Built(version, cells, response_of(cells))

    def _merge(self, cells: dict[int, tuple], views: list[CellView], metric: str) -> None:
        for view in views:
            cell = view.cell
            place = (cell.model_name, cell.hardware_class, cell.setting_key, cell.id)
            shown = None if metric and metric not in view.estimates and not view.suppressed else self._row(view)
            cells[cell.id] = (place, cell.n_reports, cell.updated_ms, shown)

    def _row(self, view: CellView) -> admin_pb2.HeatmapCell:
        cell = view.cell
        setting = self._settings.get(cell.setting_json)
        if setting is None:
            setting = self._settings[cell.setting_json] = convert.setting_to_pb(
                Setting(**json.loads(cell.setting_json)))
        metrics = {name: admin_pb2.MetricValue(value=e.value, low=e.low, high=e.high, n=e.n)
                   for name, e in view.estimates.items()}
        return admin_pb2.HeatmapCell(
            model_name=cell.model_name, model_sha256=cell.model_sha256, hardware_class=cell.hardware_class,
            setting_key=cell.setting_key, setting=setting, n_devices=cell.n_devices, n_reports=cell.n_reports,
            source=cell.source, metrics=metrics, updated_ms=cell.updated_ms, citation=cell.citation,
            suppressed=view.suppressed, min_devices=self.min_devices, devices_needed=view.devices_needed,
            privacy=cell.privacy)


def summary(cells: dict[int, tuple]) -> tuple:
    """What Store.heatmap_version reads, of these cells: (count, newest update, reports)."""
    if not cells:
        return (0, None, None)
    return (len(cells), max(c[2] for c in cells.values()), sum(c[1] for c in cells.values()))


def response_of(cells: dict[int, tuple]) -> admin_pb2.Heatmap:
    return admin_pb2.Heatmap(cells=[c[3] for c in sorted(cells.values(), key=lambda c: c[0]) if c[3] is not None])
