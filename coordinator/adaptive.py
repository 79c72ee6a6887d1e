"""Adaptive campaigns: round by round, measure the cells the predictor is least sure of, until a stop rule holds.

Between rounds (when none of the campaign's tasks is open) the controller retrains the surrogate
(predictor/acquisition.py) on every cell measured so far, records its validation error, stops if the
budget, the target error or every device's ε budget is reached, and otherwise picks the next round's
(model, hardware class) cells and leases them to online devices of those classes. The round's surrogate is
the coordinator's own working tool: it learns from measured cells whether or not they are published yet,
and on a simulated fleet from its synthetic cells; predictor versions keep their own rules.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace

import numpy as np

from edgeatlas.coordinator.predictions import Graphs, samples_from_cells, setting_info, training_cells
from edgeatlas.coordinator.scheduling import OFFLINE_AFTER_MS, matches, within_quota
from edgeatlas.coordinator.store import OPEN_TASK, Store, now_ms
from edgeatlas.coordinator.tables import AdaptiveRoundRow, CampaignRow
from edgeatlas.protos.errors import InvalidInput
from edgeatlas.protos.privacy import PrivacyParams
from edgeatlas.protos.records import Setting
from edgeatlas.protos.spec import SpecSheet

MIN_TO_LEARN = 4  # cells before the surrogate chooses; the seed round before it is spread at random


@dataclass(frozen=True)
class AdaptivePlan:
    """What an adaptive campaign was asked for (CampaignRow.adaptive_json)."""

    budget: int
    target_mape: float = 0.0
    for_spec_json: str = ""
    epsilon_budget: float = 0.0

    def check(self) -> "AdaptivePlan":
        self.rule().check()
        if self.for_spec_json:
            SpecSheet.from_json(self.for_spec_json, "for_spec")  # InvalidInput naming the field
        return self

    def rule(self):
        from edgeatlas.predictor.acquisition import StopRule

        return StopRule(budget=self.budget, target_mape=self.target_mape, epsilon_budget=self.epsilon_budget)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "AdaptivePlan":
        return cls(**json.loads(text))


class AdaptiveCampaigns:
    """Advances every running adaptive campaign of one store; one caller at a time."""

    def __init__(self, store: Store, seed: int = 0):
        self.store = store
        self.graphs = Graphs(store)
        self.rng = np.random.default_rng(seed)
        self._specs: dict[str, SpecSheet] = {}

    def advance_all(self) -> list[str]:
        """What happened to each running adaptive campaign, one line each."""
        out = []
        for campaign in self.store.list_campaigns():
            if campaign.adaptive_json and campaign.status == "running":
                try:
                    out.append(f"campaign {campaign.id}: {self.advance(campaign)}")
                except InvalidInput as exc:  # a model the predictor cannot read, say: stop, say why
                    self.store.stop_adaptive(campaign.id, f"stopped: {exc}")
                    out.append(f"campaign {campaign.id}: stopped: {exc}")
        return out

    def advance(self, campaign: CampaignRow) -> str:
        from edgeatlas.predictor import acquisition as acq

        tasks = self.store.campaign_tasks(campaign.id)
        if any(t.status in OPEN_TASK for t in tasks):
            return "round running"
        self._specs = self.store.hardware_specs()
        plan = AdaptivePlan.from_json(campaign.adaptive_json)
        rule = plan.rule()
        measured = sum(t.status in ("done", "failed") for t in tasks)
        rounds = self.store.rounds(campaign.id)
        models = json.loads(campaign.models_json)
        setting = Setting(**json.loads(campaign.setting_json))
        agents = self._agents(campaign)
        simulated = bool(agents) and all(a.simulated for a in agents)
        if simulated:  # virtual devices report their synthetic numbers under this runtime
            setting = replace(setting, runtime="simulated")

        asked = {(t.model_sha256, t.hardware_class) for t in tasks if t.status != "cancelled"}
        cap = rule.reports_per_device(self._epsilon_per_report(campaign))
        done_by: dict[str, int] = {}
        for t in tasks:
            if t.status == "done":
                done_by[t.agent_id] = done_by.get(t.agent_id, 0) + 1
        fresh = [a for a in agents if cap is None or done_by.get(a.agent_id, 0) < cap]
        t = now_ms()
        online = [a for a in fresh if t - a.last_seen_ms < OFFLINE_AFTER_MS and a.hardware_class in self._specs]
        by_class: dict[str, list] = {}
        for agent in online:
            by_class.setdefault(agent.hardware_class, []).append(agent)
        candidates = [(sha, hw) for sha in models for hw in sorted(by_class) if (sha, hw) not in asked]
        if agents and not fresh:
            reason = f"every device spent its ε budget of {plan.epsilon_budget:g} in this campaign"
        elif fresh and all((sha, a.hardware_class) in asked for sha in models for a in fresh):
            reason = "measured every cell its devices can measure"
        elif not candidates and measured < rule.budget:
            return "waiting for a device of a class still to measure to come online"  # nothing to retrain for
        else:
            reason = None

        surrogate = self._surrogate(simulated, campaign.id)
        mape = surrogate.validation_mape if surrogate is not None else math.nan
        record = AdaptiveRoundRow(round=len(rounds) + 1, measurements=measured,
                                  validation_mape=mape if math.isfinite(mape) else None, picked=0)
        reason = rule.reason(measured, mape) or reason
        if reason:
            self.store.stop_adaptive(campaign.id, reason, record)
            return reason

        k = acq.round_size(measured, rule.budget)
        classes = sorted(by_class)
        groups = np.array([classes.index(hw) for _, hw in candidates])
        networks = np.array([models.index(sha) for sha, _ in candidates])
        if surrogate is None:  # the seed round: nothing to be unsure with yet
            picks = acq.pick(self.rng.random(len(candidates)), k, groups, networks)
        else:
            picks = self._choose(surrogate, candidates, k, groups, networks, setting, plan)
        # Each device takes at most what is left of its ε budget; the least loaded of its class first.
        room = {a.agent_id: math.inf if cap is None else cap - done_by.get(a.agent_id, 0) for a in online}
        load = {a.agent_id: 0 for a in online}
        new_tasks = []
        for i in picks:
            sha, hw = candidates[int(i)]
            free = [a for a in by_class[hw] if room[a.agent_id] > 0]
            if not free:
                continue
            agent = min(free, key=lambda a: (load[a.agent_id], a.agent_id))
            room[agent.agent_id] -= 1
            load[agent.agent_id] += 1
            new_tasks.append((agent.agent_id, hw, sha))
        record.picked = len(new_tasks)
        if not new_tasks:
            return "waiting for a device with ε budget left"
        if not self.store.add_round(campaign.id, new_tasks, record):
            return "no longer running"
        shown = "n/a" if not math.isfinite(mape) else f"{mape:.1f} %"
        return f"round {record.round}: {len(new_tasks)} cells after {measured} measurements (validation MAPE {shown})"

    def _agents(self, campaign: CampaignRow) -> list:
        selectors = json.loads(campaign.selectors_json)
        agents = [a for a, _ in self.store.list_agents() if not a.revoked and matches(a, selectors)]
        return within_quota(agents, campaign.quota, now_ms())

    def _surrogate(self, simulated: bool, seed: int):
        from edgeatlas.predictor.acquisition import Surrogate

        cells = [c for c in training_cells(self.store, 1, simulated=simulated) if self._readable(c[1], c[2])]
        samples = samples_from_cells(self.store, cells, self.graphs)
        if samples is None or len(samples) < MIN_TO_LEARN:
            return None
        return Surrogate().fit(samples, seed=seed)

    @staticmethod
    def _epsilon_per_report(campaign: CampaignRow) -> float:
        privacy = PrivacyParams.from_dict(json.loads(campaign.privacy_json))
        return privacy.epsilon if privacy.mechanism in ("gaussian", "laplace") else 0.0

    def _choose(self, surrogate, candidates: list[tuple[str, str]], k: int, groups: np.ndarray,
                networks: np.ndarray, setting: Setting, plan: AdaptivePlan) -> np.ndarray:
        """Indices of the round's cells: classes whose sheet the predictor cannot read first (nothing to be sure
        with there), then by integrated variance reduction, weighted toward a queried sheet's Pareto front."""
        from edgeatlas.predictor import acquisition as acq

        readable = np.array([self._readable(hw, setting) for _, hw in candidates])
        blind = np.flatnonzero(~readable)
        first = blind[acq.pick(np.ones(len(blind)), k, groups[blind], networks[blind])]
        known = np.flatnonzero(readable)
        if len(first) >= k or not len(known):
            return first
        cells = [candidates[i] for i in known]
        samples = samples_from_cells(self.store, [(sha, hw, setting, 1.0) for sha, hw in cells], self.graphs)
        weight = self._front_weight(surrogate, samples, cells, setting, plan) if plan.for_spec_json else None
        chosen = acq.choose(surrogate, samples, k - len(first), groups[known], networks[known], weight,
                            seed=int(self.rng.integers(1 << 31)))
        return np.concatenate([first, known[chosen]])

    def _front_weight(self, surrogate, samples, cells: list[tuple[str, str]], setting: Setting,
                      plan: AdaptivePlan) -> np.ndarray:
        """[C] how much each cell's certainty matters to the queried spec sheet: its network could be on that
        device's latency–accuracy front, and its class is near that device."""
        from edgeatlas.predictor import acquisition as acq
        from edgeatlas.predictor.data import GraphSet, Samples
        from edgeatlas.predictor.models import Z80

        spec = SpecSheet.from_json(plan.for_spec_json, "for_spec")
        models = sorted({sha for sha, _ in cells})
        info = setting_info("query", spec, setting)
        query = Samples(GraphSet.from_graphs([self.graphs.get(sha) for sha in models]), [info],
                        np.arange(len(models)), np.zeros(len(models), np.int64), np.ones(len(models)))
        mean, sd = surrogate.predict(query)
        accuracy = [self.graphs.accuracy(sha) for sha in models]
        front = acq.pareto_weight(np.exp(mean - Z80 * sd), np.exp(mean + Z80 * sd), np.array(accuracy))
        features = np.stack([samples.settings[i].features for i in samples.setting])
        scale = np.abs(features).mean(0) + 1e-6
        near = acq.similarity(features, info.features, scale)
        return np.array([front[models.index(sha)] for sha, _ in cells]) * (0.5 + 0.5 * near)

    def _readable(self, hw: str, setting: Setting) -> bool:
        """Whether the class's spec sheet gives the predictor a peak or a bandwidth to work from."""
        spec = self._specs.get(hw)
        if spec is None:
            return False
        proc = setting_info(hw, spec, setting).proc
        return proc.peak_flops > 0 or proc.bandwidth > 0  # NaN compares False
