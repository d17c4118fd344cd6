"""Requests that do not parse as their message type: INVALID_ARGUMENT, not UNKNOWN.

grpc.aio answers a request its deserializer rejects with UNKNOWN and the text of Python's
exception ("Unexpected <class 'google.protobuf.message.DecodeError'>: ..."); TF Serving's C++
gRPC answers INTERNAL. Either code tells a client the server failed, when its own message was
at fault. So every unary handler servingd registers gets the raw bytes and parses them
itself, and a message that does not parse gets INVALID_ARGUMENT naming the expected type.

`StrictParsing` stands in for the server in the generated `add_*Servicer_to_server`
functions: the handlers they give by name are wrapped once, at start-up (an interceptor would
run on every call), and answered from one dict by StrictParsing itself, the server's first
generic handler. A servicer method may also take the request's bytes and return the
response's (`takes_bytes`), as Predict does.

Methods are never registered with the server by name (`add_registered_method_handlers`):
grpc.aio (grpcio 1.85) pays for each registered method on every call, of any method, ~27k
instructions per registered method per call (measured with `perf stat` on a bare grpc.aio
server: 397k instructions per call with one method, 1.22M with 150 registered, 395k with the
same 150 as generic handlers). servingd's ~25 methods would more than double what grpc.aio
costs per Predict.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import grpc

R = TypeVar("R")


def _message_type(parse: Callable[[bytes], Any]) -> str:
    owner = getattr(parse, "__self__", None)  # FromString is bound to the message class
    descriptor = getattr(owner, "DESCRIPTOR", None)
    return str(getattr(descriptor, "full_name", "the method's request type"))


def unparseable(parse: Callable[[bytes], Any]) -> str:
    """The INVALID_ARGUMENT message for bytes that `parse` (a FromString) rejects."""
    return f"The request does not parse as a {_message_type(parse)} message"


def takes_bytes(method: R) -> R:
    """Marks a unary servicer method that parses its own request bytes (with `unparseable`
    for the error) and returns the serialized response: registered with no (de)serializer,
    it saves the wrapper's coroutine and a serializer call on every request."""
    method.takes_bytes = True  # type: ignore[attr-defined]
    return method


def _strict(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    parse = handler.request_deserializer
    behavior = handler.unary_unary
    serialize = handler.response_serializer
    message = unparseable(parse)
    if getattr(behavior, "takes_bytes", False):
        return grpc.unary_unary_rpc_method_handler(behavior)

    async def parse_then_handle(request_bytes: bytes, context: grpc.aio.ServicerContext) -> Any:
        try:
            request = parse(request_bytes)
        except Exception:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, message)
        return await behavior(request, context)

    def serialize_unless_bytes(response: Any) -> bytes:
        return response if type(response) is bytes else serialize(response)

    return grpc.unary_unary_rpc_method_handler(
        parse_then_handle,
        request_deserializer=None,
        response_serializer=serialize_unless_bytes,
    )


def _wrapped(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    if (
        handler.unary_unary is not None
        and handler.request_deserializer is not None
        and inspect.iscoroutinefunction(handler.unary_unary)
    ):
        return _strict(handler)
    return handler


class StrictParsing(grpc.GenericRpcHandler):  # type: ignore[misc]
    """The `server` argument of a generated `add_*Servicer_to_server(servicer, server)`; on
    the real server it is the first generic handler, so it answers for every method it was
    given by name. A service that only adds generic handlers still works, unwrapped."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server
        self._methods: dict[str, grpc.RpcMethodHandler] = {}  # by "/package.Service/Method"
        server.add_generic_rpc_handlers((self,))

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        return self._methods.get(handler_call_details.method)

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        # Consulted after this one: they answer only for methods it was not given by name.
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(
        self, service: str, handlers: Mapping[str, grpc.RpcMethodHandler]
    ) -> None:
        for name, handler in handlers.items():
            self._methods[f"/{service}/{name}"] = _wrapped(handler)
