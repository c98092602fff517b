"""Whether the spool can be written now: one state the whole daemon reads.

A write that fails for want of space or of a writable disk (ENOSPC, EDQUOT,
EROFS, EIO, ...) is not a job's fault: the job's outcome is kept in memory and
written again (commit.py), no new work is claimed meanwhile (worker.py,
intake.py), and status.json, /healthz and /metrics say what failed and what to
do. The first write that succeeds again ends it.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from typing import Any

from spoold.times import iso

logger = logging.getLogger(__name__)

ADVICE = {
    errno.ENOSPC: "free space on that file system",
    errno.EDQUOT: "free space or raise the disk quota of the daemon's user",
    errno.EROFS: "remount that file system read-write",
    errno.EIO: "check the disk (dmesg) and the file system",
    errno.EACCES: "give the daemon's user write access to the spool",
    errno.EPERM: "give the daemon's user write access to the spool",
}


def describe(what: str, error: OSError, where: str) -> str:
    """One line: what failed, the errno, the path, and what to do; spoold retries."""
    path = os.path.abspath(os.fsdecode(error.filename or where))
    return (f"{what} failed: {errno_name(error)} ({error.strerror or error}) at {path}:"
            f" {advice(error)}; spoold retries by itself")  # fmt: skip


def advice(error: OSError) -> str:
    """What a person can do about a write error."""
    return ADVICE.get(error.errno or 0, "fix the file system")


def errno_name(error: OSError) -> str:
    """ENOSPC, EROFS, ...: the name a person searches for; '?' for an error without one."""
    return errno.errorcode.get(error.errno, "?") if error.errno is not None else "?"


class StorageHealth:
    """ok, or the first write error since the spool last took a write; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ok = threading.Event()
        self._ok.set()
        self.error: str | None = None
        self.errno: int | None = None
        self.since: float | None = None

    @property
    def ok(self) -> bool:
        return self._ok.is_set()

    def failed(self, what: str, error: OSError, where: str) -> None:
        """A write failed: say so (once per episode in the log) until one succeeds."""
        with self._lock:
            first = self._ok.is_set()
            self.error = describe(what, error, where)
            self.errno = error.errno
            if first:
                self.since = time.time()
                self._ok.clear()
        if first:
            logger.error("storage: %s", self.error)

    def recovered(self) -> None:
        """A write succeeded: the spool takes writes again."""
        with self._lock:
            if self._ok.is_set():
                return
            lasted = time.time() - (self.since or time.time())
            self.error, self.errno, self.since = None, None, None
            self._ok.set()
        logger.warning("storage: the spool takes writes again (after %.1fs); resuming", lasted)

    def wait_ok(self, timeout: float) -> bool:
        return self._ok.wait(timeout)

    def snapshot(self) -> dict[str, Any]:
        """status.json's "storage": {"ok", "error", "since"}."""
        with self._lock:
            since = iso(self.since) if self.since is not None else None
            return {"ok": self._ok.is_set(), "error": self.error, "since": since}
