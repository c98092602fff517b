"""Group commit: the one place that decides how a job's file is written.

Every outcome of a job (its record, its retry) and every job posted over HTTP
or fired by the scheduler comes here as an Outcome. While the committer's
thread runs, it takes every outcome handed to it, writes them all in one
Spool.commit (write, flush the file system once, rename into place, flush once
more, drop the running files), in a helper process where one could be started
(helper.py), and only then reports them. Before start and after stop an outcome
is written at once in the caller's thread. Without `durability: fsync` the same,
without the flushes. A crash before the commit leaves each job in running/,
where the next start finds it: nothing reported is lost.

A write that fails (a full disk, say) is not the job's fault: its outcome is
kept here and written again with a back-off (up to RETRY_MAX seconds) until the
spool takes it, while the spool's health (storage.py) says why. A caller that
waits for its write (HTTP, the scheduler) hears of the error instead.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

from spoold.helper import FileWork
from spoold.spool import Record, Spool, with_follow_ups

logger = logging.getLogger(__name__)

# Outcomes written per batch. With fsync a batch shares two flushes, and 512 against 256
# bought 10-25% (alternating runs, 1 and 4 workers); without, 512 cost a little: a big
# batch holds the helper's turn while the intake waits for it.
MAX_BATCH = {True: 512, False: 256}  # by the spool's durability
MAX_BATCH_BYTES = 8 << 20  # and no more bytes than this, so that big jobs make small batches
MAX_WAITING = 2048  # workers wait when this many outcomes are not yet durable
RETRY_FIRST = 0.1  # seconds before a failed write is tried again; doubled up to RETRY_MAX
RETRY_MAX = 2.0
IDLE_LOOK = 1.0  # seconds between two looks at the spool's health while nothing comes


class Outcome(NamedTuple):
    """A file to make durable at folder/<stem>.json (a job's record, its retry, or a new
    job), what to do once it is on disk, and the running file it replaces, if any."""

    running: str | None
    stem: str
    folder: str
    data: bytes
    done: Callable[[], None]
    failed: Callable[[OSError], None] | None = None  # None: kept and written again
    exclusive: bool = False  # the name must be free (see Record)
    follow: tuple[Record, ...] = ()  # its follow-ups' pending files (followups.py)

    @property
    def records(self) -> list[Record]:
        """What to commit for it: its file, then its follow-ups (see with_follow_ups)."""
        record = Record(self.folder, self.stem, self.data, self.running, self.exclusive)
        return with_follow_ups(record, self.follow)


class Committer:
    """One thread making outcomes durable in batches (with `helper`, through a helper
    process; see helper.py), and keeping those the spool did not take."""

    def __init__(self, spool: Spool, helper: bool = False) -> None:
        self.spool = spool
        self._wants_helper = helper  # commit in a helper process (see helper.py)
        self.files = FileWork(spool)  # the intake sends its batches of moves too
        self._queue = Inbox(MAX_WAITING)
        self._thread = threading.Thread(target=self._loop, name="spoold-commit", daemon=True)
        self._running = False
        self._state = threading.Lock()  # orders submits against stop's end marker
        self._kept: list[Outcome] = []  # outcomes whose write failed: written again later
        self._retry_in = RETRY_FIRST
        self._retry_at = 0.0
        self._writing = threading.Lock()  # held by whoever writes a batch now

    @property
    def waiting(self) -> int:
        """How many outcomes are handed over and not yet durable (kept ones included)."""
        return self._queue.qsize() + len(self._kept)

    @property
    def alive(self) -> bool:
        """False only if the thread ended while it should run (the daemon's health check)."""
        return not self._running or self._thread.is_alive()

    def start(self) -> None:
        """Start the committer thread (and the helper: from a thread that lives as long as
        the daemon, since the helper is killed when the thread that started it ends)."""
        if self._wants_helper:
            self.files.start()
        with self._state:
            self._running = True
            self._thread.start()

    def submit(self, outcome: Outcome, lone: bool = False) -> None:
        """Hand an outcome over; its done() (or failed()) runs once it is durable. The one
        decision of how it is written: while the committer's thread runs, by it, except
        for a `lone` outcome (no other job waits to run: no batch would form) without
        fsync while the thread is idle: that one is written at once in this thread, in
        this process, so that a job in an idle daemon crosses no thread and no pipe after
        it runs. With fsync every outcome goes to the thread, where they share a flush;
        with jobs waiting, the helper process does the writing on the other core. Before
        start and after stop, at once in this thread too."""
        with self._state:
            if not self._running:
                self._commit([outcome])
                return
            at_once = lone and not self.spool.durable
            if not at_once or not self._writing.acquire(blocking=False):
                self._queue.put(outcome)
                return
        try:
            if self._queue.empty() and not self._kept and self.spool.health.ok:
                self._commit([outcome], here=True)
            else:
                self._queue.put(outcome)
        finally:
            self._writing.release()

    def stop(self) -> None:
        """Commit everything handed over so far, then end the thread."""
        with self._state:
            if not self._running:
                return
            self._running = False
            self._queue.put(None)
        self._thread.join()
        self.files.stop()

    def _loop(self) -> None:
        while True:
            batch, last = self._next_batch(self._patience())
            with self._writing:
                if self._kept and (last or time.monotonic() >= self._retry_at):
                    batch, self._kept = self._kept + batch, []
                if batch:
                    self._commit_guarded(batch)
                elif not self.spool.health.ok and time.monotonic() >= self._retry_at:
                    self._probe()
            if last:
                self._give_up()
                return

    def _patience(self) -> float:
        """How long to wait for new outcomes: until the next retry while writes fail, else
        up to IDLE_LOOK (a write made at once in a worker's thread may have failed since:
        then the thread's probe is what learns when the spool takes writes again)."""
        if not self._kept and self.spool.health.ok:
            return IDLE_LOOK
        return max(self._retry_at - time.monotonic(), 0.0)

    def _commit_guarded(self, batch: list[Outcome]) -> None:
        """_commit, but a bug in it must not end the thread: the workers and HTTP clients
        waiting on it would wait forever."""
        try:
            self._commit(batch)
        except Exception:
            logger.exception("could not commit %d job outcome(s)", len(batch))

    def _next_batch(self, timeout: float) -> tuple[list[Outcome], bool]:
        """Up to MAX_BATCH outcomes (waiting up to `timeout` for the first), and whether
        the stop's end marker came after them."""
        items = self._queue.take(timeout, MAX_BATCH[self.spool.durable], MAX_BATCH_BYTES)
        batch = [o for o in items if o is not None]
        return batch, len(batch) < len(items)

    def _commit(self, batch: list[Outcome], here: bool = False) -> None:
        """Write the batch (`here`: in this process, not the helper); report each outcome
        written, keep (or hand back) the others."""
        groups = [o.records for o in batch]
        results = iter(self._write([record for group in groups for record in group], here))
        outcomes = [
            _left(o, [next(results) for _ in group]) for o, group in zip(batch, groups, strict=True)
        ]
        trouble: tuple[Outcome, OSError] | None = None
        with self.spool.turn:
            for o, error in outcomes:
                if error is None:
                    if o.running is not None:
                        self.spool.let_go(o.running)
                    o.done()
                    continue
                if _storage_error(error):
                    trouble = trouble or (o, error)
                if o.failed is not None:
                    o.failed(error)
                else:
                    self._keep(o, error)
        if trouble is None:
            self._writes_ok()
        else:
            o, error = trouble
            where = str(self.spool.dirs[o.folder])
            self._writes_fail(f"writing {o.folder}/{o.stem}.json", error, where)

    def _write(self, records: list[Record], here: bool) -> list[OSError | None]:
        """Spool.commit in the helper or here, flushing as the config says now (a reload
        may change it); an unexpected error counts as each record's error."""
        try:
            if here:
                return self.spool.commit(records, self.spool.durable)
            return self.files.commit(records, self.spool.durable)
        except Exception as e:
            logger.exception("could not commit %d job file(s)", len(records))
            error = e if isinstance(e, OSError) else OSError(f"internal error: {e!r}")
            return [error] * len(records)

    def _keep(self, outcome: Outcome, error: OSError) -> None:
        """An outcome the spool did not take: written again later while the thread runs
        (a bug, an error without an errno, is not written again: it would fail again).
        One written at once in a worker's thread is kept for the committer's thread too."""
        if _storage_error(error) and (threading.current_thread() is self._thread or self._running):
            self._kept.append(outcome)  # under self._writing, whichever thread wrote
        else:
            _strand(outcome, error)

    def _writes_fail(self, what: str, error: OSError, where: str) -> None:
        """Say why writes fail, and when to try again (sooner the first times)."""
        self.spool.health.failed(what, error, where)
        self._retry_at = time.monotonic() + self._retry_in
        self._retry_in = min(self._retry_in * 2, RETRY_MAX)

    def _writes_ok(self) -> None:
        self._retry_in = RETRY_FIRST
        self.spool.health.recovered()

    def _probe(self) -> None:
        """Nothing to write again, yet writes failed (a move or a posted job): try a small
        write to learn when the spool takes writes again."""
        try:
            self.spool.probe()
        except OSError as e:
            self._writes_fail("a test write in tmp/", e, str(self.spool.dirs["tmp"]))
            return
        self._writes_ok()

    def _give_up(self) -> None:
        """At stop: outcomes still not written stay in running/, recovered at next start."""
        for o in self._kept:
            _strand(o, self.spool.health.error)
        self._kept = []


def _left(outcome: Outcome, errors: list[OSError | None]) -> tuple[Outcome, OSError | None]:
    """An outcome after its commit, its records' `errors` in the order of its records:
    its error (the first), and the outcome less the follow-ups placed already, to be
    written again if it is kept (a worker may take a placed one meanwhile, and writing
    it again would run it twice)."""
    error = next((e for e in errors if e is not None), None)
    if error is None or not outcome.follow:
        return outcome, error
    follow = tuple(r for r, e in zip(outcome.follow, errors[1:], strict=True) if e is not None)
    return outcome._replace(follow=follow), error


def _strand(outcome: Outcome, why: object) -> None:
    logger.error("job %s stays in running/ until the next start: its %s record could not be"
                 " written (%s)", outcome.stem, outcome.folder, why)  # fmt: skip


def _storage_error(error: OSError) -> bool:
    """An error of the file system (ENOSPC, EROFS, ...), not an answer (a taken exclusive
    name) nor a bug (an internal error, which has no errno)."""
    return error.errno is not None and not isinstance(error, FileExistsError)


class Inbox:
    """The outcomes handed to the committer: a bounded FIFO that a worker fills one at a
    time and the committer's thread empties a batch at a time. queue.Queue did the same
    with a lock and a notify per put and per get, ~4 µs of each job's CPU; this one takes
    its lock once per put and once per batch, and notifies only a thread that sleeps."""

    def __init__(self, limit: int) -> None:
        self._items: deque[Outcome | None] = deque()
        self._limit = limit
        self._cond = threading.Condition(threading.Lock())
        self._taker_sleeps = False
        self._putters_sleep = 0

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def put(self, item: Outcome | None) -> None:
        """Add an item; while `limit` wait, wait for the committer to take some (the
        workers slow down to the pace of the disk instead of piling up outcomes)."""
        with self._cond:
            while len(self._items) >= self._limit and item is not None:
                self._putters_sleep += 1
                self._cond.wait()
                self._putters_sleep -= 1
            self._items.append(item)
            if self._taker_sleeps:
                self._cond.notify_all()

    def take(self, timeout: float, most: int, most_bytes: int) -> list[Outcome | None]:
        """Up to `most` items, oldest first, and no more once their data holds `most_bytes`
        (the first is taken whatever its size); [] if none came within `timeout` seconds."""
        with self._cond:
            if not self._items:
                self._taker_sleeps = True
                self._cond.wait_for(lambda: self._items, timeout)
                self._taker_sleeps = False
            items, held = self._items, 0
            batch: list[Outcome | None] = []
            while items and len(batch) < most and held < most_bytes:
                item = items.popleft()
                held += len(item.data) if item is not None else 0
                batch.append(item)
            if self._putters_sleep:
                self._cond.notify_all()
            return batch
