"""Scheduler.tick with an injected clock on a real spool in tmp_path; jobs run by a real
WorkerPool stepped with run_once. Nothing here reads the wall clock or sleeps."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fault.mounts import fill, small_disk

from spoold.config import Config, TaskConfig, parse_config
from spoold.context import Context
from spoold.dispatch import Dispatcher
from spoold.errors import ConfigError, TaskBusy, UnknownTask
from spoold.intake import Intake
from spoold.jobs import JobType
from spoold.jobs.registry import build_registry
from spoold.scheduler import Scheduler, check_tasks, latest_fire
from spoold.spool import Spool
from spoold.taskstate import fire_id, run_now_id
from spoold.worker import Policy, WorkerPool

T0 = datetime(2026, 6, 1, 10, 0, 30, tzinfo=UTC)
PAGE = os.sysconf("SC_PAGE_SIZE")  # what a tmpfs gives a small file


def boom(job: dict[str, Any]) -> None:
    raise RuntimeError("the ledger is locked")


def task(name: str = "t", cron: str = "* * * * *", **kw: Any) -> TaskConfig:
    job = kw.pop("job", {"type": "noop"})
    return TaskConfig(name, cron, job, kw.pop("timezone", None), kw.pop("catch_up", "skip"))


class World:
    """A spool, an intake, a scheduler and a one-worker pool, all on tmp_path."""

    def __init__(self, root: Path, tasks: list[TaskConfig], node: str | None = None) -> None:
        self.root = root
        self.tasks = tasks
        self.node = node
        self.spool = Spool(root / "spool", node, durable=False)
        self.spool.ensure()
        self.registry = build_registry(Config(), dict)
        self.registry["boom"] = JobType("boom", boom, "normal", 1)
        tz = ZoneInfo("UTC")
        registry = lambda: self.registry  # noqa: E731
        context = Context(self.spool, Dispatcher(), registry, lambda: tz)
        self.intake = Intake(context, 1 << 20, 0)
        self.pool = WorkerPool(context, Policy, 1)
        self.scheduler = self.new_scheduler()

    def new_scheduler(self) -> Scheduler:
        state = f"state-{self.node}.json" if self.node else "state.json"
        return Scheduler(self.spool, self.intake, self.tasks, "UTC", state, clock=lambda: T0)

    def run_jobs(self) -> int:
        """Run every due job now; how many ran."""
        ran = 0
        while self.pool.run_once() is not None:
            ran += 1
        return ran

    def ids(self, folder: str) -> list[str]:
        found = []
        for name in self.spool.names(folder):
            record = json.loads((self.spool.dirs[folder] / name).read_bytes())
            found.append(record["id"])
        return sorted(found)

    def task(self, name: str = "t", now: datetime = T0) -> dict[str, Any]:
        tasks = self.scheduler.snapshot(now)["tasks"]
        return next(t for t in tasks if t["name"] == name)


def step(world: World, start: datetime, end: datetime, every: timedelta, run: bool = True):
    """Tick from start to end; run the jobs enqueued after each tick."""
    now = start
    while now <= end:
        world.scheduler.tick(now)
        if run:
            world.run_jobs()
        now += every


# --- firing ------------------------------------------------------------------------------


def test_first_tick_only_starts_the_window_then_each_minute_fires_once(tmp_path):
    world = World(tmp_path, [task("every")])
    world.scheduler.tick(T0)
    assert world.ids("pending") == []
    step(world, T0 + timedelta(seconds=1), T0 + timedelta(minutes=3), timedelta(seconds=7))
    assert world.ids("completed") == [
        "every.20260601T1001Z", "every.20260601T1002Z", "every.20260601T1003Z"
    ]  # fmt: skip
    snap = world.task("every", T0 + timedelta(minutes=3))
    assert snap["runCount"] == 3 and snap["errorCount"] == 0 and not snap["isRunning"]
    assert snap["lastResult"] == "completed"
    assert snap["lastRun"] == "2026-06-01T10:03:05+00:00"  # the tick that enqueued it
    assert snap["nextRun"] == "2026-06-01T10:04:00+00:00"


def test_snapshot_has_the_spec_shape_and_next_run_with_its_offset(tmp_path):
    world = World(tmp_path, [task("ny", "30 2 * * *", timezone="America/New_York")])
    snap = world.scheduler.snapshot(T0)
    assert snap == {
        "isRunning": False,
        "taskCount": 1,
        "tasks": [{
            "name": "ny", "schedule": "30 2 * * *", "isRunning": False, "runCount": 0,
            "errorCount": 0, "lastRun": None, "nextRun": "2026-06-02T02:30:00-04:00",
            "lastError": None, "lastResult": None, "skippedCount": 0,
            "timezone": "America/New_York",
        }],
    }  # fmt: skip


@pytest.mark.parametrize(
    ("zone", "day", "expected_utc"),
    [
        ("Europe/Berlin", "2026-03-29", "20260329T0100Z"),  # 02:30 skipped: runs at 03:00 CEST
        ("Europe/Berlin", "2026-10-25", "20261025T0030Z"),  # 02:30 twice: runs once, CEST
        ("America/New_York", "2026-03-08", "20260308T0700Z"),  # runs at 03:00 EDT
        ("America/New_York", "2026-11-01", "20261101T0730Z"),  # 02:30 EST, once
    ],
)
def test_daily_0230_runs_once_a_day_across_daylight_saving(tmp_path, zone, day, expected_utc):
    world = World(tmp_path, [task("nightly", "30 2 * * *", timezone=zone)])
    local_midnight = datetime.fromisoformat(day).replace(tzinfo=ZoneInfo(zone))
    start = local_midnight - timedelta(days=1)
    step(world, start, start + timedelta(days=3), timedelta(minutes=10))
    ids = world.ids("completed")
    assert len(ids) == 3, ids
    assert f"nightly.{expected_utc}" in ids
    assert world.task("nightly", start + timedelta(days=3))["runCount"] == 3


def test_hourly_task_runs_every_real_hour_through_fall_back(tmp_path):
    world = World(tmp_path, [task("hourly", "0 * * * *", timezone="Europe/Berlin")])
    start = datetime(2026, 10, 24, 22, 30, tzinfo=UTC)
    step(world, start, start + timedelta(hours=6), timedelta(minutes=5))
    hours = [i.split(".")[1] for i in world.ids("completed")]
    assert hours == [f"202610{d:02}T{h:02}00Z" for d, h in
                     [(24, 23), (25, 0), (25, 1), (25, 2), (25, 3), (25, 4)]]  # fmt: skip


def test_a_task_job_that_fails_counts_as_the_task_error(tmp_path):
    world = World(tmp_path, [task("b", job={"type": "boom"})])
    step(world, T0, T0 + timedelta(minutes=2), timedelta(seconds=30))
    snap = world.task("b")
    assert snap["runCount"] == 2 and snap["errorCount"] == 2
    assert snap["lastError"] == "RuntimeError: the ledger is locked"
    assert snap["lastResult"] == "failed"


# --- no overlap ---------------------------------------------------------------------------


def test_a_fire_while_the_last_job_is_pending_is_skipped_and_counted(tmp_path):
    world = World(tmp_path, [task("t")])
    step(world, T0, T0 + timedelta(minutes=3), timedelta(seconds=30), run=False)
    assert world.ids("pending") == ["t.20260601T1001Z"]
    snap = world.task("t")
    assert snap["isRunning"] and snap["skippedCount"] == 2 and snap["runCount"] == 0
    world.run_jobs()
    step(world, T0 + timedelta(minutes=4), T0 + timedelta(minutes=4), timedelta(minutes=1))
    assert world.ids("completed") == ["t.20260601T1001Z", "t.20260601T1004Z"]
    world.scheduler.tick(T0 + timedelta(minutes=4, seconds=1))
    assert world.task("t")["runCount"] == 2


def test_a_fire_while_the_last_job_is_running_is_skipped(tmp_path):
    world = World(tmp_path, [task("t")])
    world.scheduler.tick(T0)
    world.scheduler.tick(T0 + timedelta(seconds=30))
    stem = world.spool.names("pending")[0][:-5]
    assert world.spool.claim(stem) is not None  # a worker of some daemon holds it
    world.scheduler.tick(T0 + timedelta(seconds=90))
    assert world.spool.names("pending") == []
    assert world.task("t")["skippedCount"] == 1 and world.task("t")["isRunning"]


def test_run_now_refuses_while_busy_and_for_an_unknown_task(tmp_path):
    world = World(tmp_path, [task("t", "0 0 1 1 *")])
    job_id = world.scheduler.run_now("t")
    assert job_id == run_now_id("t", T0) == "t.run-20260601T100030Z"
    assert world.ids("pending") == [job_id]
    with pytest.raises(TaskBusy, match="still pending"):
        world.scheduler.run_now("t")
    with pytest.raises(UnknownTask, match="no task named 'x'"):
        world.scheduler.run_now("x")
    world.run_jobs()
    world.scheduler.tick(T0 + timedelta(seconds=1))  # a tick sees what became of its jobs
    assert world.task("t")["runCount"] == 1


def test_a_run_enqueued_by_another_scheduler_is_seen_as_busy(tmp_path):
    world = World(tmp_path, [task("t")])
    world.scheduler.tick(T0)
    other = world.new_scheduler()  # e.g. `spoold run-task t` from a shell
    other.state_file = None
    job_id = other.run_now("t")
    world.scheduler.tick(T0 + timedelta(seconds=40))
    assert world.ids("pending") == [job_id]
    assert world.task("t")["skippedCount"] == 1
    world.run_jobs()
    world.scheduler.tick(T0 + timedelta(seconds=41))
    assert world.task("t")["runCount"] == 1 and not world.task("t")["isRunning"]


# --- restarts, catch-up and state ----------------------------------------------------------


def test_state_is_kept_across_a_new_scheduler(tmp_path):
    world = World(tmp_path, [task("b", job={"type": "boom"})])
    step(world, T0, T0 + timedelta(minutes=2), timedelta(seconds=30))
    world.scheduler.stop()
    world.scheduler = world.new_scheduler()
    snap = world.task("b")
    assert (snap["runCount"], snap["errorCount"]) == (2, 2)
    assert (snap["lastError"], snap["lastResult"]) == ("RuntimeError: the ledger is locked",
                                                       "failed")  # fmt: skip
    assert snap["lastRun"] == "2026-06-01T10:02:00+00:00"


def test_a_restart_within_the_same_minute_does_not_fire_again(tmp_path):
    world = World(tmp_path, [task("t")])
    world.scheduler.tick(T0)
    world.scheduler.tick(T0 + timedelta(seconds=31))  # fires 10:01
    # a crash: the state file never saw the fire, so the new life looks at 10:01 again
    (world.spool.dirs["schedule"] / "state.json").unlink()
    world.scheduler = world.new_scheduler()
    world.scheduler.tick(T0)
    world.scheduler.tick(T0 + timedelta(seconds=45))
    assert world.ids("pending") == ["t.20260601T1001Z"]


@pytest.mark.parametrize(("catch_up", "expected"), [("skip", []), ("once", ["t.20260601T1005Z"])])
def test_runs_missed_while_stopped(tmp_path, catch_up, expected):
    world = World(tmp_path, [task("t", "*/5 * * * *", catch_up=catch_up)])
    world.scheduler.tick(T0)
    world.scheduler.stop()
    world.scheduler = world.new_scheduler()
    world.scheduler.tick(T0 + timedelta(minutes=8))  # 10:05 is 3.5 minutes late
    assert world.ids("pending") == expected
    world.run_jobs()
    world.scheduler.tick(T0 + timedelta(minutes=10))  # 10:10, on time: runs either way
    assert world.ids("pending") == ["t.20260601T1010Z"]


def test_catch_up_once_is_one_run_for_a_long_stop(tmp_path):
    world = World(tmp_path, [task("t", "*/5 * * * *", catch_up="once")])
    world.scheduler.tick(T0)
    world.scheduler.stop()
    world.scheduler = world.new_scheduler()
    world.scheduler.tick(T0 + timedelta(days=3, minutes=8))
    assert world.ids("pending") == ["t.20260604T1005Z"]


def test_a_late_run_inside_the_grace_still_fires_with_catch_up_skip(tmp_path):
    world = World(tmp_path, [task("t")])
    world.scheduler.tick(T0)
    world.scheduler.tick(T0 + timedelta(seconds=80))  # 10:01 is 50 s late
    assert world.ids("pending") == ["t.20260601T1001Z"]


def test_a_task_added_by_a_reload_does_not_catch_up(tmp_path):
    world = World(tmp_path, [task("a")])
    world.scheduler.tick(T0)
    world.scheduler.configure([task("a"), task("b", catch_up="once")], "UTC")
    world.scheduler.tick(T0 + timedelta(seconds=10))
    world.scheduler.tick(T0 + timedelta(seconds=40))
    assert world.ids("pending") == ["a.20260601T1001Z", "b.20260601T1001Z"]


# --- several daemons ------------------------------------------------------------------------


def test_two_schedulers_on_one_spool_fire_each_run_once(tmp_path):
    """Two daemons' schedulers (own Spool, Intake, id registry) tick the same instants at
    the same moment, in two threads; each run is enqueued once and both agree on it."""
    a = World(tmp_path, [task("t")], node="a")
    b = World(tmp_path, [task("t")], node="b")
    start = threading.Barrier(2)

    def run(world: World) -> None:
        for minute in range(30):
            start.wait()
            world.scheduler.tick(T0 + timedelta(minutes=minute))
            start.wait()
            world.run_jobs()  # each daemon runs the jobs it enqueued

    threads = [threading.Thread(target=run, args=(w,), name="spoold-test") for w in (a, b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    a.run_jobs()
    done = a.ids("completed")
    assert len(done) == len(set(done)) == 29
    for world in (a, b):
        world.scheduler.tick(T0 + timedelta(minutes=29, seconds=1))
        assert world.task("t")["runCount"] == 29


def test_fire_decides_a_given_instant_once(tmp_path):
    a = World(tmp_path, [task("t")], node="a")
    b = World(tmp_path, [task("t")], node="b")
    instant = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
    first = a.scheduler.fire("t", instant)
    second = b.scheduler.fire("t", instant)
    assert (first.outcome, second.outcome) == ("fired", "taken")
    assert a.ids("pending") == [fire_id("t", instant)] == ["t.20260601T0900Z"]
    assert b.task("t")["isRunning"]


def test_markers_older_than_two_days_are_pruned(tmp_path):
    world = World(tmp_path, [task("t")])
    step(world, T0, T0 + timedelta(minutes=2), timedelta(minutes=1))
    markers = [n for n in world.spool.names("schedule") if n.endswith(".fire")]
    assert len(markers) == 2
    world.scheduler.tick(datetime.now(UTC) + timedelta(days=3))
    assert [n for n in world.spool.names("schedule") if n.endswith(".fire")] == []


# --- pure parts -------------------------------------------------------------------------------


def test_ids_use_only_job_id_characters_and_stay_short():
    instant = datetime(2026, 11, 29, 18, 31, tzinfo=ZoneInfo("Europe/Berlin"))
    assert fire_id("health_log", instant) == "health_log.20261129T1731Z"
    long = "x" * 128
    assert len(fire_id(long, instant)) <= 128 and len(run_now_id(long, instant)) <= 128
    assert fire_id(long, instant) != fire_id("x" * 127 + "y", instant)


def test_latest_fire_of_a_monthly_task_stopped_for_months():
    tz = ZoneInfo("UTC")
    after, now = datetime(2026, 1, 15, tzinfo=UTC), datetime(2026, 5, 20, tzinfo=UTC)
    assert latest_fire("0 0 1 * *", after, now, tz) == datetime(2026, 5, 1, tzinfo=tz)
    assert latest_fire("0 0 1 * *", now - timedelta(days=1), now, tz) is None


def test_check_tasks_names_file_line_and_key_of_a_job_that_would_always_fail():
    text = "schedule:\n  - name: a\n    cron: '* * * * *'\n    job: {type: log}\n"
    config = parse_config(text, Path("spoold.yaml"))
    with pytest.raises(ConfigError) as e:
        check_tasks(config, build_registry(config, dict))
    assert str(e.value) == ("spoold.yaml:2: schedule.0.job: field 'message' is required: a string")


def test_a_run_is_followed_once_by_id_whatever_the_clocks_say(tmp_path):
    """Another daemon's clock may be behind ours: its later run still counts."""
    world = World(tmp_path, [task("t", "0 0 1 1 *")])
    world.scheduler.run_now("t")
    world.run_jobs()
    behind = world.new_scheduler()
    behind.state_file = None
    behind.clock = lambda: T0 - timedelta(seconds=5)
    world.scheduler.tick(T0 + timedelta(seconds=1))
    behind.run_now("t")
    world.scheduler.tick(T0 + timedelta(seconds=2))
    assert world.task("t")["isRunning"]
    world.run_jobs()
    world.scheduler.tick(T0 + timedelta(seconds=3))
    world.scheduler.tick(T0 + timedelta(seconds=4))
    assert world.task("t")["runCount"] == 2


# --- a bad day ----------------------------------------------------------------------------


@contextmanager
def due_on_a_full_disk(tmp_path: Path, free_pages: int = 0) -> Iterator[tuple[World, Path]]:
    """Task t on a 2 MiB tmpfs, ticked when its run falls due (T0 + 1 min) with the disk
    filled by a ballast file but for `free_pages` pages: each small file written takes
    one, so the write after them fails with ENOSPC. Yields the world and the ballast."""
    with small_disk(tmp_path / "disk"):
        world = World(tmp_path / "disk", [task("t")])
        world.scheduler.tick(T0)
        ballast = tmp_path / "disk" / "ballast"
        written = fill(ballast)
        os.truncate(ballast, written - free_pages * PAGE)
        print(
            f"injected: a ballast of {written} bytes fills the 2 MiB spool but {free_pages} page(s)"
        )
        world.scheduler.tick(T0 + timedelta(minutes=1))
        yield world, ballast


def test_a_run_due_on_a_full_disk_is_refused_with_its_reason_then_the_next_fires(tmp_path, caplog):
    """Fault: the spool is a 2 MiB tmpfs, filled by a ballast file when a run is due: the
    run's decision (an exclusive marker file) cannot be written. The run is refused with
    the disk's own words, in the log and in the task's state, not a traceback; once the
    ballast is gone the next minute fires."""
    with due_on_a_full_disk(tmp_path) as (world, ballast):
        print(f"found in the log: {caplog.text.strip()}")
        assert "Traceback" not in caplog.text and "tick failed" not in caplog.text
        assert "task t: could not enqueue job t.20260601T1001Z" in caplog.text
        assert "cannot write schedule/t.20260601T1001Z.fire: No space left on device" in caplog.text
        snap = world.task("t", T0 + timedelta(minutes=1))
        assert "No space left on device" in snap["lastError"] and snap["errorCount"] == 1
        assert world.ids("pending") == []
        ballast.unlink()
        world.scheduler.tick(T0 + timedelta(minutes=2))
        assert world.ids("pending") == ["t.20260601T1002Z"]


def test_a_run_whose_job_cannot_be_written_is_refused_and_its_decision_freed(tmp_path, caplog):
    """Fault: a 2 MiB tmpfs filled but for one page: the run's decision is written, the
    job's file into pending/ is not. The run is refused saying so; its decision is removed,
    so nothing claims a run that is in no folder."""
    with due_on_a_full_disk(tmp_path, free_pages=1) as (world, _):
        print(f"found in the log: {caplog.text.strip()}")
        assert ("task t: could not enqueue job t.20260601T1001Z: cannot write it into pending/:"
                " No space left on device") in caplog.text  # fmt: skip
        assert world.ids("pending") == []
        assert not world.spool.path("schedule", "t.20260601T1001Z.fire").exists()
        assert world.task("t", T0 + timedelta(minutes=1))["errorCount"] == 1


def test_a_run_whose_pointer_cannot_be_written_has_fired_and_keeps_its_decision(tmp_path, caplog):
    """Fault: a 2 MiB tmpfs filled but for two pages: the run's decision and its job are
    written, the task's pointer (schedule/t.last) is not. The job is in pending/, so the
    run fired: it is not reported refused, and its decision stays, so no other daemon can
    enqueue the same run again. (Before, the decision was removed and the run refused.)"""
    with due_on_a_full_disk(tmp_path, free_pages=2) as (world, ballast):
        print(f"found in the log: {caplog.text.strip()}")
        assert "could not enqueue" not in caplog.text
        assert ("task t: job t.20260601T1001Z is enqueued, but schedule/t.last cannot be written"
                " (No space left on device)") in caplog.text  # fmt: skip
        assert world.ids("pending") == ["t.20260601T1001Z"]
        assert world.spool.path("schedule", "t.20260601T1001Z.fire").exists()
        snap = world.task("t", T0 + timedelta(minutes=1))
        assert snap["errorCount"] == 0 and snap["lastError"] is None and snap["isRunning"]
        ballast.unlink()
        assert world.run_jobs() == 1
        world.scheduler.tick(T0 + timedelta(minutes=1, seconds=5))
        snap = world.task("t", T0 + timedelta(minutes=1, seconds=5))
        assert snap["runCount"] == 1 and snap["lastResult"] == "completed"
