"""Structured JSON logs: one object per line, with the record's ``extra`` fields."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any

# uvicorn adds an ANSI-coloured copy of its message; JSON readers want the plain one only.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    """Formats a record as JSON. Callers never pass secrets; this adds none."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str = "info") -> None:
    """Send kubegate's and uvicorn's logs to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # httpx logs every request at INFO: one line per Kubernetes API call of the reconciler
    # (thousands per resync at scale). Shown at debug only.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(
            logging.DEBUG if level.lower() == "debug" else logging.WARNING
        )
