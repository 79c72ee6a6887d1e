"""What an admin may ask of the fleet, checked before anything is stored: campaigns and imported cells.

The servicer turns the wire's messages into these records (services/admin_convert.py) and hands them here;
each check raises one InvalidInput (or Conflict) line naming what is wrong.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field

from edgeatlas.coordinator import aggregate
from edgeatlas.coordinator.adaptive import AdaptivePlan
from edgeatlas.protos import scenarios
from edgeatlas.protos.errors import Conflict, InvalidInput
from edgeatlas.protos.privacy import PrivacyParams, auto_bounds
from edgeatlas.protos.records import RunParams, Schedule, Setting
from edgeatlas.protos.spec import SpecSheet

MAX_IMPORTED_CELLS = 10_000
FEDERATED_FIELDS = ("rounds", "local_epochs", "epsilon", "update_clip", "update_noise")


@dataclass(frozen=True)
class CampaignRequest:
    """A benchmark campaign as asked (models by name or sha256 prefix), or a federated-train one."""

    name: str
    models: list[str]
    selectors: dict[str, str]
    repeats: int
    setting: Setting
    params: RunParams
    privacy: PrivacyParams
    target_precision: float
    schedule: Schedule
    adaptive: AdaptivePlan | None = None
    federated: object | None = None  # a FederatedPlan (the predictor's federated extra)
    bounds_auto: bool = False  # public bounds per model and class from the predictor


@dataclass(frozen=True)
class ImportedCell:
    spec: SpecSheet
    setting: Setting
    metrics: dict[str, float] = field(default_factory=dict)


def adaptive_plan(budget: int, target_mape: float, for_spec_json: str, epsilon_budget: float) -> AdaptivePlan:
    """The checked plan of an adaptive campaign; InvalidInput naming what is wrong."""
    try:
        importlib.import_module("edgeatlas.predictor.acquisition")
    except ImportError as exc:
        raise InvalidInput(f"adaptive campaigns need the predictor extra on the coordinator ({exc.name} is "
                           "missing)") from None
    return AdaptivePlan(budget=budget, target_mape=target_mape, for_spec_json=for_spec_json,
                        epsilon_budget=epsilon_budget).check()


def federated_plan(devices: int, given: dict[str, float]):
    """The checked FederatedPlan of a federated-train campaign (fields not given: defaults)."""
    try:
        from edgeatlas.predictor.federated.plan import FederatedPlan
    except ImportError as exc:
        raise InvalidInput(f"federated training needs the federated extra on the coordinator ({exc.name} is "
                           "missing)") from None
    for key, value in given.items():
        if not math.isfinite(value) or value < 0:
            raise InvalidInput(f"federated {key} = {value} is not a positive number")
    plan = FederatedPlan(clients=devices or 2, **given)
    if plan.clients > 10_000 or plan.rounds > 1000 or plan.local_epochs > 100:
        raise InvalidInput("federated training: at most 10000 devices, 1000 rounds and 100 local epochs")
    plan.check()
    return plan


def check_campaign(request: CampaignRequest, now_ms: int, superlink: bool) -> None:
    """Every check that needs no stored state; `superlink`: this coordinator can run federated training."""
    if request.federated is not None:
        if request.models or request.adaptive is not None:
            raise InvalidInput("a federated-train campaign has no models and is not adaptive")
        if not superlink:
            raise Conflict("this coordinator runs no Flower SuperLink: serve it with --superlink HOST:PORT")
        return
    if not request.models:
        raise InvalidInput("a campaign needs at least one model")
    if not 1 <= request.repeats <= 1000:
        raise InvalidInput(f"repeats = {request.repeats} is not in 1..1000")
    setting = request.setting
    if not 1 <= setting.batch <= 4096 or not 0 <= setting.threads <= 1024:
        raise InvalidInput("batch must be in 1..4096 and threads in 0..1024")
    check_params(request.params)
    scenarios.check(setting.scenario, setting.scenario_params)
    request.privacy.check()
    if request.adaptive is not None and request.privacy.mode == "secure":
        raise InvalidInput("an adaptive campaign picks its next measurements from each one as it arrives, and "
                           "a secure round publishes a cohort at once: give it --privacy-mode ldp")
    check_target_precision(request.target_precision)
    request.schedule.check(now_ms)


def predicted_bounds(store, predictors, models: list, selectors: dict[str, str],
                     setting: Setting) -> dict[str, list[float]]:
    """`--bounds auto`: for each ONNX model on each hardware class the campaign's devices belong to, public
    bounds around the newest predictor's answer (protos/privacy.auto_bounds), as "SHA|CLASS" → [lo, hi] ms.
    A GGUF model keeps the campaign's bounds (the predictor reads ONNX graphs)."""
    bounds = {}
    for hardware_class, spec_json in store.classes_matching(selectors).items():
        for model in models:
            if model.format != "onnx":
                continue
            answer = predictors.predict(spec_json, model.sha256, setting.target or "cpu", setting.batch or 1,
                                        setting.threads, setting.runtime or "onnxruntime", 0)
            bounds[f"{model.sha256}|{hardware_class}"] = list(auto_bounds(
                answer["latency_ms"], answer["latency_ms_low"], answer["latency_ms_high"]))
    return bounds


def check_models(request: CampaignRequest, models: list) -> None:
    """The resolved models (rows with name and format) suit the campaign's scenario and kind."""
    for model in models:
        scenarios.check_for_format(request.setting.scenario, model.format, model.name)
        if request.adaptive is not None and model.format != "onnx":
            raise InvalidInput(f"model {model.name} is {model.format}: an adaptive campaign's predictor reads "
                               "ONNX graphs")


def check_params(params: RunParams) -> None:
    if not 0 <= params.warmup_iterations <= 100_000:
        raise InvalidInput(f"warmup_iterations = {params.warmup_iterations} is not in 0..100000")
    if not 1 <= params.min_iterations <= 1_000_000:
        raise InvalidInput(f"min_iterations = {params.min_iterations} is not in 1..1000000")
    for name in ("min_duration_s", "max_duration_s"):
        value = getattr(params, name)
        if not math.isfinite(value) or not 0 < value <= 3600:
            raise InvalidInput(f"{name} = {value} is not in (0, 3600]")
    if params.max_duration_s < params.min_duration_s:
        raise InvalidInput("max_duration_s must be at least min_duration_s")


def check_target_precision(value: float) -> None:
    if not (math.isfinite(value) and (value == 0 or aggregate.MIN_TARGET_PRECISION <= value <= 10)):
        raise InvalidInput(f"target_precision = {value} is not 0 (none) or in "
                           f"[{aggregate.MIN_TARGET_PRECISION:g}, 10]")


def check_import(source: str, citation: str, n_cells: int) -> None:
    """Published values are imported, cited, and come 1..MAX_IMPORTED_CELLS cells at a time."""
    if source != "imported":
        raise InvalidInput(f"source {source!r}: only 'imported' cells can be imported")
    if not citation:
        raise InvalidInput("imported values need a citation")
    if not 1 <= n_cells <= MAX_IMPORTED_CELLS:
        raise InvalidInput(f"an import carries 1..{MAX_IMPORTED_CELLS} cells")


def check_imported_cell(i: int, cell: ImportedCell) -> None:
    """A published cell names a processor its sheet has, and positive, finite latency metrics."""
    if not cell.setting.target:
        raise InvalidInput(f"cells[{i}].setting.target is missing")
    cell.spec.hardware_class(cell.setting.target)  # a target the sheet lacks is refused here
    if not cell.metrics:
        raise InvalidInput(f"cells[{i}] has no metrics")
    for name, value in cell.metrics.items():
        if name not in aggregate.METRICS:
            raise InvalidInput(f"cells[{i}]: metric {name!r} is not one of {', '.join(aggregate.METRICS)}")
        if not math.isfinite(value) or value <= 0:
            raise InvalidInput(f"cells[{i}]: metric {name} = {value!r} must be positive and finite")
