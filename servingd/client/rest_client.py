"""RestClient: the Client calls over TF Serving's REST API (`/v1/models/...`), stdlib only.

What the REST API cannot say, and how this client keeps the Client contract anyway:
- JSON carries no dtypes. The client reads the signature (`.../metadata`) and checks each
  input against it with the servable's own check, so a float64 array is refused as a gRPC
  call would be (REST alone would convert it); outputs are typed by the signature.
- A predict/classify/regress answer does not name the version that ran. Unless the call
  names a version, the reported version is the one `.../metadata` resolved just before the
  call; a version swap between the two requests can make it stale.
- `output_filter` does not exist in REST: the outputs are filtered here, with TF's checks.
- Errors carry an HTTP status; the canonical code is read from the body's `code` when the
  server sends one, else mapped back from the status (400 stands for INVALID_ARGUMENT,
  FAILED_PRECONDITION and OUT_OF_RANGE alike: INVALID_ARGUMENT is reported).
- There is no REST call to reload the config: `reload_config` raises UNIMPLEMENTED.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import numpy as np
from google.protobuf import json_format

from servingd.apis.errors import HTTP_STATUS
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
)
from servingd.client.messages import check_inputs, signatures_from_proto, version_statuses
from servingd.core.status import Code, InvalidArgument
from servingd.protos.tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2
from servingd.servables.onnx import Signature, TensorSpec

# The servable's own checks, so a REST call fails as a gRPC call would, word for word.
from servingd.servables.onnx.onnx_servable import checked_input as check_input
from servingd.servables.onnx.onnx_servable import output_aliases
from servingd.servables.onnx.signature import DEFAULT_SERVING_SIGNATURE

# HTTP status -> the code it most often stands for (errors.py maps the other way).
_CODE_OF_HTTP = {status: code for code, status in reversed(list(HTTP_STATUS.items()))}
_CODE_OF_HTTP[400] = Code.INVALID_ARGUMENT
_CODE_OF_HTTP[500] = Code.INTERNAL


class RestClient(Client):
    def __init__(self, url: str, timeout: float = 30.0) -> None:
        """`url` is the server's REST root, e.g. http://localhost:8501."""
        self.url = url.rstrip("/")
        self.timeout = timeout

    def predict(
        self,
        model: str,
        inputs: Mapping[str, Any],
        version: int | None = None,
        label: str | None = None,
        signature: str | None = None,
        output_filter: Sequence[str] | None = None,
    ) -> Prediction:
        try:
            served, sig = self._signature(model, version, label, signature)
            arrays = check_inputs(inputs)
            for alias, array in arrays.items():
                spec = sig.inputs.get(alias)
                if spec is not None:
                    strings = array.dtype.kind in ("U", "S")
                    check_input(alias, array.astype(object) if strings else array, spec)
            wanted = output_aliases(output_filter or (), sig)
            body: dict[str, Any] = {"inputs": {k: _json_tensor(v) for k, v in arrays.items()}}
            if signature is not None:
                body["signature_name"] = signature
        except Exception as exc:
            raise as_client_error(exc) from exc
        doc = self._request("POST", self._model_path(model, version, label) + ":predict", body)
        outputs = doc.get("outputs")
        if len(sig.outputs) == 1:  # TF sends a single output without its name
            outputs = {next(iter(sig.outputs)): outputs}
        if not isinstance(outputs, dict):
            raise ClientError(f"Unexpected predict response: {str(doc)[:200]}", Code.INTERNAL)
        return Prediction(
            outputs={a: _array(outputs[a], sig.outputs[a], a) for a in wanted},
            version=served,
            signature_name=signature or DEFAULT_SERVING_SIGNATURE,
        )

    def classify(
        self,
        model: str,
        examples: Sequence[Example],
        context: Example | None = None,
        version: int | None = None,
        label: str | None = None,
        signature: str | None = None,
    ) -> Classification:
        served = self._served_version(model, version, label)
        doc = self._inference(model, "classify", examples, context, version, label, signature)
        results = doc.get("results", [])
        labels = [[str(pair[0]) for pair in row] for row in results]
        scores = [[float(pair[1]) for pair in row] for row in results]
        width = len(results[0]) if results else 0
        return Classification(
            np.array(labels, dtype=str).reshape(len(results), width),
            np.array(scores, dtype=np.float32).reshape(len(results), width),
            served,
        )

    def regress(
        self,
        model: str,
        examples: Sequence[Example],
        context: Example | None = None,
        version: int | None = None,
        label: str | None = None,
        signature: str | None = None,
    ) -> Regression:
        served = self._served_version(model, version, label)
        doc = self._inference(model, "regress", examples, context, version, label, signature)
        return Regression(np.array(doc.get("results", []), dtype=np.float32), served)

    def metadata(
        self, model: str, version: int | None = None, label: str | None = None
    ) -> ModelMetadata:
        doc = self._request("GET", self._model_path(model, version, label) + "/metadata")
        try:
            signature_map = json_format.ParseDict(
                doc["metadata"]["signature_def"],
                get_model_metadata_pb2.SignatureDefMap(),
                ignore_unknown_fields=True,
            )
            return ModelMetadata(
                name=doc["model_spec"]["name"],
                version=int(doc["model_spec"]["version"]),
                signatures=signatures_from_proto(signature_map),
            )
        except (KeyError, TypeError, ValueError, json_format.ParseError) as exc:
            raise ClientError(f"Unexpected metadata response: {exc}", Code.INTERNAL) from exc

    def status(self, model: str, version: int | None = None) -> list[VersionStatus]:
        doc = self._request("GET", self._model_path(model, version, None))
        try:
            response = json_format.ParseDict(
                doc, get_model_status_pb2.GetModelStatusResponse(), ignore_unknown_fields=True
            )
        except json_format.ParseError as exc:
            raise ClientError(f"Unexpected status response: {exc}", Code.INTERNAL) from exc
        return version_statuses(response)

    def reload_config(self, config: ModelServerConfigLike) -> None:
        raise ClientError(
            "TF Serving's REST API has no config reload; use GrpcClient (ModelService)",
            Code.UNIMPLEMENTED,
        )

    def close(self) -> None:
        pass  # one connection per request: nothing to release

    # ----- plumbing -----------------------------------------------------------------------

    def _model_path(self, model: str, version: int | None, label: str | None) -> str:
        path = f"/v1/models/{quote(model, safe='')}"
        if version is not None:
            return f"{path}/versions/{version}"
        if label is not None:
            return f"{path}/labels/{quote(label, safe='')}"
        return path

    def _signature(
        self, model: str, version: int | None, label: str | None, name: str | None
    ) -> tuple[int, Signature]:
        metadata = self.metadata(model, version, label)
        key = name or DEFAULT_SERVING_SIGNATURE
        if key not in metadata.signatures:
            # The server's words for it (predict's signature lookup).
            raise InvalidArgument(f'Serving signature name: "{key}" not found in signature def')
        return metadata.version, metadata.signatures[key]

    def _served_version(self, model: str, version: int | None, label: str | None) -> int:
        return version if version is not None else self.metadata(model, None, label).version

    def _inference(
        self,
        model: str,
        method: str,
        examples: Sequence[Example],
        context: Example | None,
        version: int | None,
        label: str | None,
        signature: str | None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"examples": [_json_example(e) for e in examples]}
        if context is not None:
            body["context"] = _json_example(context)
        if signature is not None:
            body["signature_name"] = signature
        return self._request("POST", f"{self._model_path(model, version, label)}:{method}", body)

    def _request(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            raise _http_error(exc) from exc
        except TimeoutError as exc:
            raise ClientError(f"{method} {path} timed out", Code.DEADLINE_EXCEEDED) from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ClientError(f"{method} {self.url}{path}: {reason}", Code.UNAVAILABLE) from exc
        try:
            doc = json.loads(payload)  # not orjson: TF writes NaN and Infinity bare
        except ValueError as exc:
            raise ClientError(f"Response is not JSON: {payload[:200]!r}", Code.INTERNAL) from exc
        if not isinstance(doc, dict):
            raise ClientError(f"Response is not a JSON object: {payload[:200]!r}", Code.INTERNAL)
        return doc


def _http_error(exc: urllib.error.HTTPError) -> ClientError:
    payload = exc.read()
    message = payload.decode("utf-8", "replace")
    code = _CODE_OF_HTTP.get(exc.code, Code.UNKNOWN)
    try:
        doc = json.loads(payload)
        message = str(doc["error"])
        code = Code[doc["code"]] if isinstance(doc.get("code"), str) else code
    except (ValueError, KeyError, TypeError):
        pass
    return ClientError(message, code)


def _json_tensor(array: np.ndarray) -> Any:
    if array.dtype.kind in ("S", "O"):
        return _json_strings(array.tolist())
    return array.tolist()


def _json_strings(value: Any) -> Any:
    if isinstance(value, list):
        return [_json_strings(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return {"b64": base64.b64encode(value).decode("ascii")}
    return str(value)


def _json_example(features: Example) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in features.items():
        array = np.asarray(value)
        if array.dtype.kind in ("S", "O", "U"):
            values = _json_strings(array.ravel().tolist())
        elif array.dtype.kind == "f":
            values = [float(v) for v in array.ravel().tolist()]
        else:
            values = [int(v) for v in array.ravel().tolist()]
        result[name] = values[0] if array.ndim == 0 else values
    return result


def _array(value: Any, spec: TensorSpec, alias: str) -> np.ndarray:
    if spec.dtype == np.dtype(object):
        return np.array(_bytes(value), dtype=object)
    try:
        return np.array(value, dtype=spec.dtype)
    except (TypeError, ValueError) as exc:
        message = f"output {alias!r} is not a {spec.dtype} tensor: {exc}"
        raise ClientError(message, Code.INTERNAL) from exc


def _bytes(value: Any) -> Any:
    if isinstance(value, list):
        return [_bytes(v) for v in value]
    if isinstance(value, dict) and "b64" in value:
        return base64.b64decode(value["b64"])
    return str(value).encode("utf-8")
