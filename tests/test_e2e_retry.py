"""End to end, retries (SPEC 3): attempts counted, 2^attempts backoff (capped) that survives a
restart, permanent failure into failed/, and a timeout counting as a failed attempt."""

from __future__ import annotations

import json
from datetime import datetime
from itertools import pairwise

import pytest
from conftest import DaemonProcess, job_files, none_running, records, wait_until


def parse(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def waiting_retry(daemon: DaemonProcess, job_id: str) -> dict | None:
    """The job's record in pending/ once a failed attempt put it back there."""
    if job_files(daemon.spool, "running"):
        return None
    for name in job_files(daemon.spool, "pending"):
        if name.endswith(f"-{job_id}.json"):
            record = json.loads((daemon.spool / "pending" / name).read_bytes())
            return record if "nextAttemptAt" in record else None
    return None


@pytest.mark.parametrize("durability", ["relaxed", "fsync"])  # fsync: through the helper
def test_a_job_that_fails_twice_then_succeeds_counts_its_attempts_and_backs_off(
    start_daemon, plugins, durability
):
    daemon = start_daemon(jobTypes=plugins.types, jobs={"maxBackoff": 1}, durability=durability)
    daemon.drop("flaky.json", {"type": "flaky", "id": "f1", "failTimes": 2, "maxAttempts": 5})
    first_wait = wait_until(lambda: waiting_retry(daemon, "f1"))
    assert first_wait["attempts"] == 1
    assert first_wait["status"] == "pending"
    assert first_wait["error"] == "RuntimeError: flaky failure 1 of 2"
    wait_until(lambda: records(daemon.spool, "completed"), timeout=15)
    [record] = records(daemon.spool, "completed")
    assert record["attempts"] == 3
    assert record["maxAttempts"] == 5
    assert record["status"] == "completed"
    assert record["error"] is None
    assert "nextAttemptAt" not in record
    calls = plugins.calls("f1")
    assert [c["attempts"] for c in calls] == [1, 2, 3]
    gaps = [later["at"] - earlier["at"] for earlier, later in pairwise(calls)]
    assert all(gap >= 1.0 for gap in gaps), gaps  # 2^1 and 2^2, capped at maxBackoff 1
    assert all(gap < 3.0 for gap in gaps), gaps  # and the cap is honoured
    assert parse(record["startedAt"]) - parse(record["createdAt"]) >= 2.0
    assert parse(record["completedAt"]) >= parse(record["startedAt"])
    wait_until(lambda: daemon.status()["queue"]["completed"] == 1)
    assert daemon.status()["worker"]["processedJobs"] == 3
    assert daemon.stop() == 0


def test_the_backoff_wait_survives_a_restart(start_daemon, plugins):
    daemon = start_daemon(jobTypes=plugins.types, jobs={"maxBackoff": 30})
    daemon.drop("flaky.json", {"type": "flaky", "id": "f2", "failTimes": 1})
    waiting = wait_until(lambda: waiting_retry(daemon, "f2"))
    first_end = plugins.calls("f2")[0]["at"]
    due = parse(waiting["nextAttemptAt"])
    assert due - first_end >= 1.9, "the first retry waits 2^1 s"
    daemon.kill()
    again = start_daemon(jobTypes=plugins.types, jobs={"maxBackoff": 30})
    wait_until(lambda: records(again.spool, "completed"), timeout=15)
    calls = plugins.calls("f2")
    assert len(calls) == 2
    assert calls[1]["pid"] == again.proc.pid
    assert calls[1]["at"] >= due, "not run before its time after the restart"
    [record] = records(again.spool, "completed")
    assert record["attempts"] == 2
    assert again.stop() == 0


@pytest.mark.parametrize("durability", ["relaxed", "fsync"])
def test_a_job_that_keeps_failing_ends_in_failed_with_its_error(start_daemon, plugins, durability):
    daemon = start_daemon(jobTypes=plugins.types, jobs={"maxBackoff": 0.2}, durability=durability)
    daemon.drop("doomed.json", {"type": "fail", "id": "d1", "maxAttempts": 2})
    daemon.drop("doomed-default.json", {"type": "fail", "id": "d2", "message": "disk on fire"})
    wait_until(lambda: len(records(daemon.spool, "failed")) == 2, timeout=15)
    by_id = {r["id"]: r for r in records(daemon.spool, "failed")}
    assert by_id["d1"]["status"] == "failed"
    assert by_id["d1"]["attempts"] == 2
    assert by_id["d1"]["error"] == "ValueError: the ledger is locked"
    assert by_id["d1"]["completedAt"] is not None
    assert by_id["d2"]["attempts"] == by_id["d2"]["maxAttempts"] == 3, "plug-in default: 3"
    assert by_id["d2"]["error"] == "ValueError: disk on fire"
    assert len(plugins.calls("d1")) == 2 and len(plugins.calls("d2")) == 3
    assert job_files(daemon.spool, "pending") == []
    wait_until(lambda: none_running(daemon.spool))
    assert not any(p.name.endswith(".error.json") for p in (daemon.spool / "failed").iterdir())
    wait_until(lambda: daemon.status()["queue"]["failed"] == 2)
    assert daemon.stop() == 0


def test_an_attempt_past_its_timeout_counts_as_failed(start_daemon, plugins):
    daemon = start_daemon(jobTypes=plugins.types, jobs={"maxBackoff": 0.2})
    daemon.drop("stuck.json", {"type": "slow", "id": "t1", "timeout": 0.5, "maxAttempts": 2})
    wait_until(lambda: records(daemon.spool, "failed"), timeout=15)
    [record] = records(daemon.spool, "failed")
    assert record["attempts"] == 2
    assert "timed out" in record["error"] and "0.5" in record["error"]
    # ran to its timeout: the timeout is waited out on the monotonic clock, durationMs is
    # wall-clock time, and the two may run at rates apart by a fraction of a percent
    assert record["durationMs"] >= 490
    assert len(plugins.calls("t1")) == 2
    # the pool still has its worker: a new job runs
    daemon.drop("after.json", {"type": "noop", "id": "after-timeout"})
    wait_until(lambda: records(daemon.spool, "completed"))
    assert daemon.stop() == 0


def test_the_config_timeout_applies_when_the_job_sets_none(start_daemon, plugins):
    daemon = start_daemon(jobTypes=plugins.types, jobs={"timeout": 0.3})
    daemon.drop("stuck.json", {"type": "slow", "id": "t2", "maxAttempts": 1})
    wait_until(lambda: records(daemon.spool, "failed"))
    [record] = records(daemon.spool, "failed")
    assert record["attempts"] == 1 and "timed out" in record["error"]
    assert daemon.stop() == 0
