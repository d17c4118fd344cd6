"""A stand-in for grpc.aio.ServicerContext in servicer unit tests: only abort, which a unary
handler uses, recording the code and details it was given."""

from __future__ import annotations

import grpc


class Aborted(Exception):
    pass


class Context:
    def __init__(self) -> None:
        self.code: grpc.StatusCode | None = None
        self.details = ""

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.code, self.details = code, details
        raise Aborted(details)
