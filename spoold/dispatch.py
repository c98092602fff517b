"""The in-memory index of pending/: which job runs next, without listing a folder.

Built by one scan at start and kept current by the spool's own moves, so taking
the next job costs O(log n) whatever the backlog. Order: every due critical job
before high before normal before low; FIFO (by acceptance time, which the
pending name sorts by) within a priority. Jobs not yet due wait in a heap keyed
by their due time and join the ready heaps when it comes.

Limits per job type (limits.py): a due job of a limited type waits in its type's
own heap, so a type held back by its limit holds up no other; each take looks at
the head of each limited type's heap only, never at the jobs behind it. With no
limits configured, a take costs what it did before, plus counting its type.
"""

from __future__ import annotations

import heapq
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from spoold.job import Job
from spoold.limits import Gate, Limit
from spoold.names import PRIORITIES, RANKS, parse_stem

# The judged jobs kept for the workers are capped by an estimate of their memory:
# measured with tracemalloc, a decoded job takes about 3 times its JSON's bytes plus
# ~700 for the Job and its index entry (a no-op job: 680 bytes; a webhook: 1.4 KB).
MAX_KEPT_BYTES = 48 << 20
JOB_OVERHEAD = 700
PER_JSON_BYTE = 3


def backoff_seconds(attempts: int, cap: float, jitter: bool, rand: Callable[[], float]) -> float:
    """2^attempts seconds, capped; with jitter, a uniform share of it ("full jitter")."""
    delay = min(float(2 ** min(attempts, 62)), cap)
    return delay * rand() if jitter else delay


def default_rand() -> float:
    return random.random()


class Taken(NamedTuple):
    """A job taken from the index: its stem, priority, the job when one was kept, and
    whether the index knew its due time. It does not for a job found by a scan, put
    back by an operator or recovered from running/, nor on a shared spool, where
    another daemon may have put the file back with a later one: the worker then reads
    the file before claiming it, lest a job not yet due show up in running/.

    `slot` is the job's type when the index knew it: the take then counted a start of
    that type, given back by release(). When it is None, the worker reads the file
    (its due time is unknown too) and asks admit() before it claims the job."""

    stem: str
    priority: str
    job: Job | None
    due_known: bool = True
    slot: str | None = None
    at: float = 0.0


class Dispatcher:
    """Thread-safe index of pending stems; take() blocks until one is due."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._ready: dict[str, list[str]] = {p: [] for p in PRIORITIES}
        self._delayed: list[tuple[float, str, str]] = []
        self._present: dict[str, str] = {}
        self._kept: dict[str, tuple[Job, int]] = {}
        self._kept_bytes = 0
        self._unchecked: set[str] = set()  # present stems whose due time may be stale
        self._types: dict[str, str] = {}  # stem -> job type, where known
        self._gates: dict[str, Gate] = {}  # the limited types
        self._held: dict[str, list[tuple[int, str]]] = {}  # due (rank, stem) per limited type
        self._running: dict[str, int] = {}  # taken and not yet released, per type
        self._closed = False

    def add(
        self,
        stem: str,
        priority: str,
        due: float = 0.0,
        job: Job | None = None,
        size: int = 0,
        due_known: bool = False,
        job_type: str | None = None,
    ) -> None:
        """A job is in pending/ (new, retried, or found by a scan). `job`, judged from the
        file's `size` bytes just written or read, spares the worker reading and decoding
        the file again; it is kept while the estimate of all kept jobs allows. Unless
        the caller says `due_known`, `due` is a guess (see Taken). The job's type, where
        known, lets the index apply its type's limit."""
        with self._cond:
            if stem in self._present:
                return
            self._present[stem] = priority
            self._know_type(stem, job_type)
            if not due_known:
                self._unchecked.add(stem)
            cost = JOB_OVERHEAD + PER_JSON_BYTE * size
            if job is not None and self._kept_bytes + cost <= MAX_KEPT_BYTES:
                self._kept[stem] = (job, cost)
                self._kept_bytes += cost
            self._push(stem, priority, due)
            self._cond.notify()

    def add_many(self, entries: Iterable[tuple[str, str]]) -> None:
        """Bulk add of (stem, priority), due now: the start-up scan."""
        with self._cond:
            for stem, priority in entries:
                if stem not in self._present:
                    self._present[stem] = priority
                    self._unchecked.add(stem)
                    self._ready[priority].append(stem)
            for heap in self._ready.values():
                heapq.heapify(heap)
            self._cond.notify_all()

    def _know_type(self, stem: str, job_type: str | None) -> None:
        if job_type is not None:
            self._types[stem] = sys.intern(job_type)  # one string per type, not per job

    def _push(self, stem: str, priority: str, due: float) -> None:
        if due > self._clock():
            heapq.heappush(self._delayed, (due, stem, priority))
        else:
            self._push_due(stem, priority)

    def _push_due(self, stem: str, priority: str) -> None:
        """Into its type's heap if that type is limited, else the ready heap."""
        held = self._held.get(self._types.get(stem, "")) if self._gates else None
        if held is None:
            heapq.heappush(self._ready[priority], stem)
        else:
            heapq.heappush(held, (RANKS[priority], stem))

    def defer(
        self,
        stem: str,
        priority: str,
        due: float,
        due_known: bool = True,
        job_type: str | None = None,
    ) -> None:
        """Put back a job that was taken before its time (or whose file changed: without
        `due_known`, `due` is a guess; see Taken), or that waits for its type's limit."""
        with self._cond:
            self._present[stem] = priority
            self._know_type(stem, job_type)
            self._forget(stem)
            if due_known:
                self._unchecked.discard(stem)
            else:
                self._unchecked.add(stem)
            self._push(stem, priority, due)
            self._cond.notify()

    def discard(self, stem: str) -> None:
        """The job left pending/ by another way (cancelled, claimed elsewhere)."""
        with self._cond:
            self._present.pop(stem, None)
            self._types.pop(stem, None)
            self._forget(stem)
            self._unchecked.discard(stem)

    def _forget(self, stem: str) -> Job | None:
        job, cost = self._kept.pop(stem, (None, 0))
        self._kept_bytes -= cost
        return job

    def take(self, timeout: float | None = None) -> Taken | None:
        """The next due job, removed from the index (with the Job given to add(), if it was
        kept); None on timeout or close."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._closed:
                found = self._pop_due()
                if found:
                    return found
                wait = self._wait_seconds(deadline)
                if wait is not None and wait <= 0:
                    return None
                self._cond.wait(wait)
            return None

    def _pop_due(self) -> Taken | None:
        now = self._clock()
        while self._delayed and self._delayed[0][0] <= now:
            _, stem, priority = heapq.heappop(self._delayed)
            self._push_due(stem, priority)
        if self._gates:
            return self._pop_limited(now)
        for priority in PRIORITIES:  # no limits: the first ready job, as fast as can be
            heap = self._ready[priority]
            while heap:
                stem = heapq.heappop(heap)
                if self._present.pop(stem, None) is not None:
                    return self._taken(stem, priority, now)
        return None

    def _pop_limited(self, now: float) -> Taken | None:
        """The first job in dispatch order among the heads of the ready heaps and those of
        the limited types whose limit lets one start now; no job behind a head is seen."""
        best, heap = self._ready_head(), None
        for limited, held in self._held.items():
            head = self._open_head(limited, held, now)
            if head is not None and (best is None or head < best):
                best, heap = head, held
        if best is None:
            return None
        stem = best[1]
        if heap is None:
            heapq.heappop(self._ready[PRIORITIES[best[0]]])
        else:
            heapq.heappop(heap)
        return self._taken(stem, self._present.pop(stem), now)

    def _taken(self, stem: str, priority: str, now: float) -> Taken:
        """A stem leaves the index: a start of its type is counted, if it has one."""
        job_type = self._types.pop(stem, None)
        if job_type is not None:
            self._start(job_type, now)
        return Taken(stem, priority, self._forget(stem), self._known(stem), job_type, now)

    def _ready_head(self) -> tuple[int, str] | None:
        """(rank, stem) of the first job of the ready heaps. Stale heads are dropped on the
        way, and jobs of a type limited since they came move to their type's heap."""
        for priority in PRIORITIES:
            heap = self._ready[priority]
            while heap:
                stem = heap[0]
                held = self._held.get(self._types.get(stem, "")) if self._gates else None
                if stem in self._present and held is None:
                    return RANKS[priority], stem
                heapq.heappop(heap)
                if held is not None and stem in self._present:
                    heapq.heappush(held, (RANKS[priority], stem))
        return None

    def _open_head(
        self, job_type: str, held: list[tuple[int, str]], now: float
    ) -> tuple[int, str] | None:
        """The first job of a limited type, if its limit lets it start now."""
        if self._head(held) is None:
            return None
        opens = self._gates[job_type].opens_at(now, self._running.get(job_type, 0))
        return held[0] if opens is not None and opens <= now else None

    def _start(self, job_type: str, now: float) -> None:
        self._running[job_type] = self._running.get(job_type, 0) + 1
        gate = self._gates.get(job_type)
        if gate is not None:
            gate.started(now)

    def admit(self, stem: str, priority: str, job_type: str) -> float | None:
        """A taken job whose type the index did not know (Taken.slot was None) may start:
        the time its start was counted, as release() takes it; None if its type's limit
        holds it back, and it waits again in pending/ (due now: the worker just read it).
        It also waits behind an earlier job of its type that its limit holds back."""
        with self._cond:
            now = self._clock()
            gate, held = self._gates.get(job_type), self._held.get(job_type)
            opens = gate.opens_at(now, self._running.get(job_type, 0)) if gate else now
            head = self._head(held) if held else None
            earlier = head is not None and head < (RANKS[priority], stem)
            if opens is not None and opens <= now and not earlier:
                self._start(job_type, now)
                return now
            self._present[stem] = priority
            self._know_type(stem, job_type)
            self._push_due(stem, priority)
            return None

    def release(self, job_type: str | None, unstarted_at: float | None = None) -> None:
        """A job counted as a start of its type (Taken.slot) ended; with `unstarted_at`
        (Taken.at), it did not start after all, and gives back its place in the rate."""
        if job_type is None:
            return
        with self._cond:
            left = self._running.get(job_type, 0) - 1
            if left > 0:
                self._running[job_type] = left
            else:
                self._running.pop(job_type, None)
            gate = self._gates.get(job_type)
            if gate is None:
                return
            if unstarted_at is not None:
                gate.not_started(unstarted_at)
            self._cond.notify()

    def set_limits(self, limits: Mapping[str, Limit]) -> None:
        """Apply the config's limits (at start, and on each reload). A type no longer
        limited has its waiting jobs put back in the ready heaps; one newly limited
        gathers its jobs as they reach the head (see _ready_head)."""
        with self._cond:
            old = self._gates
            self._gates = {
                job_type: old[job_type].reconfigured(limit) if job_type in old else Gate(limit)
                for job_type, limit in limits.items()
            }
            for job_type in list(self._held):
                if job_type not in self._gates:
                    for rank, stem in self._held.pop(job_type):
                        heapq.heappush(self._ready[PRIORITIES[rank]], stem)
            for job_type in self._gates:
                self._held.setdefault(job_type, [])
            self._cond.notify_all()

    def _known(self, stem: str) -> bool:
        """Whether the due time of a stem being taken was known; it leaves the index."""
        if stem in self._unchecked:
            self._unchecked.discard(stem)
            return False
        return True

    def _wait_seconds(self, deadline: float | None) -> float | None:
        """Until the next delayed job is due, a limited type's rate lets its next job
        start, or the deadline; a type full of running jobs waits for a release()."""
        waits = []
        now = self._clock()
        if self._delayed:
            waits.append(max(self._delayed[0][0] - now, 0.001))
        for job_type, held in self._held.items():
            gate, running = self._gates[job_type], self._running.get(job_type, 0)
            opens = gate.opens_at(now, running) if held else None
            if opens is not None:
                waits.append(max(opens - now, 0.001))
        if deadline is not None:
            waits.append(deadline - time.monotonic())
        return min(waits) if waits else None

    def close(self) -> None:
        """Wake every taker with None: the daemon is stopping."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __contains__(self, stem: str) -> bool:
        return stem in self._present

    @property
    def empty(self) -> bool:
        """No job in pending/ (as far as the index knows): read without the lock, a hint."""
        return not self._present

    def counts(self) -> dict[str, int]:
        """Pending jobs per priority, and 'total'."""
        with self._cond:
            counts = Counter(self._present.values())
        return {"total": sum(counts.values()), **{p: counts[p] for p in PRIORITIES}}

    def due_since(self) -> float | None:
        """When the longest-waiting due job became due (a ready job: when it was accepted,
        read from its name; a delayed one: its due time); None if no job is due (metrics)."""
        with self._cond:
            parsed = [parse_stem(head) for head in self._ready_heads()]
            times = [stem.accepted for stem in parsed if stem]
            if self._delayed and self._delayed[0][0] <= self._clock():
                times.append(self._delayed[0][0])
            return min(times, default=None)

    def _ready_heads(self) -> list[str]:
        """The first present stem of each ready heap and of each limited type's heap (its
        jobs are due too); stale heads are dropped on the way."""
        heads = []
        for heap in self._ready.values():
            while heap and heap[0] not in self._present:
                heapq.heappop(heap)
            if heap:
                heads.append(heap[0])
        for held in self._held.values():
            head = self._head(held)
            if head is not None:
                heads.append(head[1])
        return heads

    def _head(self, held: list[tuple[int, str]]) -> tuple[int, str] | None:
        """The first present job of a limited type's heap; stale heads are dropped."""
        while held and held[0][1] not in self._present:
            heapq.heappop(held)
        return held[0] if held else None

    def upcoming(self, limit: int) -> list[tuple[str, float | None]]:
        """The first `limit` pending stems in dispatch order, each with its due time (None
        when due now): due ones by priority (those a limit holds back among them), then
        those waiting for their time. It walks only the tops of the heaps (the status
        page shows these, however long the queue)."""
        with self._cond:
            due = [
                (RANKS[priority], stem)
                for priority in PRIORITIES
                for stem in _smallest(self._ready[priority], limit, self._present.__contains__)
            ]
            for held in self._held.values():
                due += _smallest(held, limit, lambda entry: entry[1] in self._present)
            found: dict[str, float | None] = {stem: None for _, stem in sorted(due)}
            waiting = _smallest(self._delayed, limit, lambda entry: entry[1] in self._present)
            for due, stem, _ in waiting:
                found.setdefault(stem, due)
            return list(found.items())[:limit]

    def stems(self) -> set[str]:
        with self._cond:
            return set(self._present)


def _smallest(heap: list[Any], limit: int, keep: Callable[[Any], bool]) -> list[Any]:
    """The `limit` smallest kept entries of a heap, in order, visiting O(limit) of its
    nodes (plus the dropped ones met on the way) rather than sorting it."""
    found: list[Any] = []
    frontier = [(heap[0], 0)] if heap else []
    while frontier and len(found) < limit:
        entry, at = heapq.heappop(frontier)
        if keep(entry):
            found.append(entry)
        for child in (2 * at + 1, 2 * at + 2):
            if child < len(heap):
                heapq.heappush(frontier, (heap[child], child))
    return found
