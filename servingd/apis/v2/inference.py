"""The V2 calls both transports share: which version a request names, health, metadata.

A V2 `model_version` is a string: empty means the latest available version, digits name
that version, anything else is a version label from the model config (so `stable` works as
it does in TF's ModelSpec). The string resolves through the same ServerCore rules as TF
Serving's ModelSpec (ServerCore.servable_request), so errors read the same.
"""

from __future__ import annotations

from dataclasses import dataclass

from servingd import __version__
from servingd.apis.predictor import ModelRef, Predictor
from servingd.apis.v2.datatypes import datatype
from servingd.core.servable_state import ManagerState
from servingd.core.status import InvalidArgument, ServingError
from servingd.servables.onnx import TensorSpec
from servingd.server_core import ServerCore

SERVER_NAME = "servingd"
# Triton's name for ONNX models served by onnxruntime.
PLATFORM = "onnxruntime_onnx"
EXTENSIONS = ("binary_tensor_data", "model_repository", "model_configuration", "statistics")

_INT64_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class ServerMetadata:
    name: str = SERVER_NAME
    version: str = __version__
    extensions: tuple[str, ...] = EXTENSIONS


@dataclass(frozen=True, slots=True)
class TensorMetadata:
    name: str
    datatype: str
    shape: tuple[int, ...]  # -1: any size; () also for a tensor of unknown rank


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorMetadata, ...]
    outputs: tuple[TensorMetadata, ...]


def model_ref(name: str, version: str) -> ModelRef:
    """The ModelRef a V2 (name, version string) pair names."""
    if not version:
        return ModelRef(name)
    if version.isascii() and version.isdigit():
        number = int(version)
        if number > _INT64_MAX:
            raise InvalidArgument(f"Model version {version} does not fit in int64")
        return ModelRef(name, version=number)
    return ModelRef(name, label=version)


def available_versions(core: ServerCore, name: str) -> list[int]:
    """The model's AVAILABLE versions, oldest first."""
    states = core.monitor.get_version_states(name)
    return sorted(
        version
        for version, entry in states.items()
        if entry.state.manager_state is ManagerState.AVAILABLE
    )


def server_ready(core: ServerCore) -> bool:
    """Ready when every configured model has an AVAILABLE version."""
    return not not_ready_models(core)


def check_model_ready(predictor: Predictor, ref: ModelRef) -> None:
    """Raises what a request for `ref` would fail with now (NOT_FOUND when not loaded)."""
    with predictor.handle(ref):
        pass


def model_ready(predictor: Predictor, ref: ModelRef) -> bool:
    """Whether a request for `ref` would be served now (a label that names nothing: no)."""
    try:
        check_model_ready(predictor, ref)
    except ServingError:
        return False
    return True


def not_ready_models(core: ServerCore) -> list[str]:
    """The configured models without an AVAILABLE version."""
    names = [model.name for model in core.config.model_config_list.config]
    return [name for name in names if not available_versions(core, name)]


def model_metadata(predictor: Predictor, ref: ModelRef) -> ModelMetadata:
    """The model's serving_default signature in V2 terms. `versions` lists every available
    version, or only the named one when the request names a version or a label."""
    version, signature = predictor.signature(ref)
    if ref.version is None and ref.label is None:
        versions = tuple(str(v) for v in available_versions(predictor.core, ref.name))
    else:
        versions = (str(version),)
    return ModelMetadata(
        name=ref.name,
        versions=versions or (str(version),),
        platform=PLATFORM,
        inputs=tuple(_tensor(alias, spec) for alias, spec in signature.inputs.items()),
        outputs=tuple(_tensor(alias, spec) for alias, spec in signature.outputs.items()),
    )


def _tensor(alias: str, spec: TensorSpec) -> TensorMetadata:
    # V2 cannot say "unknown rank"; an empty shape lets clients such as perf_analyzer send a
    # tensor of any shape they are given.
    return TensorMetadata(alias, datatype(spec.dtype, alias), spec.shape or ())
