"""build_server(options): ServerCore plus the gRPC and REST front ends on one asyncio loop.

Start order (TF Serving's): load every configured model first, then open the ports, so a
client that can connect can be served. Shutdown order, in one place (`Server.stop`):
refuse new requests (UNAVAILABLE, ports still open) -> drain in-flight requests (bounded by
the grace period; then cancelled) -> close the ports -> stop sources -> unload every version
-> return.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc
from prometheus_client import ProcessCollector

from servingd.apis.admission import DEFAULT_MAX_INFLIGHT_REQUESTS_PER_MODEL, AdmissionControl
from servingd.apis.grpc.model_service import ModelService
from servingd.apis.grpc.prediction_service import PredictionService
from servingd.apis.grpc.request_parsing import StrictParsing
from servingd.apis.predictor import Predictor
from servingd.apis.rest.http_server import DEFAULT_MAX_BODY_BYTES, RestOptions, RestServer, Route
from servingd.apis.rest.rest_api_handler import RestApiHandler
from servingd.apis.run_placement import DEFAULT_INLINE_RUN_THRESHOLD_MICROS, RunPlacement
from servingd.apis.v2.grpc_inference_service import GrpcInferenceService
from servingd.apis.v2.repository import ModelRepository
from servingd.apis.v2.rest_v2 import RestV2Handler
from servingd.apis.v2.statistics import InferenceStatistics
from servingd.batching import BatchingOptions, BatchingSession
from servingd.config import read_model_server_config
from servingd.core.status import ServingError, Unavailable
from servingd.monitoring.metrics import ServingMetrics
from servingd.monitoring.prometheus_exporter import metrics_path, prometheus_route
from servingd.protos.inference import grpc_service_pb2, grpc_service_pb2_grpc
from servingd.protos.tensorflow_serving.apis import (
    model_service_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2,
    prediction_service_pb2_grpc,
)
from servingd.server_core import ServerCore, ServerCoreOptions
from servingd.tls import server_credentials

logger = logging.getLogger(__name__)

# TF Serving lets messages up to INT32_MAX through in both directions (server.cc).
MAX_MESSAGE_BYTES = 2**31 - 1
# At shutdown, after the drain: how long the front ends get to send answers already computed.
_SEND_SECONDS = 1.0


@dataclass(frozen=True)
class ServerOptions:
    model_config: Any  # ModelServerConfig
    core: ServerCoreOptions = field(default_factory=ServerCoreOptions)
    grpc_port: int = 8500
    grpc_socket_path: str = ""
    rest_api_port: int = 0
    # --enable_batching: None serves every request on its own.
    batching: BatchingOptions | None = None
    rest_api_num_threads: int = 0  # REST JSON conversion threads (0: as many as the CPUs)
    rest_api_timeout_in_ms: int = 30000
    rest_api_enable_cors_support: bool = False
    rest_api_max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    host: str = "0.0.0.0"
    grpc_channel_arguments: tuple[tuple[str, int | str], ...] = ()
    grpc_max_threads: int = 0
    enable_serialization_as_tensor_content: bool = False
    # Predict refuses signatures whose method is not predict, classify or regress (TF's flag).
    enable_signature_method_name_check: bool = False
    enable_grpc_healthcheck_service: bool = True
    model_config_file: str = ""
    model_config_file_poll_wait_seconds: float = 0
    num_request_threads: int = 0
    shutdown_grace_seconds: float = 10.0
    # V2 repository loads of models not in the config: <root>/<name> is the base path.
    model_repository_root: str = ""
    # servingd's --grpc_max_receive_message_bytes; --grpc_channel_arguments still override it.
    grpc_max_receive_message_bytes: int = MAX_MESSAGE_BYTES
    max_inflight_requests_per_model: int = DEFAULT_MAX_INFLIGHT_REQUESTS_PER_MODEL
    ssl_config: Any = None  # an SSLConfig (--ssl_config_file); None serves plaintext gRPC
    # A MonitoringConfig (--monitoring_config_file). Metrics are collected only when its
    # prometheus_config is enabled, and served on the REST port (as TF) when there is one.
    monitoring: Any = None
    # Runs measured cheaper than this go inline on the loop (apis/run_placement.py); 0: never.
    inline_run_threshold_micros: int = DEFAULT_INLINE_RUN_THRESHOLD_MICROS
    # --workers: SO_REUSEPORT on the gRPC and REST ports, so that sibling processes share them.
    reuse_port: bool = False


class Server:
    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        self.core: ServerCore | None = None
        prometheus = options.monitoring.prometheus_config if options.monitoring else None
        self.metrics = ServingMetrics() if prometheus is not None and prometheus.enable else None
        # A bad path fails now, not after every model has loaded.
        self._metrics_path = metrics_path(prometheus) if self.metrics is not None else ""
        if self.metrics is not None and options.rest_api_port <= 0:
            logger.warning(
                "prometheus_config is enabled but there is no --rest_api_port: metrics are "
                "collected (ReloadConfig's metric_names reads them) but not served"
            )
        self._grpc: grpc.aio.Server | None = None
        self._admission = AdmissionControl(options.max_inflight_requests_per_model)
        self._credentials: grpc.ServerCredentials | None = None
        self._executor = ThreadPoolExecutor(
            max_workers=options.num_request_threads or max(4, 2 * (os.cpu_count() or 1)),
            thread_name_prefix="servingd-run",
        )
        self._health: health.aio.HealthServicer | None = None
        self._config_poller: threading.Thread | None = None
        self._stop_polling = threading.Event()
        self.grpc_port: int = 0
        self._batching: BatchingSession | None = None
        self._rest: RestServer | None = None
        self._rest_executor: ThreadPoolExecutor | None = None
        self.rest_port: int = 0
        self._repository: ModelRepository | None = None
        self._v2_statistics: InferenceStatistics | None = None

    async def start(self) -> None:
        # A bad --ssl_config_file fails now, not after every model has loaded.
        ssl_config = self.options.ssl_config
        self._credentials = None if ssl_config is None else server_credentials(ssl_config)
        # Loading blocks (TF's ServerCore::Create waits for the models): keep it off the loop.
        self.core = await asyncio.to_thread(
            ServerCore.create, self.options.model_config, self.options.core, metrics=self.metrics
        )
        # One placement for single and batched runs: a batch of a cheap kind runs inline too.
        placement = RunPlacement(self.options.inline_run_threshold_micros)
        if self.options.batching is not None:
            self._batching = BatchingSession(self.options.batching, self.metrics, placement)
        predictor = Predictor(
            self.core,
            self._executor,
            self._batching,
            self._admission,
            placement,
            enable_signature_method_name_check=self.options.enable_signature_method_name_check,
        )
        self._repository = ModelRepository(
            self.core, self.options.model_repository_root, refuse_control=self._no_v2_control()
        )
        # One for both front ends: V2 statistics count gRPC and REST requests together.
        self._v2_statistics = InferenceStatistics(predictor, self.options.batching)
        await self._start_grpc(predictor)
        if self.options.rest_api_port > 0:
            await self._start_rest(predictor)
        if self.options.model_config_file and self.options.model_config_file_poll_wait_seconds > 0:
            self._config_poller = threading.Thread(
                target=self._poll_config_file, name="servingd-config-poll", daemon=True
            )
            self._config_poller.start()

    def _no_v2_control(self) -> str:
        """Why V2 repository load / unload cannot hold here ("" when they can)."""
        opts = self.options
        if opts.model_config_file and opts.model_config_file_poll_wait_seconds > 0:
            return "the model config file is polled, and it decides what is served"
        if opts.reuse_port:
            return "each --workers process has its own models, and a call reaches only one"
        return ""

    async def _start_grpc(self, predictor: Predictor) -> None:
        assert self.core is not None
        opts = self.options
        channel_options: list[tuple[str, Any]] = [
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", opts.grpc_max_receive_message_bytes),
            # gRPC sets SO_REUSEPORT unless told not to: a second server on a taken port would
            # then share it silently instead of failing. Only --workers siblings share.
            ("grpc.so_reuseport", int(opts.reuse_port)),
        ]
        # Applied after the size limits so they can override them, as in TF Serving.
        # gRPC keeps the first of duplicate keys: drop the defaults a flag overrides.
        overridden = {key for key, _value in opts.grpc_channel_arguments}
        channel_options = [o for o in channel_options if o[0] not in overridden]
        channel_options.extend(opts.grpc_channel_arguments)
        server = grpc.aio.server(
            options=channel_options,
            # TF's --grpc_max_threads caps the sync server's handler threads; beyond it gRPC
            # answers RESOURCE_EXHAUSTED. grpc.aio needs no thread per call, so servingd caps
            # nothing unless the flag is set, and then its concurrent-RPC cap answers the same.
            maximum_concurrent_rpcs=opts.grpc_max_threads or None,
        )
        strict = StrictParsing(server)  # each unary method parses its own request bytes
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(  # type: ignore[no-untyped-call]
            PredictionService(
                predictor,
                serialize_as_tensor_content=opts.enable_serialization_as_tensor_content,
                metrics=self.metrics,
            ),
            strict,
        )
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(  # type: ignore[no-untyped-call]
            ModelService(self.core, self.metrics.read_metric if self.metrics else None), strict
        )
        assert self._repository is not None and self._v2_statistics is not None
        grpc_service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(  # type: ignore[no-untyped-call]
            GrpcInferenceService(predictor, self._repository, self._v2_statistics, opts.batching),
            strict,
        )
        service_names = [
            prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"].full_name,
            model_service_pb2.DESCRIPTOR.services_by_name["ModelService"].full_name,
            grpc_service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name,
        ]
        if opts.enable_grpc_healthcheck_service:
            # The asyncio servicer: the sync one blocks a thread per Watch stream forever.
            self._health = health.aio.HealthServicer()
            health_pb2_grpc.add_HealthServicer_to_server(self._health, strict)
            service_names.append(health.SERVICE_NAME)
            # Ports open only after every model loaded, so everything is SERVING from here.
            for name in ("", "ModelService", "PredictionService"):
                await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        service_names.append(reflection.SERVICE_NAME)
        # What reflection.enable_server_reflection does for a grpc.aio server, through
        # StrictParsing (no registered methods; see request_parsing.py).
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
            reflection.aio.ReflectionServicer(service_names), strict
        )
        credentials = self._credentials

        def add_port(address: str) -> int:
            try:
                if credentials is None:
                    return int(server.add_insecure_port(address))
                return int(server.add_secure_port(address, credentials))
            except RuntimeError as exc:  # grpc's "Failed to bind": usually a port in use
                raise Unavailable(f"Failed to start gRPC server at {address}: {exc}") from exc

        if credentials is not None:
            verify = opts.ssl_config.client_verify
            logger.info("gRPC uses TLS%s", " and requires client certificates" if verify else "")
        if opts.grpc_port >= 0 and not (opts.grpc_port == 0 and opts.grpc_socket_path):
            address = f"{opts.host}:{opts.grpc_port}"
            self.grpc_port = add_port(address)
            logger.info("Running gRPC ModelServer at %s:%d ...", opts.host, self.grpc_port)
        if opts.grpc_socket_path:
            add_port(f"unix:{opts.grpc_socket_path}")
            logger.info("Running gRPC ModelServer at UNIX socket %s ...", opts.grpc_socket_path)
        await server.start()
        self._grpc = server

    async def _start_rest(self, predictor: Predictor) -> None:
        opts = self.options
        assert self._repository is not None and self._v2_statistics is not None
        # Large JSON bodies are converted on these threads, off the event loop.
        self._rest_executor = ThreadPoolExecutor(
            max_workers=opts.rest_api_num_threads or (os.cpu_count() or 1),
            thread_name_prefix="servingd-rest",
        )
        self._rest = RestServer(
            RestApiHandler(predictor, self._rest_executor, self.metrics),
            RestOptions(
                host=opts.host,
                port=opts.rest_api_port,
                timeout_in_ms=opts.rest_api_timeout_in_ms,
                enable_cors_support=opts.rest_api_enable_cors_support,
                max_body_bytes=opts.rest_api_max_body_bytes,
                # Server.stop drains requests before it stops REST (see there).
                shutdown_grace_seconds=_SEND_SECONDS,
                reuse_port=opts.reuse_port,
            ),
            mounts=(
                RestV2Handler(
                    predictor,
                    self._repository,
                    self._v2_statistics,
                    self._rest_executor,
                    opts.batching,
                ),
            ),
            extra_routes=self._metrics_routes(),
        )
        self.rest_port = await self._rest.start()

    def _metrics_routes(self) -> tuple[Route, ...]:
        """TF's PrometheusExporter route (with the process's CPU and memory beside it)."""
        if self.metrics is None:
            return ()
        collectors = (self.metrics.registry, ProcessCollector(registry=None))
        logger.info("Exporting Prometheus metrics at %s", self._metrics_path)
        return (prometheus_route(collectors, self._metrics_path),)

    def _poll_config_file(self) -> None:
        """TF's PollFilesystemAndReloadConfig: re-reads the file every period and applies it
        when it differs from the config in force. A file that cannot be read, parsed or
        applied is logged once per distinct error and retried each period (a label may
        become assignable once its version has loaded); the config in force keeps serving."""
        assert self.core is not None
        path = self.options.model_config_file
        last_error = ""
        while not self._stop_polling.wait(self.options.model_config_file_poll_wait_seconds):
            try:
                config = read_model_server_config(path)
                if config != self.core.config:
                    self.core.reload_config(config)
                    logger.info("Applied the model config in %s", path)
                last_error = ""
            except Exception as exc:
                error = exc.message if isinstance(exc, ServingError) else repr(exc)
                if error != last_error and not self._stop_polling.is_set():
                    logger.error(
                        "Not applying %s; the previous config keeps serving: %s",
                        path,
                        error,
                        exc_info=not isinstance(exc, ServingError),
                    )
                last_error = error

    async def wait_for_termination(self) -> None:
        if self._grpc is not None:
            await self._grpc.wait_for_termination()

    async def stop(self, grace_seconds: float | None = None) -> None:
        grace = self.options.shutdown_grace_seconds if grace_seconds is None else grace_seconds
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        self._stop_polling.set()
        # New requests are refused with UNAVAILABLE (which clients retry elsewhere) while the
        # ports stay open: gRPC answers a call that races its port's closing with CANCELLED.
        self._admission.close("The server is shutting down")
        logger.info(
            "Shutting down: refusing new requests; %d in flight get up to %.1f s to finish",
            self._admission.in_flight(),
            grace,
        )
        if await asyncio.to_thread(self._admission.wait_until_idle, grace):
            logger.info("Every in-flight request finished")
        else:
            logger.warning(
                "Grace period of %.1f s over: cancelling %d request(s) still running",
                grace,
                self._admission.in_flight(),
            )
        stopping = []
        if self._rest is not None:
            stopping.append(self._rest.stop())
        if self._grpc is not None:
            # Answers already computed go out; anything still running is cancelled.
            stopping.append(self._grpc.stop(_SEND_SECONDS))
        await asyncio.gather(*stopping)
        logger.info("Closed the gRPC and REST ports")
        if self._batching is not None:
            # After the front ends drained (their requests needed the batch threads), before
            # the unload: whatever is still queued runs now instead of waiting for a timeout.
            await asyncio.to_thread(self._batching.stop)
        if self.core is not None:
            logger.info("Stopping the model sources and unloading every servable version")
            await asyncio.to_thread(self.core.stop)
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._rest_executor is not None:
            self._rest_executor.shutdown(wait=False, cancel_futures=True)
        logger.info("Server stopped")


def build_server(options: ServerOptions) -> Server:
    return Server(options)
