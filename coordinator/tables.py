"""SQLModel tables: the coordinator's whole state (it is stateless over its database)."""

from __future__ import annotations

from typing import Optional

from sqlalchemy import BigInteger, Column, Index, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel

from edgeatlas.protos.records import ModelRef


class TokenRow(SQLModel, table=True):
    __tablename__ = "token"
    id: Optional[int] = Field(default=None, primary_key=True)
    kind: str = Field(index=True)  # enroll | admin
    token_hash: str = Field(unique=True)  # sha256 hex; the token itself is never stored
    created_ms: int = Field(sa_type=BigInteger)
    expires_ms: Optional[int] = Field(default=None, sa_type=BigInteger)
    uses_left: Optional[int] = None
    revoked: bool = False
    bootstrap: bool = False  # given at start-up (environment or tokens file): the next start's replaces it


class AgentRow(SQLModel, table=True):
    __tablename__ = "agent"
    agent_id: str = Field(primary_key=True)
    credential_hash: str = Field(unique=True)
    name: str = ""
    spec_json: str
    hardware_class: str = Field(index=True)
    device_class: str = ""
    labels_json: str = "{}"
    agent_version: str = ""
    enrolled_ms: int = Field(sa_type=BigInteger)
    last_seen_ms: int = Field(sa_type=BigInteger)
    state: str = ""
    revoked: bool = False
    simulated: bool = False  # a virtual device of `edgeatlas fleet simulate`


class HardwareRow(SQLModel, table=True):
    """One row per hardware class seen, with the first spec sheet that named it."""

    __tablename__ = "hardware"
    hardware_class: str = Field(primary_key=True)
    spec_json: str
    first_seen_ms: int = Field(sa_type=BigInteger)


class BlobRow(SQLModel, table=True):
    __tablename__ = "blob"
    sha256: str = Field(primary_key=True)
    size_bytes: int = Field(sa_type=BigInteger)
    n_chunks: int
    created_ms: int = Field(sa_type=BigInteger)


class BlobChunkRow(SQLModel, table=True):
    __tablename__ = "blob_chunk"
    sha256: str = Field(primary_key=True)
    idx: int = Field(primary_key=True)
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class ModelRow(SQLModel, table=True):
    __tablename__ = "model"
    sha256: str = Field(primary_key=True)
    name: str = Field(index=True)
    format: str = "onnx"
    size_bytes: int = Field(sa_type=BigInteger)
    reference_sha256: str = ""
    reference_size_bytes: int = Field(default=0, sa_type=BigInteger)
    summary_json: str = "{}"
    inputs_json: str = ""  # the input spec (protos/inputs.py)
    created_ms: int = Field(sa_type=BigInteger)

    def to_ref(self) -> ModelRef:
        return ModelRef(sha256=self.sha256, name=self.name, format=self.format, size_bytes=self.size_bytes,
                        reference_sha256=self.reference_sha256, reference_size_bytes=self.reference_size_bytes,
                        summary_json=self.summary_json, inputs_json=self.inputs_json)


class CampaignRow(SQLModel, table=True):
    __tablename__ = "campaign"
    id: Optional[int] = Field(default=None, primary_key=True)
    name: str = ""
    status: str = "running"  # running | paused | done | cancelled | expired
    created_ms: int = Field(sa_type=BigInteger)
    finished_ms: Optional[int] = Field(default=None, sa_type=BigInteger)
    models_json: str
    selectors_json: str = "{}"
    repeats: int = 1
    setting_json: str
    params_json: str
    privacy_json: str = "{}"
    target_precision: float = 0.0
    n_agents: int = 0
    priority: int = 0  # leased first when higher
    deadline_ms: Optional[int] = Field(default=None, sa_type=BigInteger)  # open tasks are cancelled past it
    quota: int = 0  # devices per hardware class; 0: every matching device
    adaptive_json: str = ""  # an adaptive campaign's stop rule and queried spec (coordinator/adaptive.py); "": none
    stop_reason: str = ""  # why an adaptive campaign stopped
    # a federated-train campaign: {"plan": FederatedPlan, "rounds": [...], "predictor_version": N} (coordinator/
    # federated.py); "": none
    federated_json: str = ""


class TaskRow(SQLModel, table=True):
    __tablename__ = "task"
    __table_args__ = (Index("ix_task_campaign_status", "campaign_id", "status"),)  # "any open task left?"
    id: Optional[int] = Field(default=None, primary_key=True)
    campaign_id: int = Field(index=True)
    agent_id: str = Field(index=True)
    hardware_class: str = Field(default="", index=True)  # its device's class: another of it may adopt the task
    model_sha256: str
    repeat: int = 0
    status: str = Field(default="pending", index=True)  # pending | leased | done | failed | declined | cancelled
    lease_id: Optional[str] = None
    lease_expires_ms: Optional[int] = Field(default=None, sa_type=BigInteger)
    attempts: int = 0
    orphaned: bool = Field(default=False, index=True)  # its device vanished or its lease ran out: up for adoption
    failure_reason: str = ""
    updated_ms: int = Field(sa_type=BigInteger)


class ReportRow(SQLModel, table=True):
    __tablename__ = "report"
    report_id: str = Field(primary_key=True)
    task_id: int = Field(index=True)
    agent_id: str = Field(index=True)
    received_ms: int = Field(sa_type=BigInteger)
    status: str  # ok | failed | declined
    failure_reason: str = ""
    valid: bool = False
    invalid_reason: str = ""
    privacy_mode: str = ""
    setting_json: str = "{}"
    stats_json: str = "{}"  # trusted mode only
    privacy_json: str = "{}"
    released_json: str = "{}"  # ldp: the noised vector, all the coordinator ever sees of the run
    figures_json: str = "{}"  # trusted: LLM, energy and LoadGen figures (protos/metrics.py)
    context_json: str = "{}"  # scenario driver and verdict, energy meter or why none, conditions (trusted)
    fidelity_json: str = "{}"
    started_ms: int = Field(default=0, sa_type=BigInteger)
    agent_version: str = ""


class SecureClaimRow(SQLModel, table=True):
    """A secure report's held values, claimed by the round that sums them: one round per report, so no
    device's values enter two sums. A round that fails before any masked vector was sent gives them back."""

    __tablename__ = "secure_claim"
    report_id: str = Field(primary_key=True)
    round_id: str = Field(index=True)
    claimed_ms: int = Field(sa_type=BigInteger)


class CellRow(SQLModel, table=True):
    """A heat-map cell: one model on one hardware class in one setting, from one kind of source."""

    __tablename__ = "heatmap_cell"
    __table_args__ = (UniqueConstraint("model_sha256", "hardware_class", "setting_key", "source"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    model_sha256: str = Field(index=True)
    model_name: str
    hardware_class: str = Field(index=True)
    setting_key: str
    setting_json: str
    source: str  # fleet | imported | simulated | trusted
    citation: str = ""
    privacy: str = ""  # the contract of its reports, e.g. "ldp gaussian ε=1 δ=1e-06"
    n_reports: int = 0
    n_devices: int = 0
    updated_ms: int = Field(sa_type=BigInteger, index=True)  # what a heat-map read after a fold re-reads


class CellMetricRow(SQLModel, table=True):
    """Running sums of one metric in log space; the geometric mean and its interval derive from them."""

    __tablename__ = "heatmap_metric"
    cell_id: int = Field(primary_key=True)
    metric: str = Field(primary_key=True)
    n: int = 0
    sum_log: float = 0.0
    sumsq_log: float = 0.0
    noise_var_sum: float = 0.0  # known variance of the local noise, summed over reports


class CellContributorRow(SQLModel, table=True):
    __tablename__ = "heatmap_contributor"
    cell_id: int = Field(primary_key=True)
    agent_id: str = Field(primary_key=True)


class PredictorRow(SQLModel, table=True):
    """One trained version of the cost predictor; its checkpoint is a blob (chunks in the database)."""

    __tablename__ = "predictor_version"
    version: Optional[int] = Field(default=None, primary_key=True)
    created_ms: int = Field(sa_type=BigInteger)
    trigger: str
    checkpoint_sha256: str
    size_bytes: int = Field(sa_type=BigInteger)
    cells: int
    networks: int
    devices: int
    evaluation_json: str
    train_seconds: float
    privacy_json: str = ""  # a federated version's privacy spent, per round and in total
    runtimes: str = ""  # the runtimes its training data was measured in, comma-separated ("": not recorded)


class AdaptiveRoundRow(SQLModel, table=True):
    """One round of an adaptive campaign: what was measured before it, the error then, what it asked for."""

    __tablename__ = "adaptive_round"
    id: Optional[int] = Field(default=None, primary_key=True)
    campaign_id: int = Field(index=True)
    round: int
    measurements: int
    validation_mape: Optional[float] = None  # %; None: too few cells to validate
    picked: int
    created_ms: int = Field(sa_type=BigInteger)


class LeaderRow(SQLModel, table=True):
    """Which replica runs the campaign drivers and secure rounds now, and where its peers reach it (one row;
    the leader is whoever holds the advisory lock: this row only says where it listens)."""

    __tablename__ = "leader"
    id: int = Field(default=1, primary_key=True)
    replica_id: str
    address: str  # HOST:PORT other replicas relay a device's secure-round messages to
    since_ms: int = Field(sa_type=BigInteger)


class SecureInviteRow(SQLModel, table=True):
    """A secure round whose stage 1 is open: any replica hands its members the invitation when they lease."""

    __tablename__ = "secure_invite"
    round_id: str = Field(primary_key=True)
    members_json: str  # the agent ids invited
    invite: bytes = Field(sa_column=Column(LargeBinary, nullable=False))  # the SecureRoundInvite, serialised
    created_ms: int = Field(sa_type=BigInteger)
