"""Structured logging: one JSON object per line, with the ``extra={...}`` fields of the call."""

from __future__ import annotations

import json
import logging
import sys
import time

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
# A log line's fields are bounded: a message or field quoting a client's 60 MB string must
# not become a 60 MB line (the messages themselves clip names: errors.clip).
MAX_FIELD = 4000  # characters of the message and of each extra field
MAX_TRACEBACK = 20000  # characters of a formatted exception


def _bounded(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters, truncated)"


def _field(value: object) -> object:
    """An extra field as logged: as is when short (lists stay lists), else its bounded text."""
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    if isinstance(value, str):
        return _bounded(value, MAX_FIELD)
    text = json.dumps(value, default=str)
    return value if len(text) <= MAX_FIELD else _bounded(text, MAX_FIELD)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": _bounded(record.getMessage(), MAX_FIELD),
        }
        entry.update({k: _field(v) for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exc"] = _bounded(self.formatException(record.exc_info), MAX_TRACEBACK)
        return json.dumps(entry, default=str)


def configure(level: str = "INFO", *, json_lines: bool = True) -> None:
    """Set up the root logger once, for the serving process (not on import)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if json_lines
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
