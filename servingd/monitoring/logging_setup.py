"""`--log_format=text|json`: the process's log lines, for people or for log pipelines.

text: `2024-05-01 12:00:00,123 INFO servingd.lifecycle: Successfully loaded servable version
{name: m version: 1} in 64 ms` (one line).
json: one JSON object per line with `time` (UTC, ISO 8601, milliseconds), `level`,
`logger`, `message`, every `extra` field the call passed (the lifecycle events' `event`,
`model`, `version`, ...), and `exception` with the traceback when there is one.
Nothing is logged per request unless something goes wrong.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")  # any case
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Attributes every LogRecord has; anything else on a record came from `extra`.
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        seconds = time.gmtime(record.created)
        document: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", seconds) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES and key not in document:
                document[key] = value
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            document["exception"] = record.exc_text
        if record.stack_info:
            document["stack"] = self.formatStack(record.stack_info)
        # default=str: an `extra` value JSON cannot hold is still written, as its text.
        return orjson.dumps(document, default=str).decode()


def configure_logging(level: str = "INFO", log_format: str = "text") -> None:
    """Replaces the root logger's handlers with one on stderr in `log_format`."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"--log_format must be one of {', '.join(LOG_FORMATS)}; got {log_format}")
    if level.upper() not in LOG_LEVELS:
        raise ValueError(f"--log_level must be one of {', '.join(LOG_LEVELS)}; got {level}")
    handler = logging.StreamHandler(sys.stderr)
    formatter = JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.getLevelName(level.upper()))
