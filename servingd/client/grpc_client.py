"""GrpcClient: the Client calls over TF Serving's gRPC API (PredictionService, ModelService)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import grpc

from servingd.client.client import (
    Classification,
    Client,
    ClientError,
    Example,
    ModelMetadata,
    ModelServerConfigLike,
    Prediction,
    Regression,
    VersionStatus,
    as_client_error,
    bytes_strings,
)
from servingd.client.messages import (
    check_inputs,
    classification_arrays,
    fill_model_spec,
    input_proto,
    model_server_config,
    regression_values,
    signatures_from_proto,
    version_statuses,
)
from servingd.core.status import Code
from servingd.protos.tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)
from servingd.tensor_codec import fill_tensor_proto, to_ndarray

# TF Serving accepts messages up to 2 GiB; gRPC clients default to receiving 4 MiB.
_MAX_MESSAGE_BYTES = 2**31 - 1

R = TypeVar("R")


def _rpc(method: Callable[..., R]) -> Callable[..., R]:
    """Every failure of a call, on the wire or before it, as one ClientError."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> R:
        try:
            return method(*args, **kwargs)
        except grpc.RpcError as exc:
            code = exc.code() if callable(getattr(exc, "code", None)) else None
            details = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
            number = code.value[0] if isinstance(code, grpc.StatusCode) else Code.UNKNOWN
            raise ClientError(details or "", Code(number)) from exc
        except Exception as exc:
            raise as_client_error(exc) from exc

    return wrapper


class GrpcClient(Client):
    def __init__(self, target: str, timeout: float = 30.0, channel: grpc.Channel | None = None):
        """`target` is host:port (or any gRPC target, e.g. "unix:/path"); `timeout` bounds
        every call, in seconds."""
        self.target = target
        self.timeout = timeout
        self._channel = channel or grpc.insecure_channel(
            target,
            options=[
                ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
            ],
        )
        self._prediction = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)  # type: ignore[no-untyped-call]

    @_rpc
    def predict(
        self,
        model: str,
        inputs: Mapping[str, Any],
        version: int | None = None,
        label: str | None = None,
        signature: str | None = None,
        output_filter: Sequence[str] | None = None,
    ) -> Prediction:
        request = predict_pb2.PredictRequest()
        fill_model_spec(request.model_spec, model, version, label, signature)
        for name, array in check_inputs(inputs).items():
            # tensor_content, as tf.make_tensor_proto sends numeric arrays: no per-value work.
            fill_tensor_proto(request.inputs[name], array, as_tensor_content=True)
        request.output_filter.extend(output_filter or ())
        response = self._prediction.Predict(request, timeout=self.timeout)
        return Prediction(
            outputs={k: bytes_strings(to_ndarray(t, k)) for k, t in response.outputs.items()},
            version=response.model_spec.version.value,
            signature_name=response.model_spec.signature_name,
        )

    @_rpc
    def classify(
        self,
        model: str,
        examples: Sequence[Example],
        context: Example | None = None,
        version: int | None = None,
        label: str | None = None,
        signature: str | None = None,
    ) -> Classification:
        request = classification_pb2.ClassificationRequest()
        fill_model_spec(request.model_spec, model, version, label, signature)
        request.input.CopyFrom(input_proto(examples, context))
        response = self._prediction.Classify(request, timeout=self.timeout)
        labels, scores = classification_arrays(response.result)
        return Classification(labels, scores, response.model_spec.version.value)

    @_rpc
    def regress(
        self,
        model: str,
        examples: Sequence[Example],
        context: Example | None = None,
        version: int | None = None,
        label: str | None = None,
        signature: str | None = None,
    ) -> Regression:
        request = regression_pb2.RegressionRequest()
        fill_model_spec(request.model_spec, model, version, label, signature)
        request.input.CopyFrom(input_proto(examples, context))
        response = self._prediction.Regress(request, timeout=self.timeout)
        return Regression(regression_values(response.result), response.model_spec.version.value)

    @_rpc
    def metadata(
        self, model: str, version: int | None = None, label: str | None = None
    ) -> ModelMetadata:
        request = get_model_metadata_pb2.GetModelMetadataRequest()
        fill_model_spec(request.model_spec, model, version, label)
        request.metadata_field.append("signature_def")
        response = self._prediction.GetModelMetadata(request, timeout=self.timeout)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)
        return ModelMetadata(
            name=response.model_spec.name,
            version=response.model_spec.version.value,
            signatures=signatures_from_proto(signature_map),
        )

    @_rpc
    def status(self, model: str, version: int | None = None) -> list[VersionStatus]:
        request = get_model_status_pb2.GetModelStatusRequest()
        fill_model_spec(request.model_spec, model, version)
        return version_statuses(self._models.GetModelStatus(request, timeout=self.timeout))

    @_rpc
    def reload_config(self, config: ModelServerConfigLike) -> None:
        request = model_management_pb2.ReloadConfigRequest()
        request.config.CopyFrom(model_server_config(config))
        response = self._models.HandleReloadConfigRequest(request, timeout=self.timeout)
        if response.status.error_code != Code.OK:
            raise ClientError(response.status.error_message, Code(response.status.error_code))

    def close(self) -> None:
        self._channel.close()
