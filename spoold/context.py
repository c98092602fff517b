"""What the doors (intake) and the workers share, handed to both as one value."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from spoold.commit import Committer
from spoold.dispatch import Dispatcher
from spoold.jobs import JobType
from spoold.spool import Spool


@dataclass(frozen=True)
class Context:
    """The spool, the index of its pending jobs, the job types and the time zone
    (callables: a config reload swaps them), and the group commit for `durability:
    fsync` (None: the intake's writes flush alone, the workers make their own)."""

    spool: Spool
    dispatcher: Dispatcher
    registry: Callable[[], dict[str, JobType]]
    tz: Callable[[], ZoneInfo]
    committer: Committer | None = None
