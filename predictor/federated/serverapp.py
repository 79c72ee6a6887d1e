"""The Flower ServerApp: FedAvg over the devices' clipped updates, with Gaussian noise on the average.

FedAvg is wrapped in Flower's DifferentialPrivacyClientSideFixedClipping (the devices clip with
fixedclipping_mod) and an RDP accountant of the aggregate: user-level ε, where one device's whole data
set is the unit, on top of the per-measurement ε that each device's DP-SGD gives. Both are recorded
per round in the run's outcome.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import DifferentialPrivacyClientSideFixedClipping, FedAvg
from flwr.supercore.privacy_accounting import NeighboringRelation, PrivacyConfig, SamplingMethod
from flwr.supercore.privacy_accounting.rdp_accountant import RdpAccountant

from edgeatlas.predictor.federated import dpsgd
from edgeatlas.predictor.federated.plan import FederatedPlan


ONLY_THE_MINIMUM = 1e-9


@dataclass
class RoundRecord:
    round: int
    loss_before: float  # mean over devices of their local loss before / after this round's DP-SGD
    loss_after: float
    epsilon_measurement: float  # the largest per-measurement ε (DP-SGD) any device has spent so far
    epsilon_device: float  # the aggregate's user-level ε so far, at the plan's delta
    update_norm: float  # mean L2 norm of the devices' updates before clipping


@dataclass
class Outcome:
    """What a run leaves: the final weights and, per round, its losses and privacy spent."""

    plan: dict
    rounds: list[RoundRecord] = field(default_factory=list)
    state: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"plan": self.plan, "rounds": [asdict(r) for r in self.rounds]}, sort_keys=True)


def _train_metrics(records: list, weighting_key: str) -> MetricRecord:
    """Means over devices, but ε is the largest any device has spent."""
    metrics = [next(iter(r.metric_records.values())) for r in records]
    out = {k: float(sum(float(m[k]) for m in metrics) / len(metrics))
           for k in ("loss-before", "loss-after", "update-norm")}
    out["epsilon"] = max(float(m["epsilon"]) for m in metrics)
    out[weighting_key] = len(metrics)
    return MetricRecord(out)


def new_accountant(plan: FederatedPlan) -> RdpAccountant:
    # No amplification is claimed for choosing which devices train a round: the bound holds whichever do.
    return RdpAccountant(PrivacyConfig(target_delta=plan.delta, population_size=plan.clients,
                                       neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
                                       sampling_method=SamplingMethod.NO_AMPLIFICATION))


def run(grid: Grid, plan: FederatedPlan) -> Outcome:
    plan.check()
    model = dpsgd.new_model(plan.seed)
    # Exactly plan.clients devices per round, even when more are connected: FedAvg takes
    # max(fraction × connected, min_*_nodes), and a fraction too small to count any device leaves the minimum
    # (0 would skip the round). The accountant counts each round's release without amplification by sampling.
    strategy = FedAvg(fraction_train=ONLY_THE_MINIMUM, fraction_evaluate=ONLY_THE_MINIMUM,
                      min_train_nodes=plan.clients, min_evaluate_nodes=plan.clients,
                      min_available_nodes=plan.clients, train_metrics_aggr_fn=_train_metrics)
    private = DifferentialPrivacyClientSideFixedClipping(strategy, plan.update_noise, plan.update_clip, plan.clients,
                                                         accountant=new_accountant(plan))
    spent: dict[int, float] = {}

    def after_round(rnd: int, _arrays: ArrayRecord) -> None:
        spent[rnd] = private.privacy_spent().epsilon

    config = ConfigRecord({"plan": plan.to_json()})
    result = private.start(grid=grid, initial_arrays=ArrayRecord(model.state_dict()), num_rounds=plan.rounds,
                           train_config=config, evaluate_config=config, evaluate_fn=after_round)
    outcome = Outcome(plan=json.loads(plan.to_json()), state=result.arrays.to_torch_state_dict())
    for rnd in sorted(result.train_metrics_clientapp):
        m = result.train_metrics_clientapp[rnd]
        outcome.rounds.append(RoundRecord(
            round=rnd, loss_before=float(m["loss-before"]), loss_after=float(m["loss-after"]),
            epsilon_measurement=float(m["epsilon"]), epsilon_device=spent[rnd], update_norm=float(m["update-norm"])))
    return outcome


def server_app(plan: FederatedPlan | None = None, out: Path | None = None) -> ServerApp:
    """A ServerApp for this plan (simulation), or one that reads `plan` and `out` from the run config."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        the_plan = plan or FederatedPlan.from_json(str(context.run_config["plan"]))
        where = out or Path(str(context.run_config["out"]))
        outcome = run(grid, the_plan)
        import torch

        torch.save({"outcome": outcome.to_json(), "state": outcome.state}, str(where))

    return app


app = server_app()
