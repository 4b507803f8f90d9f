"""Logging for a crawl's process: text or JSON lines on stderr, at the level the flags ask.

Used by the CLI and by the children of `--processes`, so that a child logs exactly as its
parent does.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import TextIO


def setup_logging(verbose: bool, quiet: bool, log_format: str) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    handler = _StderrHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiosqlite").setLevel(logging.WARNING)


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever sys.stderr is now: under rich's live display, a proxy that
    prints log lines above the display instead of through it."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr  # under the handler's lock (Handler.handle takes it)
        super().emit(record)


class _JsonFormatter(logging.Formatter):
    """One JSON object per line; a record's `fields` extra (progress, summary) is merged in."""

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": record.created,
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        data.update(getattr(record, "fields", {}))
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data)
