"""inference.GRPCInferenceService (KServe V2 / Triton gRPC): protos in, Predictor calls,
protos out. Errors carry the canonical codes of apis/errors.py (NOT_FOUND for an unknown
model or version, INVALID_ARGUMENT for a bad datatype, shape or content)."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from servingd.apis.grpc.errors import grpc_errors
from servingd.apis.predictor import Predictor
from servingd.apis.v2 import inference
from servingd.apis.v2.inference import model_metadata, model_ready, model_ref, server_ready
from servingd.apis.v2.model_config import model_config
from servingd.apis.v2.repository import ModelRepository
from servingd.apis.v2.statistics import InferenceStatistics, RequestTimer
from servingd.apis.v2.v2_codec import decode_inputs, fill_outputs
from servingd.batching import BatchingOptions
from servingd.protos.inference import grpc_service_pb2 as pb
from servingd.protos.inference import grpc_service_pb2_grpc


class GrpcInferenceService(grpc_service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(
        self,
        predictor: Predictor,
        repository: ModelRepository,
        statistics: InferenceStatistics,
        batching: BatchingOptions | None = None,
    ) -> None:
        self._predictor = predictor
        self._repository = repository
        self._statistics = statistics
        self._batching = batching  # --enable_batching's parameters, for ModelConfig

    @grpc_errors
    async def ServerLive(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        # Answering at all is being live: the ports open only after the initial load.
        return pb.ServerLiveResponse(live=True)

    @grpc_errors
    async def ServerReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return pb.ServerReadyResponse(ready=server_ready(self._predictor.core))

    @grpc_errors
    async def ModelReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        ready = model_ready(self._predictor, model_ref(request.name, request.version))
        return pb.ModelReadyResponse(ready=ready)

    @grpc_errors
    async def ServerMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        metadata = inference.ServerMetadata()
        return pb.ServerMetadataResponse(
            name=metadata.name, version=metadata.version, extensions=metadata.extensions
        )

    @grpc_errors
    async def ModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        metadata = model_metadata(self._predictor, model_ref(request.name, request.version))
        response = pb.ModelMetadataResponse(
            name=metadata.name, versions=metadata.versions, platform=metadata.platform
        )
        for tensor in metadata.inputs:
            response.inputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        for tensor in metadata.outputs:
            response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        return response

    @grpc_errors
    async def ModelInfer(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        timer = RequestTimer()
        ref = model_ref(request.model_name, request.model_version)
        try:
            inputs = decode_inputs(request)
            timer.decoded()
            result = await self._predictor.predict(ref, inputs, [o.name for o in request.outputs])
            timer.ran(result.wait_ns)
            response = pb.ModelInferResponse(
                model_name=request.model_name, model_version=str(result.version), id=request.id
            )
            fill_outputs(response, result.outputs)
        except Exception:
            self._statistics.record_failure(ref, timer)
            raise
        self._statistics.record_success(ref.name, result.version, inputs, timer)
        return response

    @grpc_errors
    async def ModelConfig(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        config = model_config(
            self._predictor, model_ref(request.name, request.version), self._batching
        )
        return pb.ModelConfigResponse(config=config)

    @grpc_errors
    async def ModelStatistics(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return self._statistics.model_statistics(request.name, request.version)

    @grpc_errors
    async def RepositoryIndex(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        entries = self._repository.index(ready_only=request.ready)
        response = pb.RepositoryIndexResponse()
        for entry in entries:
            response.models.add(
                name=entry.name, version=entry.version, state=entry.state, reason=entry.reason
            )
        return response

    @grpc_errors
    async def RepositoryModelLoad(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        parameters = dict(request.parameters)
        await asyncio.to_thread(self._repository.load, request.model_name, parameters)
        return pb.RepositoryModelLoadResponse()

    @grpc_errors
    async def RepositoryModelUnload(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await asyncio.to_thread(self._repository.unload, request.model_name)
        return pb.RepositoryModelUnloadResponse()
