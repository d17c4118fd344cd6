"""The protocol floor: a bare grpc.aio server (and aiohttp server) answering canned bytes.

    python -m bench.protocol_floor --grpc_port P --grpc_response F [--rest_port Q --rest_response G]

It does what servingd's front end must do at the least, on the same loop machinery, and
nothing more: it does not even parse the request. Its `Predict` returns the serialized
PredictResponse that servingd sends for the same model and input, so both put the same bytes
on the wire; its REST route answers any POST with the JSON servingd would send. Whatever
servingd adds on top of this floor is decoding, lookup, validation, the run and encoding.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
from aiohttp import web

SERVICE = "tensorflow.serving.PredictionService"


Predict = Callable[[bytes, grpc.aio.ServicerContext], Awaitable[bytes]]


async def start_grpc(port: int, predict: Predict) -> grpc.aio.Server:
    """A started grpc.aio server on 127.0.0.1:`port` whose only method is `Predict`. No
    (de)serializers: the handler takes and returns the message bytes as they are."""
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        SERVICE, {"Predict": grpc.unary_unary_rpc_method_handler(predict)}
    )
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server


async def until_signalled() -> None:
    """Returns on SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


async def serve(args: argparse.Namespace) -> None:
    grpc_response = Path(args.grpc_response).read_bytes()

    async def predict(_request: bytes, _context: grpc.aio.ServicerContext) -> bytes:
        return grpc_response

    server = await start_grpc(args.grpc_port, predict)

    runner = None
    if args.rest_port:
        rest_response = Path(args.rest_response).read_bytes()

        async def rest_predict(request: web.Request) -> web.Response:
            await request.read()
            return web.Response(body=rest_response, content_type="application/json")

        app = web.Application()
        app.router.add_post("/{tail:.*}", rest_predict)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", args.rest_port).start()

    await until_signalled()
    if runner is not None:
        await runner.cleanup()
    await server.stop(1)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.protocol_floor")
    parser.add_argument("--grpc_port", type=int, required=True)
    parser.add_argument("--grpc_response", required=True)
    parser.add_argument("--rest_port", type=int, default=0)
    parser.add_argument("--rest_response", default="")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
