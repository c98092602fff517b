"""What the HTTP endpoints and the metrics may ask of a daemon: the seam between them.

routes.py and metrics.py see a Service, never the Daemon, so the daemon's parts (its
intake, index, pool, scheduler) can change without the HTTP layer following them,
and this one place says everything the HTTP layer needs. The Daemon is a Service.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from spoold.job import Job

FinishListener = Callable[[Job, str], None]  # (job, folder its outcome was recorded in)


@dataclass(frozen=True)
class Counters:
    """What /metrics shows beyond the snapshot: counts since start, times as epoch seconds."""

    outcomes: dict[tuple[str, str], int]  # (job type, folder) → attempts recorded there
    durations: dict[str, tuple[list[int], float]]  # job type → bucket counts, sum of seconds
    due_since: float | None  # since when the longest-waiting due job has waited
    config_loaded_at: float
    config_ok: bool  # whether the config file last read is the one in force
    storage_ok: bool  # whether the spool takes writes (storage.py)


class Service(Protocol):
    """A daemon as the HTTP API sees it."""

    def job_types(self) -> list[str]:
        """The registered job type names."""
        ...

    def submit(self, data: dict[str, Any]) -> Job:
        """Enqueue a job, durably; InvalidJob if it is not one, OSError if the spool fails."""
        ...

    def find(self, job_id: str) -> tuple[str, dict[str, Any] | None] | None:
        """The folder a job is in and its record (None if unreadable); None if no such job."""
        ...

    def retry(self, job_id: str) -> str:
        """A failed job back to pending/ (a rejected file to incoming/): the folder it went
        to. NotFound, or Conflict when the job is not failed."""
        ...

    def cancel(self, job_id: str) -> str:
        """A pending job to failed/ as cancelled ('failed'); a running one asked to stop
        ('cancelling': its record says 'cancelled' once it has). NotFound, or Conflict
        when the job has finished."""
        ...

    def progress(self, job_id: str) -> dict[str, Any] | None:
        """The last progress report (fraction, text, at) of a job running here, if any."""
        ...

    def run_task(self, name: str) -> str:
        """Enqueue a run of a scheduled task now: its job id. NotFound, or Conflict while
        its last run is pending or running."""
        ...

    def snapshot(self) -> dict[str, Any]:
        """What status.json holds, now."""
        ...

    def counters(self) -> Counters:
        """The counts /metrics shows beyond the snapshot."""
        ...

    def storage_error(self) -> str | None:
        """None while the spool takes writes; else one line: what failed, what to do."""
        ...

    def history(self, now: float) -> list[dict[str, Any]]:
        """Jobs finished per minute over the last hour (see history.py)."""
        ...

    def recent(self, folder: str, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` records of completed or failed jobs, newest first."""
        ...

    @property
    def started_at(self) -> float:
        """When this daemon started (epoch seconds)."""
        ...
