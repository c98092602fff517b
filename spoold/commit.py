"""Group commit: with `durability: fsync`, many finished jobs share one flush.

Flushing each record on its own costs a device flush per job. The committer
takes every outcome the workers have handed it, writes them all, flushes the
file system once, renames them into place, flushes once more, and only then
drops their running files and reports them. A crash before that leaves each
job in running/, where the next start finds it: nothing reported is lost.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from spoold.spool import Spool

logger = logging.getLogger(__name__)

MAX_BATCH = 256
MAX_WAITING = 1024  # workers wait when this many outcomes are not yet durable


@dataclass(frozen=True)
class Outcome:
    """A job's final record (or its retry), and what to do once it is on disk."""

    running: str
    stem: str
    folder: str
    data: bytes
    done: Callable[[], None]


class Committer:
    """One thread making the workers' outcomes durable in batches."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self._queue: queue.Queue[Outcome | None] = queue.Queue(MAX_WAITING)
        self._thread = threading.Thread(target=self._loop, name="spoold-commit", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, outcome: Outcome) -> None:
        """Hand an outcome over; its done() runs once it is durable (at once, in this
        thread, when the committer is not running: before start, after stop)."""
        if self._thread.is_alive():
            self._queue.put(outcome)
        else:
            self._commit([outcome])

    def stop(self) -> None:
        """Commit everything handed over so far, then end the thread."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _loop(self) -> None:
        while True:
            batch, last = self._next_batch()
            if batch:
                self._commit(batch)
            if last:
                return

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
        try:
            with self.spool.turn:
                staged = [(self.spool.stage(o.data), o) for o in batch]
            self.spool.flush()
            with self.spool.turn:
                for tmp, o in staged:
                    self.spool.place(tmp, o.folder, o.stem + ".json")
            self.spool.flush()
        except OSError:
            logger.exception("cannot commit %d job outcome(s); committing one by one", len(batch))
            self._commit_each(batch)
            return
        with self.spool.turn:
            for o in batch:
                self.spool.retire_running(o.running)
                o.done()

    def _commit_each(self, batch: list[Outcome]) -> None:
        """The slow path after an error: each outcome on its own, errors logged; a job whose
        record cannot be written stays in running/ and is recovered at the next start."""
        for o in batch:
            try:
                self.spool.finish(o.running, o.stem, o.folder, o.data)
            except OSError:
                logger.exception("job %s stays in running/ until the next start", o.stem)
                continue
            o.done()
