"""Concurrency and rate limits per job type: may a job of a type start now, or when?

A limit is kept by each daemon in memory (see the README's Limits): a Gate per
limited type remembers the starts within the rate's last period; the dispatcher
counts the running jobs of every type. A rate is a sliding window: at most N
starts in any period, so a burst of N may start at once and the next waits until
the oldest of them is a period old. Unlike a token bucket, that never lets 2N
through in one period, which is what a receiver's "N per minute" quota means.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

PERIODS = {"s": 1.0, "m": 60.0, "h": 3600.0}
RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*([smh])\s*$")
RATE_RULE = 'N/s, N/m or N/h (at most N starts per second, minute or hour), e.g. "10/s"'
# The starts within a period are remembered one by one: this caps that memory (~3 MB).
MAX_RATE_COUNT = 100_000


@dataclass(frozen=True)
class Rate:
    """At most `count` starts in any `seconds`."""

    count: int
    seconds: float


@dataclass(frozen=True)
class Limit:
    """What the config's `limits.<type>` says; None: no limit of that kind."""

    concurrency: int | None = None
    rate: Rate | None = None


def parse_rate(text: object) -> Rate:
    """'10/s', '100/m', '5/h' → Rate; ValueError saying what is expected."""
    match = RATE_RE.match(text) if isinstance(text, str) else None
    if not match:
        raise ValueError(f"expected {RATE_RULE}; got {text!r}")
    count = int(match.group(1))
    if count < 1:
        raise ValueError(f"N must be at least 1; got {text!r}")
    if count > MAX_RATE_COUNT:
        raise ValueError(f"N may be at most {MAX_RATE_COUNT}: use a shorter period; got {text!r}")
    return Rate(count, PERIODS[match.group(2)])


class Gate:
    """One limited type's state. Not thread-safe: the dispatcher's lock guards it."""

    def __init__(self, limit: Limit, starts: deque[float] | None = None) -> None:
        self.limit = limit
        self.starts: deque[float] = starts if starts is not None else deque()

    def reconfigured(self, limit: Limit) -> Gate:
        """The same type under a reloaded limit: the starts already made still count."""
        return Gate(limit, self.starts)

    def opens_at(self, now: float, running: int) -> float | None:
        """When a job of this type may start: `now` or earlier if at once, a later time
        if its rate holds it back, None while `running` jobs fill its concurrency."""
        concurrency, rate = self.limit.concurrency, self.limit.rate
        if concurrency is not None and running >= concurrency:
            return None
        if rate is None:
            return now
        while self.starts and self.starts[0] <= now - rate.seconds:
            self.starts.popleft()
        if len(self.starts) < rate.count:
            return now
        return self.starts[-rate.count] + rate.seconds

    def started(self, now: float) -> None:
        if self.limit.rate is not None:
            self.starts.append(now)

    def not_started(self, at: float) -> None:
        """A start counted at `at` did not happen (the job was lost or not due): it
        gives its place in the window back."""
        if at in self.starts:
            self.starts.remove(at)
