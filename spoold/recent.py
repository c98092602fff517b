"""The newest finished jobs per folder, kept in memory, so that GET /jobs/completed?limit=10
reads no folder and at most a few files.

Fed by the worker's on_finish hook (and by cancels). What was in completed/ and
failed/ before this daemon started is found by one scan at the first question
(names and modification times only); such a record is read only when answered.
"""

from __future__ import annotations

import heapq
import json
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from spoold.job import Job
from spoold.names import stem_of
from spoold.spool import Spool

KEEP = 1000  # entries kept per folder: also the largest `limit` answered
MAX_RECORD_BYTES = 16384  # a larger record is not kept in memory but read back when asked for
FOLDERS = ("completed", "failed")


@dataclass(frozen=True)
class Entry:
    """One finished job: its record when small, else where to find it."""

    id: str
    record: dict[str, Any] | None = None
    name: str | None = None


class Recent:
    """Newest-first finished jobs per folder; thread-safe."""

    def __init__(self, spool: Spool, alive: Callable[[str], bool], keep: int = KEEP) -> None:
        self.spool = spool
        self.alive = alive  # whether a job id is still in the spool (pruned ones are not)
        self.keep = keep
        self._lock = threading.Lock()
        self._entries: dict[str, deque[Entry]] = {f: deque(maxlen=keep) for f in FOLDERS}
        self._seeded: set[str] = set()

    def finished(self, job: Job, folder: str) -> None:
        """The daemon's finish listener: a final record (completed or failed) joins the list."""
        if folder in FOLDERS:  # not a retry
            self.add(folder, job.to_record())

    def add(self, folder: str, record: dict[str, Any], name: str | None = None) -> None:
        """A job's final record was just written into folder (completed or failed)."""
        if folder not in self._entries:
            return
        small = len(json.dumps(record, default=str)) <= MAX_RECORD_BYTES
        entry = Entry(str(record.get("id")), record if small else None, name)
        with self._lock:
            self._entries[folder].appendleft(entry)

    def forget(self, job_id: str) -> None:
        """The job left its folder another way (a retry through the API)."""
        with self._lock:
            for folder, entries in self._entries.items():
                kept = [e for e in entries if e.id != job_id]
                if len(kept) != len(entries):
                    self._entries[folder] = deque(kept, maxlen=self.keep)

    def newest(self, folder: str, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` records of `folder`, newest first."""
        if folder not in self._seeded:
            self._seed(folder)
        with self._lock:
            entries = list(self._entries[folder])
        answer: list[dict[str, Any]] = []
        seen: set[str] = set()  # a job failed, retried by the CLI and failed again is listed twice
        names: dict[str, str] | None = None
        for entry in entries:
            if len(answer) >= limit:
                break
            if entry.id in seen:
                continue
            if entry.record is None and entry.name is None and names is None:
                names = self._names_by_id(folder)
            record = self._load(folder, entry, names or {})
            if record is not None:
                answer.append(record)
                seen.add(entry.id)
        return answer

    def _load(self, folder: str, entry: Entry, names: dict[str, str]) -> dict[str, Any] | None:
        if not self.alive(entry.id):
            return None
        if entry.record is not None:
            return entry.record
        name = entry.name or names.get(entry.id)
        return self.spool.read_object(folder, name) if name else None

    def _names_by_id(self, folder: str) -> dict[str, str]:
        """One listing of folder: job id → file name (for records too large to keep)."""
        found = {}
        for name in self.spool.names(folder):
            stem = stem_of(name)
            if stem:
                found[stem.id] = name
        return found

    def _seed(self, folder: str) -> None:
        """Add the newest records already on disk behind what this daemon finished itself."""
        found = []
        for name in self.spool.names(folder):
            stem = stem_of(name)
            mtime = self.spool.mtime(folder, name) if stem else None
            if stem and mtime is not None:
                found.append((mtime, stem.id, name))
        newest = heapq.nlargest(self.keep, found)
        with self._lock:
            if folder in self._seeded:
                return
            entries = self._entries[folder]
            known = {e.id for e in entries}
            for _, job_id, name in newest:
                if len(entries) >= self.keep:
                    break
                if job_id not in known:
                    entries.append(Entry(job_id, None, name))
            self._seeded.add(folder)
