"""`--workers N`: N servingd processes sharing the gRPC and REST ports (SO_REUSEPORT).

One process serves from one event loop, so it uses about one core however many the machine
has (onnxruntime's own threads aside). With `--workers N` the command starts N copies of
itself, each with `--reuse_port`: every copy loads its own models and binds the same ports,
and the kernel spreads incoming connections over them. Memory grows by one process (the
interpreter, gRPC, onnxruntime and every model) per worker; bench/README.md has the figures.

The parent only supervises:
- SIGTERM and SIGINT are forwarded to every worker, which then shut down in their
  documented order; the parent exits when they all have.
- A worker that exits on its own (a failed start, a crash) takes the others down with it,
  so that the container or unit exits and its supervisor restarts the whole set instead of
  serving at reduced capacity unnoticed.
- The exit status is 0 when every worker exited 0, else the first failure's status.
Workers run in their own process group (a terminal's Ctrl-C reaches only the parent, which
forwards it once) and get SIGTERM if the parent dies without forwarding anything.

The parent checks every flag as a single server would, with all of servingd imported, then
replaces itself (`exec_supervisor`: same pid, so signals and the exit status still reach the
set as before) with `python -m servingd.workers`, which imports only what supervising needs:
~16 MiB resident instead of the ~65 MiB that grpc, aiohttp, numpy and protobuf hold.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import NoReturn

from servingd.core.status import InvalidArgument
from servingd.monitoring.logging_setup import configure_logging

logger = logging.getLogger("servingd.workers")  # also when run as __main__ (exec_supervisor)

_FORWARDED = (signal.SIGTERM, signal.SIGINT)
_WATCHED = {signal.SIGCHLD, *_FORWARDED}
_PR_SET_PDEATHSIG = 1
# After the first SIGTERM has been sent: how long workers may take beyond their own grace.
_STOP_MARGIN_SECONDS = 10.0


def check_worker_flags(workers: int, grpc_port: int, grpc_socket_path: str) -> None:
    if workers < 1:
        raise InvalidArgument(f"--workers must be at least 1, got {workers}")
    if workers > 1 and grpc_port <= 0:
        raise InvalidArgument("--workers > 1 needs a fixed --port for the workers to share")
    if workers > 1 and grpc_socket_path:
        raise InvalidArgument("--workers > 1 cannot share --grpc_socket_path; use --port")


def _worker_setup(libc: ctypes.CDLL | None) -> None:
    """Runs in each worker between fork and exec (the parent has no other threads)."""
    os.setpgid(0, 0)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _WATCHED)
    if libc is not None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl  # noqa: B018 - Linux only: elsewhere orphans are the operator's to stop
    except (OSError, AttributeError):
        return None
    return libc


def _exit_status(code: int) -> int:
    return code if code >= 0 else 128 - code  # -N: killed by signal N, as a shell reports it


def run_workers(argv: Sequence[str], workers: int, stop_grace_seconds: float) -> int:
    """Starts `workers` copies of `servingd argv` sharing the ports; returns the exit status."""
    libc = _libc()
    # Blocked before the first fork, so that no signal is lost before the wait below.
    signal.pthread_sigmask(signal.SIG_BLOCK, _WATCHED)
    command = [sys.executable, "-m", "servingd.main", *argv, "--workers=1", "--reuse_port"]
    children = []
    for index in range(workers):
        child = subprocess.Popen(command, preexec_fn=lambda: _worker_setup(libc))
        children.append(child)
        logger.info("Started worker %d of %d (pid %d)", index + 1, workers, child.pid)
    status = 0
    stop_deadline: float | None = None

    def stop_all(signum: int) -> None:
        nonlocal stop_deadline
        for child in children:
            if child.returncode is None:
                os.kill(child.pid, signum)
        if stop_deadline is None:
            stop_deadline = time.monotonic() + stop_grace_seconds + _STOP_MARGIN_SECONDS

    while any(child.returncode is None for child in children):
        info: signal.struct_siginfo | None
        if stop_deadline is None:
            info = signal.sigwaitinfo(_WATCHED)
        else:
            info = signal.sigtimedwait(_WATCHED, max(0.0, stop_deadline - time.monotonic()))
        if info is None:
            logger.error("Workers still running after the shutdown grace: killing them")
            stop_all(signal.SIGKILL)
            stop_deadline = time.monotonic() + _STOP_MARGIN_SECONDS
        elif info.si_signo in _FORWARDED:
            logger.info("Received %s: stopping the workers", signal.Signals(info.si_signo).name)
            stop_all(info.si_signo)
        for child in children:  # reap whoever exited (SIGCHLD, or one that a kill ended)
            code = child.poll() if child.returncode is None else None
            if code is not None:
                if code != 0 and status == 0:
                    status = _exit_status(code)
                if stop_deadline is None:
                    logger.error(
                        "Worker pid %d exited with %d: stopping the others", child.pid, code
                    )
                    stop_all(signal.SIGTERM)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _WATCHED)
    return status


def exec_supervisor(
    argv: Sequence[str], workers: int, stop_grace_seconds: float, log_level: str, log_format: str
) -> NoReturn:
    """Becomes `python -m servingd.workers`, which runs `run_workers(argv, ...)`."""
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(
        sys.executable,
        [
            sys.executable,
            "-m",
            "servingd.workers",
            f"--workers={workers}",
            f"--shutdown_grace_seconds={stop_grace_seconds}",
            f"--log_level={log_level}",
            f"--log_format={log_format}",
            "--",
            *argv,
        ],
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m servingd.workers",
        description="The --workers supervisor; `servingd --workers=N` starts it.",
    )
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--shutdown_grace_seconds", type=float, required=True)
    parser.add_argument("--log_level", required=True)
    parser.add_argument("--log_format", required=True)
    parser.add_argument("servingd_flags", nargs=argparse.REMAINDER, help="-- then the flags")
    args = parser.parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    flags = list(args.servingd_flags)
    if flags[:1] == ["--"]:
        flags = flags[1:]
    return run_workers(flags, args.workers, args.shutdown_grace_seconds)


if __name__ == "__main__":
    sys.exit(main())
