"""What a job returned, as its record keeps it: JSON, capped, and always strict.

A job type's run() may return a value; the worker hands it here and puts the fields
this gives into the job's record. The record must stay strict JSON of a bounded
size whatever a plug-in returns, so a value JSON cannot hold (a set, an object, a
NaN) is kept as its text with a note, and a large one is cut.
"""

from __future__ import annotations

from typing import Any

from spoold import strictjson

MAX_RESULT_BYTES = 64 * 1024  # of the result's JSON text
RESULT_FIELDS = ("result", "resultTruncated", "resultBytes", "resultNote")


def result_fields(value: Any) -> dict[str, Any]:
    """The record's fields for a job's return value: {} for None (no `result` key);
    else `result`, plus `resultNote` when the value was not JSON and `resultTruncated`
    and `resultBytes` (its full JSON size) when it was cut to MAX_RESULT_BYTES."""
    if value is None:
        return {}
    fields: dict[str, Any] = {}
    try:
        text = strictjson.dumps(value)[:-1]  # without the line break dumps ends with
    except (TypeError, ValueError, RecursionError) as e:
        value = _as_text(value)
        text = strictjson.dumps(value)[:-1]
        fields["resultNote"] = f"not JSON ({_reason(e)}): recorded as its text"
    if len(text) <= MAX_RESULT_BYTES:
        return {"result": value, **fields}
    cut = text[:MAX_RESULT_BYTES].decode("utf-8", "ignore")  # not a character cut in two
    return {"result": cut, "resultTruncated": True, "resultBytes": len(text), **fields}


def _as_text(value: Any) -> str:
    """str() of the value, or repr() where str() fails (it runs a plug-in's code);
    lone surrogates escaped, since a record is UTF-8."""
    try:
        text = str(value)
    except Exception:
        text = object.__repr__(value)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _reason(error: Exception) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:120]
