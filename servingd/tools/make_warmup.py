"""`servingd-make-warmup`: write a version's warmup file from example inputs, without TensorFlow.

    servingd-make-warmup --model_dir models/half_plus_two/2 examples/x.json examples/batch.npz

writes `models/half_plus_two/2/assets.extra/tf_serving_warmup_requests`: a TFRecord file with
one PredictionLog (predict_log) per example, the format TF Serving and servingd replay when
they load the version. Examples are:

- `.json`: a REST predict body, `{"instances": [...]}` or `{"inputs": ...}`, optionally with
  `"signature_name"`, typed by the model's signature exactly as `POST :predict` types it;
- `.jsonl`: one such body per line;
- `.npz`: arrays named by input alias (numpy.savez), taken with their own dtypes.

Every example is validated and run once on the model before anything is written, so a file
this tool writes cannot fail the load it is meant to warm (unless the model changes).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from servingd.apis.rest.json_document import parse_json_object
from servingd.apis.rest.json_predict import predict_inputs, signature_name
from servingd.core.status import InvalidArgument, ServingError
from servingd.protos.tensorflow_serving.apis import prediction_log_pb2
from servingd.servables.onnx import OnnxLoader, OnnxServable
from servingd.servables.tfrecord import write_records
from servingd.servables.warmup import MAX_NUM_RECORDS, WarmupOptions, warmup_requests_path
from servingd.tensor_codec import fill_tensor_proto


@dataclass(frozen=True, slots=True)
class Example:
    source: str  # file (and line) it came from, for messages
    signature_name: str
    inputs: dict[str, np.ndarray]


def read_examples(path: Path, servable: OnnxServable, default_signature: str) -> Iterator[Example]:
    """The examples in one file (see the module docstring for the formats)."""
    suffix = path.suffix.lower()
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as arrays:
            yield Example(str(path), default_signature, {k: arrays[k] for k in arrays.files})
    elif suffix == ".json":
        yield _json_example(str(path), path.read_bytes(), servable, default_signature)
    elif suffix == ".jsonl":
        for number, line in enumerate(path.read_bytes().splitlines(), start=1):
            if line.strip():
                source = f"{path}:{number}"
                yield _json_example(source, line, servable, default_signature)
    else:
        raise InvalidArgument(f"{path}: expected a .json, .jsonl or .npz file")


def _json_example(source: str, body: bytes, servable: OnnxServable, default: str) -> Example:
    doc = parse_json_object(body)
    name = signature_name(doc) or default
    signature = servable.signature(name)
    bools_possible = b"true" in body or b"false" in body
    _format, inputs = predict_inputs(doc, signature.inputs, bools_possible)
    return Example(source, name, inputs)


def prediction_log(model_name: str, example: Example, output_filter: Sequence[str]) -> bytes:
    log = prediction_log_pb2.PredictionLog()
    request = log.predict_log.request
    request.model_spec.name = model_name
    request.model_spec.signature_name = example.signature_name
    for alias, array in example.inputs.items():
        # tensor_content keeps numeric tensors compact; strings have no such encoding.
        compact = array.dtype != np.dtype(object)
        fill_tensor_proto(request.inputs[alias], array, as_tensor_content=compact)
    request.output_filter.extend(output_filter)
    return bytes(log.SerializeToString())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="servingd-make-warmup",
        description="Write <model_dir>/assets.extra/tf_serving_warmup_requests from examples.",
    )
    p.add_argument("examples", nargs="+", type=Path, help=".json, .jsonl or .npz files")
    p.add_argument("--model_dir", type=Path, required=True, help="version directory (model.onnx)")
    p.add_argument("--output", type=Path, help="where to write (default: the warmup file path)")
    p.add_argument("--model_name", default="", help="model_spec.name (default: the base dir)")
    p.add_argument("--signature_name", default="", help="signature for examples naming none")
    p.add_argument("--output_filter", default="", help="comma list of output aliases to fetch")
    return p


def make_warmup(args: argparse.Namespace) -> tuple[Path, int]:
    model_dir: Path = args.model_dir.resolve()
    loader = OnnxLoader(str(model_dir), warmup=WarmupOptions(enabled=False))
    loader.load()
    servable: OnnxServable = loader.servable()
    output_filter = [a for a in args.output_filter.split(",") if a]
    model_name = args.model_name or model_dir.parent.name
    records = []
    for path in args.examples:
        for example in read_examples(path, servable, args.signature_name):
            try:
                # What the load will do with the record: validate, then run.
                prepared = servable.prepare(example.signature_name, example.inputs, output_filter)
                servable.run(prepared)
            except ServingError as exc:
                raise InvalidArgument(f"{example.source}: {exc.message}") from exc
            records.append(prediction_log(model_name, example, output_filter))
    if len(records) > MAX_NUM_RECORDS:
        raise InvalidArgument(
            f"{len(records)} examples: a warmup file holds at most {MAX_NUM_RECORDS} records"
        )
    output: Path = args.output or warmup_requests_path(model_dir)
    output.parent.mkdir(parents=True, exist_ok=True)
    return output, write_records(output, records)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        output, count = make_warmup(args)
    except (ServingError, OSError, ValueError) as exc:
        message = exc.message if isinstance(exc, ServingError) else str(exc)
        print(f"servingd-make-warmup: {message}", file=sys.stderr)
        return 1
    print(f"Wrote {count} warmup record(s) to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
