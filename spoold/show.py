"""`spoold show ID`: a job's file wherever it is, as `postcat -q` shows a Postfix queue file.

Reads the spool's folders directly, with or without a running daemon, and changes
nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from spoold import manage, rejects, strictjson
from spoold.errors import InvalidJob, Rejected
from spoold.names import ERROR_SUFFIX
from spoold.spool import Spool

MAX_SHOWN_BYTES = 16 * 1024 * 1024  # a rejected file larger than this is described, not shown


@dataclass(frozen=True)
class Shown:
    """A job's file: where it is, its bytes (None for a rejected file that cannot be
    shown), and for a rejected file why it was rejected."""

    where: str
    raw: bytes | None
    rejected: str | None = None


def show(spool: Spool, key: str) -> Shown | None:
    """The file of the job with id `key` (pending, running, completed or failed), else
    the rejected file of that name in failed/ (with or without '.json'); None if none."""
    for _ in range(3):  # the job may move between finding and reading it
        found = manage.locate(spool, key)
        if found is None:
            break
        raw = spool.read(found.folder, found.name)
        if raw is not None:
            return Shown(f"{found.folder}/{found.name}", raw)
    for name in dict.fromkeys((key, key + ".json")):
        explanation = spool.read("failed", name + ERROR_SUFFIX) if "/" not in name else None
        if explanation is not None:
            return _rejected(spool, name, explanation)
    return None


def _rejected(spool: Spool, name: str, explanation: bytes) -> Shown:
    """A rejected file and its explanation; a file that is no regular file, or too large,
    is described instead of read (reading a FIFO would never end)."""
    why = _reason(explanation)
    try:
        raw = spool.read_regular("failed", name, MAX_SHOWN_BYTES).raw
    except Rejected as e:
        return Shown(f"failed/{rejects.readable(name)}", None, f"{why} (not shown: {e})")
    except FileNotFoundError:
        return Shown(f"failed/{rejects.readable(name)}", None, f"{why} (the file is gone)")
    return Shown(f"failed/{rejects.readable(name)}", raw, why)


def _reason(explanation: bytes) -> str:
    try:
        value = strictjson.loads(explanation)
    except InvalidJob:
        return "(its explanation is not readable)"
    error = value.get("error") if isinstance(value, dict) else None
    return str(error) if error else "(its explanation says no reason)"


def printable(shown: Shown) -> bytes:
    """What stdout gets: a record as indented JSON, any other file's bytes unchanged."""
    if shown.raw is None:
        return b""
    if shown.rejected is not None:
        return shown.raw
    try:
        return strictjson.dumps(strictjson.loads(shown.raw), indent=2)
    except InvalidJob:
        return shown.raw
