"""A typed client of the admin API: what the CLI, the demo and the dashboard speak to a coordinator."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterator

import grpc

from edgeatlas.protos import convert
from edgeatlas.protos.errors import IntegrityError, Unauthenticated
from edgeatlas.protos.privacy import PrivacyParams
from edgeatlas.protos.records import RunParams, Schedule, Setting
from edgeatlas.protos.wire import CHUNK_BYTES, DEFAULT_DEADLINE_S, ClientTls, bearer, error_for, open_channel
from edgeatlas.v1 import admin_pb2, admin_pb2_grpc


class AdminClient:
    def __init__(self, address: str, admin_token: str | None, tls: ClientTls | None = None):
        if not admin_token:
            raise Unauthenticated("no admin token: pass --admin-token or set EDGEATLAS_ADMIN_TOKEN")
        self.channel = open_channel(address, tls)
        self.stub = admin_pb2_grpc.AdminServiceStub(self.channel)
        self.metadata = bearer(admin_token)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "AdminClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, method, request, timeout: float = DEFAULT_DEADLINE_S):
        try:
            return method(request, metadata=self.metadata, timeout=timeout)
        except grpc.RpcError as exc:
            raise error_for(exc) from None

    def upload_blob(self, data: bytes) -> str:
        self._call(self.stub.UploadBlob, _chunks(data), timeout=600)
        return hashlib.sha256(data).hexdigest()

    def add_model(self, path: Path, name: str, reference_npz: bytes, summary_json: str, fmt: str = "onnx",
                  inputs_json: str = ""):
        """Uploads a model and its reference data (none: its fidelity is not checked) and registers it with
        its input spec (protos/inputs.py; none: the coordinator derives it from the model's static shapes)."""
        sha = self.upload_blob(Path(path).read_bytes())
        ref_sha = self.upload_blob(reference_npz) if reference_npz else ""
        return self._call(self.stub.RegisterModel, admin_pb2.RegisterModelRequest(
            name=name, format=fmt, sha256=sha, reference_sha256=ref_sha, summary_json=summary_json,
            inputs_json=inputs_json))

    def list_models(self):
        return list(self._call(self.stub.ListModels, admin_pb2.ListModelsRequest()).models)

    def create_campaign(self, models: list[str], selectors: dict[str, str], repeats: int, setting: Setting,
                        params: RunParams, name: str = "", privacy: PrivacyParams | None = None,
                        target_precision: float = 0.0, schedule: Schedule = Schedule(),
                        adaptive: admin_pb2.Adaptive | None = None,
                        federated: admin_pb2.Federated | None = None, bounds_auto: bool = False) -> admin_pb2.Campaign:
        request = admin_pb2.CreateCampaignRequest(
            name=name, models=models, selectors=selectors, repeats=repeats,
            setting=convert.setting_to_pb(setting), params=convert.params_to_pb(params),
            target_precision=target_precision, priority=schedule.priority, deadline_ms=schedule.deadline_ms,
            quota=schedule.quota)
        if privacy is not None:
            request.privacy.CopyFrom(convert.privacy_to_pb(privacy))
        if adaptive is not None:
            request.adaptive.CopyFrom(adaptive)
        if federated is not None:
            request.federated.CopyFrom(federated)
        request.bounds_auto = bounds_auto
        return self._call(self.stub.CreateCampaign, request)

    def campaign(self, campaign_id: int) -> admin_pb2.Campaign:
        return self._call(self.stub.GetCampaign, admin_pb2.GetCampaignRequest(campaign_id=campaign_id))

    def cancel_campaign(self, campaign_id: int) -> admin_pb2.Campaign:
        return self._call(self.stub.CancelCampaign, admin_pb2.GetCampaignRequest(campaign_id=campaign_id))

    def pause_campaign(self, campaign_id: int) -> admin_pb2.Campaign:
        return self._call(self.stub.PauseCampaign, admin_pb2.GetCampaignRequest(campaign_id=campaign_id))

    def resume_campaign(self, campaign_id: int) -> admin_pb2.Campaign:
        return self._call(self.stub.ResumeCampaign, admin_pb2.GetCampaignRequest(campaign_id=campaign_id))

    def list_campaigns(self):
        return list(self._call(self.stub.ListCampaigns, admin_pb2.ListCampaignsRequest()).campaigns)

    def list_agents(self):
        return list(self._call(self.stub.ListAgents, admin_pb2.ListAgentsRequest()).agents)

    def list_hardware(self) -> list[admin_pb2.HardwareInfo]:
        return list(self._call(self.stub.ListHardware, admin_pb2.ListHardwareRequest()).hardware)

    def heatmap(self, metric: str = "", target_precision: float = 0.0) -> admin_pb2.Heatmap:
        return self._call(self.stub.GetHeatmap, admin_pb2.GetHeatmapRequest(
            metric=metric, target_precision=target_precision))

    def create_token(self, kind: str, ttl_s: int = 0, uses: int = 0) -> admin_pb2.CreateTokenResponse:
        return self._call(self.stub.CreateToken, admin_pb2.CreateTokenRequest(kind=kind, ttl_s=ttl_s, uses=uses))

    def import_cells(self, model_sha256: str, citation: str, cells: list[tuple[str, Setting, dict[str, float]]],
                     source: str = "imported") -> int:
        """cells: (spec_json, setting, metrics) of published measurements of one model."""
        request = admin_pb2.ImportCellsRequest(model_sha256=model_sha256, source=source, citation=citation)
        for spec_json, setting, metrics in cells:
            request.cells.add(spec_json=spec_json, setting=convert.setting_to_pb(setting), metrics=metrics)
        return self._call(self.stub.ImportCells, request).cells

    def revoke_token(self, token: str) -> bool:
        return self._call(self.stub.RevokeToken, admin_pb2.RevokeTokenRequest(token=token)).revoked

    def revoke_agent(self, agent_id: str) -> bool:
        return self._call(self.stub.RevokeAgent, admin_pb2.RevokeAgentRequest(agent_id=agent_id)).revoked

    # ---- the cost predictor --------------------------------------------------------------------
    def predict(self, spec_json: str, model: str | bytes, target: str = "cpu", batch: int = 1, threads: int = 0,
                runtime: str = "", version: int = 0, inputs_json: str = "",
                fingerprint_json: str = "") -> admin_pb2.PredictResponse:
        """model: a registered model's name or sha256 prefix, or an ONNX graph's bytes (read, not stored) with
        its input spec (protos/inputs.py). fingerprint_json: a device's fingerprint to calibrate on."""
        request = admin_pb2.PredictRequest(spec_json=spec_json, target=target, batch=batch, threads=threads,
                                           runtime=runtime, version=version, fingerprint_json=fingerprint_json)
        if isinstance(model, bytes):
            request.model_onnx = model
            request.inputs_json = inputs_json
        else:
            request.model = model
        return self._call(self.stub.Predict, request, timeout=120)

    def train_predictor(self, members: int = 0, epochs: int = 0, timeout: float = 3600) -> admin_pb2.PredictorVersion:
        return self._call(self.stub.TrainPredictor, admin_pb2.TrainPredictorRequest(members=members, epochs=epochs),
                          timeout=timeout)

    def publish_predictor(self, checkpoint: bytes) -> admin_pb2.PredictorVersion:
        """A checkpoint of `predictor train` becomes the coordinator's newest version."""
        return self._call(self.stub.PublishPredictor, _chunks(checkpoint), timeout=600)

    def predictor_versions(self) -> list[admin_pb2.PredictorVersion]:
        return list(self._call(self.stub.ListPredictorVersions, admin_pb2.ListPredictorVersionsRequest()).versions)

    def download_predictor(self, version: int = 0) -> bytes:
        """A version's checkpoint bytes, checked against the sha256 the coordinator names."""
        try:
            parts = list(self.stub.DownloadPredictor(admin_pb2.DownloadPredictorRequest(version=version),
                                                     metadata=self.metadata, timeout=600))
        except grpc.RpcError as exc:
            raise error_for(exc) from None
        blob = b"".join(p.data for p in parts)
        if not parts or hashlib.sha256(blob).hexdigest() != parts[0].sha256 or len(blob) != parts[0].size_bytes:
            raise IntegrityError("the predictor checkpoint arrived damaged (sha256 or size mismatch)")
        return blob


def _chunks(data: bytes) -> Iterator[admin_pb2.BlobChunk]:
    yield admin_pb2.BlobChunk(sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))
    for i in range(0, len(data), CHUNK_BYTES):
        yield admin_pb2.BlobChunk(data=data[i:i + CHUNK_BYTES])
