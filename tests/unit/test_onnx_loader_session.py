"""The onnxruntime session OnnxLoader builds: TF Serving's parallelism flags and servingd's
spinning choice reach the session's options."""

from __future__ import annotations

from pathlib import Path

import pytest

from servingd.main import build_parser, options_from_args
from servingd.servables.onnx import SessionConfig
from servingd.servables.onnx.onnx_loader import OnnxLoader
from servingd.testing.models import affine, write_version


def session_options(tmp_path: Path, config: SessionConfig) -> object:
    version_dir = write_version(tmp_path / "m", 1, affine(1.0, 0.0))
    loader = OnnxLoader(str(version_dir), session_config=config)
    loader.load()
    try:
        return loader.servable()._session.get_session_options()
    finally:
        loader.unload()


@pytest.mark.parametrize(("spinning", "entry"), [(False, "0"), (True, "1")])
def test_spinning_reaches_both_thread_pools(tmp_path: Path, spinning: bool, entry: str) -> None:
    options = session_options(tmp_path, SessionConfig(2, 1, allow_spinning=spinning))

    assert options.intra_op_num_threads == 2  # type: ignore[attr-defined]
    assert options.inter_op_num_threads == 1  # type: ignore[attr-defined]
    for pool in ("intra_op", "inter_op"):
        key = f"session.{pool}.allow_spinning"
        assert options.get_session_config_entry(key) == entry  # type: ignore[attr-defined]


@pytest.mark.parametrize(("argv", "spinning"), [([], False), (["--intra_op_spinning"], True)])
def test_the_flag_sets_spinning(argv: list[str], spinning: bool) -> None:
    args = build_parser().parse_args(["--model_base_path=/m", *argv])
    assert options_from_args(args).core.session_config.allow_spinning is spinning
