"""servingd's inference/grpc_service.proto and inference/model_config.proto against the ones
tritonclient ships: every message, field, enum value and method servingd declares exists there
with the same number, type and shape.

tritonclient's stubs cannot share a process with servingd's (same message names), so its
descriptors are read in a subprocess.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from typing import Any

from servingd.protos.inference import grpc_service_pb2, model_config_pb2

_DUMP = """
import json
from typing import Any
from tritonclient.grpc import model_config_pb2, service_pb2
{describe}
print(json.dumps({{**describe(service_pb2.DESCRIPTOR), **describe(model_config_pb2.DESCRIPTOR)}}))
"""


def describe(file_descriptor: Any) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}

    def walk(message: Any) -> None:
        for field in message.fields:
            out[f"{message.full_name}.{field.name}"] = [
                field.number,
                field.type,
                field.is_repeated,
                field.message_type.full_name if field.message_type else "",
                field.enum_type.full_name if field.enum_type else "",
                field.containing_oneof.name if field.containing_oneof else "",
            ]
        for nested in message.nested_types:
            walk(nested)

    for message in file_descriptor.message_types_by_name.values():
        walk(message)
    for enum in file_descriptor.enum_types_by_name.values():
        for value in enum.values:
            out[f"{enum.full_name}.{value.name}"] = [value.number]
    for service in file_descriptor.services_by_name.values():
        for method in service.methods:
            out[f"rpc {service.name}.{method.name}"] = [
                method.input_type.full_name,
                method.output_type.full_name,
                method.client_streaming,
                method.server_streaming,
            ]
    return out


def test_every_declaration_matches_tritonclients_proto() -> None:
    script = _DUMP.format(describe=inspect.getsource(describe))
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    triton = json.loads(done.stdout)
    ours = {**describe(grpc_service_pb2.DESCRIPTOR), **describe(model_config_pb2.DESCRIPTOR)}
    assert len(ours) == 160
    assert {key: value for key, value in ours.items() if triton.get(key) != value} == {}
