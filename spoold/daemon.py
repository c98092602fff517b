"""Wires the parts together: spool, intake, watcher, workers, status; start/stop/run.

Only run() installs signal handlers, so tests drive start() and stop() directly.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from spoold import manage
from spoold.commit import Committer
from spoold.config import Config, HttpConfig, load_config
from spoold.context import Context
from spoold.dispatch import Dispatcher
from spoold.errors import ConfigError, Conflict, NotFound, NotRetryable, TaskBusy, UnknownTask
from spoold.history import History
from spoold.intake import Intake
from spoold.job import Job
from spoold.jobs import JobType
from spoold.jobs.registry import build_registry
from spoold.lease import NodeGuard
from spoold.names import ERROR_SUFFIX, parse_stem, running_stem, stem_of
from spoold.notify import SystemdLink
from spoold.recent import Recent
from spoold.reload import ConfigWatcher
from spoold.retention import prune
from spoold.scheduler import Scheduler, check_tasks
from spoold.service import Counters, FinishListener
from spoold.signals import StopRequest
from spoold.spool import Spool
from spoold.status import Stats, StatusWriter
from spoold.threads import Loop
from spoold.times import iso, iso_or_none
from spoold.watcher import Watcher
from spoold.worker import Policy, WorkerPool, recover_running

if TYPE_CHECKING:
    from collections.abc import Iterable

    from spoold.api import ApiServer

logger = logging.getLogger(__name__)

# Allocations between two collections of the youngest generation (Python's default: 700).
# Each job allocates a few hundred objects, and the index keeps one Job per waiting job:
# at the default, collecting and promoting them was ~10% of the daemon's CPU per job
# (bench: 20,000 and 100,000 jobs waiting). Only cyclic garbage waits longer for it.
GC_YOUNG = 50_000

RETENTION_EVERY = 600.0
NEXT_PENDING = 10  # pending jobs listed in the status snapshot
# Config keys a running daemon cannot change; an edit of one is logged and waits for a restart.
RESTART_KEYS = ("spool", "node", "workers", "http")


def _api_server(daemon: Daemon, http: HttpConfig) -> ApiServer:
    """The HTTP API, imported only where the config has `http:`: http.server, ssl (through
    http.client) and prometheus_client are ~9 MB of a daemon's memory (bench/README.md)."""
    from spoold.api import ApiServer

    return ApiServer(daemon, http)


class Daemon:
    """One spoold process on one spool."""

    def __init__(self, config: Config, node_override: str | None = None) -> None:
        self.config = config
        self._zone, self._policy = _zone_and_policy(config)
        self.node_override = node_override
        self.config_error: str | None = None
        self.config_loaded_at = time.time()
        self.started_at = time.time()
        self.spool = Spool(config.spool, config.node, durable=config.fsync)
        self.node_guard = NodeGuard(self.spool, lambda: self.config.lease_seconds)
        self.exit_code = 0
        self.dispatcher = Dispatcher()
        self.dispatcher.set_limits(config.limits)
        self.registry: dict[str, JobType] = build_registry(config, self.queue_stats)
        check_tasks(config, self.registry)
        self.stats = Stats()
        self.per_minute = History()
        # One retry or cancel at a time: two requests for one job at once (a double click,
        # a script and the dashboard) would each see it where the other is moving it.
        self._verbs = threading.Lock()
        # one group commit for new jobs and outcomes
        shared = Context(self.spool, self.dispatcher, lambda: self.registry, self.tz,
                         Committer(self.spool, helper=True))  # fmt: skip
        self.intake = Intake(shared, config.max_job_bytes, config.settle_seconds)
        self.recent_jobs = Recent(self.spool, lambda job_id: job_id in self.intake.ids)
        # who learns of each outcome a worker records: counts; with HTTP, the chart and the
        # recent lists too (a record built per job for nobody to ask is ~15 µs of each job's CPU)
        self.finish_listeners: list[FinishListener] = [self.stats.finished]
        if config.http:
            self.finish_listeners += [self.per_minute.finished, self.recent_jobs.finished]
        self.pool = WorkerPool(shared, self.policy, config.workers, on_finish=self._finished)
        self.watcher = Watcher(
            str(self.spool.dirs["incoming"]), self._accept_files, self.spool.incoming_names,
            config.rescan_seconds,
        )  # fmt: skip
        state_file = f"state-{config.node}.json" if config.node else "state.json"
        self.scheduler = Scheduler(
            self.spool, self.intake, config.schedule, config.timezone, state_file
        )
        self.reloader = ConfigWatcher(config.path, self.reload_config) if config.path else None
        self.status = StatusWriter(self._write_status, self.snapshot)
        self._stop = StopRequest()
        self._housekeeper = Loop("house", self._housekeeping, lambda: self.config.rescan_seconds)
        self._last_prune = 0.0
        self.api = _api_server(self, config.http) if config.http else None

    # ----- what the parts read from the config -------------------------------------------

    def tz(self) -> ZoneInfo:
        return self._zone

    def policy(self) -> Policy:
        return self._policy

    # ----- life cycle --------------------------------------------------------------------

    def start(self) -> None:
        """Scan the spool once, recover what a crash left, then start every part."""
        self.spool.ensure()
        self.spool.ownership.lock_node()
        self.node_guard.claim_node()
        self.spool.clean_tmp()
        self._hold_space()
        if self.api:
            self.api.bind()
        self.intake.ids.load(self.spool)
        self._index_pending()
        self.stats.completed = self._count_records("completed")
        self.stats.failed = self._count_records("failed")
        self._recover(own_node_too=True)
        self.pool.start()
        self.scheduler.start()
        self.watcher.start()
        self.status.start()
        self._housekeeper.start()
        if self.reloader:
            self.reloader.start()
        if self.api:
            self.api.serve()
        logger.info("spoold %s serving %s with %d worker(s)", self.spool.owner,
                    self.spool.root, self.config.workers)  # fmt: skip

    def stop(self, graceful: bool = True) -> None:
        """Stop claiming, let running jobs finish (up to shutdownGrace), write status last."""
        self._stop.set()
        self.pool.stop_claiming()  # first: stopping the other parts takes a while
        if self.reloader:
            self.reloader.stop()
        self.scheduler.stop()
        if self.api:
            self.api.stop()
        self.watcher.stop()
        self.pool.stop(self.config.shutdown_grace if graceful else 0.0)
        self._housekeeper.stop()  # before the lease goes: housekeeping renews it too
        self.spool.ownership.end_lease()
        self.status.stop()
        logger.info("spoold stopped")

    def run(self) -> int:
        """Foreground: serve until SIGINT or SIGTERM, then stop cleanly. A service manager
        hears when it serves, that it is healthy, and when it stops (see notify.py)."""
        self._stop.install()
        service = SystemdLink.from_env(self.troubles, self.queue_stats)
        gc.set_threshold(GC_YOUNG, *gc.get_threshold()[1:])
        self.start()
        gc.freeze()  # what start made (modules, config, the index) lives as long as we do
        service.ready(time.monotonic())
        while not self._stop.wait(service.wait(time.monotonic())):
            service.tick(time.monotonic())
        grace = self.config.shutdown_grace
        service.stopping(grace)
        logger.info("stopping: no new jobs are claimed; running jobs get %ss", grace)
        self.stop()
        self._stop.close()
        return self.exit_code

    def troubles(self) -> list[str]:
        """The parts whose threads ended while the daemon runs; empty when it is healthy."""
        parts = {
            "workers": self.pool.alive,
            "intake": self.watcher.alive,
            "scheduler": self.scheduler.is_running,
            "status": self.status.alive,
            "housekeeping": self._housekeeper.alive,
            "http": self.api.alive if self.api else True,
            "config reload": self.reloader.alive if self.reloader else True,
        }
        return [name for name, alive in parts.items() if not alive]

    # ----- start-up scans and periodic chores -----------------------------------------------

    def _hold_space(self) -> None:
        """Space for status.json on a full disk (Spool.rewrite); without it, only the log
        and /healthz tell of one."""
        try:
            self.spool.hold_space()
        except OSError as e:
            logger.warning("cannot hold space for the status file in %s (%s): on a full disk"
                           " it will not be updated", self.spool.dirs["tmp"], e)  # fmt: skip

    def _index_pending(self) -> None:
        """Put every job in pending/ that the index does not know into it."""
        found = []
        for name in self.spool.names("pending"):
            if name[:-5] in self.dispatcher:  # known: skip the parse (this runs every rescan)
                continue
            stem = stem_of(name)
            if stem:
                found.append((stem.text, stem.priority))
                self.intake.ids.reserve(stem.id)
        self.dispatcher.add_many(found)

    def _count_records(self, folder: str) -> int:
        return sum(1 for name in self.spool.names(folder) if not name.endswith(ERROR_SUFFIX))

    def _recover(self, own_node_too: bool) -> None:
        """Take back the running files of daemons whose lease lapsed, judged by the file
        server's clock (see lease.py), not this host's."""
        context, now = (self.tz(), self.registry), self.spool.ownership.renew_lease()
        stale = self.spool.ownership.stale_running(now, self.config.lease_seconds, own_node_too)
        for name in stale:
            try:
                folder = recover_running(self.spool, name, self.dispatcher, context)
            except OSError as e:  # a full disk, say: recovered later, once its lease is stale
                self.spool.health.failed(f"recovering running/{name}", e, str(self.spool.root))
                continue
            if folder == "failed":
                self.stats.changed(failed=1)
        self.spool.ownership.drop_dead_leases(now, self.config.lease_seconds * 4)

    def _guard_node(self) -> None:
        """Stop claiming and exit (code 1) if an earlier daemon serves our node name."""
        conflict = self.node_guard.conflict()
        if conflict:
            logger.error("%s", conflict)
            self.exit_code = 1
            self.pool.stop_claiming()
            self._stop.set()

    def _housekeeping(self) -> None:
        """Rescan pending/ for jobs put there by others, recover expired leases, prune.
        Each step on its own: one that fails (a folder where a file should be, a disk
        error) is logged and tried again next time, and does not keep the others from
        running."""
        steps: list[tuple[str, Callable[[], None]]] = [
            ("checking the node's lease", self._guard_node),
            ("making missing spool folders again", self._remake_folders),
            ("rescanning pending/", self._index_pending),
            ("recovering running/", partial(self._recover, own_node_too=False)),
            ("cleaning tmp/", self._clean_dead_tmp),
            ("dropping stale requests in cancel/", self._drop_stale_cancels),
            ("pruning old records", self._prune_when_due),
        ]
        for what, step in steps:
            if self._stop.is_set():  # stopping: the pool's monitor keeps the lease meanwhile
                return
            try:
                step()
            except OSError as e:
                logger.error("housekeeping: %s failed, trying again later: %s", what, e)

    def _remake_folders(self) -> None:
        for folder in self.spool.remake_missing():
            logger.warning("%s was gone (removed by hand, or by a clean-up of empty folders?):"
                           " made again", self.spool.dirs[folder])  # fmt: skip

    def _prune_when_due(self) -> None:
        if time.time() - self._last_prune >= RETENTION_EVERY:
            self._last_prune = time.time()
            self._prune()

    def _clean_dead_tmp(self) -> None:
        """Files a killed helper (ours, or another daemon's) left in tmp/."""
        now = self.spool.ownership.renew_lease()  # the file server's time, as leases are judged
        removed = self.spool.ownership.clean_dead_tmp(now, self.config.lease_seconds)
        if removed:
            logger.info("removed %d file(s) from tmp/ whose writer stopped: %s", len(removed),
                        ", ".join(sorted(removed)[:5]))  # fmt: skip

    def _drop_stale_cancels(self) -> None:
        """Requests in cancel/ for jobs no longer running anywhere (finished before any
        daemon saw the request), kept a lease long first: the job may be between folders."""
        requests = self.spool.cancel_requests()
        if not requests:
            return
        running = set()
        for name in self.spool.names("running"):
            parsed = running_stem(name)
            stem = parse_stem(parsed[0]) if parsed else None
            if stem:
                running.add(stem.id)
        old = time.time() - self.config.lease_seconds
        for job_id in requests:
            changed = self.spool.cancel_request_time(job_id)
            if job_id not in running and changed is not None and changed < old:
                self.spool.drop_cancel_request(job_id)

    def _prune(self) -> None:
        retention = self.config.retention
        for folder, age in (("completed", retention.completed), ("failed", retention.failed)):
            removed = prune(self.spool, folder, age, time.time())
            for name in removed:
                stem = stem_of(name)
                if stem:
                    self.intake.ids.release(stem.id)
            self.stats.changed(**{folder: -len(removed)})

    def _finished(self, job: Job, folder: str) -> None:
        """A worker recorded an attempt's outcome: tell every listener."""
        for listener in self.finish_listeners:
            listener(job, folder)

    # ----- hot reload -------------------------------------------------------------------------

    def reload_config(self) -> None:
        """Read the config file again (the file watcher calls this after an edit). A config
        that does not load keeps the last good one and is shown in status until fixed."""
        try:
            new = load_config(self.config.path, self.node_override)
            if new != self.config or self.config_error:
                self.apply_config(new)
        except ConfigError as e:
            self.config_error = str(e)
            problems = "; ".join(e.problems)  # a log record is one line (see logs.py)
            logger.error("config not applied, the last good one stays in use: %s", problems)

    def apply_config(self, new: Config) -> None:
        """Swap in what can change live: schedule, job types, job policy, time zone,
        retention, smtp/webhook/cleanup, the intake limits and the limits per job type
        (jobs running keep their slots; a lower limit waits for them). ConfigError (nothing
        changed) if the job types or a task's job do not load."""
        registry = build_registry(new, self.queue_stats)
        check_tasks(new, registry)
        old = self.config
        waiting = [key for key in RESTART_KEYS if getattr(new, key) != getattr(old, key)]
        if waiting:
            logger.warning("config: %s changed; restart spoold to apply (kept as before)",
                           ", ".join(waiting))  # fmt: skip
        new = replace(new, spool=old.spool, node=old.node, workers=old.workers, http=old.http)
        self.registry, self.config = registry, new
        self._zone, self._policy = _zone_and_policy(new)
        self.spool.durable = new.fsync
        self.intake.max_bytes, self.intake.settle_seconds = new.max_job_bytes, new.settle_seconds
        self.watcher.rescan_seconds = new.rescan_seconds
        self.scheduler.configure(new.schedule, new.timezone)
        self.dispatcher.set_limits(new.limits)
        self.config_error, self.config_loaded_at = None, time.time()
        logger.info("config %s applied: %d task(s)", new.path, len(new.schedule))

    # ----- the door for files ---------------------------------------------------------------

    def _accept_files(
        self, names: list[str], now: float, more: Iterable[list[str]]
    ) -> list[tuple[float, str]]:
        before = self.intake.rejected
        later = self.intake.accept_files(names, now, more)
        if self.intake.rejected != before:
            self.stats.changed(failed=self.intake.rejected - before)
        return later

    # ----- status ---------------------------------------------------------------------------

    def queue_stats(self) -> dict[str, Any]:
        """The queue part of status.json (also what the queue_stats job logs)."""
        return {
            "pending": self.dispatcher.counts(),
            "running": self.pool.active_count,
            "completed": self.stats.completed,
            "failed": self.stats.failed,
        }

    def worker_stats(self) -> dict[str, Any]:
        return {
            "workerId": self.spool.owner,
            "isRunning": self.pool.is_running,
            "activeJobs": self.pool.active_count,
            "processedJobs": self.stats.processed,
            "concurrency": self.config.workers,
        }

    def scheduler_stats(self) -> dict[str, Any]:
        return self.scheduler.snapshot()

    def snapshot(self) -> dict[str, Any]:
        config_path = self.config.path
        return {
            "node": self.config.node or f"{socket.gethostname()}-{os.getpid()}",
            "pid": os.getpid(),
            "startedAt": iso(self.started_at),
            "updatedAt": iso(time.time()),
            "queue": self.queue_stats(),
            "worker": self.worker_stats(),
            "jobs": self._jobs_now(),
            "scheduler": self.scheduler_stats(),
            "config": {
                "path": str(config_path.absolute()) if config_path else None,
                "loadedAt": iso(self.config_loaded_at),
                "error": self.config_error,
            },
            "storage": self.spool.health.snapshot(),
        }

    def _jobs_now(self) -> dict[str, Any]:
        """For the status page: the jobs running now, the next pending ones in dispatch
        order (those it offers to cancel), and since when the longest-waiting due job is due."""
        pending = []
        for text, due in self.dispatcher.upcoming(NEXT_PENDING):
            stem = parse_stem(text)
            if stem:
                accepted, due_at = iso(stem.accepted), iso_or_none(due)
                pending.append({"id": stem.id, "priority": stem.priority,
                                "acceptedAt": accepted, "dueAt": due_at})  # fmt: skip
        return {
            "running": self.pool.running_jobs(),
            "nextPending": pending,
            "oldestDueAt": iso_or_none(self.dispatcher.due_since()),
        }

    @property
    def status_name(self) -> str:
        node = self.config.node
        return f"status-{node}.json" if node else "status.json"

    def _write_status(self, data: bytes) -> None:
        self.spool.rewrite("", self.status_name, data)

    # ----- the service the HTTP API and the metrics use (service.py) --------------------------

    def job_types(self) -> list[str]:
        return list(self.registry)

    def submit(self, data: dict[str, Any]) -> Job:
        return self.intake.submit(data, time.time())

    def find(self, job_id: str) -> tuple[str, dict[str, Any] | None] | None:
        found = manage.locate(self.spool, job_id)
        for _ in range(3):  # the job may move between finding and reading it
            if found is None:
                return None
            record = manage.read_record(self.spool, found)
            if record is not None:
                return found.folder, record
            found = manage.locate(self.spool, job_id)
        return (found.folder, None) if found else None

    def retry(self, job_id: str) -> str:
        """manage.retry, then the index and counts told what moved."""
        try:
            with self._verbs:
                where = manage.retry(self.spool, job_id)
        except NotRetryable as e:
            raise (Conflict if job_id in self.intake.ids else NotFound)(str(e)) from e
        folder, _, name = where.partition("/")
        stem = stem_of(name) if folder == "pending" else None
        if stem:
            self.dispatcher.add(stem.text, stem.priority, 0.0)
        self.stats.changed(failed=-1)
        self.recent_jobs.forget(job_id)
        return folder

    def cancel(self, job_id: str) -> str:
        """A job running here is asked to stop at once; else manage.cancel (a job running
        on another daemon is asked through cancel/), then the index, counts and recent
        list told what moved. 'cancelling' or 'failed' (cancelled while pending)."""
        with self._verbs:
            return self._cancel(job_id)

    def _cancel(self, job_id: str) -> str:
        if self.pool.cancel(job_id):
            return "cancelling"
        try:
            found = manage.cancel(self.spool, job_id)
        except LookupError as e:
            raise NotFound(str(e.args[0] if e.args else e)) from e
        except NotRetryable as e:
            raise Conflict(str(e)) from e
        if found.folder == "running":
            self.pool.cancel(job_id)  # it may have been claimed here meanwhile
            return "cancelling"
        self.dispatcher.discard(found.stem)
        self.stats.changed(failed=1)
        record = manage.read_record(self.spool, found)
        if record:
            self.recent_jobs.add("failed", record, found.name)
        return "failed"

    def progress(self, job_id: str) -> dict[str, Any] | None:
        return self.pool.progress(job_id)

    def run_task(self, name: str) -> str:
        try:
            return self.scheduler.run_now(name)
        except UnknownTask as e:
            raise NotFound(str(e) or f"no scheduled task named {name!r}") from e
        except TaskBusy as e:
            raise Conflict(str(e) or f"task {name!r} is still pending or running") from e

    def counters(self) -> Counters:
        return Counters(
            outcomes=dict(self.stats.outcomes),
            durations=self.stats.duration_histograms(),
            due_since=self.dispatcher.due_since(),
            config_loaded_at=self.config_loaded_at,
            config_ok=self.config_error is None,
            storage_ok=self.spool.health.ok,
        )

    def storage_error(self) -> str | None:
        health = self.spool.health
        return None if health.ok else health.error or "the spool takes no writes"

    def history(self, now: float) -> list[dict[str, Any]]:
        return self.per_minute.minutes(now)

    def recent(self, folder: str, limit: int) -> list[dict[str, Any]]:
        return self.recent_jobs.newest(folder, limit)


def _zone_and_policy(config: Config) -> tuple[ZoneInfo, Policy]:
    """What every job reads from the config, made once per config rather than per job."""
    jobs = config.jobs
    policy = Policy(jobs.timeout, jobs.max_backoff, jobs.jitter, config.lease_seconds)
    return ZoneInfo(config.timezone), policy
