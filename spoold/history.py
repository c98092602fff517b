"""Jobs finished per minute over the last hour, for GET /jobs/history (the dashboard's chart).

Counted in memory from this daemon's own outcomes rather than from the folders' files,
so a question costs 60 dictionary reads however large completed/ grows; a restart
starts the chart empty.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from spoold.job import Job
from spoold.times import iso

MINUTES = 60
FOLDERS = ("completed", "failed")


class History:
    """Per-minute counts of jobs that reached completed/ or failed/; thread-safe."""

    def __init__(self, minutes: int = MINUTES) -> None:
        self.span = minutes
        self._lock = threading.Lock()
        self._counts: dict[int, Counter[str]] = {}  # minute number since the epoch → counts

    def finished(self, job: Job, folder: str) -> None:
        """The daemon's finish listener: an attempt's outcome was recorded in folder."""
        self.record(folder, job.completed_at or time.time())

    def record(self, folder: str, when: float) -> None:
        """A job's outcome was recorded in folder at `when` (epoch seconds); retries
        (folder pending) are not outcomes and are not counted."""
        if folder not in FOLDERS:
            return
        minute = int(when // 60)
        with self._lock:
            self._counts.setdefault(minute, Counter())[folder] += 1
            for old in [m for m in self._counts if m <= minute - self.span]:
                del self._counts[old]

    def minutes(self, now: float) -> list[dict[str, Any]]:
        """The last `span` minutes up to the one holding `now`, oldest first, each present."""
        last = int(now // 60)
        with self._lock:
            counts = {m: dict(c) for m, c in self._counts.items()}
        return [
            {
                "minute": iso(m * 60),
                **{folder: counts.get(m, {}).get(folder, 0) for folder in FOLDERS},
            }
            for m in range(last - self.span + 1, last + 1)
        ]
