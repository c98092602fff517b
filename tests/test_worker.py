"""The worker stepped by hand on a real spool: outcomes, retries, recovery."""

import json
import os
import threading
from zoneinfo import ZoneInfo

import pytest
from conftest import wait_until

from spoold.context import Context
from spoold.dispatch import Dispatcher, Taken
from spoold.errors import PermanentJobError
from spoold.intake import Intake
from spoold.jobs import JobType
from spoold.limits import Limit
from spoold.names import make_stem, parse_stem
from spoold.spool import Spool
from spoold.times import parse_time
from spoold.worker import Policy, WorkerPool, recover_running

UTC = ZoneInfo("UTC")


class SteppedClock:
    """The pool's clock, moved by the test (and by a job that "takes" time)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Flaky:
    """Fails `failures` times, then succeeds; remembers what it was given."""

    def __init__(self, failures=0, error=None):
        self.failures = failures
        self.error = error or RuntimeError("boom")
        self.calls = []

    def __call__(self, job):
        self.calls.append(job)
        if len(self.calls) <= self.failures:
            raise self.error


@pytest.fixture
def world(tmp_path):
    spool = Spool(tmp_path / "spool", durable=False)
    spool.ensure()
    dispatcher = Dispatcher()
    flaky = Flaky()
    registry = {"flaky": JobType("flaky", flaky, "normal", 3)}
    context = Context(spool, dispatcher, lambda: registry, lambda: UTC)
    intake = Intake(context, 10_000, 0.0)
    finished = []
    pool = WorkerPool(context, lambda: Policy(timeout=5, max_backoff=60), 1,
                      on_finish=lambda job, folder: finished.append((job.id, folder)),
                      clock=SteppedClock(200.0))  # fmt: skip
    return spool, intake, pool, flaky, finished


def folder_json(spool, folder):
    return [
        json.loads((spool.dirs[folder] / n).read_bytes()) for n in os.listdir(spool.dirs[folder])
    ]


def test_success_writes_a_full_record(world):
    spool, intake, pool, flaky, finished = world
    intake.submit({"type": "flaky", "id": "j1", "x": 1}, now=100.0)
    job = pool.run_once()
    assert job.status == "completed"
    [record] = folder_json(spool, "completed")
    assert record["id"] == "j1" and record["attempts"] == 1 and record["x"] == 1
    assert record["error"] is None and isinstance(record["durationMs"], int)
    assert flaky.calls[0]["attempts"] == 1 and flaky.calls[0]["timeout"] == 5
    assert finished == [("j1", "completed")]
    assert os.listdir(spool.dirs["running"]) == []


def test_a_stepped_run_takes_every_time_in_the_record_from_the_pool_clock(world):
    spool, intake, pool, _, _ = world
    intake.submit({"type": "flaky", "id": "timed"}, now=100.0)

    def takes_a_second_and_a_half(job):
        pool.clock.now += 1.5

    pool.registry()["flaky"] = JobType("flaky", takes_a_second_and_a_half, "normal", 3)
    pool.run_once()
    [record] = folder_json(spool, "completed")
    assert record["startedAt"] == "1970-01-01T00:03:20.000+00:00"
    assert record["completedAt"] == "1970-01-01T00:03:21.500+00:00"
    assert record["durationMs"] == 1500


def test_failure_backs_off_in_pending_then_fails_for_good(world):
    spool, intake, pool, flaky, _ = world
    flaky.failures = 10
    intake.submit({"type": "flaky", "id": "j2"}, now=100.0)
    pool.run_once()
    [retry] = folder_json(spool, "pending")
    assert retry["attempts"] == 1 and retry["status"] == "pending"
    assert "RuntimeError: boom" in retry["error"] and "nextAttemptAt" in retry
    assert pool.run_once() is None
    intake.dispatcher.add_many([])
    for _ in range(2):
        pool.clock.now += 3600  # past the backoff
        stem = os.listdir(spool.dirs["pending"])[0][:-5]
        pool.run_job(Taken(stem, "normal", None, due_known=False))
    [failed] = folder_json(spool, "failed")
    assert failed["attempts"] == 3 and failed["status"] == "failed"
    assert os.listdir(spool.dirs["pending"]) == []


def test_permanent_error_fails_at_once(world):
    spool, intake, pool, flaky, _ = world
    flaky.failures, flaky.error = 1, PermanentJobError("HTTP 400 from hook")
    intake.submit({"type": "flaky", "id": "j3"}, now=100.0)
    pool.run_once()
    [failed] = folder_json(spool, "failed")
    assert failed["attempts"] == 1 and failed["error"] == "HTTP 400 from hook"


def test_interrupted_job_is_recovered_with_the_attempt_counted(world):
    spool, intake, pool, _, _ = world
    intake.submit({"type": "flaky", "id": "j4"}, now=100.0)
    stem = os.listdir(spool.dirs["pending"])[0][:-5]
    crashed = Spool(spool.root, durable=False)
    running = crashed.claim(stem)
    assert crashed.mark_started(running)
    assert recover_running(spool, running, intake.dispatcher, (UTC, pool.registry())) == "pending"
    [record] = folder_json(spool, "pending")
    assert record["attempts"] == 1 and "interrupted" in record["error"]
    pool.run_once()
    [done] = folder_json(spool, "completed")
    assert done["attempts"] == 2


def test_a_started_job_with_no_attempt_left_is_failed_as_interrupted(world):
    spool, intake, pool, flaky, _ = world
    intake.submit({"type": "flaky", "id": "once", "maxAttempts": 1}, now=100.0)
    stem = os.listdir(spool.dirs["pending"])[0][:-5]
    crashed = Spool(spool.root, durable=False)
    running = crashed.claim(stem)
    assert crashed.mark_started(running)
    assert recover_running(spool, running, intake.dispatcher, (UTC, pool.registry())) == "failed"
    [record] = folder_json(spool, "failed")
    assert record["attempts"] == 1 and "interrupted" in record["error"]
    assert flaky.calls == []


def test_a_job_claimed_but_never_started_gets_its_one_attempt(world):
    """A daemon that died between the claim and the run leaves a running file without
    the start mark: it goes back to pending/ byte for byte, no attempt counted."""
    spool, intake, pool, flaky, _ = world
    intake.submit({"type": "flaky", "id": "once", "maxAttempts": 1}, now=100.0)
    [name] = os.listdir(spool.dirs["pending"])
    original = (spool.dirs["pending"] / name).read_bytes()
    running = Spool(spool.root, durable=False).claim(name[:-5])
    assert spool.was_started(running) is False
    assert recover_running(spool, running, intake.dispatcher, (UTC, pool.registry())) == "pending"
    assert (spool.dirs["pending"] / name).read_bytes() == original
    assert os.listdir(spool.dirs["running"]) == []
    pool.run_once()
    [done] = folder_json(spool, "completed")
    assert done["attempts"] == 1 and len(flaky.calls) == 1


def test_the_running_file_is_marked_started_before_the_job_runs(world):
    spool, intake, pool, _, _ = world
    seen = []

    def look(job):
        [running] = [n for n in os.listdir(spool.dirs["running"]) if not n.startswith(".")]
        seen.append(spool.was_started(running))

    pool.registry()["look"] = JobType("look", look, "normal", 1)
    intake.submit({"type": "look", "id": "j9"}, now=100.0)
    pool.run_once()
    assert seen == [True]
    assert [r["status"] for r in folder_json(spool, "completed")] == ["completed"]


def within(call, seconds=5.0):
    """call() in a thread; fails the test if it has not returned in time (a worker stuck
    opening a FIFO would be stuck for good)."""
    returned = []
    thread = threading.Thread(target=lambda: returned.append(call()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert returned, f"{call} has not returned in {seconds}s"
    return returned[0]


def explanations(spool):
    folder = spool.dirs["failed"]
    return {
        name.removesuffix(".error.json"): json.loads((folder / name).read_bytes())["error"]
        for name in os.listdir(folder)
        if name.endswith(".error.json")
    }


@pytest.mark.parametrize("kind", ["a FIFO", "a symlink"])
def test_a_pending_file_that_is_no_regular_file_goes_to_failed_unread(world, tmp_path, kind):
    """Hostile: a file named as a job put straight into pending/ by someone with access to
    the spool: a FIFO (whose open would hold the worker for good), or a symlink to a job
    outside the spool (which would run that file, and stamp its time). Each is moved to
    failed/ as it is, with its reason, nothing runs it, and the next job runs."""
    spool, intake, pool, flaky, _ = world
    stem = make_stem("normal", spool.accept_ns(), "planted")
    planted = spool.dirs["pending"] / f"{stem}.json"
    outside = tmp_path / "outside.json"
    outside.write_bytes(b'{"type": "flaky", "id": "outside"}')
    os.utime(outside, (1000, 1000))
    if kind == "a FIFO":
        os.mkfifo(planted)
    else:
        planted.symlink_to(outside)
    intake.dispatcher.add(stem, "normal")
    intake.submit({"type": "flaky", "id": "after"}, now=100.0)
    assert within(pool.run_once) is None
    assert within(pool.run_once).id == "after"
    [(name, error)] = explanations(spool).items()
    print(f"injected: {kind} as pending/{stem}.json; found: failed/{name}: {error}")
    assert error == f"the job file was changed: not a regular file ({kind})"
    moved = spool.dirs["failed"] / name
    assert moved.is_fifo() if kind == "a FIFO" else moved.readlink() == outside
    assert [job["id"] for job in flaky.calls] == ["after"]
    assert outside.read_bytes() == b'{"type": "flaky", "id": "outside"}'
    assert outside.stat().st_mtime == 1000
    assert os.listdir(spool.dirs["pending"]) == []
    assert [n for n in os.listdir(spool.dirs["running"]) if not n.startswith(".")] == []


def test_a_running_file_swapped_for_a_fifo_is_recovered_into_failed_unread(world):
    """Hostile: a started job's running file replaced by a FIFO before recovery: the
    recovery moves it to failed/ with its reason instead of waiting on it for good."""
    spool, intake, pool, flaky, _ = world
    intake.submit({"type": "flaky", "id": "swapped"}, now=100.0)
    stem = os.listdir(spool.dirs["pending"])[0][:-5]
    crashed = Spool(spool.root, durable=False)
    running = crashed.claim(stem)
    (spool.dirs["running"] / running).unlink()
    os.mkfifo(spool.dirs["running"] / running)
    assert crashed.mark_started(running)
    context = (UTC, pool.registry())
    assert within(lambda: recover_running(spool, running, intake.dispatcher, context)) == "failed"
    [(name, error)] = explanations(spool).items()
    assert error == "unreadable job left in running/: not a regular file (a FIFO)"
    assert (spool.dirs["failed"] / name).is_fifo() and flaky.calls == []
    assert os.listdir(spool.dirs["running"]) == []


class RecoveredUnderUs(Spool):
    """A real spool where, just after each claim, another daemon takes the running file
    back to pending/ (as its recovery does when it judged this daemon dead)."""

    def claim(self, stem):
        running = super().claim(stem)
        os.rename(self.dirs["running"] / running, self.dirs["pending"] / f"{stem}.json")
        return running


def test_a_job_taken_back_between_claim_and_start_is_not_run(tmp_path):
    spool = RecoveredUnderUs(tmp_path / "spool", durable=False)
    spool.ensure()
    flaky = Flaky()
    registry = {"flaky": JobType("flaky", flaky, "normal", 3)}
    context = Context(spool, Dispatcher(), lambda: registry, lambda: UTC)
    intake = Intake(context, 10_000, 0.0)
    pool = WorkerPool(context, lambda: Policy(timeout=5), 1)
    intake.submit({"type": "flaky", "id": "gone"}, now=100.0)
    assert pool.run_once() is None
    assert flaky.calls == [] and os.listdir(spool.dirs["running"]) == []
    assert len(os.listdir(spool.dirs["pending"])) == 1


def test_a_crash_after_the_record_does_not_run_the_job_twice(world):
    spool, intake, pool, flaky, _ = world
    stem = make_stem("normal", spool.accept_ns(), "j5")
    spool.enqueue(stem, b'{"type": "flaky"}')
    running = Spool(spool.root, durable=False).claim(stem)
    spool.write("completed", f"{stem}.json", b'{"status": "completed"}')
    assert recover_running(spool, running, intake.dispatcher, (UTC, pool.registry())) is None
    assert os.listdir(spool.dirs["running"]) == [] and os.listdir(spool.dirs["pending"]) == []
    assert flaky.calls == []


def test_a_job_found_by_a_scan_is_not_claimed_before_its_time(world):
    """A pending file whose due time the index does not know is read, not moved."""
    spool, intake, pool, flaky, _ = world
    stem = make_stem("normal", spool.accept_ns(), "later")
    spool.enqueue(stem, b'{"type": "flaky", "runAt": "2999-01-01T00:00:00Z"}')
    intake.dispatcher.add(stem, "normal")
    assert pool.run_once() is None
    assert os.listdir(spool.dirs["pending"]) == [f"{stem}.json"]
    assert os.listdir(spool.dirs["running"]) == [] and flaky.calls == []
    assert intake.dispatcher.counts()["total"] == 1


def test_durable_outcomes_are_committed_in_batches(tmp_path):
    """With fsync, records reach completed/ through the committer, and only then are
    the running files dropped and the jobs reported."""
    from spoold.commit import Committer, Outcome
    from spoold.spool import Spool

    spool = Spool(tmp_path / "spool", durable=True)
    spool.ensure()
    reported = []
    committer = Committer(spool)
    committer.start()
    stems = []
    for n in range(50):
        stem = make_stem("normal", spool.accept_ns(), f"c{n}")
        spool.enqueue(stem, b"{}")
        running = spool.claim(stem)
        stems.append(stem)
        committer.submit(Outcome(running, stem, "completed", f'{{"n": {n}}}'.encode(),
                                 lambda n=n: reported.append(n)))  # fmt: skip
    committer.stop()
    assert reported == list(range(50))
    assert sorted(os.listdir(spool.dirs["completed"])) == sorted(f"{s}.json" for s in stems)
    assert [n for n in os.listdir(spool.dirs["running"]) if not n.startswith(".")] == []
    committer.submit(Outcome("gone@x.json", "s", "completed", b"{}", lambda: reported.append(-1)))
    assert reported[-1] == -1 and (spool.dirs["completed"] / "s.json").read_bytes() == b"{}"


def test_a_running_job_does_not_hold_up_intake_or_other_workers(tmp_path):
    """The spool's turn covers bookkeeping, never a job's run: while one job blocks,
    files are still accepted and another worker still claims, runs and records."""
    import threading

    from spoold.jobs import JobType

    spool = Spool(tmp_path / "spool", durable=False)
    spool.ensure()
    dispatcher = Dispatcher()
    release, started = threading.Event(), threading.Event()

    def block(job):
        started.set()
        assert release.wait(10)

    registry = {"block": JobType("block", block, "normal", 1),
                "quick": JobType("quick", lambda job: None, "normal", 1)}  # fmt: skip
    context = Context(spool, dispatcher, lambda: registry, lambda: UTC)
    intake = Intake(context, 10_000, 0.0)
    done = threading.Event()
    pool = WorkerPool(context, lambda: Policy(), 2,
                      on_finish=lambda job, folder: job.id == "q" and done.set())  # fmt: skip
    pool.start()
    try:
        (spool.dirs["incoming"] / "b.json").write_text('{"type": "block", "id": "b"}')
        intake.accept_files(["b.json"], 0.0)
        assert started.wait(5)
        (spool.dirs["incoming"] / "q.json").write_text('{"type": "quick", "id": "q"}')
        intake.accept_files(["q.json"], 0.0)
        assert done.wait(5), "the second job waited for the first one's run"
        assert [r["id"] for r in folder_json(spool, "completed")] == ["q"]
    finally:
        release.set()
        pool.stop(5)
    assert sorted(r["id"] for r in folder_json(spool, "completed")) == ["b", "q"]


def test_a_job_kept_from_intake_runs_as_if_read_back_from_its_file(world):
    """The dispatcher hands workers the job intake judged, instead of the file read
    again: the record must not tell the two apart."""
    spool, intake, pool, _, _ = world
    fields = {"type": "flaky", "priority": "high", "maxAttempts": 5, "timeout": 7, "x": [1, "é"]}
    (spool.dirs["incoming"] / "a.json").write_text(json.dumps(fields | {"id": "a"}))
    intake.accept_files(["a.json"], 0.0)
    stem = make_stem("high", spool.accept_ns(), "b")
    (spool.dirs["pending"] / f"{stem}.json").write_text(json.dumps(fields | {"id": "b"}))
    pool.dispatcher.add(stem, "high")
    assert pool.run_once() and pool.run_once()
    records = {r["id"]: r for r in folder_json(spool, "completed")}
    assert set(records) == {"a", "b"}
    times = ("createdAt", "startedAt", "completedAt", "durationMs", "id")
    a, b = ({k: v for k, v in records[i].items() if k not in times} for i in "ab")
    assert a == b == fields | {"status": "completed", "attempts": 1, "error": None}
    for job_id in "ab":
        name = next(n for n in os.listdir(spool.dirs["completed"]) if n.endswith(f"-{job_id}.json"))
        accepted = parse_stem(name[:-5]).accepted
        assert abs(parse_time(records[job_id]["createdAt"], UTC) - accepted) < 0.001


def test_a_file_that_breaks_the_judge_does_not_hold_back_the_rest_of_its_batch(tmp_path):
    """Files are judged in batches; an unexpected error on one leaves it in incoming/
    for the rescan and the others of the batch are still admitted."""

    def broken(job):
        raise RuntimeError("a bug in a plug-in's validate")

    spool = Spool(tmp_path / "spool", durable=False)
    spool.ensure()
    registry = {"broken": JobType("broken", print, validate=broken),
                "quick": JobType("quick", print)}  # fmt: skip
    intake = Intake(Context(spool, Dispatcher(), lambda: registry, lambda: UTC), 10_000, 0.0)
    for n, kind in enumerate(["quick", "broken", "quick"]):
        (spool.dirs["incoming"] / f"{n}.json").write_text(json.dumps({"type": kind, "id": f"{n}"}))
    assert intake.accept_files(["0.json", "1.json", "2.json"], 0.0) == []
    assert os.listdir(spool.dirs["incoming"]) == ["1.json"]
    assert sorted(n.rsplit("-", 1)[1] for n in os.listdir(spool.dirs["pending"])) == [
        "0.json", "2.json"
    ]  # fmt: skip


def test_a_job_another_daemon_put_back_for_later_is_not_claimed_on_a_shared_spool(tmp_path):
    """On a shared spool the index's due time may be stale: the worker reads the file
    before claiming it, so the job never shows up in running/ before its time."""
    spool = Spool(tmp_path / "spool", node="n1", durable=False)
    spool.ensure()
    flaky = Flaky()
    registry = {"flaky": JobType("flaky", flaky, "normal", 3)}
    context = Context(spool, Dispatcher(), lambda: registry, lambda: UTC)
    intake, pool = Intake(context, 10_000, 0.0), WorkerPool(context, Policy, 1)
    intake.submit({"type": "flaky", "id": "j"}, now=100.0)
    [name] = os.listdir(spool.dirs["pending"])
    later = {"type": "flaky", "id": "j", "attempts": 1, "status": "pending",
             "nextAttemptAt": "2999-01-01T00:00:00Z"}  # fmt: skip
    (spool.dirs["pending"] / name).write_text(json.dumps(later))  # "another daemon's" retry
    changed = os.stat(spool.dirs["pending"] / name).st_ctime_ns
    assert pool.run_once() is None and flaky.calls == []
    assert os.listdir(spool.dirs["pending"]) == [name]
    assert os.stat(spool.dirs["pending"] / name).st_ctime_ns == changed  # never renamed
    assert intake.dispatcher.counts()["total"] == 1  # waits in the index for its time


def test_a_job_indexed_without_its_due_time_is_read_before_it_is_claimed(world):
    """As the HTTP retry indexes a job it put back in pending/: its runAt is unknown."""
    spool, intake, pool, flaky, _ = world
    stem = make_stem("normal", spool.accept_ns(), "later")
    spool.enqueue(stem, json.dumps({"type": "flaky", "runAt": "2999-01-01T00:00:00Z"}).encode())
    changed = os.stat(spool.dirs["pending"] / f"{stem}.json").st_ctime_ns
    intake.dispatcher.add(stem, "normal", 0.0)
    assert pool.run_once() is None and flaky.calls == []
    assert os.stat(spool.dirs["pending"] / f"{stem}.json").st_ctime_ns == changed  # not claimed


def test_the_lease_is_renewed_while_a_stop_lets_a_running_job_finish(tmp_path):
    """The monitor runs until the workers have ended: a job finishing within the grace
    keeps its lease, so no other daemon takes it meanwhile."""
    spool = Spool(tmp_path / "spool", node="n1", durable=False)
    spool.ensure()
    started, release = threading.Event(), threading.Event()

    def slow(job):
        started.set()
        release.wait(10)

    registry = {"slow": JobType("slow", slow, "normal", 1)}
    context = Context(spool, Dispatcher(), lambda: registry, lambda: UTC)
    intake = Intake(context, 10_000, 0.0)
    pool = WorkerPool(context, lambda: Policy(timeout=30, lease_seconds=0.3), 1)
    intake.submit({"type": "slow", "id": "through-the-stop"}, now=100.0)
    pool.start()
    assert started.wait(10)
    stopping = threading.Thread(target=pool.stop, args=(10.0,))
    stopping.start()
    lease = spool.dirs["running"] / spool.ownership.lease_name
    wait_until(lambda: lease.exists())
    seen = {os.stat(lease).st_mtime_ns}
    wait_until(lambda: seen.add(os.stat(lease).st_mtime_ns) or len(seen) >= 3)
    release.set()
    stopping.join(10)
    [record] = folder_json(spool, "completed")
    assert record["id"] == "through-the-stop"


def test_a_job_lost_before_its_claim_gives_its_types_slot_back(world):
    spool, intake, pool, _, finished = world
    pool.dispatcher.set_limits({"flaky": Limit(concurrency=1)})
    intake.submit({"type": "flaky", "id": "lost"}, now=100.0)
    intake.submit({"type": "flaky", "id": "kept"}, now=100.0)
    [lost] = [name for name in os.listdir(spool.dirs["pending"]) if "lost" in name]
    os.remove(spool.dirs["pending"] / lost)  # claimed by someone else, say
    assert pool.run_once() is None
    job = pool.run_once()  # the one slot is free again
    assert job is not None and job.id == "kept" and finished == [("kept", "completed")]
