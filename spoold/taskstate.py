"""What the scheduler remembers about a task, and the names it gives runs and markers.

Kept apart from the scheduler's logic so both stay small: values, their JSON
form (the state file survives restarts) and pure naming rules.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from spoold import strictjson
from spoold.errors import InvalidJob, Rejected

logger = logging.getLogger(__name__)

MARKER = ".fire"  # schedule/<job id>.fire: who decided a scheduled run, and what
POINTER = ".last"  # schedule/<task>.last: the task's latest run, whoever enqueued it
RECENT_IDS = 8  # ids of a task's latest runs remembered, so a run is followed only once
# Job ids are at most 128 characters; the longest suffix is '.run-20261129T173105Z'.
_MAX_BASE = 128 - len(".run-20261129T173105Z")


@dataclass
class Run:
    """One job enqueued for a task: its id, its pending name, and when it was enqueued."""

    job_id: str
    stem: str
    at: float
    folder: str = "pending"

    def to_json(self) -> dict[str, Any]:
        return {"jobId": self.job_id, "stem": self.stem, "at": self.at}

    @classmethod
    def from_json(cls, data: Any) -> Run | None:
        """A run from a marker, a pointer or the state file; None if it does not read as one."""
        try:
            return cls(str(data["jobId"]), str(data["stem"]), float(data["at"]))
        except (KeyError, TypeError, ValueError):
            return None


@dataclass
class TaskState:
    """A task's counters and open runs; `checked` is the end of the last window looked at,
    `latest` the newest run's time, `seen` the ids of the latest runs followed."""

    run_count: int = 0
    error_count: int = 0
    skipped_count: int = 0
    last_run: float | None = None
    last_error: str | None = None
    last_result: str | None = None  # the latest finished run's folder: completed or failed
    checked: float | None = None
    latest: float = 0.0
    open: list[Run] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)

    def track(self, run: Run) -> bool:
        """Follow a run not seen before; False if it was. By id, not by time: daemons'
        clocks may disagree by a little."""
        if run.job_id in self.seen:
            return False
        self.seen = [*self.seen, run.job_id][-RECENT_IDS:]
        self.open.append(run)
        self.latest = max(self.latest, run.at)
        self.last_run = run.at
        return True

    def finished(self, folder: str, error: str | None) -> None:
        """A run's job reached completed/ or failed/: its outcome is the task's."""
        self.run_count += 1
        self.last_result = folder
        if folder == "failed":
            self.error_count += 1
            self.last_error = error or "failed"

    def refused(self, error: str) -> None:
        """A run that could not even be enqueued counts as a run that failed."""
        self.finished("failed", error)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["open"] = [run.to_json() for run in self.open]
        return data

    @classmethod
    def from_json(cls, data: Any) -> TaskState:
        """Tolerant: a field that does not read keeps its default."""
        state = cls()
        if not isinstance(data, dict):
            return state
        for name, kind in (("run_count", int), ("error_count", int), ("skipped_count", int),
                           ("latest", float)):  # fmt: skip
            if isinstance(data.get(name), int | float):
                setattr(state, name, kind(data[name]))
        for name in ("last_run", "checked"):
            if isinstance(data.get(name), int | float):
                setattr(state, name, float(data[name]))
        for name in ("last_error", "last_result"):
            if isinstance(data.get(name), str):
                setattr(state, name, data[name])
        runs = (Run.from_json(item) for item in data.get("open") or [])
        state.open = [run for run in runs if run is not None]
        if isinstance(data.get("seen"), list):
            state.seen = [str(i) for i in data["seen"]][-RECENT_IDS:]
        return state


def dump_states(states: dict[str, TaskState]) -> bytes:
    tasks = {name: state.to_json() for name, state in states.items()}
    return strictjson.dumps({"version": 1, "tasks": tasks}, indent=1)


def load_states(read: Callable[[], bytes | None], source: str) -> dict[str, TaskState]:
    """The state file's tasks, from `read` (None if there is no file yet); an unreadable
    file, or one that is no regular file (Rejected), is logged and read as empty."""
    try:
        raw = read()
        if raw is None:
            return {}
        tasks = strictjson.loads(raw)["tasks"]
        return {str(name): TaskState.from_json(value) for name, value in tasks.items()}
    except (Rejected, InvalidJob, TypeError, KeyError, AttributeError) as e:
        logger.warning("ignoring unreadable scheduler state %s (%s): counts start at 0", source, e)
        return {}


def fire_id(task: str, instant: datetime) -> str:
    """The job id of a scheduled run: the task and its UTC minute, 'health_log.20261129T1731Z'."""
    return f"{_base(task)}.{instant.astimezone(UTC):%Y%m%dT%H%MZ}"


def run_now_id(task: str, moment: datetime, n: int = 1) -> str:
    """The job id of a run asked for by hand, to the second: 'health_log.run-20261129T173105Z';
    the n-th run asked for within one second ends in '-n' ('...173105Z-2')."""
    stamp = f".run-{moment.astimezone(UTC):%Y%m%dT%H%M%SZ}" + (f"-{n}" if n > 1 else "")
    return _base(task, min(_MAX_BASE, 128 - len(stamp))) + stamp


def _base(task: str, room: int = _MAX_BASE) -> str:
    """The task name, or for a very long one a prefix and a hash, so ids stay <= 128."""
    if len(task) <= room:
        return task
    import hashlib  # here: it loads OpenSSL (~3.5 MB resident) for a rare long name

    digest = hashlib.sha1(task.encode()).hexdigest()[:8]
    return f"{task[: room - 9]}-{digest}"


def local_iso(ts: float | None, zone: Any) -> str | None:
    """An epoch time as ISO 8601 in the task's zone, with its offset, to the second."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, zone).isoformat(timespec="seconds")
