"""The Flower ClientApp: one device's round of DP-SGD on its own measurements, and local evaluation.

What leaves the device: the model's weights after local DP-SGD (so ε-DP for each of its measurements),
clipped in L2 by Flower's fixedclipping_mod, and a few numbers (loss before and after, ε spent so far).
Its measurements never do.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.mod import fixedclipping_mod

from edgeatlas.predictor.data import Samples
from edgeatlas.predictor.federated import dpsgd
from edgeatlas.predictor.federated.plan import FederatedPlan

app = ClientApp()


def local_samples(context: Context, plan: FederatedPlan) -> Samples:
    """This device's measurements: the agent's store (deployment) or a partition file (simulation)."""
    data = context.node_config.get("data")
    if data:
        from edgeatlas.predictor.federated.store import load_store

        return load_store(Path(str(data)))
    path = Path(plan.partitions) / f"{int(context.node_config['partition-id'])}.pkl"
    # written by simulation.run from samples it was given, in a folder only it uses
    return pickle.loads(path.read_bytes())


def _model(msg: Message):
    model = dpsgd.new_model()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    return model


def _plan(msg: Message) -> FederatedPlan:
    return FederatedPlan.from_json(str(msg.content["config"]["plan"]))


@app.train(mods=[fixedclipping_mod])
def train(msg: Message, context: Context) -> Message:
    plan = _plan(msg)
    model = _model(msg)
    start = {k: v.detach().clone() for k, v in model.state_dict().items()}
    samples = local_samples(context, plan)
    state = context.state.get("dpsgd")
    history = json.loads(str(state["history"])) if state is not None else []
    result = dpsgd.train(model, samples, np.array(plan.hw_mean), np.array(plan.hw_std), plan.dp(), history)
    context.state["dpsgd"] = ConfigRecord({"history": json.dumps(result.history)})
    update = float(sum(((v - start[k]) ** 2).sum() for k, v in model.state_dict().items()) ** 0.5)
    # Every device weighs the same in the average (the accountant of the aggregate assumes it), whatever
    # its number of measurements, which is not sent.
    metrics = MetricRecord({"num-examples": 1, "loss-before": result.loss_before, "loss-after": result.loss_after,
                            "epsilon": result.epsilon, "noise-multiplier": result.noise_multiplier,
                            "update-norm": update})
    return Message(content=RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": metrics}),
                   reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    plan = _plan(msg)
    model = _model(msg)
    samples = local_samples(context, plan)
    loss = dpsgd.loss_of(model, dpsgd.PairDataset(samples, np.array(plan.hw_mean), np.array(plan.hw_std)))
    return Message(content=RecordDict({"metrics": MetricRecord({"num-examples": 1, "loss": loss})}), reply_to=msg)
