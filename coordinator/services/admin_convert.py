"""The admin API's messages ↔ domain records, in one place (protos/convert.py holds the shared ones)."""

from __future__ import annotations

import json
import math

from edgeatlas.coordinator.adaptive import AdaptivePlan
from edgeatlas.coordinator.campaigns import (FEDERATED_FIELDS, CampaignRequest, ImportedCell, adaptive_plan,
                                             federated_plan)
from edgeatlas.protos import convert
from edgeatlas.protos.privacy import PrivacyParams
from edgeatlas.protos.records import Schedule, Setting
from edgeatlas.protos.spec import SpecSheet
from edgeatlas.v1 import admin_pb2


def campaign_request(msg: admin_pb2.CreateCampaignRequest) -> CampaignRequest:
    federated = None
    if msg.HasField("federated"):
        given = {k: getattr(msg.federated, k) for k in FEDERATED_FIELDS if getattr(msg.federated, k)}
        federated = federated_plan(msg.federated.devices, given)
    adaptive = None
    if msg.HasField("adaptive"):
        a = msg.adaptive
        adaptive = adaptive_plan(a.budget, a.target_mape, a.for_spec_json, a.epsilon_budget)
    return CampaignRequest(
        name=msg.name[:128], models=list(msg.models), selectors=dict(msg.selectors), repeats=msg.repeats or 1,
        setting=convert.setting_from_pb(msg.setting, defaults=True), params=convert.params_from_pb(msg.params),
        privacy=convert.privacy_from_pb(msg.privacy, defaults=True), target_precision=msg.target_precision,
        schedule=Schedule(priority=msg.priority, deadline_ms=msg.deadline_ms, quota=msg.quota),
        adaptive=adaptive, federated=federated, bounds_auto=msg.bounds_auto)


def imported_cell(i: int, msg: admin_pb2.PublishedCell) -> ImportedCell:
    return ImportedCell(spec=SpecSheet.from_json(msg.spec_json, f"cells[{i}].spec_json"),
                        setting=convert.setting_from_pb(msg.setting), metrics=dict(msg.metrics))


def task_counts_pb(counts) -> admin_pb2.TaskCounts:
    return admin_pb2.TaskCounts(**{k: counts.get(k, 0) for k in
                                   ("pending", "leased", "done", "failed", "cancelled", "declined")})


def campaign_to_pb(row, counts, by_hardware, failures, names: dict[str, str], rounds) -> admin_pb2.Campaign:
    """A stored campaign with its progress: task counts (overall and per class), failures, adaptive rounds."""
    adaptive, adaptive_rounds = None, []
    if row.adaptive_json:
        plan = AdaptivePlan.from_json(row.adaptive_json)
        adaptive = admin_pb2.Adaptive(budget=plan.budget, target_mape=plan.target_mape,
                                      for_spec_json=plan.for_spec_json, epsilon_budget=plan.epsilon_budget)
        adaptive_rounds = [admin_pb2.AdaptiveRound(
            round=r.round, measurements=r.measurements, picked=r.picked, created_ms=r.created_ms,
            validation_mape=math.nan if r.validation_mape is None else r.validation_mape) for r in rounds]
    federated, federated_rounds, version = None, [], 0
    if row.federated_json:
        record = json.loads(row.federated_json)
        plan = record["plan"]
        federated = admin_pb2.Federated(devices=plan["clients"], rounds=plan["rounds"],
                                        local_epochs=plan["local_epochs"], epsilon=plan["epsilon"],
                                        update_clip=plan["update_clip"], update_noise=plan["update_noise"])
        federated_rounds = [admin_pb2.FederatedRound(
            round=r["round"], loss_before=r["loss_before"], loss_after=r["loss_after"],
            epsilon_measurement=r["epsilon_measurement"], epsilon_device=r["epsilon_device"])
            for r in record.get("rounds", [])]
        version = record.get("predictor_version", 0)
    return admin_pb2.Campaign(
        federated=federated, federated_rounds=federated_rounds, predictor_version=version,
        campaign_id=row.id, name=row.name, status=row.status, created_ms=row.created_ms,
        finished_ms=row.finished_ms or 0, models=[names.get(s, s) for s in json.loads(row.models_json)],
        selectors=json.loads(row.selectors_json), repeats=row.repeats, agents=row.n_agents,
        counts=task_counts_pb(counts), by_hardware={hw: task_counts_pb(c) for hw, c in by_hardware.items()},
        setting=convert.setting_to_pb(Setting(**json.loads(row.setting_json))),
        failures=failures, target_precision=row.target_precision,
        privacy=(None if row.federated_json else   # its privacy is per round, in federated_rounds
                 convert.privacy_to_pb(PrivacyParams.from_dict(json.loads(row.privacy_json)))),
        priority=row.priority, deadline_ms=row.deadline_ms or 0, quota=row.quota,
        adaptive=adaptive, rounds=adaptive_rounds, stop_reason=row.stop_reason,
        auto_bounds={f"{names.get(key.split('|')[0], key[:12])}|{key.split('|', 1)[-1]}": f"{lo:.4g}..{hi:.4g}"
                     for key, (lo, hi) in json.loads(row.privacy_json or "{}").get("auto_bounds", {}).items()})


def agent_info_pb(agent, tasks_done: int, online: bool, spent: tuple[float, int]) -> admin_pb2.AgentInfo:
    return admin_pb2.AgentInfo(
        agent_id=agent.agent_id, name=agent.name, hardware_class=agent.hardware_class,
        device_class=agent.device_class, enrolled_ms=agent.enrolled_ms, last_seen_ms=agent.last_seen_ms,
        online=online, spec_json=agent.spec_json, tasks_done=tasks_done, simulated=agent.simulated,
        epsilon_24h=spent[0], releases_24h=spent[1], state=agent.state or "")


def predictor_to_pb(row) -> admin_pb2.PredictorVersion:
    return admin_pb2.PredictorVersion(
        version=row.version, created_ms=row.created_ms, trigger=row.trigger, cells=row.cells,
        networks=row.networks, devices=row.devices, evaluation_json=row.evaluation_json,
        size_bytes=row.size_bytes, train_seconds=row.train_seconds, privacy_json=row.privacy_json,
        runtimes=[r for r in (row.runtimes or "").split(",") if r])
