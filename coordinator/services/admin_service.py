"""AdminService: campaigns, fleet, models, heat-map and tokens, behind an admin token."""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import io
import json
import math
import tempfile
import time

from edgeatlas.coordinator import aggregate, auth
from edgeatlas.coordinator.adaptive import AdaptivePlan
from edgeatlas.coordinator.heatmaps import Heatmaps
from edgeatlas.coordinator.predictions import Predictors
from edgeatlas.coordinator.services.agent_service import Wakeup
from edgeatlas.coordinator.status import check_parsed, log, rpc
from edgeatlas.coordinator.scheduling import OFFLINE_AFTER_MS
from edgeatlas.coordinator.store import Store
from edgeatlas.protos import convert, scenarios
from edgeatlas.protos.errors import Conflict, InvalidInput, ResourceExhausted, Unauthenticated, Unavailable
from edgeatlas.protos.privacy import PrivacyParams
from edgeatlas.protos.records import RunParams, Schedule, Setting
from edgeatlas.protos.spec import SpecSheet
from edgeatlas.protos.wire import CHUNK_BYTES
from edgeatlas.v1 import admin_pb2, admin_pb2_grpc

MAX_MODEL_BYTES = 512 * 1024 * 1024
DAY_MS = 86_400_000


def adaptive_plan(msg: admin_pb2.Adaptive) -> AdaptivePlan:
    """The checked plan of an adaptive campaign; InvalidInput naming what is wrong."""
    try:
        importlib.import_module("edgeatlas.predictor.acquisition")
    except ImportError as exc:
        raise InvalidInput(f"adaptive campaigns need the predictor extra on the coordinator ({exc.name} is "
                           "missing)") from None
    return AdaptivePlan(budget=msg.budget, target_mape=msg.target_mape, for_spec_json=msg.for_spec_json,
                        epsilon_budget=msg.epsilon_budget).check()


def federated_plan(msg: admin_pb2.Federated):
    """The checked FederatedPlan of a federated-train campaign (zero fields: defaults)."""
    try:
        from edgeatlas.predictor.federated.plan import FederatedPlan
    except ImportError as exc:
        raise InvalidInput(f"federated training needs the federated extra on the coordinator ({exc.name} is "
                           "missing)") from None
    given = {k: getattr(msg, k) for k in ("rounds", "local_epochs", "epsilon", "update_clip", "update_noise")
             if getattr(msg, k)}
    for key, value in given.items():
        if not math.isfinite(value) or value < 0:
            raise InvalidInput(f"federated {key} = {value} is not a positive number")
    plan = FederatedPlan(clients=msg.devices or 2, **given)
    if plan.clients > 10_000 or plan.rounds > 1000 or plan.local_epochs > 100:
        raise InvalidInput("federated training: at most 10000 devices, 1000 rounds and 100 local epochs")
    plan.check()
    return plan


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
        if request.HasField("federated"):
            plan = federated_plan(request.federated)
            if request.models or request.HasField("adaptive"):
                raise InvalidInput("a federated-train campaign has no models and is not adaptive")
            if not self.superlink:
                raise Conflict("this coordinator runs no Flower SuperLink: serve it with --superlink HOST:PORT")
            campaign_id = await asyncio.to_thread(self.store.create_federated_campaign, request.name[:128],
                                                  json.dumps({"plan": json.loads(plan.to_json())}), plan.clients)
            return await self._campaign(campaign_id)
        if not request.models:
            raise InvalidInput("a campaign needs at least one model")
        repeats = request.repeats or 1
        if not 1 <= repeats <= 1000:
            raise InvalidInput(f"repeats = {repeats} is not in 1..1000")
        setting = convert.setting_from_pb(request.setting, defaults=True)
        if not 1 <= setting.batch <= 4096 or not 0 <= setting.threads <= 1024:
            raise InvalidInput("batch must be in 1..4096 and threads in 0..1024")
        params = convert.params_from_pb(request.params)
        check_params(params)
        scenarios.check(setting.scenario, setting.scenario_params)
        privacy = convert.privacy_from_pb(request.privacy, defaults=True).check()
        check_target_precision(request.target_precision)
        schedule = Schedule(priority=request.priority, deadline_ms=request.deadline_ms,
                            quota=request.quota).check(int(time.time() * 1000))
        plan = adaptive_plan(request.adaptive) if request.HasField("adaptive") else None
        models = await asyncio.to_thread(self.store.resolve_models, list(request.models))
        for model in models:
            scenarios.check_for_format(setting.scenario, model.format, model.name)
            if plan is not None and model.format != "onnx":
                raise InvalidInput(f"model {model.name} is {model.format}: an adaptive campaign's predictor reads "
                                   "ONNX graphs")
        campaign_id = await asyncio.to_thread(self.store.create_campaign, request.name[:128], models,
                                              dict(request.selectors), repeats, setting, params, privacy,
                                              request.target_precision, schedule,
                                              plan.to_json() if plan is not None else "")
        self.wakeup.notify()
        return await self._campaign(campaign_id)

    async def _campaign(self, campaign_id: int) -> admin_pb2.Campaign:
        row = await asyncio.to_thread(self.store.campaign, campaign_id)
        counts = await asyncio.to_thread(self.store.task_counts, campaign_id)
        by_hardware = await asyncio.to_thread(self.store.task_counts_by_hardware, campaign_id)
        failures = await asyncio.to_thread(self.store.failures, campaign_id)
        names = {m.sha256: m.name for m in await asyncio.to_thread(self.store.list_models)}
        adaptive, rounds = None, []
        if row.adaptive_json:
            plan = AdaptivePlan.from_json(row.adaptive_json)
            adaptive = admin_pb2.Adaptive(budget=plan.budget, target_mape=plan.target_mape,
                                          for_spec_json=plan.for_spec_json, epsilon_budget=plan.epsilon_budget)
            rounds = [admin_pb2.AdaptiveRound(
                round=r.round, measurements=r.measurements, picked=r.picked, created_ms=r.created_ms,
                validation_mape=math.nan if r.validation_mape is None else r.validation_mape)
                for r in await asyncio.to_thread(self.store.rounds, campaign_id)]
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
            adaptive=adaptive, rounds=rounds, stop_reason=row.stop_reason)

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
        return admin_pb2.ListAgentsResponse(agents=[admin_pb2.AgentInfo(
            agent_id=a.agent_id, name=a.name, hardware_class=a.hardware_class, device_class=a.device_class,
            enrolled_ms=a.enrolled_ms, last_seen_ms=a.last_seen_ms,
            online=now - a.last_seen_ms < OFFLINE_AFTER_MS, spec_json=a.spec_json, tasks_done=done,
            simulated=a.simulated, epsilon_24h=spent.get(a.agent_id, (0.0, 0))[0],
            releases_24h=spent.get(a.agent_id, (0.0, 0))[1], state=a.state or "")
            for a, done in rows])

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
        await asyncio.to_thread(self._check_gguf if request.format == "gguf" else self._check_onnx, request.sha256)
        row = await asyncio.to_thread(self.store.add_model, request.name, request.format, request.sha256,
                                      request.reference_sha256, json.dumps(summary))
        return convert.model_to_pb(row.to_ref())

    def _check_gguf(self, sha256: str) -> None:
        from edgeatlas.protos.gguf import read_header

        if self.store.blob(sha256) is None:
            raise InvalidInput(f"model bytes {sha256[:16]} were not uploaded")
        with tempfile.NamedTemporaryFile(suffix=".gguf") as f:  # the reader maps a file
            for chunk in self.store.blob_chunks(sha256):
                f.write(chunk)
            f.flush()
            read_header(f.name).check_model()

    def _check_onnx(self, sha256: str) -> None:
        import onnx

        if self.store.blob(sha256) is None:
            raise InvalidInput(f"model bytes {sha256[:16]} were not uploaded")
        try:
            model = onnx.load_from_string(b"".join(self.store.blob_chunks(sha256)))
        except Exception as exc:
            raise InvalidInput(f"not a valid ONNX model: {type(exc).__name__}") from None
        external = [t.name for t in _tensors(model.graph) if t.data_location == onnx.TensorProto.EXTERNAL]
        if external:  # it would name files on the coordinator's disk: their existence would leak, or worse
            raise InvalidInput(f"tensor {external[0][:60]!r} keeps its data in an external file: upload one "
                               f"self-contained ONNX file (onnx.save with save_as_external_data=False)")
        try:
            onnx.checker.check_model(model)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise InvalidInput(f"not a valid ONNX model: {first[:300]}") from None

    @rpc
    async def ListModels(self, request, context):
        await self._admin(context)
        rows = await asyncio.to_thread(self.store.list_models)
        return admin_pb2.ListModelsResponse(models=[convert.model_to_pb(r.to_ref()) for r in rows])

    @rpc
    async def GetHeatmap(self, request, context):
        await self._admin(context)
        check_target_precision(request.target_precision)
        return await asyncio.to_thread(self.heatmaps.read, request.metric, request.target_precision)

    @rpc
    async def ImportCells(self, request, context):
        await self._admin(context)
        if request.source != "imported":
            raise InvalidInput(f"source {request.source!r}: only 'imported' cells can be imported")
        if not request.citation:
            raise InvalidInput("imported values need a citation")
        if not request.cells or len(request.cells) > 10_000:
            raise InvalidInput("an import carries 1..10000 cells")
        cells = []
        for i, cell in enumerate(request.cells):
            spec = SpecSheet.from_json(cell.spec_json, f"cells[{i}].spec_json")
            setting = convert.setting_from_pb(cell.setting)
            if not setting.target:
                raise InvalidInput(f"cells[{i}].setting.target is missing")
            spec.hardware_class(setting.target)  # a target the sheet lacks is refused here
            if not cell.metrics:
                raise InvalidInput(f"cells[{i}] has no metrics")
            for name, value in cell.metrics.items():
                if name not in aggregate.METRICS:
                    raise InvalidInput(f"cells[{i}]: metric {name!r} is not one of {', '.join(aggregate.METRICS)}")
                if not math.isfinite(value) or value <= 0:
                    raise InvalidInput(f"cells[{i}]: metric {name} = {value!r} must be positive and finite")
            cells.append((spec, setting, dict(cell.metrics)))
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
        if request.batch > 4096 or request.threads > 1024:
            raise InvalidInput("batch must be in 0..4096 and threads in 0..1024")
        model = request.model or bytes(request.model_onnx)
        answer = await asyncio.to_thread(_predictor_call, self.predictors.predict, request.spec_json, model,
                                         request.target or "cpu", request.batch, request.threads, request.runtime,
                                         request.version)
        return admin_pb2.PredictResponse(**answer)

    @rpc
    async def TrainPredictor(self, request, context):
        await self._admin(context)
        if request.members > 10 or request.epochs > 50:
            raise InvalidInput("members must be in 0..10 and epochs in 0..50")
        row = await asyncio.to_thread(_predictor_call, self.predictors.train, "manual", request.members,
                                      request.epochs)
        return predictor_to_pb(row)

    @rpc
    async def PublishPredictor(self, request_iterator, context):
        await self._admin(context)
        data = io.BytesIO()
        await self._receive_blob(request_iterator, data)
        row = await asyncio.to_thread(_predictor_call, self.predictors.publish, data.getvalue())
        return predictor_to_pb(row)

    @rpc
    async def ListPredictorVersions(self, request, context):
        await self._admin(context)
        rows = await asyncio.to_thread(self.store.predictors)
        return admin_pb2.ListPredictorVersionsResponse(versions=[predictor_to_pb(r) for r in rows])


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


def _tensors(graph):
    """Every TensorProto of a graph: initializers, Constant values and those of subgraphs (If, Loop, Scan)."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _tensors(sub)


def _predictor_call(fn, *args):
    try:
        return fn(*args)
    except ImportError as exc:  # torch / scikit-learn: the `predictor` extra
        raise Unavailable(f"this coordinator was installed without the predictor extra ({exc.name} missing)")


def task_counts_pb(counts) -> admin_pb2.TaskCounts:
    return admin_pb2.TaskCounts(**{k: counts.get(k, 0) for k in
                                   ("pending", "leased", "done", "failed", "cancelled", "declined")})


def predictor_to_pb(row) -> admin_pb2.PredictorVersion:
    return admin_pb2.PredictorVersion(
        version=row.version, created_ms=row.created_ms, trigger=row.trigger, cells=row.cells,
        networks=row.networks, devices=row.devices, evaluation_json=row.evaluation_json,
        size_bytes=row.size_bytes, train_seconds=row.train_seconds, privacy_json=row.privacy_json)


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
