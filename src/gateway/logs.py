"""Logging set-up: one physical line per record, text or JSON, control characters escaped, chatty libraries pinned.

A client controls paths and header values; escaping at the formatter (the one place every record passes)
means no message, argument or traceback can start a line of its own and pass for another record. Within a
line, a `key=value` field whose value a client or user chose goes through `field_value`, so it cannot pass for
more fields (`/v1/x user_id=<another user's id>`).
"""

from __future__ import annotations

import logging
import os
import re
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
FORMATS = ("text", "json")
# Libraries whose DEBUG output carries SQL parameters (ciphertexts, token hashes), request bodies (prompts) or
# headers (keys): never below WARNING, whatever LOG_LEVEL says.
PINNED = (
    "aiosqlite", "asyncpg", "sqlalchemy", "sqlalchemy.engine", "sqlalchemy.pool", "httpx", "httpcore", "litellm",
    "LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "openai", "urllib3", "hpack", "asyncio", "alembic.runtime.plugins",
)
# Request fields an access record carries (`extra={"access": {...}}`); JSON lines keep them as fields.
ACCESS = "access"
# Line and paragraph separators (splitlines() breaks on them) and the invisible or bidirectional formatting
# characters that make a line read differently from what it holds (U+202E reverses what follows it on screen).
INVISIBLE = r"\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff"
CONTROL = re.compile(rf"[\x00-\x1f\x7f-\x9f{INVISIBLE}]")
# JSON escapes control characters itself, not these (they can only be inside strings).
JSON_UNSAFE = re.compile(rf"[{INVISIBLE}]")
# A value that cannot pass for more than one field, or for none: no space of any kind, `=`, quote or backslash.
PLAIN_VALUE = re.compile(r"[^\s=\"\\]+")


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def escape(text: str) -> str:
    """`text` on one line: CR, LF and every other control character written as a visible escape."""
    return CONTROL.sub(_escape_char, text)


def field_value(value: object) -> str:
    """A `key=value` field's value as written in a text line: as it is when plain, else in double quotes with
    `"` and `\\` escaped (the formatter escapes control characters in either case)."""
    text = str(value)
    if PLAIN_VALUE.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _record_text(record: logging.LogRecord, formatter: logging.Formatter) -> str:
    message = record.getMessage()
    if record.exc_info and not record.exc_text:
        record.exc_text = formatter.formatException(record.exc_info)
    if record.exc_text:
        message = f"{message} | {record.exc_text}"
    return escape(message)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message`, the message (and any traceback) escaped onto the one line."""

    def format(self, record: logging.LogRecord) -> str:
        """One line per record."""
        at = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        return f"{at} {record.levelname} {escape(record.name)}: {_record_text(record, self)}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and an access record's request fields."""

    def format(self, record: logging.LogRecord) -> str:
        """One line per record (JSON escapes every control character itself)."""
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": _record_text(record, self),
        }
        fields = getattr(record, ACCESS, None)
        if isinstance(fields, dict):
            doc.update({k: v for k, v in fields.items() if k not in doc})
        return JSON_UNSAFE.sub(_json_escape, orjson.dumps(doc, default=str).decode())


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def configure(level: str = "INFO", fmt: str = "text", stream: TextIO | None = None) -> None:
    """Route every record to one stream handler with our formatter; pin the libraries that would leak."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Neither format shows a record's thread or process: not looked up for every record (the access log's
    # thousands per second).
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    for name in PINNED:
        logging.getLogger(name).setLevel(logging.WARNING)
    # litellm adds a stream handler of its own to its loggers on import, at LITELLM_LOG's level: held at
    # CRITICAL, its records reach stderr once, through ours (one line, escaped), not twice in two formats.
    os.environ.setdefault("LITELLM_LOG", "CRITICAL")
