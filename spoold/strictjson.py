"""JSON as spoold reads it from users and writes it back: strict, both ways.

Python's json module takes more than JSON (NaN, Infinity, numbers too large for
a float, strings holding half a UTF-16 surrogate pair) and gives up in ways that
are not a JSONDecodeError (RecursionError on deep nesting, ValueError on an int
of more than 4300 digits). Every door that reads a user's JSON (a file in
incoming/, an HTTP body, `spoold submit -f`, a record an operator edited) goes
through `loads` here, so any input the parser cannot take is an InvalidJob that
says why, and every record spoold writes is strict JSON.
"""

from __future__ import annotations

import codecs
import json
import math
import re
import sys
from typing import Any

from spoold.errors import InvalidJob

MAX_DEPTH = 100  # levels of nested lists and objects; far beyond any job, far below the stack
# A lone surrogate can only come from a \uD800-\uDFFF escape: valid UTF-8 cannot hold one.
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def loads(raw: bytes) -> Any:
    """UTF-8 JSON bytes (a BOM is skipped) → the value, or InvalidJob saying what is wrong."""
    bom = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    try:  # not decode("utf-8-sig"): that codec is Python code, and this runs for every job
        text = raw[bom:].decode()
    except UnicodeDecodeError as e:
        where = e.start + bom
        raise InvalidJob(f"not UTF-8 text (byte {where}): write JSON as UTF-8") from e
    value = _parse(text)
    _check_depth(raw, value)
    if SURROGATE_ESCAPE.search(raw):
        _check_unicode(value)
    return value


_STRICT: dict[str, Any] = {"ensure_ascii": False, "allow_nan": False}
_ENCODER = json.JSONEncoder(**_STRICT)  # one for every record: json.dumps makes one a call


def dumps(value: Any, indent: int | None = None) -> bytes:
    """value → strict JSON bytes and a newline; ValueError for NaN or infinity, and
    UnicodeEncodeError for a string that is not valid Unicode: never a record that
    another JSON reader would refuse."""
    encoder = _ENCODER if indent is None else json.JSONEncoder(**_STRICT, indent=indent)
    return encoder.encode(value).encode() + b"\n"


def object_or_none(raw: bytes | None) -> dict[str, Any] | None:
    """The JSON object in raw (a file spoold wrote, read back); None when there is no
    raw, or it is not strict JSON, or not an object: the caller treats it as unreadable."""
    if raw is None:
        return None
    try:
        value = loads(raw)
    except InvalidJob:
        return None
    return value if isinstance(value, dict) else None


def _parse(text: str) -> Any:
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError as e:
        what = e.msg.removesuffix(" at")  # "Invalid control character at"
        raise InvalidJob(f"not valid JSON: {what} at line {e.lineno} column {e.colno}") from e
    except RecursionError as e:
        raise InvalidJob(_too_deep()) from e
    except _NotFinite as e:
        raise InvalidJob(
            f"not valid JSON: the number {e} is not finite (JSON has no NaN or infinity):"
            " use a number a float can hold, or a string"
        ) from e
    except ValueError as e:  # int() refused a number of more digits than it converts
        limit = sys.get_int_max_str_digits()
        raise InvalidJob(f"a number has more than {limit} digits: send it as a string") from e


class _NotFinite(ValueError):
    """A number JSON cannot carry; its text is the message."""


def _no_constant(name: str) -> Any:
    raise _NotFinite(name)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotFinite(text if len(text) <= 40 else text[:37] + "...")
    return value


# One decoder for every call: json.loads with hooks would build a new one each time,
# which costs more than decoding a small job.
_DECODER = json.JSONDecoder(parse_float=_finite_float, parse_constant=_no_constant)


def _check_depth(raw: bytes, value: Any) -> None:
    """InvalidJob if lists and objects nest deeper than MAX_DEPTH: the parser's own
    limit depends on the caller's stack, and every later reader needs room too."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:  # cannot be deeper: no walk
        return
    level: list[tuple[Any, int]] = [(value, 1)]
    while level:
        item, depth = level.pop()
        if isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                raise InvalidJob(_too_deep())
            children = item.values() if isinstance(item, dict) else item
            level.extend((child, depth + 1) for child in children)


def _too_deep() -> str:
    return f"nested too deeply: lists and objects may nest at most {MAX_DEPTH} levels"


def _check_unicode(value: Any) -> None:
    """InvalidJob if a string (or key) holds a lone surrogate, which no record can hold."""
    try:
        json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError as e:
        bad = e.object[e.start : e.end].encode("unicode_escape").decode()
        raise InvalidJob(
            f"a string holds {bad}, half of a UTF-16 surrogate pair that is not text:"
            " escape the whole pair or send the character itself"
        ) from e
