"""Wire compatibility of servingd's own .proto files with TF Serving's.

Every expected value here is a literal taken from TF Serving / TensorFlow
(docs: ../shared/api-facts.md section 1), never read back from the protos,
so a wrong field number, type, oneof or enum value fails a test.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import struct
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, json_format
from google.protobuf.descriptor import FieldDescriptor

REPO = Path(__file__).resolve().parents[2]

STUB_MODULES = [
    "tensorflow.core.framework.types_pb2",
    "tensorflow.core.framework.tensor_shape_pb2",
    "tensorflow.core.framework.resource_handle_pb2",
    "tensorflow.core.framework.tensor_pb2",
    "tensorflow.core.example.feature_pb2",
    "tensorflow.core.example.example_pb2",
    "tensorflow.core.protobuf.struct_pb2",
    "tensorflow.core.protobuf.meta_graph_pb2",
    "tensorflow.core.protobuf.error_codes_pb2",
    "tensorflow.core.protobuf.named_tensor_pb2",
    "tensorflow.core.protobuf.config_pb2",
    "tensorflow_serving.apis.model_pb2",
    "tensorflow_serving.apis.predict_pb2",
    "tensorflow_serving.apis.input_pb2",
    "tensorflow_serving.apis.classification_pb2",
    "tensorflow_serving.apis.regression_pb2",
    "tensorflow_serving.apis.inference_pb2",
    "tensorflow_serving.apis.get_model_metadata_pb2",
    "tensorflow_serving.apis.get_model_status_pb2",
    "tensorflow_serving.apis.status_pb2",
    "tensorflow_serving.apis.model_management_pb2",
    "tensorflow_serving.apis.logging_pb2",
    "tensorflow_serving.apis.prediction_log_pb2",
    "tensorflow_serving.apis.session_service_pb2",
    "tensorflow_serving.apis.session_service_pb2_grpc",
    "tensorflow_serving.apis.prediction_service_pb2",
    "tensorflow_serving.apis.prediction_service_pb2_grpc",
    "tensorflow_serving.apis.model_service_pb2",
    "tensorflow_serving.apis.model_service_pb2_grpc",
    "tensorflow_serving.config.model_server_config_pb2",
    "tensorflow_serving.config.file_system_storage_path_source_pb2",
    "tensorflow_serving.config.logging_config_pb2",
    "tensorflow_serving.config.log_collector_config_pb2",
    "tensorflow_serving.config.monitoring_config_pb2",
    "tensorflow_serving.config.ssl_config_pb2",
    "tensorflow_serving.config.platform_config_pb2",
    "tensorflow_serving.servables.tensorflow.session_bundle_config_pb2",
    "inference.grpc_service_pb2",
    "inference.grpc_service_pb2_grpc",
]


def _stub(name: str) -> ModuleType:
    return importlib.import_module(f"servingd.protos.{name}")


for _name in STUB_MODULES:  # registers every file in the default descriptor pool
    _stub(_name)

POOL = descriptor_pool.Default()


def _load_generator() -> ModuleType:
    path = REPO / "tools" / "gen_protos.py"
    spec = importlib.util.spec_from_file_location("servingd_gen_protos_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- generation


def test_generated_stubs_are_current() -> None:
    gen = _load_generator()
    problems = gen.check(REPO / "protos", REPO / "servingd" / "protos")
    assert problems == [], "run `make protos`:\n" + "\n".join(problems)


def test_generated_code_never_imports_top_level_tensorflow_packages() -> None:
    bad = re.compile(r"^\s*(from|import) (tensorflow|tensorflow_serving|inference)\b", re.M)
    offenders = [
        str(path.relative_to(REPO))
        for path in (REPO / "servingd" / "protos").rglob("*_pb2*.py*")
        if bad.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_rewrite_keeps_google_imports_and_moves_ours() -> None:
    gen = _load_generator()
    text = (
        "from google.protobuf import any_pb2 as _any_pb2\n"
        "from tensorflow.core.framework import tensor_pb2 as t\n"
        "from tensorflow_serving.apis import model_pb2 as m\n"
        "_builder.BuildTopDescriptorsAndMessages(DESCRIPTOR, 'tensorflow_serving.apis.x_pb2', g)\n"
    )
    out = gen._rewrite_imports(text, ["inference", "tensorflow", "tensorflow_serving"])
    assert out == (
        "from google.protobuf import any_pb2 as _any_pb2\n"
        "from servingd.protos.tensorflow.core.framework import tensor_pb2 as t\n"
        "from servingd.protos.tensorflow_serving.apis import model_pb2 as m\n"
        "_builder.BuildTopDescriptorsAndMessages("
        "DESCRIPTOR, 'servingd.protos.tensorflow_serving.apis.x_pb2', g)\n"
    )


@pytest.mark.parametrize(
    ("message", "file_name"),
    [
        ("tensorflow.serving.PredictRequest", "tensorflow_serving/apis/predict.proto"),
        ("tensorflow.serving.StatusProto", "tensorflow_serving/apis/status.proto"),
        ("tensorflow.TensorProto", "tensorflow/core/framework/tensor.proto"),
        ("tensorflow.SignatureDef", "tensorflow/core/protobuf/meta_graph.proto"),
        (
            "tensorflow.serving.FileSystemStoragePathSourceConfig",
            "tensorflow_serving/config/file_system_storage_path_source.proto",
        ),
        (
            "tensorflow.serving.BatchingParameters",
            "tensorflow_serving/servables/tensorflow/session_bundle_config.proto",
        ),
    ],
)
def test_descriptor_file_names_are_tf_serving_paths(message: str, file_name: str) -> None:
    assert POOL.FindMessageTypeByName(message).file.name == file_name


# --------------------------------------------------------------------------- field facts


def _is_repeated(field: FieldDescriptor) -> bool:
    if hasattr(field, "is_repeated"):
        return bool(field.is_repeated)
    return bool(field.label == FieldDescriptor.LABEL_REPEATED)  # protobuf < 5.29


_SCALARS = {
    FieldDescriptor.TYPE_DOUBLE: "double",
    FieldDescriptor.TYPE_FLOAT: "float",
    FieldDescriptor.TYPE_INT64: "int64",
    FieldDescriptor.TYPE_UINT64: "uint64",
    FieldDescriptor.TYPE_INT32: "int32",
    FieldDescriptor.TYPE_UINT32: "uint32",
    FieldDescriptor.TYPE_SINT64: "sint64",
    FieldDescriptor.TYPE_BOOL: "bool",
    FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_BYTES: "bytes",
}


def _type_of(field: FieldDescriptor) -> str:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return f"msg:{field.message_type.full_name}"
    if field.type == FieldDescriptor.TYPE_ENUM:
        return f"enum:{field.enum_type.full_name}"
    return _SCALARS[field.type]


def _describe(field: FieldDescriptor) -> str:
    """Render a field's wire type as "string", "repeated int64", "map<string,msg:X>"..."""
    entry = field.message_type
    if entry is not None and entry.GetOptions().map_entry:
        key, value = entry.fields_by_name["key"], entry.fields_by_name["value"]
        return f"map<{_type_of(key)},{_type_of(value)}>"
    return ("repeated " if _is_repeated(field) else "") + _type_of(field)


TS = "tensorflow.serving"
TENSOR = "msg:tensorflow.TensorProto"
SPEC = f"msg:{TS}.ModelSpec"
ANY = "msg:google.protobuf.Any"
POLICY = f"{TS}.FileSystemStoragePathSourceConfig.ServableVersionPolicy"

# (message full name, field name, field number, wire type)
FIELDS: list[tuple[str, str, int, str]] = [
    # model.proto
    (f"{TS}.ModelSpec", "name", 1, "string"),
    (f"{TS}.ModelSpec", "version", 2, "msg:google.protobuf.Int64Value"),
    (f"{TS}.ModelSpec", "version_label", 4, "string"),
    (f"{TS}.ModelSpec", "signature_name", 3, "string"),
    # predict.proto
    (f"{TS}.PredictRequest", "model_spec", 1, SPEC),
    (f"{TS}.PredictRequest", "inputs", 2, f"map<string,{TENSOR}>"),
    (f"{TS}.PredictRequest", "output_filter", 3, "repeated string"),
    (f"{TS}.PredictRequest", "predict_streamed_options", 5, f"msg:{TS}.PredictStreamedOptions"),
    (f"{TS}.PredictRequest", "client_id", 6, "bytes"),
    (f"{TS}.PredictRequest", "request_options", 7, f"msg:{TS}.PredictRequest.RequestOptions"),
    (f"{TS}.PredictRequest.RequestOptions", "client_id", 1, "bytes"),
    (
        f"{TS}.PredictRequest.RequestOptions",
        "deterministic_mode",
        2,
        f"enum:{TS}.PredictRequest.RequestOptions.DeterministicMode",
    ),
    (f"{TS}.PredictRequest.RequestOptions", "return_additional_arrays_from_prefill", 3, "bool"),
    (f"{TS}.PredictRequest.RequestOptions", "return_stoptokens", 4, "repeated int64"),
    (f"{TS}.PredictRequest.RequestOptions", "return_all_stoptokens", 9, "bool"),
    (f"{TS}.PredictRequest.RequestOptions", "max_cache_length", 6, "int64"),
    (
        f"{TS}.PredictStreamedOptions",
        "request_state",
        1,
        f"enum:{TS}.PredictStreamedOptions.RequestState",
    ),
    (f"{TS}.PredictStreamedOptions", "split_dimensions", 2, "map<string,int32>"),
    (f"{TS}.PredictStreamedOptions", "return_single_response", 3, "bool"),
    (f"{TS}.PredictResponse", "model_spec", 2, SPEC),
    (f"{TS}.PredictResponse", "outputs", 1, f"map<string,{TENSOR}>"),
    # input.proto
    (f"{TS}.Input", "example_list", 1, f"msg:{TS}.ExampleList"),
    (f"{TS}.Input", "example_list_with_context", 2, f"msg:{TS}.ExampleListWithContext"),
    (f"{TS}.ExampleList", "examples", 1, "repeated msg:tensorflow.Example"),
    (f"{TS}.ExampleListWithContext", "examples", 1, "repeated msg:tensorflow.Example"),
    (f"{TS}.ExampleListWithContext", "context", 2, "msg:tensorflow.Example"),
    # classification.proto / regression.proto / inference.proto
    (f"{TS}.Class", "label", 1, "string"),
    (f"{TS}.Class", "score", 2, "float"),
    (f"{TS}.Classifications", "classes", 1, f"repeated msg:{TS}.Class"),
    (f"{TS}.ClassificationResult", "classifications", 1, f"repeated msg:{TS}.Classifications"),
    (f"{TS}.ClassificationRequest", "model_spec", 1, SPEC),
    (f"{TS}.ClassificationRequest", "input", 2, f"msg:{TS}.Input"),
    (f"{TS}.ClassificationResponse", "model_spec", 2, SPEC),
    (f"{TS}.ClassificationResponse", "result", 1, f"msg:{TS}.ClassificationResult"),
    (f"{TS}.Regression", "value", 1, "float"),
    (f"{TS}.RegressionResult", "regressions", 1, f"repeated msg:{TS}.Regression"),
    (f"{TS}.RegressionRequest", "model_spec", 1, SPEC),
    (f"{TS}.RegressionRequest", "input", 2, f"msg:{TS}.Input"),
    (f"{TS}.RegressionResponse", "model_spec", 2, SPEC),
    (f"{TS}.RegressionResponse", "result", 1, f"msg:{TS}.RegressionResult"),
    (f"{TS}.InferenceTask", "model_spec", 1, SPEC),
    (f"{TS}.InferenceTask", "method_name", 2, "string"),
    (f"{TS}.InferenceResult", "model_spec", 1, SPEC),
    (f"{TS}.InferenceResult", "classification_result", 2, f"msg:{TS}.ClassificationResult"),
    (f"{TS}.InferenceResult", "regression_result", 3, f"msg:{TS}.RegressionResult"),
    (f"{TS}.MultiInferenceRequest", "tasks", 1, f"repeated msg:{TS}.InferenceTask"),
    (f"{TS}.MultiInferenceRequest", "input", 2, f"msg:{TS}.Input"),
    (f"{TS}.MultiInferenceResponse", "results", 1, f"repeated msg:{TS}.InferenceResult"),
    # get_model_metadata.proto
    (f"{TS}.SignatureDefMap", "signature_def", 1, "map<string,msg:tensorflow.SignatureDef>"),
    (f"{TS}.GetModelMetadataRequest", "model_spec", 1, SPEC),
    (f"{TS}.GetModelMetadataRequest", "metadata_field", 2, "repeated string"),
    (f"{TS}.GetModelMetadataResponse", "model_spec", 1, SPEC),
    (f"{TS}.GetModelMetadataResponse", "metadata", 2, f"map<string,{ANY}>"),
    # get_model_status.proto / status.proto
    (f"{TS}.GetModelStatusRequest", "model_spec", 1, SPEC),
    (f"{TS}.ModelVersionStatus", "version", 1, "int64"),
    (f"{TS}.ModelVersionStatus", "state", 2, f"enum:{TS}.ModelVersionStatus.State"),
    (f"{TS}.ModelVersionStatus", "status", 3, f"msg:{TS}.StatusProto"),
    (
        f"{TS}.GetModelStatusResponse",
        "model_version_status",
        1,
        f"repeated msg:{TS}.ModelVersionStatus",
    ),
    (f"{TS}.StatusProto", "error_code", 1, "enum:tensorflow.error.Code"),
    (f"{TS}.StatusProto", "error_message", 2, "string"),
    # model_management.proto
    (f"{TS}.ReloadConfigRequest", "config", 1, f"msg:{TS}.ModelServerConfig"),
    (f"{TS}.ReloadConfigRequest", "metric_names", 2, "repeated string"),
    (f"{TS}.ReloadConfigResponse", "status", 1, f"msg:{TS}.StatusProto"),
    (f"{TS}.ReloadConfigResponse", "metric", 2, f"repeated msg:{TS}.Metric"),
    (f"{TS}.Metric", "name", 1, "string"),
    (f"{TS}.Metric", "int64_value_increase", 2, "int64"),
    # logging.proto / prediction_log.proto
    (f"{TS}.LogMetadata", "model_spec", 1, SPEC),
    (f"{TS}.LogMetadata", "sampling_config", 2, f"msg:{TS}.SamplingConfig"),
    (f"{TS}.LogMetadata", "saved_model_tags", 3, "repeated string"),
    (f"{TS}.LogMetadata", "timestamp_secs", 4, "int64"),
    (f"{TS}.LogMetadata", "dc", 5, "string"),
    (f"{TS}.LogMetadata", "request_origin", 6, "string"),
    (f"{TS}.LogMetadata", "request_criticality", 7, "string"),
    (f"{TS}.LogMetadata", "safe_aggregation_privacy_key", 8, "int64"),
    (f"{TS}.ClassifyLog", "request", 1, f"msg:{TS}.ClassificationRequest"),
    (f"{TS}.ClassifyLog", "response", 2, f"msg:{TS}.ClassificationResponse"),
    (f"{TS}.RegressLog", "request", 1, f"msg:{TS}.RegressionRequest"),
    (f"{TS}.PredictLog", "request", 1, f"msg:{TS}.PredictRequest"),
    (f"{TS}.PredictLog", "response", 2, f"msg:{TS}.PredictResponse"),
    (f"{TS}.PredictStreamedLog", "request", 1, f"repeated msg:{TS}.PredictRequest"),
    (f"{TS}.PredictStreamedLog", "response", 2, f"repeated msg:{TS}.PredictResponse"),
    (f"{TS}.MultiInferenceLog", "request", 1, f"msg:{TS}.MultiInferenceRequest"),
    (f"{TS}.SessionRunLog", "response", 2, f"msg:{TS}.SessionRunResponse"),
    (f"{TS}.PredictionLog", "log_metadata", 1, f"msg:{TS}.LogMetadata"),
    (f"{TS}.PredictionLog", "classify_log", 2, f"msg:{TS}.ClassifyLog"),
    (f"{TS}.PredictionLog", "regress_log", 3, f"msg:{TS}.RegressLog"),
    (f"{TS}.PredictionLog", "predict_log", 6, f"msg:{TS}.PredictLog"),
    (f"{TS}.PredictionLog", "predict_streamed_log", 7, f"msg:{TS}.PredictStreamedLog"),
    (f"{TS}.PredictionLog", "multi_inference_log", 4, f"msg:{TS}.MultiInferenceLog"),
    (f"{TS}.PredictionLog", "session_run_log", 5, f"msg:{TS}.SessionRunLog"),
    # session_service.proto
    (f"{TS}.SessionRunRequest", "model_spec", 1, SPEC),
    (f"{TS}.SessionRunRequest", "feed", 2, "repeated msg:tensorflow.NamedTensorProto"),
    (f"{TS}.SessionRunRequest", "fetch", 3, "repeated string"),
    (f"{TS}.SessionRunRequest", "target", 4, "repeated string"),
    (f"{TS}.SessionRunRequest", "tensor_name_is_alias", 6, "bool"),
    (f"{TS}.SessionRunRequest", "options", 5, "msg:tensorflow.RunOptions"),
    (f"{TS}.SessionRunResponse", "model_spec", 3, SPEC),
    (f"{TS}.SessionRunResponse", "tensor", 1, "repeated msg:tensorflow.NamedTensorProto"),
    (f"{TS}.SessionRunResponse", "metadata", 2, "msg:tensorflow.RunMetadata"),
    # config/model_server_config.proto
    (f"{TS}.ModelServerConfig", "model_config_list", 1, f"msg:{TS}.ModelConfigList"),
    (f"{TS}.ModelServerConfig", "custom_model_config", 2, ANY),
    (f"{TS}.ModelConfigList", "config", 1, f"repeated msg:{TS}.ModelConfig"),
    (f"{TS}.ModelConfig", "name", 1, "string"),
    (f"{TS}.ModelConfig", "base_path", 2, "string"),
    (f"{TS}.ModelConfig", "model_type", 3, f"enum:{TS}.ModelType"),
    (f"{TS}.ModelConfig", "model_platform", 4, "string"),
    (f"{TS}.ModelConfig", "logging_config", 6, f"msg:{TS}.LoggingConfig"),
    (f"{TS}.ModelConfig", "model_version_policy", 7, f"msg:{POLICY}"),
    (f"{TS}.ModelConfig", "version_labels", 8, "map<string,int64>"),
    # config/file_system_storage_path_source.proto
    (
        f"{TS}.FileSystemStoragePathSourceConfig",
        "servables",
        5,
        f"repeated msg:{TS}.FileSystemStoragePathSourceConfig.ServableToMonitor",
    ),
    (f"{TS}.FileSystemStoragePathSourceConfig", "file_system_poll_wait_seconds", 3, "int64"),
    (f"{TS}.FileSystemStoragePathSourceConfig", "fail_if_zero_versions_at_startup", 4, "bool"),
    (f"{TS}.FileSystemStoragePathSourceConfig", "servable_versions_always_present", 6, "bool"),
    (POLICY, "latest", 100, f"msg:{POLICY}.Latest"),
    (POLICY, "all", 101, f"msg:{POLICY}.All"),
    (POLICY, "specific", 102, f"msg:{POLICY}.Specific"),
    (f"{POLICY}.Latest", "num_versions", 1, "uint32"),
    (f"{POLICY}.Specific", "versions", 1, "repeated int64"),
    (f"{TS}.FileSystemStoragePathSourceConfig.ServableToMonitor", "servable_name", 1, "string"),
    (f"{TS}.FileSystemStoragePathSourceConfig.ServableToMonitor", "base_path", 2, "string"),
    (
        f"{TS}.FileSystemStoragePathSourceConfig.ServableToMonitor",
        "servable_version_policy",
        4,
        f"msg:{POLICY}",
    ),
    # config/logging_config.proto, log_collector_config.proto
    (f"{TS}.LoggingConfig", "log_collector_config", 1, f"msg:{TS}.LogCollectorConfig"),
    (f"{TS}.LoggingConfig", "sampling_config", 2, f"msg:{TS}.SamplingConfig"),
    (f"{TS}.LoggingConfig", "custom_logging_config", 3, ANY),
    (f"{TS}.LogCollectorConfig", "type", 1, "string"),
    (f"{TS}.LogCollectorConfig", "filename_prefix", 2, "string"),
    (f"{TS}.SamplingConfig", "sampling_rate", 1, "double"),
    (f"{TS}.SamplingConfig", "attributes", 2, "int32"),
    (
        f"{TS}.SamplingConfig",
        "per_task_sampling_configs",
        3,
        f"repeated msg:{TS}.PerTaskSamplingConfig",
    ),
    (f"{TS}.PerTaskSamplingConfig", "dc", 1, "string"),
    (f"{TS}.PerTaskSamplingConfig", "task_index", 2, "int32"),
    (f"{TS}.PerTaskSamplingConfig", "sampling_rate", 3, "double"),
    # config/monitoring_config.proto, ssl_config.proto, platform_config.proto
    (f"{TS}.MonitoringConfig", "prometheus_config", 1, f"msg:{TS}.PrometheusConfig"),
    (f"{TS}.PrometheusConfig", "enable", 1, "bool"),
    (f"{TS}.PrometheusConfig", "path", 2, "string"),
    (f"{TS}.SSLConfig", "server_key", 1, "string"),
    (f"{TS}.SSLConfig", "server_cert", 2, "string"),
    (f"{TS}.SSLConfig", "custom_ca", 3, "string"),
    (f"{TS}.SSLConfig", "client_verify", 4, "bool"),
    (f"{TS}.PlatformConfigMap", "platform_configs", 1, f"map<string,msg:{TS}.PlatformConfig>"),
    (f"{TS}.PlatformConfig", "source_adapter_config", 1, ANY),
    # servables/tensorflow/session_bundle_config.proto
    (f"{TS}.BatchingParameters", "max_batch_size", 1, "msg:google.protobuf.Int64Value"),
    (f"{TS}.BatchingParameters", "batch_timeout_micros", 2, "msg:google.protobuf.Int64Value"),
    (f"{TS}.BatchingParameters", "max_enqueued_batches", 3, "msg:google.protobuf.Int64Value"),
    (f"{TS}.BatchingParameters", "num_batch_threads", 4, "msg:google.protobuf.Int64Value"),
    (f"{TS}.BatchingParameters", "thread_pool_name", 5, "msg:google.protobuf.StringValue"),
    (f"{TS}.BatchingParameters", "allowed_batch_sizes", 6, "repeated int64"),
    (f"{TS}.BatchingParameters", "pad_variable_length_inputs", 7, "bool"),
    (
        f"{TS}.BatchingParameters",
        "enable_large_batch_splitting",
        8,
        "msg:google.protobuf.BoolValue",
    ),
    (f"{TS}.BatchingParameters", "max_execution_batch_size", 9, "msg:google.protobuf.Int64Value"),
    (f"{TS}.SessionBundleConfig", "batching_parameters", 3, f"msg:{TS}.BatchingParameters"),
    # tensorflow/core/framework
    ("tensorflow.TensorProto", "dtype", 1, "enum:tensorflow.DataType"),
    ("tensorflow.TensorProto", "tensor_shape", 2, "msg:tensorflow.TensorShapeProto"),
    ("tensorflow.TensorProto", "version_number", 3, "int32"),
    ("tensorflow.TensorProto", "tensor_content", 4, "bytes"),
    ("tensorflow.TensorProto", "float_val", 5, "repeated float"),
    ("tensorflow.TensorProto", "double_val", 6, "repeated double"),
    ("tensorflow.TensorProto", "int_val", 7, "repeated int32"),
    ("tensorflow.TensorProto", "string_val", 8, "repeated bytes"),
    ("tensorflow.TensorProto", "scomplex_val", 9, "repeated float"),
    ("tensorflow.TensorProto", "int64_val", 10, "repeated int64"),
    ("tensorflow.TensorProto", "bool_val", 11, "repeated bool"),
    ("tensorflow.TensorProto", "dcomplex_val", 12, "repeated double"),
    ("tensorflow.TensorProto", "half_val", 13, "repeated int32"),
    (
        "tensorflow.TensorProto",
        "resource_handle_val",
        14,
        "repeated msg:tensorflow.ResourceHandleProto",
    ),
    ("tensorflow.TensorProto", "variant_val", 15, "repeated msg:tensorflow.VariantTensorDataProto"),
    ("tensorflow.TensorProto", "uint32_val", 16, "repeated uint32"),
    ("tensorflow.TensorProto", "uint64_val", 17, "repeated uint64"),
    ("tensorflow.TensorProto", "float8_val", 18, "bytes"),
    ("tensorflow.VariantTensorDataProto", "type_name", 1, "string"),
    ("tensorflow.VariantTensorDataProto", "metadata", 2, "bytes"),
    ("tensorflow.VariantTensorDataProto", "tensors", 3, "repeated msg:tensorflow.TensorProto"),
    ("tensorflow.TensorShapeProto", "dim", 2, "repeated msg:tensorflow.TensorShapeProto.Dim"),
    ("tensorflow.TensorShapeProto", "unknown_rank", 3, "bool"),
    ("tensorflow.TensorShapeProto.Dim", "size", 1, "int64"),
    ("tensorflow.TensorShapeProto.Dim", "name", 2, "string"),
    ("tensorflow.ResourceHandleProto", "device", 1, "string"),
    ("tensorflow.ResourceHandleProto", "container", 2, "string"),
    ("tensorflow.ResourceHandleProto", "name", 3, "string"),
    ("tensorflow.ResourceHandleProto", "hash_code", 4, "uint64"),
    ("tensorflow.ResourceHandleProto", "maybe_type_name", 5, "string"),
    (
        "tensorflow.ResourceHandleProto",
        "dtypes_and_shapes",
        6,
        "repeated msg:tensorflow.ResourceHandleProto.DtypeAndShape",
    ),
    ("tensorflow.ResourceHandleProto.DtypeAndShape", "dtype", 1, "enum:tensorflow.DataType"),
    ("tensorflow.ResourceHandleProto.DtypeAndShape", "shape", 2, "msg:tensorflow.TensorShapeProto"),
    # tensorflow/core/example
    ("tensorflow.Example", "features", 1, "msg:tensorflow.Features"),
    ("tensorflow.Features", "feature", 1, "map<string,msg:tensorflow.Feature>"),
    ("tensorflow.Feature", "bytes_list", 1, "msg:tensorflow.BytesList"),
    ("tensorflow.Feature", "float_list", 2, "msg:tensorflow.FloatList"),
    ("tensorflow.Feature", "int64_list", 3, "msg:tensorflow.Int64List"),
    ("tensorflow.BytesList", "value", 1, "repeated bytes"),
    ("tensorflow.FloatList", "value", 1, "repeated float"),
    ("tensorflow.Int64List", "value", 1, "repeated int64"),
    # tensorflow/core/protobuf
    ("tensorflow.SignatureDef", "inputs", 1, "map<string,msg:tensorflow.TensorInfo>"),
    ("tensorflow.SignatureDef", "outputs", 2, "map<string,msg:tensorflow.TensorInfo>"),
    ("tensorflow.SignatureDef", "method_name", 3, "string"),
    ("tensorflow.SignatureDef", "defaults", 4, f"map<string,{TENSOR}>"),
    ("tensorflow.TensorInfo", "name", 1, "string"),
    ("tensorflow.TensorInfo", "dtype", 2, "enum:tensorflow.DataType"),
    ("tensorflow.TensorInfo", "tensor_shape", 3, "msg:tensorflow.TensorShapeProto"),
    ("tensorflow.TensorInfo", "coo_sparse", 4, "msg:tensorflow.TensorInfo.CooSparse"),
    ("tensorflow.TensorInfo", "composite_tensor", 5, "msg:tensorflow.TensorInfo.CompositeTensor"),
    ("tensorflow.TensorInfo.CooSparse", "values_tensor_name", 1, "string"),
    ("tensorflow.TensorInfo.CooSparse", "indices_tensor_name", 2, "string"),
    ("tensorflow.TensorInfo.CooSparse", "dense_shape_tensor_name", 3, "string"),
    ("tensorflow.TensorInfo.CompositeTensor", "type_spec", 1, "msg:tensorflow.TypeSpecProto"),
    (
        "tensorflow.TensorInfo.CompositeTensor",
        "components",
        2,
        "repeated msg:tensorflow.TensorInfo",
    ),
    (
        "tensorflow.TypeSpecProto",
        "type_spec_class",
        1,
        "enum:tensorflow.TypeSpecProto.TypeSpecClass",
    ),
    ("tensorflow.TypeSpecProto", "type_state", 2, "msg:tensorflow.StructuredValue"),
    ("tensorflow.TypeSpecProto", "type_spec_class_name", 3, "string"),
    ("tensorflow.TypeSpecProto", "num_flat_components", 4, "int32"),
    ("tensorflow.StructuredValue", "int64_value", 12, "sint64"),
    ("tensorflow.StructuredValue", "type_spec_value", 34, "msg:tensorflow.TypeSpecProto"),
    ("tensorflow.NamedTensorProto", "name", 1, "string"),
    ("tensorflow.NamedTensorProto", "tensor", 2, TENSOR),
    ("tensorflow.RunOptions", "trace_level", 1, "enum:tensorflow.RunOptions.TraceLevel"),
    ("tensorflow.RunOptions", "timeout_in_ms", 2, "int64"),
    # inference/grpc_service.proto (KServe V2 / Triton)
    ("inference.ServerLiveResponse", "live", 1, "bool"),
    ("inference.ServerReadyResponse", "ready", 1, "bool"),
    ("inference.ModelReadyRequest", "name", 1, "string"),
    ("inference.ModelReadyRequest", "version", 2, "string"),
    ("inference.ModelReadyResponse", "ready", 1, "bool"),
    ("inference.ServerMetadataResponse", "name", 1, "string"),
    ("inference.ServerMetadataResponse", "version", 2, "string"),
    ("inference.ServerMetadataResponse", "extensions", 3, "repeated string"),
    ("inference.ModelMetadataRequest", "name", 1, "string"),
    ("inference.ModelMetadataRequest", "version", 2, "string"),
    ("inference.ModelMetadataResponse", "name", 1, "string"),
    ("inference.ModelMetadataResponse", "versions", 2, "repeated string"),
    ("inference.ModelMetadataResponse", "platform", 3, "string"),
    (
        "inference.ModelMetadataResponse",
        "inputs",
        4,
        "repeated msg:inference.ModelMetadataResponse.TensorMetadata",
    ),
    (
        "inference.ModelMetadataResponse",
        "outputs",
        5,
        "repeated msg:inference.ModelMetadataResponse.TensorMetadata",
    ),
    ("inference.ModelMetadataResponse.TensorMetadata", "name", 1, "string"),
    ("inference.ModelMetadataResponse.TensorMetadata", "datatype", 2, "string"),
    ("inference.ModelMetadataResponse.TensorMetadata", "shape", 3, "repeated int64"),
    ("inference.InferParameter", "bool_param", 1, "bool"),
    ("inference.InferParameter", "int64_param", 2, "int64"),
    ("inference.InferParameter", "string_param", 3, "string"),
    ("inference.InferParameter", "double_param", 4, "double"),
    ("inference.InferParameter", "uint64_param", 5, "uint64"),
    ("inference.InferTensorContents", "bool_contents", 1, "repeated bool"),
    ("inference.InferTensorContents", "int_contents", 2, "repeated int32"),
    ("inference.InferTensorContents", "int64_contents", 3, "repeated int64"),
    ("inference.InferTensorContents", "uint_contents", 4, "repeated uint32"),
    ("inference.InferTensorContents", "uint64_contents", 5, "repeated uint64"),
    ("inference.InferTensorContents", "fp32_contents", 6, "repeated float"),
    ("inference.InferTensorContents", "fp64_contents", 7, "repeated double"),
    ("inference.InferTensorContents", "bytes_contents", 8, "repeated bytes"),
    ("inference.ModelInferRequest", "model_name", 1, "string"),
    ("inference.ModelInferRequest", "model_version", 2, "string"),
    ("inference.ModelInferRequest", "id", 3, "string"),
    ("inference.ModelInferRequest", "parameters", 4, "map<string,msg:inference.InferParameter>"),
    (
        "inference.ModelInferRequest",
        "inputs",
        5,
        "repeated msg:inference.ModelInferRequest.InferInputTensor",
    ),
    (
        "inference.ModelInferRequest",
        "outputs",
        6,
        "repeated msg:inference.ModelInferRequest.InferRequestedOutputTensor",
    ),
    ("inference.ModelInferRequest", "raw_input_contents", 7, "repeated bytes"),
    ("inference.ModelInferRequest.InferInputTensor", "name", 1, "string"),
    ("inference.ModelInferRequest.InferInputTensor", "datatype", 2, "string"),
    ("inference.ModelInferRequest.InferInputTensor", "shape", 3, "repeated int64"),
    (
        "inference.ModelInferRequest.InferInputTensor",
        "parameters",
        4,
        "map<string,msg:inference.InferParameter>",
    ),
    (
        "inference.ModelInferRequest.InferInputTensor",
        "contents",
        5,
        "msg:inference.InferTensorContents",
    ),
    ("inference.ModelInferRequest.InferRequestedOutputTensor", "name", 1, "string"),
    (
        "inference.ModelInferRequest.InferRequestedOutputTensor",
        "parameters",
        2,
        "map<string,msg:inference.InferParameter>",
    ),
    ("inference.ModelInferResponse", "model_name", 1, "string"),
    ("inference.ModelInferResponse", "model_version", 2, "string"),
    ("inference.ModelInferResponse", "id", 3, "string"),
    ("inference.ModelInferResponse", "parameters", 4, "map<string,msg:inference.InferParameter>"),
    (
        "inference.ModelInferResponse",
        "outputs",
        5,
        "repeated msg:inference.ModelInferResponse.InferOutputTensor",
    ),
    ("inference.ModelInferResponse", "raw_output_contents", 6, "repeated bytes"),
    ("inference.ModelInferResponse.InferOutputTensor", "name", 1, "string"),
    ("inference.ModelInferResponse.InferOutputTensor", "datatype", 2, "string"),
    ("inference.ModelInferResponse.InferOutputTensor", "shape", 3, "repeated int64"),
    (
        "inference.ModelInferResponse.InferOutputTensor",
        "parameters",
        4,
        "map<string,msg:inference.InferParameter>",
    ),
    (
        "inference.ModelInferResponse.InferOutputTensor",
        "contents",
        5,
        "msg:inference.InferTensorContents",
    ),
    ("inference.ModelRepositoryParameter", "bool_param", 1, "bool"),
    ("inference.ModelRepositoryParameter", "int64_param", 2, "int64"),
    ("inference.ModelRepositoryParameter", "string_param", 3, "string"),
    ("inference.ModelRepositoryParameter", "bytes_param", 4, "bytes"),
    ("inference.RepositoryIndexRequest", "repository_name", 1, "string"),
    ("inference.RepositoryIndexRequest", "ready", 2, "bool"),
    (
        "inference.RepositoryIndexResponse",
        "models",
        1,
        "repeated msg:inference.RepositoryIndexResponse.ModelIndex",
    ),
    ("inference.RepositoryIndexResponse.ModelIndex", "name", 1, "string"),
    ("inference.RepositoryIndexResponse.ModelIndex", "version", 2, "string"),
    ("inference.RepositoryIndexResponse.ModelIndex", "state", 3, "string"),
    ("inference.RepositoryIndexResponse.ModelIndex", "reason", 4, "string"),
    ("inference.RepositoryModelLoadRequest", "repository_name", 1, "string"),
    ("inference.RepositoryModelLoadRequest", "model_name", 2, "string"),
    (
        "inference.RepositoryModelLoadRequest",
        "parameters",
        3,
        "map<string,msg:inference.ModelRepositoryParameter>",
    ),
    ("inference.RepositoryModelUnloadRequest", "repository_name", 1, "string"),
    ("inference.RepositoryModelUnloadRequest", "model_name", 2, "string"),
    (
        "inference.RepositoryModelUnloadRequest",
        "parameters",
        3,
        "map<string,msg:inference.ModelRepositoryParameter>",
    ),
]


@pytest.mark.parametrize(("message", "field", "number", "kind"), FIELDS)
def test_field_number_and_type(message: str, field: str, number: int, kind: str) -> None:
    descriptor = POOL.FindMessageTypeByName(message)
    assert field in descriptor.fields_by_name, f"{message} has no field {field}"
    fd = descriptor.fields_by_name[field]
    assert (fd.number, _describe(fd)) == (number, kind)


ONEOFS: list[tuple[str, str, dict[str, int]]] = [
    (f"{TS}.ModelSpec", "version_choice", {"version": 2, "version_label": 4}),
    (f"{TS}.Input", "kind", {"example_list": 1, "example_list_with_context": 2}),
    (f"{TS}.InferenceResult", "result", {"classification_result": 2, "regression_result": 3}),
    (f"{TS}.Metric", "value_increase", {"int64_value_increase": 2}),
    (
        f"{TS}.PredictionLog",
        "log_type",
        {
            "classify_log": 2,
            "regress_log": 3,
            "predict_log": 6,
            "predict_streamed_log": 7,
            "multi_inference_log": 4,
            "session_run_log": 5,
        },
    ),
    (f"{TS}.ModelServerConfig", "config", {"model_config_list": 1, "custom_model_config": 2}),
    (POLICY, "policy_choice", {"latest": 100, "all": 101, "specific": 102}),
    ("tensorflow.Feature", "kind", {"bytes_list": 1, "float_list": 2, "int64_list": 3}),
    ("tensorflow.TensorInfo", "encoding", {"name": 1, "coo_sparse": 4, "composite_tensor": 5}),
    (
        "inference.InferParameter",
        "parameter_choice",
        {
            "bool_param": 1,
            "int64_param": 2,
            "string_param": 3,
            "double_param": 4,
            "uint64_param": 5,
        },
    ),
    (
        "inference.ModelRepositoryParameter",
        "parameter_choice",
        {"bool_param": 1, "int64_param": 2, "string_param": 3, "bytes_param": 4},
    ),
]


@pytest.mark.parametrize(("message", "oneof", "members"), ONEOFS)
def test_oneof_members(message: str, oneof: str, members: dict[str, int]) -> None:
    descriptor = POOL.FindMessageTypeByName(message)
    assert oneof in descriptor.oneofs_by_name
    actual = {f.name: f.number for f in descriptor.oneofs_by_name[oneof].fields}
    assert actual == members


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (f"{TS}.PredictRequest", "client_id"),
        (f"{TS}.PredictRequest", "request_options"),
        (f"{TS}.PerTaskSamplingConfig", "task_index"),
    ],
)
def test_proto3_optional_fields_track_presence(message: str, field: str) -> None:
    assert POOL.FindMessageTypeByName(message).fields_by_name[field].has_presence


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ("tensorflow.TensorProto", "float_val"),
        ("tensorflow.TensorProto", "int_val"),
        ("tensorflow.TensorProto", "int64_val"),
        ("tensorflow.TensorProto", "half_val"),
        ("tensorflow.FloatList", "value"),
        ("tensorflow.Int64List", "value"),
        # V2: tritonclient and Triton write these packed (proto3's default).
        ("inference.InferTensorContents", "fp32_contents"),
        ("inference.InferTensorContents", "int64_contents"),
        ("inference.ModelInferRequest.InferInputTensor", "shape"),
        ("inference.ModelMetadataResponse.TensorMetadata", "shape"),
    ],
)
def test_numeric_repeated_fields_are_packed(message: str, field: str) -> None:
    assert POOL.FindMessageTypeByName(message).fields_by_name[field].is_packed


@pytest.mark.parametrize(
    ("message", "reserved"),
    [
        (f"{TS}.PredictRequest", {4}),
        (f"{TS}.ModelConfig", {5, 9}),
        (f"{TS}.FileSystemStoragePathSourceConfig", {1, 2}),
        (f"{TS}.FileSystemStoragePathSourceConfig.ServableToMonitor", {3}),
        ("tensorflow.ResourceHandleProto", {7}),
    ],
)
def test_reserved_numbers(message: str, reserved: set[int]) -> None:
    proto = descriptor_pb2.DescriptorProto()
    POOL.FindMessageTypeByName(message).CopyToProto(proto)
    numbers = {n for r in proto.reserved_range for n in range(r.start, r.end)}
    assert numbers == reserved


@pytest.mark.parametrize(
    ("message", "field", "json_name"),
    [
        (f"{TS}.GetModelStatusResponse", "model_version_status", "model_version_status"),
        (f"{TS}.StatusProto", "error_code", "error_code"),
        (f"{TS}.StatusProto", "error_message", "error_message"),
        (f"{TS}.PredictRequest", "model_spec", "modelSpec"),  # default lowerCamelCase
    ],
)
def test_json_names(message: str, field: str, json_name: str) -> None:
    assert POOL.FindMessageTypeByName(message).fields_by_name[field].json_name == json_name


# --------------------------------------------------------------------------- enums

DATA_TYPES = {
    "DT_INVALID": 0, "DT_FLOAT": 1, "DT_DOUBLE": 2, "DT_INT32": 3, "DT_UINT8": 4,
    "DT_INT16": 5, "DT_INT8": 6, "DT_STRING": 7, "DT_COMPLEX64": 8, "DT_INT64": 9,
    "DT_BOOL": 10, "DT_QINT8": 11, "DT_QUINT8": 12, "DT_QINT32": 13, "DT_BFLOAT16": 14,
    "DT_QINT16": 15, "DT_QUINT16": 16, "DT_UINT16": 17, "DT_COMPLEX128": 18, "DT_HALF": 19,
    "DT_RESOURCE": 20, "DT_VARIANT": 21, "DT_UINT32": 22, "DT_UINT64": 23,
    "DT_FLOAT8_E5M2": 24, "DT_FLOAT8_E4M3FN": 25, "DT_FLOAT8_E4M3FNUZ": 26,
    "DT_FLOAT8_E4M3B11FNUZ": 27, "DT_FLOAT8_E5M2FNUZ": 28, "DT_INT4": 29, "DT_UINT4": 30,
    "DT_INT2": 31, "DT_UINT2": 32,
}  # fmt: skip
DATA_TYPES |= {f"{k}_REF": v + 100 for k, v in DATA_TYPES.items() if v}

ENUMS: list[tuple[str, dict[str, int]]] = [
    ("tensorflow.DataType", DATA_TYPES),
    (
        f"{TS}.ModelVersionStatus.State",
        {"UNKNOWN": 0, "START": 10, "LOADING": 20, "AVAILABLE": 30, "UNLOADING": 40, "END": 50},
    ),
    (
        "tensorflow.error.Code",
        {
            "OK": 0,
            "CANCELLED": 1,
            "UNKNOWN": 2,
            "INVALID_ARGUMENT": 3,
            "DEADLINE_EXCEEDED": 4,
            "NOT_FOUND": 5,
            "ALREADY_EXISTS": 6,
            "PERMISSION_DENIED": 7,
            "UNAUTHENTICATED": 16,
            "RESOURCE_EXHAUSTED": 8,
            "FAILED_PRECONDITION": 9,
            "ABORTED": 10,
            "OUT_OF_RANGE": 11,
            "UNIMPLEMENTED": 12,
            "INTERNAL": 13,
            "UNAVAILABLE": 14,
            "DATA_LOSS": 15,
            "DO_NOT_USE_RESERVED_FOR_FUTURE_EXPANSION_USE_DEFAULT_IN_SWITCH_INSTEAD_": 20,
        },
    ),
    (f"{TS}.ModelType", {"MODEL_TYPE_UNSPECIFIED": 0, "TENSORFLOW": 1, "OTHER": 2}),
    (
        f"{TS}.SamplingConfig.Attributes",
        {"ATTR_DEFAULT": 0, "ATTR_REQUEST_ORIGIN": 1, "ATTR_REQUEST_CRITICALITY": 2},
    ),
    (
        f"{TS}.PredictStreamedOptions.RequestState",
        {"NONE": 0, "SPLIT": 1, "END_SPLIT": 2, "CANCEL": 3},
    ),
    (
        f"{TS}.PredictRequest.RequestOptions.DeterministicMode",
        {"DETERMINISTIC_MODE_UNSPECIFIED": 0, "FIXED_DECODER_SLOT": 1},
    ),
]


@pytest.mark.parametrize(("enum", "values"), ENUMS)
def test_enum_values(enum: str, values: dict[str, int]) -> None:
    actual = {v.name: v.number for v in POOL.FindEnumTypeByName(enum).values}
    assert actual == values


# --------------------------------------------------------------------------- services

METHODS = [
    (
        "/tensorflow.serving.PredictionService/Classify",
        "ClassificationRequest",
        "ClassificationResponse",
    ),
    ("/tensorflow.serving.PredictionService/Regress", "RegressionRequest", "RegressionResponse"),
    ("/tensorflow.serving.PredictionService/Predict", "PredictRequest", "PredictResponse"),
    (
        "/tensorflow.serving.PredictionService/MultiInference",
        "MultiInferenceRequest",
        "MultiInferenceResponse",
    ),
    (
        "/tensorflow.serving.PredictionService/GetModelMetadata",
        "GetModelMetadataRequest",
        "GetModelMetadataResponse",
    ),
    (
        "/tensorflow.serving.ModelService/GetModelStatus",
        "GetModelStatusRequest",
        "GetModelStatusResponse",
    ),
    (
        "/tensorflow.serving.ModelService/HandleReloadConfigRequest",
        "ReloadConfigRequest",
        "ReloadConfigResponse",
    ),
    ("/tensorflow.serving.SessionService/SessionRun", "SessionRunRequest", "SessionRunResponse"),
]


def _all_methods() -> dict[str, tuple[str, str]]:
    methods = {}
    for service in ("PredictionService", "ModelService", "SessionService"):
        sd = POOL.FindServiceByName(f"{TS}.{service}")
        for m in sd.methods:
            methods[f"/{sd.full_name}/{m.name}"] = (m.input_type.name, m.output_type.name)
    return methods


@pytest.mark.parametrize(("path", "request_type", "response_type"), METHODS)
def test_service_methods(path: str, request_type: str, response_type: str) -> None:
    assert _all_methods()[path] == (request_type, response_type)


def test_services_have_exactly_the_tf_serving_methods() -> None:
    assert sorted(_all_methods()) == sorted(path for path, _, _ in METHODS)


V2_METHODS = {
    "ServerLive": ("ServerLiveRequest", "ServerLiveResponse"),
    "ServerReady": ("ServerReadyRequest", "ServerReadyResponse"),
    "ModelReady": ("ModelReadyRequest", "ModelReadyResponse"),
    "ServerMetadata": ("ServerMetadataRequest", "ServerMetadataResponse"),
    "ModelMetadata": ("ModelMetadataRequest", "ModelMetadataResponse"),
    "ModelInfer": ("ModelInferRequest", "ModelInferResponse"),
    "ModelConfig": ("ModelConfigRequest", "ModelConfigResponse"),
    "ModelStatistics": ("ModelStatisticsRequest", "ModelStatisticsResponse"),
    "RepositoryIndex": ("RepositoryIndexRequest", "RepositoryIndexResponse"),
    "RepositoryModelLoad": ("RepositoryModelLoadRequest", "RepositoryModelLoadResponse"),
    "RepositoryModelUnload": ("RepositoryModelUnloadRequest", "RepositoryModelUnloadResponse"),
}


def test_v2_inference_service_methods() -> None:
    sd = POOL.FindServiceByName("inference.GRPCInferenceService")
    actual = {m.name: (m.input_type.name, m.output_type.name) for m in sd.methods}
    assert actual == V2_METHODS
    channel = _RecordingChannel()
    _stub("inference.grpc_service_pb2_grpc").GRPCInferenceServiceStub(channel)
    assert sorted(channel.paths) == sorted(
        f"/inference.GRPCInferenceService/{m}" for m in V2_METHODS
    )


class _RecordingChannel:
    """Stands in for grpc.Channel; records the method paths a stub binds."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def unary_unary(self, path: str, *args: Any, **kwargs: Any) -> object:
        self.paths.append(path)
        return object()


def test_generated_stubs_call_the_tf_serving_paths() -> None:
    channel = _RecordingChannel()
    _stub("tensorflow_serving.apis.prediction_service_pb2_grpc").PredictionServiceStub(channel)
    _stub("tensorflow_serving.apis.model_service_pb2_grpc").ModelServiceStub(channel)
    expected = [p for p, _, _ in METHODS if "SessionService" not in p]
    assert sorted(channel.paths) == sorted(expected)


# --------------------------------------------------------------------------- wire bytes


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _key(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


def _len(number: int, payload: bytes) -> bytes:  # wire type 2: length-delimited
    return _key(number, 2) + _varint(len(payload)) + payload


def _int(number: int, value: int) -> bytes:  # wire type 0: varint
    return _key(number, 0) + _varint(value)


def _hand_written_predict_request() -> bytes:
    """PredictRequest built from TF Serving's field numbers, byte by byte."""
    model_spec = (
        _len(1, b"half_plus_two")  # ModelSpec.name = 1
        + _len(2, _int(1, 123))  # ModelSpec.version = 2 (Int64Value.value = 1)
        + _len(3, b"serving_default")  # ModelSpec.signature_name = 3
    )
    tensor = (
        _int(1, 1)  # TensorProto.dtype = 1: DT_FLOAT
        + _len(2, _len(2, _int(1, 3)))  # tensor_shape = 2 { dim = 2 { size = 1: 3 } }
        + _len(5, struct.pack("<3f", 1.0, 2.0, 5.0))  # float_val = 5, packed
    )
    inputs_entry = _len(1, b"x") + _len(2, tensor)  # map entry: key = 1, value = 2
    return (
        _len(1, model_spec)  # PredictRequest.model_spec = 1
        + _len(2, inputs_entry)  # PredictRequest.inputs = 2
        + _len(3, b"y")  # PredictRequest.output_filter = 3
    )


def _predict_request() -> Any:
    predict_pb2 = _stub("tensorflow_serving.apis.predict_pb2")
    types_pb2 = _stub("tensorflow.core.framework.types_pb2")
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half_plus_two"
    request.model_spec.version.value = 123
    request.model_spec.signature_name = "serving_default"
    tensor = request.inputs["x"]
    tensor.dtype = types_pb2.DT_FLOAT
    tensor.tensor_shape.dim.add(size=3)
    tensor.float_val.extend([1.0, 2.0, 5.0])
    request.output_filter.append("y")
    return request


def test_predict_request_round_trip() -> None:
    request = _predict_request()
    parsed = type(request).FromString(request.SerializeToString())
    assert parsed == request
    assert parsed.model_spec.WhichOneof("version_choice") == "version"


def test_predict_request_serializes_to_tf_serving_bytes() -> None:
    assert _predict_request().SerializeToString(deterministic=True) == (
        _hand_written_predict_request()
    )


def test_hand_written_bytes_parse_as_tf_serving_predict_request() -> None:
    predict_pb2 = _stub("tensorflow_serving.apis.predict_pb2")
    request = predict_pb2.PredictRequest.FromString(_hand_written_predict_request())
    assert request.model_spec.name == "half_plus_two"
    assert request.model_spec.version.value == 123
    assert request.model_spec.signature_name == "serving_default"
    assert list(request.inputs) == ["x"]
    assert request.inputs["x"].dtype == 1
    assert [d.size for d in request.inputs["x"].tensor_shape.dim] == [3]
    assert list(request.inputs["x"].float_val) == [1.0, 2.0, 5.0]
    assert list(request.output_filter) == ["y"]


def test_version_label_is_field_4_of_model_spec() -> None:
    model_pb2 = _stub("tensorflow_serving.apis.model_pb2")
    spec = model_pb2.ModelSpec.FromString(_len(1, b"m") + _len(4, b"stable"))
    assert (spec.name, spec.version_label) == ("m", "stable")
    assert spec.WhichOneof("version_choice") == "version_label"


def test_signature_def_map_packs_with_tf_serving_type_url() -> None:
    metadata_pb2 = _stub("tensorflow_serving.apis.get_model_metadata_pb2")
    packed = any_pb2.Any()
    packed.Pack(metadata_pb2.SignatureDefMap())
    assert packed.type_url == "type.googleapis.com/tensorflow.serving.SignatureDefMap"


def test_model_status_json_uses_tf_serving_names() -> None:
    status_pb2 = _stub("tensorflow_serving.apis.get_model_status_pb2")
    response = status_pb2.GetModelStatusResponse()
    response.model_version_status.add(version=1, state=30).status.error_message = "x"
    as_json = json_format.MessageToDict(response)
    assert as_json == {
        "model_version_status": [
            {"version": "1", "state": "AVAILABLE", "status": {"error_message": "x"}}
        ]
    }


def test_model_server_config_text_format() -> None:
    from google.protobuf import text_format

    config_pb2 = _stub("tensorflow_serving.config.model_server_config_pb2")
    config = text_format.Parse(
        """
        model_config_list {
          config {
            name: "m"
            base_path: "/models/m"
            model_platform: "onnx"
            model_version_policy { specific { versions: 1 versions: 2 } }
            version_labels { key: "stable" value: 1 }
          }
        }
        """,
        config_pb2.ModelServerConfig(),
    )
    model = config.model_config_list.config[0]
    assert model.model_version_policy.WhichOneof("policy_choice") == "specific"
    assert list(model.model_version_policy.specific.versions) == [1, 2]
    assert dict(model.version_labels) == {"stable": 1}


def test_hand_written_bytes_parse_as_v2_model_infer_request() -> None:
    grpc_service_pb2 = _stub("inference.grpc_service_pb2")
    raw = struct.pack("<3f", 1.0, 2.0, 5.0)
    tensor = (
        _len(1, b"x")  # InferInputTensor.name = 1
        + _len(2, b"FP32")  # datatype = 2
        + _len(3, _varint(1) + _varint(3))  # shape = 3, packed int64
    )
    wire = (
        _len(1, b"m")  # ModelInferRequest.model_name = 1
        + _len(2, b"7")  # model_version = 2
        + _len(5, tensor)  # inputs = 5
        + _len(6, _len(1, b"y"))  # outputs = 6 { name = 1 }
        + _len(7, raw)  # raw_input_contents = 7
    )
    request = grpc_service_pb2.ModelInferRequest.FromString(wire)
    assert (request.model_name, request.model_version) == ("m", "7")
    assert [(t.name, t.datatype, list(t.shape)) for t in request.inputs] == [("x", "FP32", [1, 3])]
    assert [o.name for o in request.outputs] == ["y"]
    assert list(request.raw_input_contents) == [raw]
    assert request.SerializeToString() == wire
