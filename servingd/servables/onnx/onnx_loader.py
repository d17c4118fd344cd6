"""OnnxLoader: turns a version directory holding `model.onnx` into an OnnxServable."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servingd.core.status import FailedPrecondition, InvalidArgument, NotFound
from servingd.servables.onnx.onnx_servable import OnnxServable
from servingd.servables.onnx.onnx_warmup import warm_up
from servingd.servables.onnx.signature import derive_signatures, tensor_spec_from_node_arg
from servingd.servables.warmup import WarmupOptions

logger = logging.getLogger(__name__)

MODEL_FILENAME = "model.onnx"

# TF Serving estimates a SavedModel's RAM as 1.2 x its size on disk (servables/tensorflow/util.cc).
_RAM_PER_DISK_BYTE = 1.2


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """onnxruntime session settings; TF Serving's session-parallelism flags map onto them."""

    intra_op_num_threads: int = 0
    inter_op_num_threads: int = 0
    # onnxruntime's pool threads spin-wait for work after every parallel run by default. In
    # servingd that takes the core the event loop and gRPC's threads need: on the bench
    # machine (2 cores) mlp at c=16 served 1,261 req/s spinning and 2,050 not, and a batch
    # thread's spinning pool kept a whole core busy. Off unless --intra_op_spinning.
    allow_spinning: bool = False


def is_version_complete(version_dir: str) -> bool:
    """Whether a version directory has a model file yet (the source waits until it has)."""
    return os.path.isfile(os.path.join(version_dir, MODEL_FILENAME))


class OnnxLoader:
    """Implements servingd.core.loader.Loader for one ONNX version directory."""

    def __init__(
        self,
        version_dir: str,
        session_config: SessionConfig | None = None,
        warmup: WarmupOptions | None = None,
    ) -> None:
        self._dir = Path(version_dir)
        self._session_config = session_config or SessionConfig()
        self._warmup = warmup or WarmupOptions()
        self._servable: OnnxServable | None = None

    @property
    def version_dir(self) -> Path:
        return self._dir

    def estimate_resources(self) -> int:
        total = 0
        for root, _dirs, files in os.walk(self._dir):
            for name in files:
                try:
                    total += os.stat(os.path.join(root, name)).st_size
                except OSError:
                    continue  # a file that vanished adds nothing; the load will report it
        return int(total * _RAM_PER_DISK_BYTE)

    def load(self) -> None:
        # Imported here so that importing servingd (for the CLI, tests of other parts) does not
        # pay onnxruntime's import time.
        import onnxruntime as ort

        model_path = self._dir / MODEL_FILENAME
        if not model_path.is_file():
            if any(self._dir.glob("saved_model.pb*")):
                raise FailedPrecondition(
                    f"{self._dir} holds a TensorFlow SavedModel; servingd serves ONNX models. "
                    "Convert it (for example with tf2onnx) to "
                    f"{self._dir / MODEL_FILENAME}."
                )
            raise NotFound(f"No {MODEL_FILENAME} found in version directory {self._dir}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = self._session_config.intra_op_num_threads
        options.inter_op_num_threads = self._session_config.inter_op_num_threads
        spinning = "1" if self._session_config.allow_spinning else "0"
        options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
        options.add_session_config_entry("session.inter_op.allow_spinning", spinning)
        try:
            session = ort.InferenceSession(
                str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # a corrupt or unsupported model: report, do not crash
            raise InvalidArgument(f"Failed to load ONNX model {model_path}: {exc}") from exc
        try:
            inputs = [tensor_spec_from_node_arg(arg) for arg in session.get_inputs()]
            outputs = [tensor_spec_from_node_arg(arg) for arg in session.get_outputs()]
        except ValueError as exc:
            raise InvalidArgument(f"Cannot serve {model_path}: {exc}") from exc
        servable = OnnxServable(session, derive_signatures(inputs, outputs))
        # Inside load, so the version becomes AVAILABLE only after its warmup, and a warmup
        # error fails the load (TF's saved_model_bundle_factory order).
        warm_up(servable, self._dir, self._warmup)
        self._servable = servable

    def unload(self) -> None:
        # Dropping the last reference frees the session; handles are gone by now (BasicManager
        # unloads only after quiescing), so nothing else holds it.
        self._servable = None

    def servable(self) -> Any:
        if self._servable is None:
            raise FailedPrecondition(f"ONNX model in {self._dir} is not loaded")
        return self._servable
