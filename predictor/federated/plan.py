"""What a federated training run does, in one record the server reads and the clients receive."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields

from edgeatlas.predictor.federated.dpsgd import DELTA, DPConfig
from edgeatlas.protos.errors import InvalidInput


@dataclass(frozen=True)
class FederatedPlan:
    clients: int  # devices that train each round (all of them: accounting assumes no sampling)
    rounds: int = 5
    local_epochs: int = 1
    epsilon: float = 8.0  # DP-SGD budget of each device's measurements over the whole run
    delta: float = DELTA
    max_grad_norm: float = 1.0  # per-measurement gradient clip (Opacus)
    batch_size: int = 32
    lr: float = 3e-3
    update_clip: float = 2.0  # L2 bound of each device's model update (Flower's fixedclipping_mod)
    update_noise: float = 0.1  # noise multiplier on the aggregate, in units of update_clip / clients
    hw_mean: list[float] = field(default_factory=list)  # standardization of spec features, shared by all
    hw_std: list[float] = field(default_factory=list)
    partitions: str = ""  # simulation only: a folder of <partition-id>.pkl sample sets
    seed: int = 0

    def check(self) -> None:
        for name in ("clients", "rounds", "local_epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise InvalidInput(f"federated training: {name} must be at least 1, not {getattr(self, name)}")
        for name in ("epsilon", "update_clip", "update_noise"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise InvalidInput(f"federated training: {name} must be a positive number, not {value}")
        if len(self.hw_mean) != len(self.hw_std):
            raise InvalidInput("federated training: hw_mean and hw_std differ in length")
        self.dp().check()

    def dp(self) -> DPConfig:
        """Each round's local DP-SGD, its noise set so that all rounds together spend epsilon."""
        return DPConfig(epsilon=self.epsilon, delta=self.delta, max_grad_norm=self.max_grad_norm,
                        batch_size=self.batch_size, epochs=self.local_epochs,
                        total_epochs=self.rounds * self.local_epochs, lr=self.lr)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "FederatedPlan":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"federated plan is not JSON: {exc}") from None
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInput(f"federated plan: unknown field(s) {', '.join(unknown)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise InvalidInput(f"federated plan: {exc}") from None
