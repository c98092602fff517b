"""Cron tasks → jobs in the spool; each scheduled run decided once, whatever the daemons.

`tick(now)` looks at each task's window (last tick, now] and decides its latest
fire time: fire, or skip while the task's previous job is still pending or
running. The decision is an exclusive create of `schedule/<job id>.fire`
(link(2) fails when the name exists), so whichever daemon gets there first
decides for all, and the others read the marker and agree. The job id is the
task name and the fire minute in UTC (`health_log.20261129T1731Z`), so a
restart that looks at the same minute again loses to its own marker.

A task's outcome is its job's: every daemon follows the task's open runs by
name in the spool (`Spool.job_folder`) and counts what each becomes, so all of
them show the same counts. `schedule/<task>.last` names the latest run, so runs
enqueued elsewhere (`spoold run-task`, another daemon) are followed too.

Runs missed while stopped: the window since the last tick saved in the state
file. `catchUp: skip` fires only a run at most LATE_GRACE seconds late;
`catchUp: once` fires the latest missed run, once, for all of them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from spoold import strictjson
from spoold.config import Config, TaskConfig
from spoold.cron import fire_times_between, next_times, zone
from spoold.errors import ConfigError, InvalidJob, TaskBusy, UnknownTask
from spoold.intake import Intake
from spoold.job import new_job
from spoold.names import make_stem
from spoold.spool import Spool
from spoold.taskstate import (
    MARKER,
    POINTER,
    Run,
    TaskState,
    dump_states,
    fire_id,
    load_states,
    local_iso,
    run_now_id,
)
from spoold.threads import Loop

logger = logging.getLogger(__name__)

LATE_GRACE = 60.0  # a run this late still counts as on time (a restart, a stalled tick)
RECENT = timedelta(days=2)  # how far back the latest fire time is looked for first
GONE_AFTER = 10.0  # a run found in no folder this long after it was decided is dropped
MARKER_KEEP = 2 * 86400.0  # markers older than this are pruned, checked hourly
PRUNE_EVERY = 3600.0
RUNS_PER_SECOND = 99  # manual runs of one task within one second (ids end in -2 ... -99)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Decision:
    """What became of one scheduled run: fired (by us), skipped, or decided elsewhere."""

    outcome: str  # "fired", "skipped", "taken", "refused"
    job_id: str
    detail: str = ""


class Scheduler:
    """The configured tasks, their state, and the loop that fires them. Thread-safe."""

    def __init__(
        self,
        spool: Spool,
        intake: Intake,
        tasks: Iterable[TaskConfig] = (),
        timezone: str = "UTC",
        state_file: str | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.spool = spool
        self.intake = intake
        self.state_file = state_file
        self.clock = clock
        self._lock = threading.RLock()
        self._tasks: dict[str, TaskConfig] = {}
        self._zones: dict[str, ZoneInfo] = {}
        self._states: dict[str, TaskState] = {}
        self._next: dict[str, datetime | None] = {}
        self._loaded = False
        self._dirty = False
        self._last_prune = 0.0
        # Just after every whole second, so a run starts within ~10 ms of its time.
        self._loop = Loop("scheduler", self._tick_now, lambda: 1.005 - time.time() % 1.0, True)
        self.configure(tasks, timezone)

    # ----- configuration and life cycle ------------------------------------------------------

    def configure(self, tasks: Iterable[TaskConfig], timezone: str) -> None:
        """Swap the task list (start, hot reload). A task new to the list starts counting
        its window at the next tick, so a re-added task does not catch up."""
        with self._lock:
            new = {task.name: task for task in tasks}
            for name in new.keys() - self._tasks.keys():
                self._states.setdefault(name, TaskState()).checked = None
            self._tasks = new
            self._zones = {name: zone(task.timezone or timezone) for name, task in new.items()}
            self._next = {}

    def start(self) -> None:
        self._ready()
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()
        with self._lock:
            self._save(force=True)

    @property
    def is_running(self) -> bool:
        return self._loop.alive and not self._loop.stopping

    def _tick_now(self) -> None:
        self.tick(self.clock())

    def _ready(self) -> None:
        """Make schedule/ and read the state file, once."""
        if self._loaded:
            return
        self.spool.ensure_extra("schedule")
        if self.state_file:
            read = partial(self.spool.read, "schedule", self.state_file)
            source = str(self.spool.path("schedule", self.state_file))
            self._states.update(load_states(read, source))
        self._loaded = True

    # ----- ticking ----------------------------------------------------------------------------

    def tick(self, now: datetime) -> None:
        """Decide every task's run due in (last tick, now]; `now` is aware (tests step it)."""
        with self._lock:
            self._ready()
            for name in list(self._tasks):
                try:
                    self._tick_task(name, now)
                except Exception:
                    logger.exception("task %s: tick failed; trying again at the next", name)
            self._prune(now.timestamp())
            self._save()

    def _tick_task(self, name: str, now: datetime) -> None:
        state = self._state(name)
        self._observe(name, now)
        after, state.checked = state.checked, now.timestamp()
        if after is None:
            return
        task = self._tasks[name]
        instant = latest_fire(task.cron, _at(after), now, self._zones[name])
        if instant is None:
            return
        late = (now - instant).total_seconds() > LATE_GRACE
        if late and (task.catch_up == "skip" or state.latest >= instant.timestamp()):
            logger.info("task %s: runs missed while stopped, up to %s, not run (catchUp: %s)",
                        name, instant.isoformat(), task.catch_up)  # fmt: skip
            return
        self.fire(name, instant, now)

    def fire(
        self, name: str, instant: datetime, now: datetime | None = None, by_hand: bool = False
    ) -> Decision:
        """Decide the task's scheduled run at `instant`, once across every daemon on the spool.

        The tick calls this; so does `spoold run-task NAME --at TIME` (by_hand), for which
        a busy task is TaskBusy, to be asked again, not a run skipped for good. UnknownTask
        if no such task.
        """
        now = now or self.clock()
        with self._lock:
            self._ready()
            self._task(name)
            self._observe(name, now)
            job_id = fire_id(name, instant)
            busy = self._busy(name)
            if busy and by_hand and self.spool.mtime("schedule", job_id + MARKER) is None:
                raise _busy_error(name, busy)
            try:
                if busy:
                    return self._decide_skip(name, job_id, busy, now)
                return self._decide_fire(name, job_id, now)
            except OSError as e:  # the decision could not be written: a full disk, say
                why = f"cannot write schedule/{job_id}{MARKER}: {e.strerror or e}"
                return self._refuse(name, job_id, why)

    def is_fire_time(self, name: str, instant: datetime) -> bool:
        """Whether the task's schedule fires at `instant` (UnknownTask if no such task).
        Compared as moments: Python never finds a time in the hour a clock repeats equal
        to one in another zone, though both are the same moment."""
        task = self._task(name)
        minute_before = instant - timedelta(minutes=1)
        fires = latest_fire(task.cron, minute_before, instant, self._zones[name])
        return fires is not None and fires.timestamp() == instant.timestamp()

    def zone_of(self, name: str) -> ZoneInfo:
        """The time zone the task's schedule is read in (UnknownTask if no such task)."""
        self._task(name)
        return self._zones[name]

    def _decide_skip(self, name: str, job_id: str, busy: Run, now: datetime) -> Decision:
        marker = {"decision": "skip", "busyWith": busy.job_id}
        if not self._mark(job_id, marker, now):
            return self._adopt(name, job_id)
        self._state(name).skipped_count += 1
        self._dirty = True
        detail = f"skipped: job {busy.job_id} is still {busy.folder}"
        logger.info("task %s: run %s %s", name, job_id, detail)
        return Decision("skipped", job_id, detail)

    def _decide_fire(self, name: str, job_id: str, now: datetime) -> Decision:
        try:
            stem = self._stem(name, job_id, now)
        except InvalidJob as e:
            return self._refuse(name, job_id, str(e))
        run = Run(job_id, stem, now.timestamp())
        if not self._mark(job_id, {"decision": "fire", **run.to_json()}, now):
            return self._adopt(name, job_id)
        try:
            self._enqueue(name, run, now)
        except (InvalidJob, OSError) as e:  # the job is not in pending/: the run is not taken
            self.spool.remove("schedule", job_id + MARKER)
            return self._refuse(name, job_id, _not_enqueued(e))
        logger.info("task %s: enqueued job %s", name, job_id)
        return Decision("fired", job_id)

    def _refuse(self, name: str, job_id: str, error: str) -> Decision:
        self._state(name).refused(error)
        self._dirty = True
        logger.error("task %s: could not enqueue job %s: %s", name, job_id, error)
        return Decision("refused", job_id, f"refused: {error}")

    def _mark(self, job_id: str, marker: dict[str, Any], now: datetime) -> bool:
        """The exclusive create that decides a run; False if another got there first."""
        marker = {**marker, "by": self.spool.owner, "decidedAt": now.isoformat()}
        return self.spool.write(
            "schedule", job_id + MARKER, strictjson.dumps(marker), exclusive=True
        )

    def _adopt(self, name: str, job_id: str) -> Decision:
        """Another daemon (or our earlier life) decided this run: follow what it decided."""
        marker = self.spool.read_object("schedule", job_id + MARKER) or {}
        by = str(marker.get("by", "another daemon"))
        if marker.get("decision") == "skip":
            self._state(name).skipped_count += 1
            self._dirty = True
        run = Run.from_json(marker)
        if run is not None:
            self._dirty |= self._state(name).track(run)
        logger.debug("task %s: run %s was decided elsewhere (%s)", name, job_id, by)
        decided = f"{marker.get('decision', '?')} by {by} at {marker.get('decidedAt', '?')}"
        return Decision("taken", job_id, f"already decided: {decided}")

    # ----- run now ----------------------------------------------------------------------------

    def run_now(self, name: str) -> str:
        """Enqueue a run of the task at once; its job id. UnknownTask if no such task,
        TaskBusy while its previous run is pending or running (HTTP 409, CLI non-zero)."""
        with self._lock:
            self._ready()
            now = self.clock()
            self._task(name)
            self._observe(name, now)
            busy = self._busy(name)
            if busy:
                raise _busy_error(name, busy)
            run = self._claim_run_now(name, now)
            try:
                self._enqueue(name, run, now)
            except BaseException:
                self.spool.remove("schedule", run.job_id + MARKER)
                raise
            logger.info("task %s: run now as job %s", name, run.job_id)
            return run.job_id

    def _claim_run_now(self, name: str, now: datetime) -> Run:
        """The first run id of this second nobody has taken: run ids are to the second, and
        a run asked for after the last one finished must run however soon that was. The
        marker's exclusive create decides between daemons asking at once."""
        for n in range(1, RUNS_PER_SECOND + 1):
            job_id = run_now_id(name, now, n)
            if job_id in self.intake.ids:
                continue
            run = Run(job_id, self._stem(name, job_id, now), now.timestamp())
            if self._mark(job_id, {"decision": "fire", **run.to_json()}, now):
                return run
        raise TaskBusy(f"task {name!r} was run {RUNS_PER_SECOND} times this second: try again")

    # ----- the task's jobs --------------------------------------------------------------------

    def _stem(self, name: str, job_id: str, now: datetime) -> str:
        """The pending name the run's job will have (InvalidJob if the job is refused)."""
        job = self.intake.judge(self._job_data(name, job_id), now.timestamp())
        return make_stem(job.priority, self.spool.accept_ns(), job_id)

    def _job_data(self, name: str, job_id: str) -> dict[str, Any]:
        return {**self._tasks[name].job, "id": job_id}

    def _enqueue(self, name: str, run: Run, now: datetime) -> None:
        """Write the job into pending/ and say so in the task's pointer. Once the job is in
        pending/ it runs, so the run has fired: a pointer that cannot be written (the disk
        filled between the two) is logged, not made a refusal that would free the run's
        decision for another daemon to enqueue it a second time."""
        data = self._job_data(name, run.job_id)
        self.intake.submit(data, now.timestamp(), exclusive_stem=run.stem)
        self._state(name).track(run)
        self._dirty = True
        try:
            self.spool.write("schedule", name + POINTER, strictjson.dumps(run.to_json()))
        except OSError as e:
            logger.warning("task %s: job %s is enqueued, but schedule/%s%s cannot be written (%s):"
                           " other daemons on this spool may not see that it runs",
                           name, run.job_id, name, POINTER, e.strerror or e)  # fmt: skip

    def _observe(self, name: str, now: datetime) -> None:
        """Follow the task's latest run (whoever enqueued it) and count the finished ones.

        A run in no folder may be one another daemon has decided but not yet written:
        it is dropped only GONE_AFTER seconds after it was decided.
        """
        state = self._state(name)
        pointed = Run.from_json(self.spool.read_object("schedule", name + POINTER))
        if pointed is not None:
            self._dirty |= state.track(pointed)
        for run in list(state.open):
            run.folder = self.spool.job_folder(run.stem) or "gone"
            if run.folder == "gone" and now.timestamp() - run.at < GONE_AFTER:
                run.folder = "pending"
            if run.folder in ("pending", "running"):
                continue
            state.open.remove(run)
            self._dirty = True
            if run.folder == "gone":
                logger.warning("task %s: job %s is in no spool folder (removed?)", name, run.job_id)
                continue
            state.finished(run.folder, self._error_of(run))

    def _error_of(self, run: Run) -> str | None:
        if run.folder != "failed":
            return None
        record = self.spool.read_object("failed", run.stem + ".json") or {}
        return str(record.get("error") or "failed")

    def _busy(self, name: str) -> Run | None:
        """The task's run still pending or running (after _observe), if any."""
        state = self._state(name)
        return state.open[0] if state.open else None

    def _task(self, name: str) -> TaskConfig:
        task = self._tasks.get(name)
        if task is None:
            known = ", ".join(sorted(self._tasks)) or "none configured"
            raise UnknownTask(f"no task named {name!r} (tasks: {known})")
        return task

    def _state(self, name: str) -> TaskState:
        return self._states.setdefault(name, TaskState())

    # ----- persistence ------------------------------------------------------------------------

    def _save(self, force: bool = False) -> None:
        """Write the state file when something changed (or at stop); errors are logged."""
        if not self.state_file or not (self._dirty or force) or not self._loaded:
            return
        states = {name: self._state(name) for name in self._tasks}
        try:
            self.spool.write("schedule", self.state_file, dump_states(states))
            self._dirty = False
        except OSError as e:
            logger.error("cannot write the scheduler state: %s; trying again", e)

    def _prune(self, now: float) -> None:
        """Drop decision markers older than MARKER_KEEP, hourly."""
        if now - self._last_prune < PRUNE_EVERY:
            return
        self._last_prune = now
        for name in self.spool.names("schedule"):
            mtime = self.spool.mtime("schedule", name) if name.endswith(MARKER) else None
            if mtime is not None and now - mtime > MARKER_KEEP:
                self.spool.remove("schedule", name)

    # ----- status ----------------------------------------------------------------------------

    def snapshot(self, now: datetime | None = None) -> dict[str, Any]:
        """The `scheduler` part of status.json (and of GET /scheduler)."""
        now = now or self.clock()
        with self._lock:
            self._ready()
            tasks = [self._task_snapshot(name, now) for name in self._tasks]
        return {"isRunning": self.is_running, "taskCount": len(tasks), "tasks": tasks}

    def _task_snapshot(self, name: str, now: datetime) -> dict[str, Any]:
        task, state, tz = self._tasks[name], self._state(name), self._zones[name]
        return {
            "name": name,
            "schedule": task.cron,
            "isRunning": bool(state.open),
            "runCount": state.run_count,
            "errorCount": state.error_count,
            "lastRun": local_iso(state.last_run, tz),
            "nextRun": self._next_run(name, now),
            "lastError": state.last_error,
            "lastResult": state.last_result,
            "skippedCount": state.skipped_count,
            "timezone": tz.key,
        }

    def _next_run(self, name: str, now: datetime) -> str | None:
        """The next fire time with its offset; computed again only once it has passed."""
        cached = self._next.get(name)
        if cached is None or cached <= now:
            found = next_times(self._tasks[name].cron, now, self._zones[name])
            cached = self._next[name] = found[0] if found else None
        return cached.isoformat() if cached else None


def latest_fire(cron: str, after: datetime, now: datetime, tz: ZoneInfo) -> datetime | None:
    """The last fire time t with after < t <= now, looking at the last two days first
    so a long-stopped every-minute task does not walk through every missed minute."""
    recent = max(after, now - RECENT)
    last = None
    for last in fire_times_between(cron, recent, now, tz):  # noqa: B007
        pass
    if last is None and recent > after:
        for last in fire_times_between(cron, after, recent, tz):  # noqa: B007
            pass
    return last


def check_tasks(config: Config, registry: dict[str, Any]) -> None:
    """ConfigError if a task's job would be refused at every run (file, line and key)."""
    problems = []
    tz = ZoneInfo(config.timezone)
    for index, task in enumerate(config.schedule):
        where = f"{config.path or '<config>'}:{task.line}: schedule.{index}.job"
        if "id" in task.job:
            problems.append(f"{where}.id: remove it: each run gets its own id (task and time)")
            continue
        try:
            new_job({**task.job, "id": "check"}, registry, tz, time.time())
        except InvalidJob as e:
            problems.append(f"{where}: {e}")
    if problems:
        raise ConfigError(problems)


def standalone(config: Config) -> Scheduler:
    """A scheduler on the config's spool without a daemon (`spoold run-task`). What it
    enqueues is in pending/ at once; a running daemon indexes it at its next rescan."""
    from spoold.context import Context
    from spoold.dispatch import Dispatcher
    from spoold.jobs.registry import build_registry

    registry = build_registry(config, dict)
    tz = ZoneInfo(config.timezone)
    spool = Spool(config.spool, config.node, durable=True)
    spool.ensure_for_command()
    context = Context(spool, Dispatcher(), lambda: registry, lambda: tz)
    intake = Intake(context, config.max_job_bytes, config.settle_seconds)
    return Scheduler(spool, intake, config.schedule, config.timezone)


def _at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _busy_error(name: str, busy: Run) -> TaskBusy:
    return TaskBusy(f"task {name!r} is busy: its job {busy.job_id} is still {busy.folder};"
                    " try again when it has finished")  # fmt: skip


def _not_enqueued(error: InvalidJob | OSError) -> str:
    """Why a run's job is not in pending/: refused as a job, or not written (a full disk)."""
    if isinstance(error, OSError):
        return f"cannot write it into pending/: {error.strerror or error}"
    return str(error)
