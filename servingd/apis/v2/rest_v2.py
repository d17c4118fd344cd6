"""The V2 REST API (KServe V2 / Triton HTTP) under /v2, mounted on servingd's REST server
beside TF Serving's /v1 (same port, body limit, timeout, CORS and `{"error": ...}` bodies):

  GET  /v2                                         server metadata
  GET  /v2/health/live, /v2/health/ready           200, or an error (400: not ready)
  GET  /v2/models/{m}[/versions/{v}]               model metadata
  GET  /v2/models/{m}[/versions/{v}]/ready         200, or why not (404: not loaded)
  GET  /v2/models/{m}[/versions/{v}]/config        Triton's model configuration (model_config.py)
  GET  /v2/models[/{m}[/versions/{v}]]/stats       Triton's statistics (statistics.py)
  POST /v2/models/{m}[/versions/{v}]/infer         inference (json_infer.py)
  POST /v2/repository/index                        the model repository's index
  POST /v2/repository/models/{m}/load | /unload    repository.py

Model names and versions are percent-decoded. Error statuses come from apis/errors.py.
Configuration and statistics are their protos in protobuf's JSON mapping with the proto's field
names, except that 64-bit integers are JSON numbers, as Triton writes them.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor
from dataclasses import asdict
from typing import Any, TypeVar
from urllib.parse import unquote

import orjson
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor

from servingd.apis.predictor import Predictor
from servingd.apis.rest.http_server import RestReply
from servingd.apis.rest.rest_api_handler import OFFLOAD_BODY_BYTES, OFFLOAD_OUTPUT_ELEMENTS
from servingd.apis.v2 import inference
from servingd.apis.v2.json_infer import HEADER_LENGTH, infer_response, parse_infer_request
from servingd.apis.v2.model_config import model_config
from servingd.apis.v2.repository import ModelRepository
from servingd.apis.v2.statistics import InferenceStatistics, RequestTimer
from servingd.batching import BatchingOptions
from servingd.core.status import FailedPrecondition, InvalidArgument, NotFound

T = TypeVar("T")
Handler = Callable[[tuple[str, ...], Mapping[str, str], bytes], Awaitable[RestReply]]

V2_PATH = re.compile(r"/v2(?:/.*)?", re.DOTALL)
_MODEL = r"/v2/models/([^/]+)(?:/versions/([^/]+))?"
BINARY_CONTENT_TYPE = "application/octet-stream"
_INT64_TYPES = frozenset((FieldDescriptor.CPPTYPE_INT64, FieldDescriptor.CPPTYPE_UINT64))


def _json(document: Any) -> RestReply:
    return RestReply(orjson.dumps(document))


class RestV2Handler:
    """A RestMount (http_server.py): answers the /v2 paths."""

    path_regex = V2_PATH

    def __init__(
        self,
        predictor: Predictor,
        repository: ModelRepository,
        statistics: InferenceStatistics,
        executor: Executor | None = None,
        batching: BatchingOptions | None = None,
    ) -> None:
        self._predictor = predictor
        self._repository = repository
        self._statistics = statistics
        self._executor = executor
        self._batching = batching  # --enable_batching's parameters, for the config
        self._routes: tuple[tuple[str, re.Pattern[str], Handler], ...] = (
            ("GET", re.compile(r"/v2/?"), self._server_metadata),
            ("GET", re.compile(r"/v2/health/live"), self._live),
            ("GET", re.compile(r"/v2/health/ready"), self._ready),
            ("GET", re.compile(_MODEL + r"/ready"), self._model_ready),
            ("GET", re.compile(_MODEL + r"/config"), self._model_config),
            # Before the metadata route, which would take "stats" for a model name (Triton
            # reads /v2/models/stats this way too).
            ("GET", re.compile(r"/v2/models/stats"), self._model_statistics),
            ("GET", re.compile(_MODEL + r"/stats"), self._model_statistics),
            ("GET", re.compile(_MODEL), self._model_metadata),
            ("POST", re.compile(_MODEL + r"/infer"), self._infer),
            ("POST", re.compile(r"/v2/repository/index"), self._repository_index),
            ("POST", re.compile(r"/v2/repository/models/([^/]+)/load"), self._load),
            ("POST", re.compile(r"/v2/repository/models/([^/]+)/unload"), self._unload),
        )

    async def process(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> RestReply:
        for route_method, regex, handler in self._routes:
            match = regex.fullmatch(path)
            if match is not None and route_method == method:
                args = tuple(unquote(group) if group else "" for group in match.groups())
                return await handler(args, headers, body)
        raise NotFound(f"No V2 endpoint for {method} {path}")

    async def _server_metadata(
        self, args: tuple[str, ...], headers: Mapping[str, str], body: bytes
    ) -> RestReply:
        metadata = inference.ServerMetadata()
        return _json({**asdict(metadata), "extensions": list(metadata.extensions)})

    async def _live(
        self, args: tuple[str, ...], headers: Mapping[str, str], body: bytes
    ) -> RestReply:
        return RestReply(b"")

    async def _ready(
        self, args: tuple[str, ...], headers: Mapping[str, str], body: bytes
    ) -> RestReply:
        missing = inference.not_ready_models(self._predictor.core)
        if missing:
            raise FailedPrecondition(f"Not ready: no version available of {', '.join(missing)}")
        return RestReply(b"")

    async def _model_ready(
        self, args: tuple[str, ...], headers: Mapping[str, str], body: bytes
    ) -> RestReply:
        inference.check_model_ready(self._predictor, inference.model_ref(*args))
        return RestReply(b"")

    async def _model_metadata(
        self, args: tuple[str, ...], headers: Mapping[str, str], body: bytes
    ) -> RestReply:
        metadata = inference.model_metadata(self._predictor, inference.model_ref(*args))
        return _json(asdict(metadata))

    async def _model_config(
        self, args: tuple[str, ...], headers: Mapping[str, str], body: bytes
    ) -> RestReply:
        config = model_config(self._predictor, inference.model_ref(*args), self._batching)
        return _json(proto_json(config))

    async def _model_statistics(
        self, args: tuple[str, ...], headers: Mapping[str, str], body: bytes
    ) -> RestReply:
        name, version = args or ("", "")
        return _json(proto_json(self._statistics.model_statistics(name, version)))

    async def _infer(
        self, args: tuple[str, ...], headers: Mapping[str, str], body: bytes
    ) -> RestReply:
        timer = RequestTimer()
        name, _version = args
        header_length = headers.get(HEADER_LENGTH)
        ref = inference.model_ref(*args)
        try:
            request = await self._convert(
                lambda: parse_infer_request(body, header_length), len(body), OFFLOAD_BODY_BYTES
            )
            timer.decoded()
            result = await self._predictor.predict(ref, request.inputs, request.outputs)
            timer.ran(result.wait_ns)
            size = sum(array.size for array in result.outputs.values())
            payload, json_length = await self._convert(
                lambda: infer_response(name, result.version, request, result.outputs),
                size,
                OFFLOAD_OUTPUT_ELEMENTS,
            )
        except Exception:
            self._statistics.record_failure(ref, timer)
            raise
        self._statistics.record_success(name, result.version, request.inputs, timer)
        if json_length is None:
            return RestReply(payload)
        return RestReply(
            payload, content_type=BINARY_CONTENT_TYPE, headers={HEADER_LENGTH: str(json_length)}
        )

    async def _repository_index(
        self, args: tuple[str, ...], headers: Mapping[str, str], body: bytes
    ) -> RestReply:
        ready = _body_object(body).get("ready", False)
        if not isinstance(ready, bool):
            raise InvalidArgument("'ready' must be true or false")
        entries = [
            {key: value for key, value in asdict(entry).items() if value or key == "name"}
            for entry in self._repository.index(ready_only=ready)
        ]
        return _json(entries)

    async def _load(
        self, args: tuple[str, ...], headers: Mapping[str, str], body: bytes
    ) -> RestReply:
        parameters = _parameters(_body_object(body))
        await asyncio.to_thread(self._repository.load, args[0], parameters)
        return RestReply(b"")

    async def _unload(
        self, args: tuple[str, ...], headers: Mapping[str, str], body: bytes
    ) -> RestReply:
        _parameters(_body_object(body))  # unload_dependents: servingd has no ensembles
        await asyncio.to_thread(self._repository.unload, args[0])
        return RestReply(b"")

    async def _convert(self, work: Callable[[], T], size: int, threshold: int) -> T:
        """Large bodies are converted on the REST threads, off the event loop."""
        if size < threshold or self._executor is None:
            return work()
        return await asyncio.get_running_loop().run_in_executor(self._executor, work)


def proto_json(message: Any) -> dict[str, Any]:
    """protobuf's JSON mapping (proto field names, defaults included, fields in the proto's
    order), with 64-bit integers as JSON numbers rather than strings."""
    document = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return _json_fields(message.DESCRIPTOR, document)


def _json_fields(descriptor: Any, document: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in descriptor.fields:
        value = document.get(field.name)
        if value is None:
            continue
        if field.cpp_type in _INT64_TYPES:
            value = [int(v) for v in value] if field.is_repeated else int(value)
        elif field.message_type is not None and not field.message_type.GetOptions().map_entry:
            if field.is_repeated:
                value = [_json_fields(field.message_type, item) for item in value]
            else:
                value = _json_fields(field.message_type, value)
        out[field.name] = value
    return out


def _body_object(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidArgument(f"Failed to parse the request JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidArgument("The request body must be a JSON object")
    return document


def _parameters(document: Mapping[str, Any]) -> dict[str, Any]:
    parameters = document.get("parameters", {})
    if not isinstance(parameters, dict):
        raise InvalidArgument("'parameters' must be a JSON object")
    return parameters
