"""AdminService: campaigns, fleet, models, heat-map and tokens, behind an admin token.

It translates only: messages ↔ records in admin_convert.py, the checks in the domain modules
(campaigns.py, uploads.py), errors → status codes in status.py."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import tempfile
import time

from edgeatlas.coordinator import auth, campaigns, uploads
from edgeatlas.coordinator.heatmaps import Heatmaps
from edgeatlas.coordinator.predictions import Predictors
from edgeatlas.coordinator.scheduling import OFFLINE_AFTER_MS
from edgeatlas.coordinator.services import admin_convert
from edgeatlas.coordinator.services.agent_service import Wakeup
from edgeatlas.coordinator.status import check_parsed, log, rpc
from edgeatlas.coordinator.store import Store
from edgeatlas.protos import convert
from edgeatlas.protos.errors import InvalidInput, ResourceExhausted, Unauthenticated, Unavailable
from edgeatlas.protos.spec import SpecSheet
from edgeatlas.protos.wire import CHUNK_BYTES
from edgeatlas.v1 import admin_pb2, admin_pb2_grpc

MAX_MODEL_BYTES = 512 * 1024 * 1024
DAY_MS = 86_400_000


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self, store: Store, wakeup: Wakeup, min_devices: int = 5, predictors: Predictors | None = None,
                 superlink: str = ""):
        self.superlink = superlink  # where opted-in agents' SuperNodes dial; "": no federated training here
        self.store = store
        self.wakeup = wakeup
        self.min_devices = min_devices  # k: fleet cells show values only from k distinct devices
        self.predictors = predictors or Predictors(store, min_devices)
        self.heatmaps = Heatmaps(store, min_devices)

    async def _admin(self, context) -> None:
        token = auth.bearer_from(context.invocation_metadata())
        if not token:
            raise Unauthenticated("missing admin token")
        if not await asyncio.to_thread(self.store.check_token, "admin", auth.token_hash(token)):
            raise Unauthenticated("admin token is wrong, expired or revoked")

    @rpc
    async def CreateCampaign(self, request, context):
        await self._admin(context)
        campaign = admin_convert.campaign_request(request)
        campaigns.check_campaign(campaign, int(time.time() * 1000), superlink=bool(self.superlink))
        if campaign.federated is not None:
            plan = campaign.federated
            campaign_id = await asyncio.to_thread(self.store.create_federated_campaign, campaign.name,
                                                  json.dumps({"plan": json.loads(plan.to_json())}), plan.clients)
            return await self._campaign(campaign_id)
        models = await asyncio.to_thread(self.store.resolve_models, campaign.models)
        campaigns.check_models(campaign, models)
        bounds = None
        if campaign.bounds_auto:
            bounds = await asyncio.to_thread(_predictor_call, campaigns.predicted_bounds, self.store,
                                             self.predictors, models, campaign.selectors, campaign.setting)
        campaign_id = await asyncio.to_thread(
            self.store.create_campaign, campaign.name, models, campaign.selectors, campaign.repeats,
            campaign.setting, campaign.params, campaign.privacy, campaign.target_precision, campaign.schedule,
            campaign.adaptive.to_json() if campaign.adaptive is not None else "", bounds)
        self.wakeup.notify()
        return await self._campaign(campaign_id)

    async def _campaign(self, campaign_id: int) -> admin_pb2.Campaign:
        row = await asyncio.to_thread(self.store.campaign, campaign_id)
        counts = await asyncio.to_thread(self.store.task_counts, campaign_id)
        by_hardware = await asyncio.to_thread(self.store.task_counts_by_hardware, campaign_id)
        failures = await asyncio.to_thread(self.store.failures, campaign_id)
        names = {m.sha256: m.name for m in await asyncio.to_thread(self.store.list_models)}
        rounds = await asyncio.to_thread(self.store.rounds, campaign_id) if row.adaptive_json else []
        return admin_convert.campaign_to_pb(row, counts, by_hardware, failures, names, rounds)

    @rpc
    async def ListCampaigns(self, request, context):
        await self._admin(context)
        await asyncio.to_thread(self.store.expire_overdue)
        rows = await asyncio.to_thread(self.store.list_campaigns)
        return admin_pb2.ListCampaignsResponse(campaigns=[await self._campaign(r.id) for r in rows])

    @rpc
    async def GetCampaign(self, request, context):
        await self._admin(context)
        await asyncio.to_thread(self.store.expire_overdue)
        return await self._campaign(request.campaign_id)

    async def _set_state(self, request, context, action: str):
        await self._admin(context)
        await asyncio.to_thread(self.store.set_campaign_state, request.campaign_id, action)
        if action == "resume":
            self.wakeup.notify()
        return await self._campaign(request.campaign_id)

    @rpc
    async def CancelCampaign(self, request, context):
        return await self._set_state(request, context, "cancel")

    @rpc
    async def PauseCampaign(self, request, context):
        return await self._set_state(request, context, "pause")

    @rpc
    async def ResumeCampaign(self, request, context):
        return await self._set_state(request, context, "resume")

    @rpc
    async def ListAgents(self, request, context):
        await self._admin(context)
        now = int(time.time() * 1000)
        rows = await asyncio.to_thread(self.store.list_agents)
        spent = await asyncio.to_thread(self.store.privacy_spent, now - DAY_MS)
        return admin_pb2.ListAgentsResponse(agents=[
            admin_convert.agent_info_pb(a, done, now - a.last_seen_ms < OFFLINE_AFTER_MS,
                                        spent.get(a.agent_id, (0.0, 0))) for a, done in rows])

    @rpc
    async def ListHardware(self, request, context):
        await self._admin(context)
        rows = await asyncio.to_thread(self.store.hardware)
        out = []
        for row in rows:
            try:
                spec = SpecSheet.from_json(row.spec_json)
            except InvalidInput as exc:  # stored by an older coordinator that took any sheet: one row, not the list
                log.warning("hardware class %s left out of ListHardware: %s", row.hardware_class[:80], exc)
                continue
            out.append(admin_pb2.HardwareInfo(hardware_class=row.hardware_class, device_class=spec.device_class or "",
                                              name=spec.name or "", spec_json=row.spec_json,
                                              first_seen_ms=row.first_seen_ms))
        return admin_pb2.ListHardwareResponse(hardware=out)

    @rpc
    async def UploadBlob(self, request_iterator, context):
        await self._admin(context)
        with tempfile.TemporaryFile() as spool:  # streamed to disk, not held in memory
            sha, size = await self._receive_blob(request_iterator, spool)
            spool.seek(0)
            await asyncio.to_thread(self.store.put_blob, sha, size, iter(lambda: spool.read(CHUNK_BYTES), b""))
        return admin_pb2.BlobInfo(sha256=sha, size_bytes=size)

    async def _receive_blob(self, request_iterator, sink) -> tuple[str, int]:
        """A streamed blob's sha256 and size, written to sink, once they match the sha256 and size its first
        chunk names."""
        digest, received, sha, size = hashlib.sha256(), 0, None, None
        async for chunk in request_iterator:
            check_parsed(chunk)
            if sha is None:
                sha, size = chunk.sha256.lower(), chunk.size_bytes
                if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
                    raise InvalidInput("the first chunk must name the blob's sha256 (64 hex digits)")
                if size > MAX_MODEL_BYTES:
                    raise ResourceExhausted(f"blob of {size} bytes is over the {MAX_MODEL_BYTES} byte limit")
            received += len(chunk.data)
            if received > size:
                raise InvalidInput(f"more bytes than the declared size_bytes = {size}")
            digest.update(chunk.data)
            sink.write(chunk.data)
        if sha is None:
            raise InvalidInput("empty upload")
        if received != size or digest.hexdigest() != sha:
            raise InvalidInput(f"uploaded bytes do not match sha256 {sha[:16]} and size {size}")
        return sha, size

    @rpc
    async def RegisterModel(self, request, context):
        await self._admin(context)
        if request.format not in ("onnx", "gguf"):
            raise InvalidInput(f"format {request.format!r} is not onnx or gguf")
        if not request.name or len(request.name) > 128:
            raise InvalidInput("a model needs a name of at most 128 characters")
        try:
            summary = json.loads(request.summary_json or "{}")
        except json.JSONDecodeError:
            raise InvalidInput("summary_json is not JSON") from None
        inputs_json = await asyncio.to_thread(uploads.check_model, self.store, request.format, request.sha256,
                                              request.inputs_json)
        row = await asyncio.to_thread(self.store.add_model, request.name, request.format, request.sha256,
                                      request.reference_sha256, json.dumps(summary), inputs_json)
        return convert.model_to_pb(row.to_ref())

    @rpc
    async def ListModels(self, request, context):
        await self._admin(context)
        rows = await asyncio.to_thread(self.store.list_models)
        return admin_pb2.ListModelsResponse(models=[convert.model_to_pb(r.to_ref()) for r in rows])

    @rpc
    async def GetHeatmap(self, request, context):
        await self._admin(context)
        campaigns.check_target_precision(request.target_precision)
        return await asyncio.to_thread(self.heatmaps.read, request.metric, request.target_precision)

    @rpc
    async def ImportCells(self, request, context):
        await self._admin(context)
        campaigns.check_import(request.source, request.citation, len(request.cells))
        cells = []
        for i, msg in enumerate(request.cells):
            cell = admin_convert.imported_cell(i, msg)
            campaigns.check_imported_cell(i, cell)
            cells.append((cell.spec, cell.setting, cell.metrics))
        n = await asyncio.to_thread(self.store.import_cells, request.model_sha256, request.source,
                                    request.citation[:500], cells)
        return admin_pb2.ImportCellsResponse(cells=n)

    @rpc
    async def RevokeToken(self, request, context):
        await self._admin(context)
        if not request.token:
            raise InvalidInput("name the token to revoke")
        revoked = await asyncio.to_thread(self.store.revoke_token, auth.token_hash(request.token))
        return admin_pb2.RevokeResponse(revoked=revoked)

    @rpc
    async def RevokeAgent(self, request, context):
        await self._admin(context)
        revoked = await asyncio.to_thread(self.store.revoke_agent, request.agent_id)
        if self.wakeup.publish is not None:
            self.wakeup.publish("revoke")  # the other replicas forget their cached credentials now
        return admin_pb2.RevokeResponse(revoked=revoked)

    @rpc
    async def CreateToken(self, request, context):
        await self._admin(context)
        if request.kind not in ("enroll", "admin"):
            raise InvalidInput(f"token kind {request.kind!r} is not enroll or admin")
        token = auth.new_token(request.kind)
        expires = int(time.time() * 1000) + request.ttl_s * 1000 if request.ttl_s else None
        await asyncio.to_thread(self.store.add_token, request.kind, auth.token_hash(token), expires,
                                request.uses or None)
        return admin_pb2.CreateTokenResponse(token=token, kind=request.kind, expires_ms=expires or 0)


    # ---- the cost predictor ------------------------------------------------------------------
    @rpc
    async def Predict(self, request, context):
        await self._admin(context)
        if not request.spec_json or not (request.model or request.model_onnx):
            raise InvalidInput("Predict needs spec_json and a model (a registered name or ONNX bytes)")
        if request.model and request.model_onnx:
            raise InvalidInput("Predict takes either model or model_onnx, not both")
        if request.inputs_json and not request.model_onnx:
            raise InvalidInput("inputs_json goes with model_onnx; a registered model has its own input spec")
        if request.batch > 4096 or request.threads > 1024:
            raise InvalidInput("batch must be in 0..4096 and threads in 0..1024")
        model = request.model or bytes(request.model_onnx)
        answer = await asyncio.to_thread(_predictor_call, self.predictors.predict, request.spec_json, model,
                                         request.target or "cpu", request.batch, request.threads, request.runtime,
                                         request.version, request.inputs_json, request.fingerprint_json)
        return admin_pb2.PredictResponse(**answer)

    @rpc
    async def TrainPredictor(self, request, context):
        await self._admin(context)
        if request.members > 10 or request.epochs > 50:
            raise InvalidInput("members must be in 0..10 and epochs in 0..50")
        row = await asyncio.to_thread(_predictor_call, self.predictors.train, "manual", request.members,
                                      request.epochs)
        return admin_convert.predictor_to_pb(row)

    @rpc
    async def PublishPredictor(self, request_iterator, context):
        await self._admin(context)
        data = io.BytesIO()
        await self._receive_blob(request_iterator, data)
        row = await asyncio.to_thread(_predictor_call, self.predictors.publish, data.getvalue())
        return admin_convert.predictor_to_pb(row)

    @rpc
    async def ListPredictorVersions(self, request, context):
        await self._admin(context)
        rows = await asyncio.to_thread(self.store.predictors)
        return admin_pb2.ListPredictorVersionsResponse(versions=[admin_convert.predictor_to_pb(r) for r in rows])


    @rpc
    async def DownloadPredictor(self, request, context):
        await self._admin(context)
        row = await asyncio.to_thread(self.store.predictor, request.version)
        chunks = self.store.blob_chunks(row.checkpoint_sha256)
        first = True
        while True:
            data = await asyncio.to_thread(next, chunks, None)
            if data is None:
                break
            yield admin_pb2.BlobChunk(sha256=row.checkpoint_sha256 if first else "",
                                      size_bytes=row.size_bytes if first else 0, data=data)
            first = False


def _predictor_call(fn, *args):
    try:
        return fn(*args)
    except ImportError as exc:  # torch / scikit-learn: the `predictor` extra
        raise Unavailable(f"this coordinator was installed without the predictor extra ({exc.name} missing)")


