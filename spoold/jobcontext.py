"""What a running job is handed besides its dict: whether to stop, and where to say how far
it got.

A plug-in whose function takes a second parameter gets a JobContext (the registry looks
at the signature once, when the config is loaded); a function that takes only the job
keeps working and never hears of a cancel. Progress lives here, in memory: a report is
shown (GET /jobs/<id>, status.json, the status page), never written to the spool, so a
job may report as often as it likes.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from spoold.errors import JobCancelled
from spoold.times import iso

logger = logging.getLogger(__name__)

TEXT_LIMIT = 200  # characters of a progress text that are kept


class JobContext:
    """One attempt's line to the daemon; safe to use from any thread."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self._asked = False  # set once, under _lock; read without it (a bool is atomic)
        self._seen = False
        self._lock = threading.Lock()
        self._progress: dict[str, Any] | None = None
        self._hooks: list[Callable[[], None]] = []

    def cancelled(self) -> bool:
        """Whether an operator asked this job to stop; a job that sees True should stop
        (return, or raise JobCancelled) and its record then says 'cancelled'."""
        if not self._asked:
            return False
        self._seen = True
        return True

    def check(self) -> None:
        """Raise JobCancelled if asked to stop: what the built-ins call between steps."""
        if self.cancelled():
            raise JobCancelled()

    def progress(self, fraction: float, text: str = "") -> None:
        """Report how far the job got: fraction from 0 to 1 and a short text (cut to 200
        characters, one line). ValueError for a fraction that is no number in 0..1."""
        if isinstance(fraction, bool) or not isinstance(fraction, int | float):
            raise ValueError(f"progress fraction must be a number from 0 to 1, got {fraction!r}")
        if not (math.isfinite(fraction) and 0 <= fraction <= 1):
            raise ValueError(f"progress fraction must be from 0 to 1, got {fraction!r}")
        line = " ".join(str(text).split())[:TEXT_LIMIT]
        report = {"fraction": float(fraction), "text": line, "at": iso(time.time())}
        with self._lock:
            self._progress = report

    def on_cancel(self, hook: Callable[[], None]) -> None:
        """Call hook (from the thread that cancels) when a cancel is asked, or now if one
        was: how a job blocked in a call (a socket read) is woken to stop."""
        with self._lock:
            if not self._asked:
                self._hooks.append(hook)
                return
        hook()

    # ----- the worker's side -------------------------------------------------------------

    def request_cancel(self) -> None:
        with self._lock:
            self._asked = True
            hooks, self._hooks = self._hooks, []
        for hook in hooks:
            try:
                hook()
            except Exception:  # a job's hook must not break the canceller (HTTP, monitor)
                logger.exception("job %s: a cancel hook failed", self.job_id)

    @property
    def cancel_requested(self) -> bool:
        return self._asked

    @property
    def cancel_seen(self) -> bool:
        """Whether the job itself learned of the request (it asked cancelled())."""
        return self._seen

    def last_progress(self) -> dict[str, Any] | None:
        """The latest report: fraction, text, at (ISO time); None before the first."""
        with self._lock:
            return dict(self._progress) if self._progress else None
