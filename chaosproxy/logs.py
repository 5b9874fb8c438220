"""Every log channel of the proxy, and the two ways its lines are written.

Channels (standard :mod:`logging` names, each switchable on its own)::

    chaosproxy.access      one line per proxied request (INFO); turn off with
                           ``logging.getLogger("chaosproxy.access").disabled = True``
    chaosproxy.server      lifecycle: ready, reload, shutdown (INFO)
    chaosproxy.upstream    an upstream that misbehaves: refused, reset, slow (WARNING)
    chaosproxy.downstream  a client that misbehaves: a malformed request, a request
                           head too slow (WARNING); a failure of the proxy's own
                           while handling a request (ERROR, with the traceback)
    chaosproxy.admin       changes made through the admin API (INFO)
    chaosproxy.config      configuration problems found on reload (WARNING)

Messages are short lowercase events; the values travel as fields (``extra=``), which
the text format appends as ``key=value`` and the JSON format writes as members.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = ["FIELDS", "JsonFormatter", "TextFormatter", "configure_logging"]

#: The ``extra=`` fields that formatters write, in this order.
FIELDS = (
    "method",
    "path",
    "route",
    "component",
    "status",
    "duration_ms",
    "faults",
    "upstream_error",
    "client",
    "listen",
    "admin",
    "upstream",
    "workers",
    "experiment_id",
    "file",
    "problems",
    "error",
)

LogFormat = Literal["text", "json"]


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """Return the known fields attached to ``record``."""
    return {name: record.__dict__[name] for name in FIELDS if name in record.__dict__}


def _timestamp(record: logging.LogRecord) -> str:
    """Return the record's time as ISO 8601 UTC with milliseconds."""
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextFormatter(logging.Formatter):
    """``time LEVEL channel event key=value ...``, one line per record."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as one line of text."""
        parts = [_timestamp(record), record.levelname, record.name, record.getMessage()]
        for name, value in _fields(record).items():
            if isinstance(value, list | tuple):
                value = ",".join(str(v) for v in value)
            parts.append(f"{name}={value}")
        line = " ".join(str(p) for p in parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)

        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with the fields as members."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as one line of JSON."""
        doc: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
        }
        doc.update(_fields(record))
        if record.exc_info:
            doc["traceback"] = self.formatException(record.exc_info)

        return json.dumps(doc, default=str)


def configure_logging(
    log_format: LogFormat = "text",
    level: int = logging.INFO,
    access_log: bool = True,
) -> None:
    """Send the ``chaosproxy`` channels to standard error in ``log_format``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger("chaosproxy")
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    logging.getLogger("chaosproxy.access").disabled = not access_log
