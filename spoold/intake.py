"""The one door into the spool: a file in incoming/, an HTTP body, a scheduled job.

Whatever the door, a job is judged by job.new_job, given a unique id and a
dispatch-order name, and indexed. Bad files go to failed/ with their bytes
unchanged and a readable reason; nothing is ever dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from spoold.commit import Committer, Outcome
from spoold.context import Context
from spoold.errors import InvalidJob, Rejected
from spoold.fileio import Incoming
from spoold.helper import LATER, Later, Result
from spoold.job import Job, decode_object, new_job, producer_bytes
from spoold.names import make_stem, parse_stem, priority_from_name, running_stem, stem_of
from spoold.rejects import readable
from spoold.spool import Spool

logger = logging.getLogger(__name__)

WAIT_FOR_STORAGE = 1.0  # seconds before files are looked at again while writes fail


class Admitted(NamedTuple):
    """A judged file to move from incoming/<name> to pending/<stem>.json; its job, and
    the size of its bytes, go to the dispatcher."""

    name: str
    stem: str
    job: Job
    size: int


class IdRegistry:
    """Ids of every job in the spool, so a second job with a taken id is refused."""

    def __init__(self) -> None:
        self._ids: set[str] = set()
        self._lock = threading.Lock()

    def load(self, spool: Spool) -> None:
        """One scan of every job folder at start."""
        for folder in ("pending", "completed", "failed"):
            for name in spool.names(folder):
                stem = stem_of(name)
                if stem:
                    self._ids.add(stem.id)
        for name in spool.names("running"):
            parsed = running_stem(name)
            stem = parse_stem(parsed[0]) if parsed else None
            if stem:
                self._ids.add(stem.id)

    def reserve(self, job_id: str) -> bool:
        with self._lock:
            if job_id in self._ids:
                return False
            self._ids.add(job_id)
            return True

    def release(self, job_id: str) -> None:
        with self._lock:
            self._ids.discard(job_id)

    def __contains__(self, job_id: str) -> bool:
        return job_id in self._ids


class Intake:
    """Judges and admits jobs; thread-safe."""

    def __init__(self, context: Context, max_bytes: int, settle_seconds: float) -> None:
        self.spool, self.dispatcher = context.spool, context.dispatcher
        self.registry, self.tz = context.registry, context.tz
        self.committer = context.committer or Committer(context.spool)  # unstarted: inline
        self.max_bytes = max_bytes
        self.settle_seconds = settle_seconds
        self.ids = IdRegistry()
        self.rejected = 0

    def judge(self, data: dict[str, Any], now: float, name_priority: str | None = None) -> Job:
        """A job object → Job, or InvalidJob. The same words for every door."""
        return new_job(data, self.registry(), self.tz(), now, name_priority)

    def accept_files(
        self, names: list[str], now: float, more: Iterable[list[str]] = ()
    ) -> list[tuple[float, str]]:
        """Admit each incoming/<name>, or reject it into failed/, then do the same for each
        batch of names in `more`, taken one by one as they are wanted.

        The file work of a batch (reading, then moving the admitted ones to pending/) is
        asked of the helper while the daemon judges the batch before, so that a backlog
        keeps both busy: judging waited for the helper's two round trips per batch, and
        the workers for the judging (the index held 64-266 of 20,000 waiting jobs).

        Returns (when to look again, name) for each file that does not parse yet and
        changed less than settleSeconds ago: a writer may still be at it, or the spool
        took no writes (storage.py): the file waits in incoming/, as it was.
        """
        later: list[tuple[float, str]] = []
        batches = iter(more)
        reading: Later | None = self._read(names)
        moving: tuple[list[Admitted], Later] | None = None
        try:
            while reading is not None:
                upcoming = _next_batch(batches, _in_hand(names, moving))
                next_reading = self._read(upcoming) if upcoming else None
                admitted = self._judge_batch(names, reading(), now, later)
                if moving is not None:
                    self._index_moved(*moving)
                moving = (admitted, self._move(admitted)) if admitted else None
                names, reading, now = upcoming or [], next_reading, time.time()
        finally:  # moved files must be indexed whatever happened (a bug): no job is lost
            if moving is not None:
                self._index_moved(*moving)
        return later

    def _judge_batch(
        self, names: list[str], reads: list[Result], now: float, later: list[tuple[float, str]]
    ) -> list[Admitted]:
        """Judge each file read, in one turn of the spool (see Spool.turn): a backlog is
        judged in batches, not in a turn per file. The admitted ones are returned, to be
        moved; those to look at again are added to `later`."""
        admitted: list[Admitted] = []
        with self.spool.turn:
            for name, read in zip(names, reads, strict=True):
                try:
                    again = self._accept_file(name, read, now, admitted)
                except OSError as e:  # the rejection's explanation could not be written
                    self._cannot_write(f"rejecting incoming/{name}", e, "failed")
                    again = now + WAIT_FOR_STORAGE
                except Exception:
                    logger.exception("could not judge incoming/%s; left for the rescan", name)
                    continue
                if again is not None:
                    later.append((again, name))
        return admitted

    def _index_moved(self, admitted: list[Admitted], moving: Later) -> None:
        """Index the files moved into pending/, once the moves are done (outside the turn
        until then: the workers go on meanwhile)."""
        moved = moving()
        with self.spool.turn:
            for entry, result in zip(admitted, moved, strict=True):
                self._moved(entry, result)

    def _moved(self, entry: Admitted, result: bool | OSError) -> None:
        """Index a file now in pending/; one left in incoming/ (or gone) gives its id back."""
        if result is True:
            self._index(entry.stem, entry.job, entry.size)  # a worker woken by this takes it
            logger.debug("accepted %s as %s", entry.name, entry.stem)
            return
        self.ids.release(entry.job.id)
        if isinstance(result, OSError):
            self._cannot_write(f"moving incoming/{entry.name} to pending/", result, "pending")

    def _cannot_write(self, what: str, error: OSError, folder: str) -> None:
        """The file stays in incoming/, judged again once the spool takes writes (a read
        that failed is tried again then too)."""
        self.spool.health.failed(what, error, str(self.spool.dirs[folder]))

    def _read(self, names: list[str]) -> Later:
        """Read each file: a batch in the helper process, where the opens and reads (and
        then the moves, _move) in big folders cost the daemon nothing, through a pipe of
        its own that no group commit holds up (~15% of the daemon's CPU per job with a
        backlog, bench/README.md); a lone file here: a round trip to the helper would
        only add to its latency. The results when the returned function is called."""
        return self.committer.files.read(names, self.max_bytes, here=len(names) == 1)

    def _move(self, admitted: list[Admitted]) -> Later:
        """Move admitted files into pending/ where they were read (see _read)."""
        moves = [(entry.name, entry.stem) for entry in admitted]
        return self.committer.files.accept(moves, here=len(moves) == 1)

    def _accept_file(
        self, name: str, incoming: Result, now: float, admitted: list[Admitted]
    ) -> float | None:
        """Judge one file read (see read_files); an admitted one gets its id and pending
        name, and is listed in `admitted` to be moved to pending/."""
        if isinstance(incoming, Rejected):
            self._reject(name, str(incoming))
            return None
        if isinstance(incoming, OSError):  # the file system's error (EIO...), not the file's
            self._cannot_write(f"reading incoming/{name}", incoming, "incoming")
            return now + WAIT_FOR_STORAGE
        if incoming is LATER:  # the batch was full (see read_files): in a next one
            return now
        if not isinstance(incoming, Incoming):
            return None
        try:
            job = self.judge(decode_object(incoming.raw), now, priority_from_name(name))
        except InvalidJob as e:
            settles_at = incoming.mtime + self.settle_seconds
            if settles_at > now:
                return settles_at
            self._reject(name, str(e))
            return None
        if not self.ids.reserve(job.id):
            self._reject(name, _duplicate(job.id))
            return None
        job.source = producer_bytes(incoming.raw, job)
        admitted.append(Admitted(name, self._stem(job), job, len(incoming.raw)))
        return None

    def _stem(self, job: Job, given: str | None = None) -> str:
        """The job's pending name (a new one, or the one `given`); its acceptance time
        becomes the job's createdAt, as when a worker reads the job back from the name."""
        if given is not None:
            parsed = parse_stem(given)
            job.created_at = parsed.accepted if parsed else job.created_at
            return given
        accepted_ns = self.spool.accept_ns()
        job.created_at = accepted_ns / 1e9
        return make_stem(job.priority, accepted_ns, job.id)

    def _index(self, stem: str, job: Job, size: int) -> None:
        """Hand the job to the dispatcher. The judged Job goes along so that a worker
        need not read the file again, except on a shared spool, where another daemon
        may have run and put back this file since."""
        shared = self.spool.shared
        kept = None if shared else job
        self.dispatcher.add(stem, job.priority, job.due, kept, size, not shared, job.type)

    def _reject(self, name: str, reason: str) -> None:
        """Move incoming/<name> to failed/ with its explanation; if the explanation cannot
        be written (a full disk), the file stays in incoming/ for the next rescan."""
        try:
            where = self.spool.reject(name, reason)
        except OSError as e:
            logger.error("cannot reject incoming/%s (%s): left there, judged again at the"
                         " next rescan; it was rejected because: %s", readable(name), e,
                         reason)  # fmt: skip
            return
        if where:
            self.rejected += 1
            logger.warning("rejected incoming/%s → failed/%s: %s", readable(name), where, reason)

    def submit(self, data: dict[str, Any], now: float, exclusive_stem: str | None = None) -> Job:
        """Write a job straight into pending/, durably, before returning (HTTP, schedules).

        Raises InvalidJob for a bad job or a taken id.
        """
        job = self.judge(data, now)
        if "id" not in data:
            job.data = {**data, "id": job.id}
        if not self.ids.reserve(job.id):
            raise InvalidJob(_duplicate(job.id))
        stem = self._stem(job, exclusive_stem)
        try:
            body = _record_bytes(job)
            written = self._write(stem, body, exclusive=exclusive_stem is not None)
        except BaseException:
            self.ids.release(job.id)
            raise
        if not written:
            raise InvalidJob(_duplicate(job.id))
        self._index(stem, job, len(body))
        return job

    def _write(self, stem: str, data: bytes, exclusive: bool) -> bool:
        """Put a new job in pending/ and return once it is durable (with fsync), through
        the committer, so that jobs posted together share its flushes. False if exclusive
        and the name is taken; OSError (nothing written) if the spool takes no writes."""
        done, errors = threading.Event(), []

        def failed(error: OSError) -> None:
            errors.append(error)
            done.set()

        self.committer.submit(Outcome(None, stem, "pending", data, done.set, failed, exclusive))
        done.wait()
        if errors and isinstance(errors[0], FileExistsError):
            return False
        if errors:
            raise errors[0]
        return True


def _in_hand(names: list[str], moving: tuple[list[Admitted], Later] | None) -> set[str]:
    """The names the pipeline still works on: the batch being judged, and the admitted
    files of the batch before, whose moves may not be done yet (a lone file's read, made
    here, does not wait for the helper's moves)."""
    return {*names, *(entry.name for entry in moving[0])} if moving else set(names)


def _next_batch(batches: Iterator[list[str]], in_hand: set[str]) -> list[str] | None:
    """The next batch of names, less those still in hand: it is read before they are
    moved, so a name offered again meanwhile (by a rescan) would be read while still in
    incoming/ and judged a duplicate of itself. Leaving it out is safe: the batch in
    hand admits it, rejects it, or hands it back to be looked at again."""
    for batch in batches:
        fresh = [name for name in batch if name not in in_hand]
        if fresh:
            return fresh
    return None


def _record_bytes(job: Job) -> bytes:
    """The job's first record; InvalidJob if a field holds what JSON cannot (a NaN or a
    string that is not Unicode, from a YAML schedule or a command line)."""
    try:
        return job.to_json()
    except ValueError as e:  # UnicodeEncodeError too
        raise InvalidJob(f"the job cannot be written as strict JSON: {e}") from e


def _duplicate(job_id: str) -> str:
    return f"a job with id {job_id!r} is already in the spool: give this one another id"
