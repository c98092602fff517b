"""The worker pool: claim the next due job, run it with a timeout, record the outcome.

Each attempt runs in a pool thread. A monitor thread enforces timeouts (Python
cannot kill a thread, so a timed-out attempt is recorded as failed, its thread is
abandoned and replaced) and renews this daemon's lease on its running files.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from spoold import followups, strictjson
from spoold.commit import Committer, Outcome
from spoold.context import Context
from spoold.dispatch import Dispatcher, Taken, backoff_seconds, default_rand
from spoold.errors import InvalidJob, PermanentJobError, Rejected
from spoold.job import Job, from_record
from spoold.jobcontext import JobContext
from spoold.jobs import JobType
from spoold.names import Stem, parse_stem, running_stem
from spoold.results import result_fields
from spoold.spool import Record, Spool
from spoold.threads import Loop
from spoold.times import iso_or_none

logger = logging.getLogger(__name__)

CANCEL_POLL = 0.5  # seconds between two looks at cancel/ while jobs run
CANCELLED = "cancelled"  # the error of a job an operator stopped


@dataclass(frozen=True)
class Policy:
    """What the config says about running jobs; swapped whole on a config reload."""

    timeout: float = 300.0
    max_backoff: float = 3600.0
    jitter: bool = False
    lease_seconds: float = 30.0


@dataclass(eq=False)
class Attempt:
    """One run of a job in progress; `done` is set by whoever records its outcome first."""

    job: Job
    stem: str
    running: str
    deadline: float
    thread: int
    context: JobContext
    slot: str | None = None  # the type whose limit counts this run (Taken.slot)
    done: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


Finished = Callable[[Job, str], None]


class WorkerPool:
    """`workers` threads taking jobs from the dispatcher."""

    def __init__(
        self,
        context: Context,
        policy: Callable[[], Policy],
        workers: int,
        on_finish: Finished = lambda job, folder: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.spool, self.dispatcher = context.spool, context.dispatcher
        self.registry, self.tz = context.registry, context.tz
        self.policy = policy
        self.concurrency = workers
        self.on_finish = on_finish
        self.clock = clock
        self.active: dict[int, Attempt] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._abandoned: set[int] = set()
        self.committer = context.committer or Committer(context.spool)
        # Times attempts out and renews the lease, also while a stop lets jobs finish.
        self._monitor = Loop("monitor", self._monitor_turn, lambda: 0.05)
        self._last_renew = self._last_poll = 0.0
        self.rand = default_rand

    # ----- life cycle -------------------------------------------------------------------

    def start(self) -> None:
        self.committer.start()
        for _ in range(self.concurrency):
            self._spawn()
        self._monitor.start()

    def _spawn(self) -> None:
        thread = threading.Thread(target=self._work_loop, name="spoold-worker", daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def stop_claiming(self) -> None:
        """Take no new job from now on (the first step of a stop)."""
        self._stopping.set()
        self.dispatcher.close()

    def stop(self, grace: float) -> None:
        """Claim nothing more; give running jobs `grace` seconds, then put them back."""
        self.stop_claiming()
        deadline = time.monotonic() + grace
        with self._lock:  # a timed-out attempt's thread is abandoned: nothing to wait for
            threads = [t for t in self._threads if t.ident not in self._abandoned]
        for thread in threads:
            thread.join(max(deadline - time.monotonic(), 0))
        self._monitor.stop()
        with self._lock:
            leftovers = list(self.active.values())
        self.committer.stop()
        for attempt in leftovers:
            if not _settle(attempt):
                continue
            if attempt.context.cancel_requested:  # asked to stop: not to be run again
                self._record_now(attempt, CANCELLED)
                continue
            logger.warning("job %s still running after %.0fs: put back", attempt.job.id, grace)
            recover_running(self.spool, attempt.running, self.dispatcher, self._recovery_args())

    @property
    def is_running(self) -> bool:
        return bool(self._threads) and not self._stopping.is_set()

    @property
    def alive(self) -> bool:
        """Whether the monitor, the committer and every worker thread still run (an
        abandoned one may end; the monitor replaced it): the daemon's health check."""
        with self._lock:
            workers = [t for t in self._threads if t.ident not in self._abandoned]
        return self._monitor.alive and self.committer.alive and all(t.is_alive() for t in workers)

    # ----- the work ---------------------------------------------------------------------

    def _work_loop(self) -> None:
        me = threading.get_ident()
        health = self.spool.health
        while not self._stopping.is_set():
            if not health.ok:  # claim nothing while outcomes cannot be written
                health.wait_ok(0.5)
                continue
            taken = self.dispatcher.take(timeout=1.0)
            if taken is None:
                continue
            try:
                self.run_job(taken)
            except OSError as e:  # the spool failed us (a bad file's reason unwritable, say)
                self.spool.health.failed(f"handling pending/{taken.stem}.json", e,
                                         str(self.spool.root))  # fmt: skip
            except Exception:  # a bug: this thread must go on taking jobs
                logger.exception("job %s: unexpected error; it stays where it is", taken.stem)
            with self._lock:
                if me in self._abandoned:
                    return

    def run_once(self) -> Job | None:
        """Take one due job and run it in this thread (tests and tools step with this,
        moving the pool's clock between steps)."""
        taken = self.dispatcher.take(timeout=0)
        return self.run_job(taken) if taken else None

    def run_job(self, taken: Taken) -> Job | None:
        """Claim, run and record one job taken from the index; None if it was lost to
        another worker or not due. Every time in the record (startedAt, completedAt,
        durationMs, nextAttemptAt) comes from the pool's one clock.

        Only the run itself is outside the spool's turn (see Spool.turn)."""
        now = self.clock()
        with self.spool.turn:
            checked = self._look(taken, now)
            claimed = self._claim(checked, now) if checked else None
            if checked is None or claimed is None:
                if checked is not None:
                    self.dispatcher.release(checked.slot, checked.at)
                return None
            attempt, policy = self._begin(*claimed, checked, now), self.policy()
        error, permanent = self._execute(attempt.job, policy, attempt.context)
        with self._lock:
            self.active.pop(attempt.thread, None)
        if _settle(attempt):
            self._record(attempt, error, permanent)
        return attempt.job

    def _claim(self, taken: Taken, now: float) -> tuple[Job, str] | None:
        """The job (as intake judged it, if the index kept it), claimed into running/
        under the returned name; None if it is not ours to run now (lost to another
        worker, unreadable, or not yet due)."""
        stem, priority = taken.stem, taken.priority
        try:
            running = self.spool.claim(stem)
        except OSError as e:  # a read-only spool, say: the job stays in pending/
            self.spool.health.failed(f"claiming pending/{stem}.json", e, str(self.spool.root))
            self.dispatcher.defer(stem, priority, now, due_known=False, job_type=taken.slot)
            return None
        if running is None:
            return None
        job = taken.job or self._load(running, stem, priority)
        if job is None:
            return None
        if job.due > now:
            self.spool.unclaim(running, stem)
            self.dispatcher.defer(stem, priority, job.due, job_type=job.type)
            return None
        if not self.spool.mark_started(running):
            return None
        return job, running

    def _look(self, taken: Taken, now: float) -> Taken | None:
        """Look at a pending file whose due time or type the index does not know (see
        Taken) before claiming it, so a job waiting for its runAt, its backoff or its
        type's limit never shows up in running/. None if it is not ours to run now; else
        the taken job, holding a slot of its type where it has one."""
        if taken.due_known and taken.slot is not None:
            return taken
        stem, priority, parsed = taken.stem, taken.priority, parse_stem(taken.stem)
        try:
            raw = self.spool.read("pending", stem + ".json") if parsed else None
        except Rejected:
            return taken  # no regular file: the claim and load that follow put it in failed/
        if raw is None or parsed is None:  # gone: not ours
            self.dispatcher.release(taken.slot, taken.at)
            return None
        record = strictjson.object_or_none(raw)
        if record is None:
            return taken  # the claim and load that follow put it in failed/
        job = from_record(record, parsed.id, priority, parsed.accepted, self.tz(), {})
        if job.due > now:
            self.dispatcher.release(taken.slot, taken.at)
            self.dispatcher.defer(stem, priority, job.due, job_type=job.type)
            return None
        if taken.slot is not None:
            return taken
        admitted = self.dispatcher.admit(stem, priority, job.type)
        return None if admitted is None else taken._replace(slot=job.type, at=admitted)

    def _load(self, running: str, stem: str, priority: str) -> Job | None:
        parsed = parse_stem(stem)
        try:
            record = _record_or_reject(self.spool, running, "the job file was changed")
        except FileNotFoundError:
            record = parsed = None
        if parsed is None:
            self.spool.drop_running(running)  # gone under us: no longer ours to hold
            return None
        if record is None:
            return None
        return from_record(record, parsed.id, priority, parsed.accepted, self.tz(), self.registry())

    def _begin(self, job: Job, running: str, taken: Taken, now: float) -> Attempt:
        """Count the attempt and show it in `active`, where the monitor times it."""
        job.attempts += 1
        job.status, job.started_at, job.error = "running", now, None
        timeout = job.timeout or self.policy().timeout
        deadline, thread = time.monotonic() + timeout, threading.get_ident()
        attempt = Attempt(
            job, taken.stem, running, deadline, thread, JobContext(job.id), taken.slot
        )
        with self._lock:
            self.active[attempt.thread] = attempt
        return attempt

    def _execute(self, job: Job, policy: Policy, context: JobContext) -> tuple[str | None, bool]:
        """(error or None, whether it is for good). Once a cancel was asked for, a failure
        and a return after the job saw the request are both 'cancelled', never retried; a
        job that never looked and completed did its work, and completed it is."""
        error, permanent = self._call(job, policy, context)
        if context.cancel_requested and (error is not None or context.cancel_seen):
            return CANCELLED, True
        return error, permanent

    def _call(self, job: Job, policy: Policy, context: JobContext) -> tuple[str | None, bool]:
        job_type = self.registry().get(job.type)
        if job_type is None:
            return f"unknown job type {job.type!r} (was it removed from jobTypes?)", True
        try:
            job.result = result_fields(job_type.call(job.run_args(policy.timeout), context))
        except PermanentJobError as e:
            return str(e) or type(e).__name__, True
        except Exception as e:
            return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__, False
        return None, False

    def _record(self, attempt: Attempt, error: str | None, permanent: bool) -> None:
        """Hand the outcome (completed/, a retry in pending/, or failed/) to the committer,
        which writes it (outside the turn: its queue may make us wait for it). The run
        ends here for its type's limit, also one that timed out (its thread may go on,
        but it no longer counts: one hung job must not hold its type up for good)."""
        with self.spool.turn:
            outcome = self._outcome(attempt, error, permanent)
        self.dispatcher.release(attempt.slot)
        self.committer.submit(outcome, lone=self.dispatcher.empty)
        if attempt.context.cancel_requested:
            self._answered(attempt.job.id)

    def _record_now(self, attempt: Attempt, error: str) -> None:
        """Record a final failure directly (at stop, the committer has stopped)."""
        with self.spool.turn:
            outcome = self._outcome(attempt, error, True)
        try:
            self.spool.finish(attempt.running, attempt.stem, outcome.folder, outcome.data)
        except OSError as e:
            logger.error("job %s: cannot record its outcome (%s); it is recovered later",
                         attempt.job.id, e)  # fmt: skip
            return
        outcome.done()
        self._answered(attempt.job.id)

    def _outcome(self, attempt: Attempt, error: str | None, permanent: bool) -> Outcome:
        job, policy = attempt.job, self.policy()
        end = self.clock()
        job.duration_ms = int(max(end - (job.started_at or end), 0) * 1000)
        job.error = error
        if error is None:
            job.status, job.completed_at, folder = "completed", end, "completed"
        elif permanent or job.attempts >= job.max_attempts:
            job.status, job.completed_at, folder = "failed", end, "failed"
        else:
            job.status, folder = "pending", "pending"
            wait = backoff_seconds(job.attempts, policy.max_backoff, policy.jitter, self.rand)
            job.next_attempt_at = end + wait

        follow = self._follow_ups(job, attempt.stem, folder)

        def done() -> None:
            announce(self.dispatcher, follow)
            self._reported(job, attempt.stem, folder, end)

        data = job.to_json()
        return Outcome(attempt.running, attempt.stem, folder, data, done, follow=tuple(follow))

    def _follow_ups(self, job: Job, stem: str, folder: str) -> list[Record]:
        """The follow-ups this outcome enqueues (none for a retry), less those enqueued
        already by an earlier run of this job that stopped before its record was written.
        A job an operator stopped enqueues none: onFailure is for failing, not cancelling."""
        if job.error == CANCELLED:
            return []
        key = followups.KEYS.get(folder)
        parsed = parse_stem(stem) if key and key in job.data else None  # most jobs have none
        if parsed is None:
            return []
        return followups.missing(job.data, folder, parsed, self.registry(), _exists_in(self.spool))

    def _reported(self, job: Job, stem: str, folder: str, end: float) -> None:
        """The outcome is in the spool (durably, with fsync): index a retry, log, report."""
        if folder == "pending":
            self.dispatcher.defer(stem, job.priority, job.due, job_type=job.type)
            logger.info("job %s attempt %d failed, retry in %.0fs: %s", job.id, job.attempts,
                        job.due - end, job.error)  # fmt: skip
        elif job.error:
            logger.warning("job %s failed after %d attempt(s): %s", job.id, job.attempts,
                           job.error)  # fmt: skip
        self.on_finish(job, folder)

    # ----- timeouts and leases ----------------------------------------------------------

    def _monitor_turn(self) -> None:
        self._expire(time.monotonic())
        if self.active and time.monotonic() - self._last_poll >= CANCEL_POLL:
            self._last_poll = time.monotonic()
            self._poll_cancels()
        if time.monotonic() - self._last_renew >= self.policy().lease_seconds / 3:
            self._last_renew = time.monotonic()
            self._renew_lease()

    def _renew_lease(self) -> None:
        """Keep our running files ours, also while the spool takes no writes (a full disk
        still takes a touch); a failure is logged and tried again at the next turn."""
        try:
            self.spool.ownership.renew_lease()
        except OSError as e:
            logger.error("cannot renew the lease on our running jobs (%s): another daemon"
                         " may recover them if this lasts", e)  # fmt: skip

    def _expire(self, now: float) -> None:
        with self._lock:
            late = [(t, a) for t, a in self.active.items() if a.deadline <= now]
        for thread_id, attempt in late:
            if not _settle(attempt):
                continue
            with self._lock:
                self.active.pop(thread_id, None)
                self._abandoned.add(thread_id)
            timeout = attempt.job.timeout or self.policy().timeout
            logger.warning("job %s timed out after %ss; its thread is abandoned",
                           attempt.job.id, timeout)  # fmt: skip
            if attempt.context.cancel_requested:  # it did not stop when asked: still cancelled
                self._record(attempt, CANCELLED, True)
            else:
                self._record(attempt, f"timed out after {timeout}s", False)
            self._spawn()

    # ----- cancelling and progress -------------------------------------------------------

    def cancel(self, job_id: str) -> bool:
        """Ask the attempt running job_id here to stop; False if no worker here runs it."""
        attempt = self._attempt(job_id)
        if attempt is None:
            return False
        if not attempt.context.cancel_requested:
            logger.info("job %s: cancel requested; it stops at its next step", job_id)
            attempt.context.request_cancel()
        return True

    def progress(self, job_id: str) -> dict[str, Any] | None:
        """The last progress job_id reported, if it runs here and has reported."""
        attempt = self._attempt(job_id)
        return attempt.context.last_progress() if attempt else None

    def _attempt(self, job_id: str) -> Attempt | None:
        with self._lock:
            return next((a for a in self.active.values() if a.job.id == job_id), None)

    def _poll_cancels(self) -> None:
        """Pass on the requests in cancel/ for the jobs running here (spoold cancel, or
        another daemon's HTTP API, wrote them); the others are another daemon's."""
        try:
            requested = self.spool.cancel_requests()
        except OSError as e:
            logger.error("cannot read the cancel requests in %s: %s", self.spool.root, e)
            return
        for job_id in requested:
            self.cancel(job_id)

    def _answered(self, job_id: str) -> None:
        try:
            self.spool.drop_cancel_request(job_id)
        except OSError as e:
            logger.error("cannot remove the answered cancel request of job %s: %s", job_id, e)

    def _recovery_args(self) -> tuple[ZoneInfo, dict[str, JobType]]:
        return self.tz(), self.registry()

    @property
    def active_count(self) -> int:
        return len(self.active)

    def running_jobs(self) -> list[dict[str, Any]]:
        """What runs now, oldest attempt first: id, type, priority, attempt, start time,
        the last progress report (or None) and whether a cancel was asked for."""
        with self._lock:
            attempts = list(self.active.values())
        attempts.sort(key=lambda attempt: attempt.job.started_at or 0.0)
        return [_shown(attempt) for attempt in attempts]


def _shown(attempt: Attempt) -> dict[str, Any]:
    job, context = attempt.job, attempt.context
    return {
        "id": job.id,
        "type": job.type,
        "priority": job.priority,
        "attempts": job.attempts,
        "startedAt": iso_or_none(job.started_at),
        "progress": context.last_progress(),
        "cancelling": context.cancel_requested,
    }


def _record_or_reject(spool: Spool, running: str, why: str) -> dict[str, Any] | None:
    """The JSON object in a running file, or None after moving the file to failed/: only
    spoold writes there, so anything else means someone edited the spool by hand (one
    that is no regular file, a symlink or a FIFO, goes unread: never followed or waited
    on). FileNotFoundError if the file is gone."""
    try:
        raw = spool.read("running", running)
    except Rejected as e:
        spool.reject(running, f"{why}: {e}", "running")
        return None
    if raw is None:
        raise FileNotFoundError(errno.ENOENT, "gone", running)
    try:
        record = strictjson.loads(raw)
        if not isinstance(record, dict):
            raise InvalidJob("not a JSON object")
    except InvalidJob as e:
        spool.reject(running, f"{why}: {e}", "running")
        return None
    return record


def _settle(attempt: Attempt) -> bool:
    """True for the one caller that gets to record this attempt's outcome."""
    with attempt.lock:
        if attempt.done:
            return False
        attempt.done = True
        return True


def recover_running(
    spool: Spool,
    running: str,
    dispatcher: Dispatcher,
    context: tuple[ZoneInfo, dict[str, JobType]],
    reason: str = "interrupted: the daemon running it stopped mid-attempt",
) -> str | None:
    """Put a job whose holder stopped back to pending/: unchanged if its attempt never
    started (claimed, then the daemon died), else with the attempt counted, or into
    failed/ when it has none left, or as cancelled when someone asked it to stop (a
    request in cancel/). Returns the folder it went to, or None."""
    parsed = running_stem(running)
    stem = parse_stem(parsed[0]) if parsed else None
    if stem is None:
        return None
    if spool.has_record(stem.text):
        _enqueue_follow_ups(spool, stem, dispatcher, context[1])
        spool.drop_running(running)
        return None
    started = spool.was_started(running)
    if started is None:
        return None
    cancelled = spool.mtime("cancel", stem.id) is not None
    if not started and not cancelled:
        return _put_back_unstarted(spool, running, stem, dispatcher)
    try:
        record = _record_or_reject(spool, running, "unreadable job left in running/")
    except FileNotFoundError:
        return None
    if record is None:
        return "failed"
    tz, registry = context
    job = from_record(record, stem.id, stem.priority, stem.accepted, tz, registry)
    job.attempts += 1 if started else 0
    job.error = CANCELLED if cancelled else reason
    job.status = "failed" if cancelled or job.attempts >= job.max_attempts else "pending"
    if job.status == "failed":
        job.completed_at = time.time()
    follow = [] if cancelled else followups.missing(job.data, job.status, stem, registry,
                                                    _exists_in(spool))  # fmt: skip
    spool.finish(running, stem.text, job.status, job.to_json(), follow)
    announce(dispatcher, follow)
    if cancelled:
        spool.drop_cancel_request(stem.id)
    if job.status == "pending":
        dispatcher.defer(stem.text, stem.priority, 0.0, due_known=False)  # read it again
    logger.warning("recovered job %s from running/: %s (attempt %d of %d)",
                   stem.id, job.status, job.attempts, job.max_attempts)  # fmt: skip
    return job.status


def _put_back_unstarted(
    spool: Spool, running: str, stem: Stem, dispatcher: Dispatcher
) -> str | None:
    """A job claimed whose attempt never started goes back to pending/ as it was: no
    attempt counted, so a `maxAttempts: 1` job still gets its one run."""
    if not spool.unclaim(running, stem.text):
        return None
    dispatcher.defer(stem.text, stem.priority, 0.0, due_known=False)
    logger.warning("recovered job %s from running/: claimed but never started, pending"
                   " again (no attempt counted)", stem.id)  # fmt: skip
    return "pending"


def _enqueue_follow_ups(
    spool: Spool, stem: Stem, dispatcher: Dispatcher, registry: dict[str, JobType]
) -> None:
    """A job whose record was written before its holder stopped: enqueue the follow-ups
    that record calls for and that are not in the spool yet (see followups.py)."""
    for folder in followups.KEYS:
        record = spool.read_object(folder, stem.text + ".json")
        if record is None:
            continue
        follow = followups.missing(record, folder, stem, registry, _exists_in(spool))
        if follow:
            spool.commit_all(follow)
            announce(dispatcher, follow)
            logger.warning("job %s: enqueued %d follow-up(s) its holder left unwritten",
                           stem.id, len(follow))  # fmt: skip


def _exists_in(spool: Spool) -> Callable[[str], bool]:
    """Whether a job of that pending stem is in the spool, in any folder."""
    return lambda stem: spool.job_folder(stem) is not None


def announce(dispatcher: Dispatcher, follow: list[Record]) -> None:
    """Follow-ups are in pending/ now: the dispatcher reads each when its turn comes."""
    for record in follow:
        parsed = parse_stem(record.stem)
        if parsed:
            dispatcher.defer(record.stem, parsed.priority, 0.0, due_known=False)
