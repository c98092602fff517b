"""Operator verbs on the spool itself: find a job, retry it, cancel it (a running one by
asking its daemon, through cancel/).

They work on the folders directly, with or without a running daemon, so the CLI
and the HTTP API share them. A running daemon finds what they put in pending/
at its next rescan.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from spoold.errors import NotRetryable
from spoold.job import dump_record
from spoold.names import ERROR_SUFFIX, parse_stem, running_stem, stem_of
from spoold.rejects import readable
from spoold.spool import Spool
from spoold.times import iso

JOB_FOLDERS = ("pending", "running", "completed", "failed")
LOOKS = 2  # passes over JOB_FOLDERS before a job is nowhere (see locate)


@dataclass(frozen=True)
class Found:
    """Where a job is: its folder, its file name there, its stem."""

    folder: str
    name: str
    stem: str


def locate(spool: Spool, job_id: str, looks: int = LOOKS) -> Found | None:
    """Find a job by id in any folder (lists the folders: for operators, not per job).
    One pass can miss a job that moves against its order (failed/ → pending/ on a
    retry, running/ → pending/ on a back-off) while it lists: a job is looked for in
    `looks` passes before it is said to be nowhere (a second finds one moved during the
    first). One pass does where a miss costs nothing: a submit's duplicate check, which
    the daemon makes again."""
    for _ in range(looks):
        for folder in JOB_FOLDERS:
            for name in spool.names(folder):
                stem = _stem_of(folder, name)
                parsed = parse_stem(stem) if stem else None
                if parsed and parsed.id == job_id:
                    return Found(folder, name, parsed.text)
    return None


def _stem_of(folder: str, name: str) -> str | None:
    if folder == "running":
        parsed = running_stem(name)
        return parsed[0] if parsed else None
    return name[:-5] if name.endswith(".json") else None


def read_record(spool: Spool, found: Found) -> dict[str, Any] | None:
    """The job's file as JSON, or None if it vanished, is not JSON (edited by hand into
    something that is no record) or is no regular file."""
    return spool.read_object(found.folder, found.name)


def retry(spool: Spool, job_id: str) -> str:
    """A failed job back to pending/ with attempts 0 (its errors kept in previousErrors),
    or a rejected file in failed/ back to incoming/. Returns what was done."""
    found = locate(spool, job_id)
    if found is not None:
        return _retry_found(spool, found)
    for name in dict.fromkeys((job_id, job_id + ".json")):  # as `spoold show` finds it
        if _is_rejected(spool, name):
            return _restore(spool, name)
    raise NotRetryable(f"no job with id {job_id!r} and no rejected file of that name")


def _retry_found(spool: Spool, found: Found) -> str:
    """The failed job back to pending/ under its own name, created exclusively: a second
    retry of it meanwhile finds that name taken and is refused, rather than enqueue the
    job twice. A request to cancel it left from before would stop the retried run: it
    goes first."""
    parsed = parse_stem(found.stem)
    job_id = parsed.id if parsed else found.stem
    if found.folder != "failed":
        raise NotRetryable(f"job {job_id} is {found.folder}, not failed: nothing to retry")
    record = read_record(spool, found)
    if record is None:
        raise NotRetryable(f"failed/{found.name} is not a readable record")
    spool.drop_cancel_request(job_id)
    if not spool.enqueue(found.stem, _reset(record), exclusive=True):
        raise NotRetryable(f"job {job_id} is being retried already")
    try:
        spool.remove("failed", found.name)
    except OSError:  # (a read-only failed/): one job in two folders would run twice
        spool.remove("pending", f"{found.stem}.json")
        raise
    return f"pending/{found.stem}.json"


def _restore(spool: Spool, name: str) -> str:
    restored = spool.restore_rejected(name)
    if restored is None:
        raise NotRetryable(f"failed/{name} vanished before it could be retried")
    return f"incoming/{readable(restored)}"  # a name that is not UTF-8 printed as \\xNN


def _reset(record: dict[str, Any]) -> bytes:
    kept = record.get("previousErrors")
    previous = list(kept) if isinstance(kept, list) else [kept] if kept else []  # as edited
    if record.get("error"):
        previous.append(record["error"])
    record.update(status="pending", attempts=0, error=None, previousErrors=previous)
    for key in ("startedAt", "completedAt", "durationMs", "nextAttemptAt"):
        record.pop(key, None)
    return dump_record(record)


def _is_rejected(spool: Spool, name: str) -> bool:
    return "/" not in name and spool.mtime("failed", name + ERROR_SUFFIX) is not None


def retry_all(spool: Spool) -> list[str]:
    """Retry every failed job and rejected file; returns what was done for each.

    One listing of failed/ for all of them (retrying each by id would list every
    folder once per job)."""
    done = []
    for name in sorted(spool.names("failed")):
        if name.endswith(ERROR_SUFFIX):
            continue
        stem = stem_of(name)
        try:
            if stem:
                done.append(_retry_found(spool, Found("failed", name, stem.text)))
            elif _is_rejected(spool, name):
                done.append(_restore(spool, name))
        except NotRetryable:
            continue
    return done


def cancel(spool: Spool, job_id: str) -> Found:
    """A pending job to failed/ with error 'cancelled' (Found in failed/); a running one
    asked to stop through cancel/ (Found in running/: the daemon holding it records the
    outcome). LookupError if there is no such job, NotRetryable if it has finished."""
    found = locate(spool, job_id)
    if found is None:
        raise LookupError(f"no job with id {job_id!r}")
    if found.folder == "pending" and _cancel_pending(spool, job_id, found):
        return Found("failed", found.stem + ".json", found.stem)
    found = locate(spool, job_id) if found.folder == "pending" else found  # a worker took it
    if found is not None and found.folder == "running":
        spool.request_cancel(job_id)
        return found
    where = found.folder if found else "gone"
    raise NotRetryable(f"job {job_id} is {where}: only a pending or running job can be cancelled")


def _cancel_pending(spool: Spool, job_id: str, found: Found) -> bool:
    """Fail a pending job as cancelled; False if a worker claimed it first. A file that
    is no readable job is moved to failed/ as it is, beside its reason, as intake
    rejects one: a record made up in its place would lose its bytes."""
    record = read_record(spool, found)
    if record is None:
        reason = "cancelled; the file was not a readable job, so it is kept as it was"
        return spool.reject(found.name, reason, "pending") is not None
    stem = parse_stem(found.stem)
    record.update(id=job_id, status="failed", error="cancelled", completedAt=iso(time.time()))
    if stem:
        record.update(priority=stem.priority, createdAt=iso(stem.accepted))
    record.setdefault("attempts", 0)
    return spool.cancel(found.stem, dump_record(record))
