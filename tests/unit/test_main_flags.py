"""servingd's command line: --log_level values and --enable_signature_method_name_check
-> ServerOptions. A bad flag value is a usage error: exit status 2, the flag and the allowed
values named on stderr, as argparse does for `choices`."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from servingd.main import build_parser, main, options_from_args
from servingd.monitoring.logging_setup import configure_logging


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("value", ["verbose", "WARN", "", "10", "critical"])
def test_an_unknown_log_level_is_a_usage_error(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["--model_base_path=/nonexistent", f"--log_level={value}"])

    assert raised.value.code == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert error == (
        f"servingd: error: argument --log_level: invalid choice: {value!r} "
        "(choose from 'DEBUG', 'INFO', 'WARNING', 'ERROR')"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [("DEBUG", "DEBUG"), ("info", "INFO"), ("Warning", "WARNING"), ("error", "ERROR")],
)
def test_log_levels_are_accepted_in_any_case(value: str, expected: str) -> None:
    args = build_parser().parse_args([f"--log_level={value}"])
    assert args.log_level == expected

    configure_logging(args.log_level)

    assert logging.getLogger().level == getattr(logging, expected)


def test_log_level_defaults_to_info() -> None:
    assert build_parser().parse_args([]).log_level == "INFO"


def test_configure_logging_refuses_an_unknown_level() -> None:
    with pytest.raises(
        ValueError, match=r"^--log_level must be one of DEBUG, INFO, WARNING, ERROR; got verbose$"
    ):
        configure_logging("verbose")


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ((), False),
        (("--enable_signature_method_name_check",), True),
        (("--enable_signature_method_name_check=true",), True),
        (("--enable_signature_method_name_check=false",), False),
    ],
)
def test_signature_method_name_check_reaches_server_options(
    tmp_path: Path, flags: tuple[str, ...], expected: bool
) -> None:
    args = build_parser().parse_args([f"--model_base_path={tmp_path}", *flags])
    assert options_from_args(args).enable_signature_method_name_check is expected
