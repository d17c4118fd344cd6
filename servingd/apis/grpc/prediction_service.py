"""tensorflow.serving.PredictionService: protos in, Predictor calls, protos out."""

from __future__ import annotations

from typing import Any

import grpc

from servingd.apis.errors import as_serving_error, grpc_status
from servingd.apis.grpc.errors import grpc_errors
from servingd.apis.grpc.model_spec import fill_model_spec, model_ref
from servingd.apis.grpc.request_parsing import takes_bytes, unparseable
from servingd.apis.metadata import SIGNATURE_DEF_FIELD, check_metadata_fields, signature_def_map
from servingd.apis.predictor import Predictor
from servingd.monitoring.metrics import ServingMetrics
from servingd.monitoring.request_metrics import metered
from servingd.protos.tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)
from servingd.tensor_codec import fill_tensor_proto, to_ndarray

_PARSE = predict_pb2.PredictRequest.FromString
_UNPARSEABLE = unparseable(_PARSE)


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(
        self,
        predictor: Predictor,
        *,
        serialize_as_tensor_content: bool = False,
        metrics: ServingMetrics | None = None,
    ) -> None:
        self._predictor = predictor
        self._tensor_content = serialize_as_tensor_content
        self.metrics = metrics  # TF's request_count / request_latency, when monitoring is on
        self._plans = predictor.plans(metrics, serialize_as_tensor_content)

    @takes_bytes
    async def Predict(self, request_bytes: bytes, context: grpc.aio.ServicerContext) -> bytes:
        """A form of request answered before goes by its plan (predict_plan.py); anything
        else takes the general path. Bytes in and out: this is the hot path."""
        try:
            request = _PARSE(request_bytes)
        except Exception:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, _UNPARSEABLE)
        try:
            planned = self._plans.answer(request)
            answer = planned if planned is None or isinstance(planned, bytes) else await planned
        except Exception as exc:  # a failed run (counted by the plan), a full queue, or a bug
            code, message = grpc_status(as_serving_error(exc))
            await context.abort(code, message)
        if answer is not None:
            return answer
        response = await self._predict(request, context)
        return bytes(response.SerializeToString())

    @grpc_errors
    @metered("Predict")
    async def _predict(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        ref = model_ref(request)
        inputs = {alias: to_ndarray(tensor, alias) for alias, tensor in request.inputs.items()}
        result = await self._predictor.predict(ref, inputs, request.output_filter)
        response = predict_pb2.PredictResponse()
        fill_model_spec(response.model_spec, ref.name, result.version, result.signature_name)
        for alias, array in result.outputs.items():
            fill_tensor_proto(response.outputs[alias], array, self._tensor_content)
        self._plans.learn(request, result.version, result.signature_name)
        return response

    @grpc_errors
    @metered("Classify")
    async def Classify(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        ref = model_ref(request)
        version, signature_name, result = await self._predictor.classify(ref, request.input)
        response = classification_pb2.ClassificationResponse(result=result)
        fill_model_spec(response.model_spec, ref.name, version, signature_name)
        return response

    @grpc_errors
    @metered("Regress")
    async def Regress(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        ref = model_ref(request)
        version, signature_name, result = await self._predictor.regress(ref, request.input)
        response = regression_pb2.RegressionResponse(result=result)
        fill_model_spec(response.model_spec, ref.name, version, signature_name)
        return response

    @grpc_errors
    async def MultiInference(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return await self._predictor.multi_inference(request)

    @grpc_errors
    async def GetModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        ref = model_ref(request)
        check_metadata_fields(list(request.metadata_field))
        version, signatures = self._predictor.signatures(ref)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        fill_model_spec(response.model_spec, ref.name, version, None)
        response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_def_map(signatures))
        return response
