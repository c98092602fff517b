"""`spoold show ID`: a job's file wherever it is, as `postcat -q` shows a Postfix queue file.

Reads the spool's folders directly, with or without a running daemon, and changes
nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from spoold import manage, rejects, strictjson
from spoold.errors import InvalidJob, Rejected
from spoold.names import ERROR_SUFFIX
from spoold.spool import Spool

MAX_SHOWN_BYTES = 16 * 1024 * 1024  # a rejected file larger than this is described, not shown


@dataclass(frozen=True)
class Shown:
    """A job's file: where it is, its bytes (None where they are not shown), for a
    rejected file why it was rejected, and why the bytes are not shown."""

    where: str
    raw: bytes | None
    rejected: str | None = None
    unshown: str | None = None


def show(spool: Spool, key: str) -> Shown | None:
    """The file of the job with id `key` (pending, running, completed or failed), else
    the rejected file of that name in failed/ (with or without '.json'); None if none.
    A file that is no regular file is described, not read: a symlink put into the spool
    is not followed, a FIFO is not waited on."""
    for _ in range(3):  # the job may move between finding and reading it
        found = manage.locate(spool, key)
        if found is None:
            break
        where = f"{found.folder}/{found.name}"
        try:
            raw = spool.read(found.folder, found.name)
        except Rejected as e:
            return Shown(where, None, unshown=str(e))
        if raw is not None:
            return Shown(where, raw)
    for name in dict.fromkeys((key, key + ".json")):
        if "/" not in name and spool.mtime("failed", name + ERROR_SUFFIX) is not None:
            return _rejected(spool, name, spool.read_object("failed", name + ERROR_SUFFIX))
    return None


def _rejected(spool: Spool, name: str, explanation: dict[str, Any] | None) -> Shown:
    """A rejected file and its explanation; a file that is no regular file, or too large,
    is described instead of read (reading a FIFO would never end)."""
    where, why = f"failed/{rejects.readable(name)}", _reason(explanation)
    try:
        raw = spool.read_regular("failed", name, MAX_SHOWN_BYTES).raw
    except Rejected as e:
        return Shown(where, None, why, str(e))
    except FileNotFoundError:
        return Shown(where, None, why, "the file is gone")
    return Shown(where, raw, why)


def _reason(explanation: dict[str, Any] | None) -> str:
    if explanation is None:
        return "(its explanation is not readable)"
    error = explanation.get("error")
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
