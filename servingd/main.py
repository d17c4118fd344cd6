"""`servingd`: TF Serving's command line (same flag names and defaults) -> ServerOptions."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence

from servingd import __version__
from servingd.apis.admission import DEFAULT_MAX_INFLIGHT_REQUESTS_PER_MODEL
from servingd.apis.rest.http_server import DEFAULT_MAX_BODY_BYTES
from servingd.apis.run_placement import DEFAULT_INLINE_RUN_THRESHOLD_MICROS
from servingd.batching import BatchingOptions, default_batching_options, read_batching_parameters
from servingd.config import (
    read_model_server_config,
    read_monitoring_config,
    read_ssl_config,
    single_model_config,
)
from servingd.core.status import InvalidArgument, ServingError
from servingd.monitoring.logging_setup import LOG_FORMATS, LOG_LEVELS, configure_logging
from servingd.servables.onnx import SessionConfig
from servingd.servables.warmup import WarmupOptions
from servingd.server import MAX_MESSAGE_BYTES, Server, ServerOptions, build_server
from servingd.server_core import ServerCoreOptions
from servingd.workers import check_worker_flags, exec_supervisor

logger = logging.getLogger("servingd")

# TF Serving flags that have no meaning for ONNX models; accepted so existing command lines
# (Docker entrypoints, Kubernetes manifests) keep working, and reported once when set.
_IGNORED_FLAGS = (
    "tensorflow_session_config_file",
    "platform_config_file",
    "per_process_gpu_memory_fraction",
    "saved_model_tags",
    "remove_unused_fields_from_bundle_metagraph",
    "prefer_tflite_model",
    "num_tflite_pools",
    "num_tflite_interpreters_per_pool",
    "xla_cpu_compilation_enabled",
    "xla_gpu_compilation_enabled",
    "enable_profiler",
    "thread_pool_factory_config_file",
    "mixed_precision",
    "skip_initialize_tpu",
    "flush_filesystem_caches",
    "use_alts_credentials",
)


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1", "yes", "t", "y"):
        return True
    if lowered in ("false", "0", "no", "f", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _log_level(text: str) -> str:
    """--log_level in any case; anything else is a usage error, worded as argparse's choices."""
    if text.upper() not in LOG_LEVELS:
        choices = ", ".join(repr(level) for level in LOG_LEVELS)
        raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from {choices})")
    return text.upper()


def build_parser() -> argparse.ArgumentParser:
    cpus = os.cpu_count() or 1
    p = argparse.ArgumentParser(
        prog="servingd",
        description="TensorFlow Serving compatible model server for ONNX models.",
        allow_abbrev=False,
    )

    def flag(name: str, kind: type, default: object, help_text: str) -> None:
        if kind is bool:
            # gflags style: `--flag`, `--flag=true`, `--flag=false`.
            p.add_argument(
                f"--{name}", type=_bool, nargs="?", const=True, default=default, help=help_text
            )
        else:
            p.add_argument(f"--{name}", type=kind, default=default, help=help_text)

    flag("port", int, 8500, "gRPC port; 0 disables TCP gRPC")
    flag("grpc_socket_path", str, "", "also serve gRPC on this UNIX socket")
    flag("rest_api_port", int, 0, "HTTP/REST port; 0 disables REST")
    flag("rest_api_num_threads", int, 4 * cpus, "HTTP worker threads")
    flag("rest_api_timeout_in_ms", int, 30000, "per-REST-call timeout")
    flag("rest_api_enable_cors_support", bool, False, "add CORS headers to REST responses")
    flag("enable_batching", bool, False, "server-side batching")
    flag("batching_parameters_file", str, "", "text-format BatchingParameters")
    flag(
        "enable_per_model_batching_parameters", bool, False, "read batching_params.pbtxt per model"
    )
    flag("allow_version_labels_for_unavailable_models", bool, False, "labels for unloaded versions")
    flag("model_config_file", str, "", "text-format ModelServerConfig")
    flag("model_config_file_poll_wait_seconds", int, 0, "re-read the config file every N s")
    flag("model_name", str, "default", "single-model name")
    flag("model_base_path", str, "", "single-model base path")
    flag("num_load_threads", int, 0, "load threads (0 = load in the manager thread)")
    flag("num_unload_threads", int, 0, "unload threads")
    flag("max_num_load_retries", int, 5, "retries after a failed load")
    flag("load_retry_interval_micros", int, 60_000_000, "wait between load retries")
    flag("file_system_poll_wait_seconds", int, 1, "version poll period; 0 once; <0 never")
    flag("tensorflow_session_parallelism", int, 0, "onnxruntime intra = inter op threads")
    flag("tensorflow_intra_op_parallelism", int, 0, "onnxruntime intra-op threads")
    flag("tensorflow_inter_op_parallelism", int, 0, "onnxruntime inter-op threads")
    flag("ssl_config_file", str, "", "text-format SSLConfig")
    flag("grpc_channel_arguments", str, "", "comma list of key=value gRPC server arguments")
    # TF sizes its sync server's thread pool with this (default 4 x CPUs) and refuses RPCs
    # beyond it. servingd's asyncio server needs no thread per RPC, so by default it refuses
    # nothing; set the flag to cap concurrent RPCs (RESOURCE_EXHAUSTED beyond it).
    flag("grpc_max_threads", int, 0, "cap on concurrent gRPC calls (0 = no cap)")
    flag("enable_model_warmup", bool, True, "replay assets.extra/tf_serving_warmup_requests")
    flag("num_request_iterations_for_warmup", int, 0, "replays per warmup record")
    flag("monitoring_config_file", str, "", "text-format MonitoringConfig")
    flag(
        "enable_signature_method_name_check",
        bool,
        False,
        "Predict refuses signatures whose method is not predict, classify or regress",
    )
    flag("enable_grpc_healthcheck_service", bool, True, "grpc.health.v1 (on by default here)")
    flag("enable_serialization_as_tensor_content", bool, False, "Predict outputs in tensor_content")
    flag("version", bool, False, "print the version and exit")
    for name in _IGNORED_FLAGS:
        p.add_argument(f"--{name}", nargs="?", const="true", default=None, help=argparse.SUPPRESS)
    # servingd's own flags.
    flag("host", str, "0.0.0.0", "address the gRPC and REST ports bind to")
    p.add_argument(
        "--log_level",
        type=_log_level,
        default="INFO",
        metavar="{" + ",".join(LOG_LEVELS) + "}",
        help="log records at this level and above (any case)",
    )
    p.add_argument(
        "--log_format",
        choices=LOG_FORMATS,
        default="text",
        help="text, or json: one JSON object per line (lifecycle events carry their fields)",
    )
    flag(
        "rest_api_max_body_bytes",
        int,
        DEFAULT_MAX_BODY_BYTES,
        "largest REST request body (after gunzip) accepted; larger ones get 413",
    )
    flag(
        "grpc_max_receive_message_bytes",
        int,
        MAX_MESSAGE_BYTES,
        "largest gRPC request accepted (TF's 2 GiB - 1); larger ones get RESOURCE_EXHAUSTED",
    )
    flag(
        "max_inflight_requests_per_model",
        int,
        DEFAULT_MAX_INFLIGHT_REQUESTS_PER_MODEL,
        "inference requests in flight per model before UNAVAILABLE / 503 (0 = no limit)",
    )
    flag(
        "shutdown_grace_seconds",
        float,
        10.0,
        "on SIGTERM/SIGINT, how long in-flight requests may finish before they are cancelled",
    )
    flag(
        "object_storage_cache_dir",
        str,
        "",
        "where versions from s3:// and gs:// base paths are downloaded (default: temp dir)",
    )
    flag(
        "model_repository_root",
        str,
        "",
        "local directory of <model>/<version>/ dirs that V2 repository loads may add",
    )
    flag("workers", int, 1, "processes sharing the ports (SO_REUSEPORT), each with its own models")
    flag("reuse_port", bool, False, "SO_REUSEPORT on the gRPC and REST ports (set by --workers)")
    flag(
        "inline_run_threshold_micros",
        int,
        DEFAULT_INLINE_RUN_THRESHOLD_MICROS,
        "model runs measured cheaper than this run on the event loop, not a thread (0 = never)",
    )
    flag(
        "intra_op_spinning",
        bool,
        False,
        "onnxruntime's pool threads spin-wait between runs (uses a core; for dedicated cores)",
    )
    return p


def parse_channel_arguments(text: str) -> tuple[tuple[str, int | str], ...]:
    """`k=v,k2=v2`; values that parse as integers are passed as integers (TF's rule)."""
    result: list[tuple[str, int | str]] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ServingError(f"--grpc_channel_arguments: {item!r} is not key=value")
        try:
            result.append((key.strip(), int(value)))
        except ValueError:
            result.append((key.strip(), value.strip()))
    return tuple(result)


def _local_directory(path: str) -> str:
    """--model_repository_root as an absolute path (config base paths must be absolute)."""
    if not path:
        return ""
    if "://" in path or not os.path.isdir(path):
        raise ServingError(f"--model_repository_root={path} is not a local directory")
    return os.path.abspath(path)


def batching_options(args: argparse.Namespace) -> BatchingOptions | None:
    """TF's server.cc rules for --enable_batching and --batching_parameters_file."""
    if not args.enable_batching:
        if args.batching_parameters_file:
            raise InvalidArgument(
                "server_options.batching_parameters_file is set without setting "
                "server_options.enable_batching to true."
            )
        return None
    if args.enable_per_model_batching_parameters:
        logger.warning(
            "--enable_per_model_batching_parameters: per-model batching_params.pbtxt files are "
            "not read yet; every model uses the global batching parameters"
        )
    if args.batching_parameters_file:
        return read_batching_parameters(args.batching_parameters_file)
    return default_batching_options()


def options_from_args(args: argparse.Namespace) -> ServerOptions:
    if args.model_config_file:
        config = read_model_server_config(args.model_config_file)
    elif args.model_base_path:
        config = single_model_config(args.model_name, args.model_base_path)
    else:
        raise ServingError(
            "Both server_model_config_file and model_base_path are empty! "
            "Pass --model_base_path or --model_config_file."
        )
    if args.port == 0 and not args.grpc_socket_path:
        raise ServingError(
            "At least one of server_options.grpc_port or grpc_socket_path must be set."
        )
    if all(
        (
            args.tensorflow_session_parallelism,
            args.tensorflow_intra_op_parallelism,
            args.tensorflow_inter_op_parallelism,
        )
    ):
        raise ServingError(
            "Either configure tensorflow_session_parallelism or "
            "(tensorflow_intra_op_parallelism, tensorflow_inter_op_parallelism)"
        )
    intra = args.tensorflow_intra_op_parallelism or args.tensorflow_session_parallelism
    inter = args.tensorflow_inter_op_parallelism or args.tensorflow_session_parallelism
    core = ServerCoreOptions(
        file_system_poll_wait_seconds=args.file_system_poll_wait_seconds,
        num_load_threads=args.num_load_threads,
        num_unload_threads=args.num_unload_threads,
        max_num_load_retries=args.max_num_load_retries,
        load_retry_interval_micros=args.load_retry_interval_micros,
        allow_version_labels_for_unavailable_models=args.allow_version_labels_for_unavailable_models,
        session_config=SessionConfig(
            intra_op_num_threads=intra,
            inter_op_num_threads=inter,
            allow_spinning=args.intra_op_spinning,
        ),
        model_warmup=WarmupOptions(
            enabled=args.enable_model_warmup,
            # TF: a value > 0 sets the iterations; otherwise each record runs once.
            num_request_iterations=max(1, args.num_request_iterations_for_warmup),
        ),
        object_storage_cache_dir=args.object_storage_cache_dir,
    )
    return ServerOptions(
        model_config=config,
        core=core,
        grpc_port=args.port,
        grpc_socket_path=args.grpc_socket_path,
        rest_api_port=args.rest_api_port,
        batching=batching_options(args),
        rest_api_num_threads=args.rest_api_num_threads,
        rest_api_timeout_in_ms=args.rest_api_timeout_in_ms,
        rest_api_enable_cors_support=args.rest_api_enable_cors_support,
        rest_api_max_body_bytes=args.rest_api_max_body_bytes,
        host=args.host,
        grpc_channel_arguments=parse_channel_arguments(args.grpc_channel_arguments),
        grpc_max_threads=args.grpc_max_threads,
        enable_serialization_as_tensor_content=args.enable_serialization_as_tensor_content,
        enable_signature_method_name_check=args.enable_signature_method_name_check,
        enable_grpc_healthcheck_service=args.enable_grpc_healthcheck_service,
        model_config_file=args.model_config_file,
        model_config_file_poll_wait_seconds=args.model_config_file_poll_wait_seconds,
        model_repository_root=_local_directory(args.model_repository_root),
        inline_run_threshold_micros=args.inline_run_threshold_micros,
        reuse_port=args.reuse_port,
        shutdown_grace_seconds=args.shutdown_grace_seconds,
        grpc_max_receive_message_bytes=args.grpc_max_receive_message_bytes,
        max_inflight_requests_per_model=args.max_inflight_requests_per_model,
        ssl_config=read_ssl_config(args.ssl_config_file) if args.ssl_config_file else None,
        monitoring=(
            read_monitoring_config(args.monitoring_config_file)
            if args.monitoring_config_file
            else None
        ),
    )


async def serve(server: Server) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals_seen = 0

    def on_signal(signum: int) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen > 1:
            logger.warning("Second %s: exiting at once", signal.Signals(signum).name)
            os._exit(1)
        logger.info("Received %s: shutting down", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    await server.start()
    await stop.wait()
    await server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.version:
        print(f"servingd {__version__}")
        return 0
    configure_logging(str(args.log_level), args.log_format)
    for name in _IGNORED_FLAGS:
        if getattr(args, name) is not None:
            logger.warning("--%s has no meaning for ONNX models; ignored", name)
    try:
        options = options_from_args(args)
        check_worker_flags(args.workers, args.port, args.grpc_socket_path)
        if args.workers > 1:
            flags = sys.argv[1:] if argv is None else list(argv)
            exec_supervisor(
                flags,
                args.workers,
                args.shutdown_grace_seconds,
                str(args.log_level),
                args.log_format,
            )
        asyncio.run(serve(build_server(options)))
    except ServingError as exc:
        # TF Serving's wording and exit status (-1), so wrappers that grep for it still work.
        print(f"Failed to start server. Error: {exc.code.name}: {exc.message}", file=sys.stderr)
        return 255
    return 0


if __name__ == "__main__":
    sys.exit(main())
