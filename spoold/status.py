"""The daemon's state as a snapshot, and the thread that keeps status.json current.

Counts live in memory (Stats), started from one scan at start and moved by the
daemon's own events, because listing completed/ for every status write would
cost more as the spool grows.
"""

from __future__ import annotations

import bisect
import json
import logging
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from spoold import strictjson
from spoold.job import Job
from spoold.threads import Loop

logger = logging.getLogger(__name__)

# Upper bounds (seconds) of the job duration histogram's buckets; +Inf is implied.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)


class Durations:
    """Attempt durations per job type: bucket counts (not cumulative), sum, count."""

    def __init__(self) -> None:
        self.buckets: dict[str, list[int]] = {}
        self.sums: dict[str, float] = {}

    def observe(self, job_type: str, seconds: float) -> None:
        counts = self.buckets.setdefault(job_type, [0] * (len(DURATION_BUCKETS) + 1))
        counts[bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
        self.sums[job_type] = self.sums.get(job_type, 0.0) + seconds


class Stats:
    """Counters of what the daemon did; thread-safe."""

    def __init__(self, completed: int = 0, failed: int = 0) -> None:
        self._lock = threading.Lock()
        self.completed = completed
        self.failed = failed
        self.processed = 0
        self.outcomes: Counter[tuple[str, str]] = Counter()
        self.durations = Durations()

    def finished(self, job: Job, folder: str) -> None:
        """A worker recorded an attempt's outcome in `folder`."""
        with self._lock:
            self.processed += 1
            self.outcomes[(job.type, folder)] += 1
            self.durations.observe(job.type, (job.duration_ms or 0) / 1000)
            if folder == "completed":
                self.completed += 1
            elif folder == "failed":
                self.failed += 1

    def duration_histograms(self) -> dict[str, tuple[list[int], float]]:
        """Per job type: bucket counts (DURATION_BUCKETS, then +Inf) and the sum of seconds."""
        with self._lock:
            d = self.durations
            return {t: (list(counts), d.sums[t]) for t, counts in d.buckets.items()}

    def changed(self, completed: int = 0, failed: int = 0) -> None:
        """Something else moved: files rejected, records pruned, jobs accepted."""
        with self._lock:
            self.completed += completed
            self.failed += failed


class StatusWriter:
    """Rewrites status file whenever the snapshot changes (checked every second),
    at least every 2 s while anything changes, and once more at stop."""

    def __init__(self, write: Callable[[bytes], None], snapshot: Callable[[], dict[str, Any]]):
        self.write = write
        self.snapshot = snapshot
        self._loop = Loop("status", self.flush, lambda: 1.0)
        self._last: str | None = None
        self._failing = False

    def start(self) -> None:
        self.flush()
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()
        self.flush()

    @property
    def alive(self) -> bool:
        """Whether the writing thread still runs (the daemon's health check)."""
        return self._loop.alive

    def flush(self) -> None:
        """Write the snapshot now if it differs from the last one written."""
        snap = self.snapshot()
        key = json.dumps({k: v for k, v in snap.items() if k != "updatedAt"}, sort_keys=True)
        if key == self._last:
            return
        try:
            self.write(strictjson.dumps(snap, indent=1))
        except OSError as e:
            if not self._failing:  # once per episode: it is tried again every second
                logger.error("cannot write the status file: %s", e)
            self._failing = True
            return
        self._last, self._failing = key, False
