"""Heat-map cells: folded running sums per metric (written once per batch), imports, and reading the heat-map."""

from __future__ import annotations

import json
import math
from collections import Counter

from sqlalchemy import bindparam, func, select as sa_select, tuple_, update
from sqlmodel import Session, select

from edgeatlas.coordinator import aggregate
from edgeatlas.coordinator.store.engine import insert_new, kept, log, now_ms
from edgeatlas.coordinator.store.records import (CellView, Fold, HEAT_COLUMNS, HeatCell, IncomingReport,
    TaskSnapshot, batch_of)
from edgeatlas.coordinator.tables import AgentRow, CellContributorRow, CellMetricRow, CellRow, HardwareRow, ModelRow
from edgeatlas.protos.errors import InvalidInput, NotFound
from edgeatlas.protos.records import Setting
from edgeatlas.protos.spec import SpecSheet


def privacy_after(seen: str, privacy: str, source: str) -> str:
    """A cell's privacy once values under `privacy` join it: unchanged, or mixed where the contracts differ."""
    mixed = f"{source} (mixed contracts)"
    return seen if seen in (privacy, mixed) else mixed


def cell_class(agent: AgentRow, setting: Setting) -> str:
    """The class a report's cell belongs to: the agent's own, or that of the processor it named."""
    if setting.target == "cpu":
        return agent.hardware_class
    return SpecSheet.from_json(agent.spec_json).hardware_class(setting.target)


class Cells:
    """The Store's methods for heat-map cells (its engine, writer and caches are set up in sql.Store)."""

    def _fold(self, s: Session, task: TaskSnapshot, agent: AgentRow, hw: str, report: IncomingReport, t: int) -> None:
        setting = report.setting
        source = "trusted" if report.privacy_mode == "trusted" else "fleet"
        if agent.simulated:  # whatever a virtual device claims, its numbers are synthetic
            source = "simulated"
        if report.privacy_mode == "trusted":
            logs = {m: (math.log(v), "") for m, v in aggregate.metric_values(report.stats, report.figures).items()}
            privacy = "simulated (synthetic)" if agent.simulated else "trusted (exact)"
        else:
            logs = aggregate.released_logs(report.released, setting.batch)
            privacy = report.privacy.describe()
            if agent.simulated:
                privacy = f"simulated, {privacy}"
        cell_id = self._cell_id(s, task.model_sha256, hw, setting, source, t, privacy)
        batch = batch_of(s)
        key = (cell_id, agent.agent_id)
        if key not in self._contributors:  # known to be stored (they are never deleted); else looked up once
            batch.contributors.add(key)  # looked up once per batch, in _write_folds
        # The sums are added up here and added to the rows once per batch (_write_folds).
        fold = batch.folds.get(cell_id)
        if fold is None:
            fold = batch.folds[cell_id] = Fold(0, t)
        fold.reports, fold.last_ms = fold.reports + 1, t
        sums = fold.sums
        for metric, (value_log, statistic) in logs.items():
            total = sums.get(metric)
            if total is None:
                total = sums[metric] = [0, 0.0, 0.0, 0.0]
            total[0], total[1], total[2] = aggregate.fold_log(total[0], total[1], total[2], value_log)
            total[3] += report.privacy.noise_variance_log(statistic) if statistic else 0.0

    def _cell_id(self, s: Session, model_sha256: str, hw: str, setting: Setting, source: str, t: int,
                 privacy: str) -> int:
        """The id of a report's cell, made on first use. Cells are never deleted, so their ids (and the
        privacy each was last seen with) are remembered; a report under another contract marks it mixed."""
        key = (model_sha256, hw, setting.key(), source)
        batch = batch_of(s)
        staged = batch.new_cells  # remembered only once the batch commits
        known = staged.get(key) or self._cells.get(key)
        if known is None:
            cell = self._cell(s, kept(s, ModelRow, model_sha256), hw, setting, source, t, privacy)
            known = staged[key] = (cell.id, cell.privacy)
        cell_id, seen = known
        after = privacy_after(seen, privacy, source)
        if after != seen and cell_id not in batch.mixed:
            batch.mixed[cell_id] = after
            staged[key] = (cell_id, after)
        return cell_id

    def _write_folds(self, s: Session) -> None:
        """Adds the batch's folded sums to their cells and metric rows, and its new contributors to their
        cells' device counts: increments in SQL, so replicas folding into one cell add up."""
        batch = batch_of(s)
        folds, batch.folds = dict(sorted(batch.folds.items())), {}  # rows locked in one order: no deadlock
        if not folds:                                                  # between two replicas' batches
            return
        conn = s.connection()
        devices = Counter()
        keys = batch.contributors
        if keys:
            c = CellContributorRow.__table__.c
            stored = {(cell_id, agent_id) for cell_id, agent_id in conn.execute(
                sa_select(c.cell_id, c.agent_id).where(tuple_(c.cell_id, c.agent_id).in_(list(keys))))}
            new = sorted(keys - stored)
            if new:  # a row another replica added since is kept, and counted once (its batch counted it)
                added = conn.execute(insert_new(conn, CellContributorRow.__table__).returning(c.cell_id),
                                     [{"cell_id": i, "agent_id": a} for i, a in new])
                devices.update(cell_id for (cell_id,) in added)
        cell = CellRow.__table__.c
        conn.execute(update(CellRow.__table__).where(cell.id == bindparam("cid")).values(
            n_reports=cell.n_reports + bindparam("reports"), n_devices=cell.n_devices + bindparam("devices"),
            updated_ms=bindparam("t")),
            [{"cid": i, "reports": f.reports, "devices": devices[i], "t": f.last_ms} for i, f in folds.items()])
        if batch.mixed:
            conn.execute(update(CellRow.__table__).where(cell.id == bindparam("cid")).values(
                privacy=bindparam("privacy")), [{"cid": i, "privacy": p} for i, p in batch.mixed.items()])
        metric = CellMetricRow.__table__.c
        wanted = {(cell_id, name) for cell_id, fold in folds.items() for name in fold.sums}
        missing = wanted - self._metric_rows
        if missing:
            have = {(i, m) for i, m in conn.execute(sa_select(metric.cell_id, metric.metric).where(
                metric.cell_id.in_({i for i, _ in missing})))}
            if missing - have:
                conn.execute(insert_new(conn, CellMetricRow.__table__), [
                    {"cell_id": i, "metric": m, "n": 0, "sum_log": 0.0, "sumsq_log": 0.0, "noise_var_sum": 0.0}
                    for i, m in sorted(missing - have)])
        conn.execute(update(CellMetricRow.__table__).where(
            metric.cell_id == bindparam("cid"), metric.metric == bindparam("m")).values(
            n=metric.n + bindparam("dn"), sum_log=metric.sum_log + bindparam("ds"),
            sumsq_log=metric.sumsq_log + bindparam("dss"), noise_var_sum=metric.noise_var_sum + bindparam("dv")),
            [{"cid": i, "m": name, "dn": n, "ds": sum_log, "dss": sumsq_log, "dv": noise}
             for i, fold in folds.items() for name, (n, sum_log, sumsq_log, noise) in fold.sums.items()])
        batch.metric_rows = wanted

    def import_cells(self, model_sha256: str, source: str, citation: str,
                     cells: list[tuple[SpecSheet, Setting, dict[str, float]]]) -> int:
        """Stores published values as their own cells; importing again replaces, never adds."""
        t = now_ms()
        with self._write, self.session() as s:
            model = s.get(ModelRow, model_sha256)
            if model is None:
                raise NotFound(f"model {model_sha256[:12]} is not registered")
            for spec, setting, metrics in cells:
                hw = spec.hardware_class(setting.target)
                cell = self._cell(s, model, hw, setting, source, t, "")
                if s.get(HardwareRow, hw) is None:
                    s.add(HardwareRow(hardware_class=hw, spec_json=spec.to_json(), first_seen_ms=t))
                cell.citation, cell.n_reports, cell.n_devices, cell.updated_ms = citation, 1, 1, t
                s.add(cell)
                for metric, value in metrics.items():
                    row = s.get(CellMetricRow, (cell.id, metric)) or CellMetricRow(cell_id=cell.id, metric=metric)
                    row.n, row.sum_log, row.sumsq_log = aggregate.fold(0, 0.0, 0.0, value)
                    s.add(row)
            s.commit()
        return len(cells)

    def _cell(self, s: Session, model: ModelRow, hw: str, setting: Setting, source: str, t: int,
              privacy: str) -> CellRow:
        """The cell of (model, hardware class, setting, source), made on first use; kept for the session."""
        key = (model.sha256, hw, setting.key(), source)
        cells = s.info.setdefault("cells", {})
        cell = cells.get(key) or s.exec(select(CellRow).where(
            CellRow.model_sha256 == model.sha256, CellRow.hardware_class == hw,
            CellRow.setting_key == setting.key(), CellRow.source == source)).first()
        if cell is None:
            cell = CellRow(model_sha256=model.sha256, model_name=model.name, hardware_class=hw,
                           setting_key=setting.key(), setting_json=json.dumps(setting.to_dict()),
                           source=source, privacy=privacy, updated_ms=t)
            s.add(cell)
            s.flush()
        cells[key] = cell
        return cell

    def heatmap(self, min_devices: int = 1, target_precision: float = 0.0, metric: str = "",
                since_ms: int | None = None) -> list[CellView]:
        """Every cell, or those folded into since `since_ms`; fleet cells under `min_devices` distinct devices
        are suppressed (no values). With `metric`, only that metric is estimated (devices needed for a
        target precision still look at all of them).

        Reads only the folded sums, never raw reports."""
        cell_query = select(*HEAT_COLUMNS).order_by(CellRow.model_name, CellRow.hardware_class, CellRow.setting_key)
        metric_query = select(CellMetricRow.cell_id, CellMetricRow.metric, CellMetricRow.n, CellMetricRow.sum_log,
                              CellMetricRow.sumsq_log, CellMetricRow.noise_var_sum)
        if since_ms is not None:
            cell_query = cell_query.where(CellRow.updated_ms >= since_ms)
            metric_query = metric_query.where(CellMetricRow.cell_id.in_(
                select(CellRow.id).where(CellRow.updated_ms >= since_ms)))
        if metric and target_precision <= 0:
            metric_query = metric_query.where(CellMetricRow.metric == metric)
        with self.session() as s:
            cells = [HeatCell(*row) for row in s.exec(cell_query).all()]
            metrics: dict[int, list[tuple]] = {}
            for row in s.exec(metric_query).all():
                metrics.setdefault(row[0], []).append(row[1:])
        views = []
        for c in cells:
            rows = metrics.get(c.id, [])
            suppressed = c.source == "fleet" and c.n_devices < min_devices
            estimates = {} if suppressed else {name: aggregate.estimate(*sums) for name, *sums in rows
                                               if not metric or name == metric}
            needed = 0
            if target_precision > 0 and c.source in ("fleet", "trusted"):
                needed = max([aggregate.devices_needed(*sums, c.n_devices, target_precision, public_only=suppressed)
                              for _, *sums in rows] or [0])
                needed = max(needed, min_devices - c.n_devices) if suppressed else needed
            views.append(CellView(c, estimates, suppressed, needed))
        return views

    def heatmap_version(self) -> tuple:
        """Changes whenever a cell is made or folded into (a fold raises n_reports and updated_ms)."""
        with self.session() as s:
            return tuple(s.exec(select(func.count(), func.max(CellRow.updated_ms), func.sum(CellRow.n_reports))
                                .select_from(CellRow)).one())

    def hardware(self) -> list[HardwareRow]:
        with self.session() as s:
            return list(s.exec(select(HardwareRow).order_by(HardwareRow.hardware_class)).all())

    def hardware_specs(self) -> dict[str, SpecSheet]:
        """hardware class → the first spec sheet that named it."""
        with self.session() as s:
            rows = s.exec(select(HardwareRow)).all()
        specs = {}
        for h in rows:
            try:
                specs[h.hardware_class] = SpecSheet.from_json(h.spec_json)
            except InvalidInput as exc:  # stored before sheets were checked at the wire
                log.warning("hardware class %s: its stored spec sheet is left out: %s", h.hardware_class[:80], exc)
        return specs
