"""Group commit: with `durability: fsync`, many finished jobs share one flush.

Flushing each record on its own costs a device flush per job. The committer
takes every outcome the workers have handed it, writes them all, flushes the
file system once, renames them into place, flushes once more, and only then
drops their running files and reports them (helper.commit_files, run in a
helper process where one can be started). A crash before that leaves each job
in running/, where the next start finds it: nothing reported is lost.

With `durability: relaxed` the workers hand their outcomes here only when there
is a helper process to write them (without the flushes), since that takes the
writes off the daemon's threads; without one they write their own.

New jobs posted over HTTP come the same way (no running file; their callers
wait for `done`, or hear of an error through `failed`), so eight clients
posting at once share two flushes instead of paying eight.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from spoold.helper import FileWork, Item
from spoold.spool import Spool

logger = logging.getLogger(__name__)

MAX_BATCH = 256
MAX_WAITING = 1024  # workers wait when this many outcomes are not yet durable


@dataclass(frozen=True)
class Outcome:
    """A file to make durable at folder/<stem>.json (a job's record, its retry, or a new
    job), what to do once it is on disk, and the running file it replaces, if any."""

    running: str | None
    stem: str
    folder: str
    data: bytes
    done: Callable[[], None]
    failed: Callable[[OSError], None] | None = None  # None: log it, the job stays put


class Committer:
    """One thread making the workers' outcomes durable in batches (with `helper`, through
    a helper process; see helper.py)."""

    def __init__(self, spool: Spool, helper: bool = False) -> None:
        self.spool = spool
        self._wants_helper = helper  # commit in a helper process (see helper.py)
        self._files = FileWork(spool, "commit")
        self._queue: queue.Queue[Outcome | None] = queue.Queue(MAX_WAITING)
        self._thread = threading.Thread(target=self._loop, name="spoold-commit", daemon=True)
        self._running = False
        self._state = threading.Lock()  # orders submits against stop's end marker

    @property
    def waiting(self) -> int:
        """How many outcomes are handed over and not yet taken into a batch."""
        return self._queue.qsize()

    @property
    def has_helper(self) -> bool:
        """Whether a helper process does the file work (see the module's docstring)."""
        return self._files.in_helper

    @property
    def alive(self) -> bool:
        """False only if the thread ended while it should run (the daemon's health check)."""
        return not self._running or self._thread.is_alive()

    def start(self) -> None:
        """Start the committer thread (and the helper: from a thread that lives as long as
        the daemon, since the helper is killed when the thread that started it ends)."""
        if self._wants_helper:
            self._files.start()
        with self._state:
            self._running = True
            self._thread.start()

    def submit(self, outcome: Outcome) -> None:
        """Hand an outcome over; its done() (or failed()) runs once it is durable (at once,
        in this thread, when the committer is not running: before start, after stop)."""
        with self._state:
            if self._running:
                self._queue.put(outcome)
                return
        self._commit([outcome])

    def stop(self) -> None:
        """Commit everything handed over so far, then end the thread."""
        with self._state:
            if not self._running:
                return
            self._running = False
            self._queue.put(None)
        self._thread.join()
        self._files.stop()

    def _loop(self) -> None:
        while True:
            batch, last = self._next_batch()
            if batch:
                self._commit_guarded(batch)
            if last:
                return

    def _commit_guarded(self, batch: list[Outcome]) -> None:
        """_commit, but a bug in it must not end the thread: the workers and HTTP clients
        waiting on it would wait forever. Each outcome's caller hears of the error; a
        finished job stays in running/, recovered at the next start."""
        try:
            self._commit(batch)
        except Exception as e:
            logger.exception("could not commit %d job outcome(s)", len(batch))
            error = e if isinstance(e, OSError) else OSError(f"internal error: {e!r}")
            for o in batch:
                if o.failed is not None:
                    o.failed(error)

    def _next_batch(self) -> tuple[list[Outcome], bool]:
        first = self._queue.get()
        if first is None:
            return [], True
        batch = [first]
        while len(batch) < MAX_BATCH:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _commit(self, batch: list[Outcome]) -> None:
        results = self._commit_files([(o.running, o.stem, o.folder, o.data) for o in batch])
        with self.spool.turn:
            for o, error in zip(batch, results, strict=True):
                if error is None:
                    if o.running is not None:
                        self.spool.let_go(o.running)
                    o.done()
                elif o.failed is not None:
                    o.failed(error)
                else:
                    logger.error("job %s stays in running/ until the next start: %s", o.stem, error)

    def _commit_files(self, items: list[Item]) -> list[OSError | None]:
        """commit_files, flushing as the config says now (a reload may change it)."""
        return self._files.commit(items, self.spool.durable)
