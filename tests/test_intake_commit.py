"""New jobs written with `durability: fsync` share the committer's flushes."""

import os
import shutil
import threading
from zoneinfo import ZoneInfo

import pytest
from conftest import CountingSpool, wait_until

from spoold.commit import Committer
from spoold.context import Context
from spoold.dispatch import Dispatcher
from spoold.intake import Intake
from spoold.jobs import JobType
from spoold.spool import Spool

UTC = ZoneInfo("UTC")
REGISTRY = {"quick": JobType("quick", print)}


@pytest.fixture
def door(tmp_path):
    spool = CountingSpool(tmp_path / "spool", durable=True)
    spool.ensure()
    committer = Committer(spool)
    committer.start()
    context = Context(spool, Dispatcher(), lambda: REGISTRY, lambda: UTC, committer)
    intake = Intake(context, 10_000, 0.0)
    yield spool, intake
    committer.stop()


def pending_ids(spool):
    return sorted(name[:-5].rsplit("-", 1)[1] for name in os.listdir(spool.dirs["pending"]))


def test_jobs_posted_together_share_flushes_and_each_is_in_pending_when_submit_returns(door):
    spool, intake = door
    seen_on_return = {}

    def post(n):
        job = intake.submit({"type": "quick", "id": f"j{n}"}, 0.0)
        seen_on_return[n] = f"j{n}" in pending_ids(spool) and job.id == f"j{n}"

    with spool.turn:  # the committer waits here with its first batch; the rest queue up
        threads = [threading.Thread(target=post, args=(n,)) for n in range(8)]
        threads[0].start()  # alone: had all 8 come before the committer woke, it would
        wait_until(intake.committer._writing.locked)  # take them all in its first batch
        for thread in threads[1:]:
            thread.start()
        wait_until(lambda: intake.committer.waiting >= 4)
        assert pending_ids(spool) == [] and seen_on_return == {}
    for thread in threads:
        thread.join(10)
    assert seen_on_return == {n: True for n in range(8)}
    assert pending_ids(spool) == sorted(f"j{n}" for n in range(8))
    # 2 flushes a batch: the committer's first batch, the 4+ that queued behind it, and
    # at most 3 stragglers on their own: fewer than the 16 of a flush pair per job.
    assert spool.flushes <= 10
    assert [n for n in os.listdir(spool.dirs["tmp"]) if not n.startswith(".")] == []


def test_a_job_that_cannot_be_written_is_an_error_for_its_caller_and_its_id_stays_free(door):
    spool, intake = door
    shutil.rmtree(spool.dirs["tmp"])  # where every write starts
    with pytest.raises(FileNotFoundError):
        intake.submit({"type": "quick", "id": "lost"}, 0.0)
    assert pending_ids(spool) == []
    spool.dirs["tmp"].mkdir()
    assert intake.submit({"type": "quick", "id": "lost"}, 0.0).id == "lost"
    assert pending_ids(spool) == ["lost"]


def test_a_bug_in_one_commit_is_reported_and_the_committer_goes_on(tmp_path):
    from spoold.commit import Outcome

    spool = Spool(tmp_path / "spool", durable=True)
    spool.ensure()
    committer = Committer(spool)
    committer.start()
    heard, done = [], threading.Event()
    try:
        # str, not bytes: os.write raises TypeError inside the commit
        committer.submit(Outcome(None, "bad", "pending", "text", done.set, heard.append))
        wait_until(lambda: heard)
        assert isinstance(heard[0], OSError) and "internal error" in str(heard[0])
        committer.submit(Outcome(None, "good", "pending", b"{}", done.set, heard.append))
        assert done.wait(5) and os.listdir(spool.dirs["pending"]) == ["good.json"]
    finally:
        committer.stop()


def test_a_commit_that_fails_leaves_no_staged_file_behind(tmp_path):
    """A batch that cannot be placed (its folder is gone, the disk is full) is retried
    one by one; the files it had staged in tmp/ must not stay there, filling the disk."""
    from spoold.commit import Outcome

    spool = Spool(tmp_path / "spool", durable=True)
    spool.ensure()
    shutil.rmtree(spool.dirs["pending"])
    committer = Committer(spool)  # not started: commits inline, in this thread
    heard, done = [], []
    committer.submit(Outcome(None, "lost", "pending", b"{}", lambda: done.append(1), heard.append))
    assert done == [] and isinstance(heard[0], FileNotFoundError)
    assert [n for n in os.listdir(spool.dirs["tmp"]) if not n.startswith(".")] == []
