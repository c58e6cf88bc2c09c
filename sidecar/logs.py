"""Logging on stderr: plain text or one JSON object per line, with secrets scrubbed on the way out.

The code never logs a key on purpose; the scrubbing is the second line of defence, for what a
dependency or an upstream error message might carry (bearer tokens, ``sk-...`` style keys).
"""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any

import msgspec

_SECRETS = re.compile(
    r"(?i)(bearer\s+|x-api-key[\"']?\s*[:=]\s*[\"']?|api-key[\"']?\s*[:=]\s*[\"']?|x-goog-api-key[\"']?\s*[:=]\s*[\"']?"
    r"|key=)[^\s\"'&,;]+"
    r"|\b(sk|pk|rk|gsk|xai|csk|sk-ant|sk-proj|AIza)[-_][A-Za-z0-9_\-]{12,}|\bAIza[0-9A-Za-z_\-]{20,}"
)


def scrub(text: str) -> str:
    return _SECRETS.sub(lambda m: (m.group(1) or "") + "[redacted]", text)


class _Scrub(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub(record.getMessage())
        record.args = None
        return True


class _Json(logging.Formatter):
    _encode = msgspec.json.Encoder().encode

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exc"] = scrub(self.formatException(record.exc_info))
        return self._encode(entry).decode()


class _Text(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and fields:
            text += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        return scrub(text) if record.exc_info else text


def setup(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Json() if fmt == "json" else _Text())
    handler.addFilter(_Scrub())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    if root.level > logging.DEBUG:  # httpx logs every request at INFO: only with --log-level debug
        logging.getLogger("httpx").setLevel(logging.WARNING)
    # httpcore's debug trace prints request and response headers, where keys live: never
    logging.getLogger("httpcore").setLevel(max(root.level, logging.INFO))
