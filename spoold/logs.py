"""How a log record becomes text: plain lines for people, JSON lines for log shippers.

Log messages carry text spoold does not control: file names from incoming/, job ids,
error messages of plug-ins. A name holding a newline would otherwise write a line of
its own into the log, one that reads like a record spoold never wrote. So the plain
format escapes every control character (C0, DEL, C1, the Unicode line and paragraph
separators, and the bidirectional overrides that reorder what a terminal shows) as
`\\n`, `\\x1b`, `\\u2028`...: one record is one line. A traceback keeps its lines
for readability, each indented, so that a line starting with a character other than
a space always starts a record. The JSON format is safe by construction: one
`json.dumps` a record, in ASCII.

cli.py chooses the format and calls setup(); so does a helper process (helper.py),
which writes to the daemon's stderr, with the choice it inherits in SPOOLD_LOG_FORMAT.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

from spoold.times import iso

FORMATS = ("text", "json")
FORMAT_VARIABLE = "SPOOLD_LOG_FORMAT"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Continuation lines (a traceback's) start with this: never how a record starts.
INDENT = "    "

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_BIDI = [*range(0x200E, 0x2010), *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_CONTROLS = [*range(0x00, 0x20), *range(0x7F, 0xA0), 0x2028, 0x2029, *_BIDI]


def _escape_of(code: int) -> str:
    char = chr(code)
    if char in _NAMED:
        return _NAMED[char]
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


_ESCAPES = {code: _escape_of(code) for code in _CONTROLS}


def escape(text: str) -> str:
    """text with every control character spelled out: one line, the same on any terminal."""
    return text.translate(_ESCAPES)


def indent(text: str) -> str:
    """A multi-line text (a traceback) as continuation lines, each escaped and indented."""
    return "\n".join(INDENT + escape(line) for line in text.split("\n"))


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message`, one line a record; tracebacks indented below it."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:
        return indent(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return indent(super().formatStack(stack_info))


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (ISO 8601, UTC), level, logger, message, and
    exception (the traceback) when the record has one."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": iso(record.created).replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=True)


def formatter(name: str) -> logging.Formatter:
    """The formatter of a --log-format choice (one of FORMATS)."""
    return JsonFormatter() if name == "json" else TextFormatter()


def setup(level: int, name: str) -> None:
    """Records of `level` and above to stderr in format `name`; the choice is left in the
    environment for the helper processes, which write to the same stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(name))
    logging.basicConfig(level=level, handlers=[handler])
    os.environ[FORMAT_VARIABLE] = name
