"""End to end, stopping: kill -9 mid-job and a restart (SPEC 8), SIGTERM and SIGINT with
and without enough shutdownGrace (SPEC 7), status.json written last."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from conftest import DaemonProcess, job_files, none_running, records, wait_until


def running_names(daemon: DaemonProcess) -> list[str]:
    return job_files(daemon.spool, "running")


def record_of(daemon: DaemonProcess, folder: str, job_id: str) -> dict:
    [record] = [r for r in records(daemon.spool, folder) if r["id"] == job_id]
    return record


def pending_record(daemon: DaemonProcess, job_id: str) -> dict:
    [name] = [n for n in job_files(daemon.spool, "pending") if n.endswith(f"-{job_id}.json")]
    return json.loads((daemon.spool / "pending" / name).read_bytes())


# ----- kill -9 ---------------------------------------------------------------------------------


def test_a_job_killed_mid_run_runs_once_more_after_a_restart(start_daemon, plugins):
    daemon = start_daemon(jobTypes=plugins.types)
    daemon.drop("slow.json", {"type": "slow", "id": "k1"})
    wait_until(lambda: plugins.calls("k1"))
    [held] = running_names(daemon)
    assert "-k1@" in held
    daemon.kill()
    assert running_names(daemon) == [held], "a crash leaves the job in running/"
    plugins.release("k1")
    again = start_daemon(jobTypes=plugins.types)
    wait_until(lambda: records(again.spool, "completed"))
    record = record_of(again, "completed", "k1")
    assert record["attempts"] == 2
    assert record["status"] == "completed"
    assert record["error"] is None
    calls = plugins.calls("k1")
    assert [c["pid"] for c in calls] == [daemon.proc.pid, again.proc.pid]
    assert [c["attempts"] for c in calls] == [1, 2]
    wait_until(lambda: none_running(again.spool))
    for folder in ("incoming", "pending", "running", "failed"):
        assert job_files(again.spool, folder) == [], folder
    assert again.stop() == 0


def test_a_job_with_no_attempts_left_killed_mid_run_ends_in_failed(start_daemon, plugins):
    daemon = start_daemon(jobTypes=plugins.types)
    daemon.drop("once.json", {"type": "slow", "id": "k2", "maxAttempts": 1})
    wait_until(lambda: plugins.calls("k2"))
    daemon.kill()
    plugins.release("k2")
    again = start_daemon(jobTypes=plugins.types)
    wait_until(lambda: records(again.spool, "failed"))
    record = record_of(again, "failed", "k2")
    assert record["status"] == "failed"
    assert record["attempts"] == 1
    assert "interrupted" in record["error"] and "stopped" in record["error"]
    assert record["completedAt"] is not None
    assert len(plugins.calls("k2")) == 1, "not run again"
    assert running_names(again) == [] and job_files(again.spool, "pending") == []
    wait_until(lambda: again.status()["queue"]["failed"] == 1)
    assert again.stop() == 0


def test_a_killed_job_waiting_in_pending_is_not_lost(start_daemon, plugins):
    """With one worker busy, a second job waits in pending/ through a kill -9."""
    daemon = start_daemon(jobTypes=plugins.types, workers=1)
    daemon.drop("busy.json", {"type": "slow", "id": "busy"})
    wait_until(lambda: plugins.calls("busy"))
    daemon.drop("waiting.json", {"type": "noop", "id": "waiting"})
    wait_until(lambda: any(n.endswith("-waiting.json") for n in job_files(daemon.spool, "pending")))
    daemon.kill()
    plugins.release()
    again = start_daemon(jobTypes=plugins.types, workers=1)
    wait_until(lambda: len(records(again.spool, "completed")) == 2)
    assert record_of(again, "completed", "waiting")["attempts"] == 1
    assert record_of(again, "completed", "busy")["attempts"] == 2
    assert again.stop() == 0


# ----- SIGTERM and SIGINT ----------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_lets_the_running_job_finish_and_claims_nothing_more(
    start_daemon, plugins, sig
):
    daemon = start_daemon(jobTypes=plugins.types, workers=1, shutdownGrace=30)
    daemon.drop("first.json", {"type": "slow", "id": "first"})
    wait_until(lambda: plugins.calls("first"))
    daemon.drop("second.json", {"type": "noop", "id": "second"})
    wait_until(lambda: any(n.endswith("-second.json") for n in job_files(daemon.spool, "pending")))
    daemon.proc.send_signal(sig)
    wait_until(lambda: "stopping" in daemon.log())
    assert daemon.proc.poll() is None, "the daemon waits for its running job"
    plugins.release("first")
    assert daemon.stop() == 0
    record = record_of(daemon, "completed", "first")
    assert record["attempts"] == 1 and record["error"] is None
    assert [r["id"] for r in records(daemon.spool, "completed")] == ["first"]
    assert any(n.endswith("-second.json") for n in job_files(daemon.spool, "pending"))
    assert running_names(daemon) == []
    status = daemon.status()
    assert status["worker"]["isRunning"] is False
    assert status["worker"]["activeJobs"] == 0
    assert status["queue"]["running"] == 0
    assert status["queue"]["completed"] == 1
    assert status["queue"]["pending"]["total"] == 1
    assert status["pid"] == daemon.proc.pid
    status_mtime = os.stat(daemon.spool / "status.json").st_mtime_ns
    [completed_name] = job_files(daemon.spool, "completed")
    assert status_mtime >= os.stat(daemon.spool / "completed" / completed_name).st_mtime_ns
    assert status["updatedAt"] >= record["completedAt"], "status.json is written last"
    again = start_daemon(jobTypes=plugins.types, workers=1)
    wait_until(lambda: len(records(again.spool, "completed")) == 2)
    assert record_of(again, "completed", "second")["attempts"] == 1
    assert again.stop() == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_job_longer_than_shutdown_grace_goes_back_to_pending(start_daemon, plugins, sig):
    daemon = start_daemon(jobTypes=plugins.types, shutdownGrace=0.5)
    daemon.drop("long.json", {"type": "slow", "id": "long"})
    wait_until(lambda: plugins.calls("long"))
    daemon.proc.send_signal(sig)
    started = time.monotonic()
    assert daemon.stop(sig) == 0
    assert time.monotonic() - started < 10
    assert running_names(daemon) == []
    assert records(daemon.spool, "completed") == []
    waiting = pending_record(daemon, "long")
    assert waiting["attempts"] == 1
    assert "interrupted" in waiting["error"]
    assert daemon.status()["queue"]["pending"]["total"] == 1
    plugins.release("long")
    again = start_daemon(jobTypes=plugins.types)
    wait_until(lambda: records(again.spool, "completed"))
    record = record_of(again, "completed", "long")
    assert record["attempts"] == 2 and record["error"] is None
    assert len(plugins.calls("long")) == 2
    assert again.stop() == 0


def test_stopping_after_a_timed_out_attempt_does_not_wait_for_its_thread(start_daemon, plugins):
    """A timed-out attempt is over (recorded, its thread abandoned): stopping does not give
    it shutdownGrace, which is for jobs still running."""
    daemon = start_daemon(jobTypes=plugins.types, shutdownGrace=20)
    daemon.drop("stuck.json", {"type": "slow", "id": "stuck", "timeout": 0.3, "maxAttempts": 1})
    wait_until(lambda: records(daemon.spool, "failed"))
    assert "timed out" in record_of(daemon, "failed", "stuck")["error"]
    started = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - started < 10


def test_a_crash_after_the_record_but_before_the_running_file_went_runs_nothing_twice(
    start_daemon, plugins
):
    """The state a kill -9 leaves between finish()'s two steps: a final record in completed/
    and the job still in running/. The restart must drop the running file, not re-run it."""
    daemon = start_daemon(jobTypes=plugins.types)
    daemon.drop("done.json", {"type": "trace", "id": "done-once"})
    wait_until(lambda: records(daemon.spool, "completed"))
    assert daemon.stop() == 0
    [name] = job_files(daemon.spool, "completed")
    stem = name[:-5]
    leftover = daemon.spool / "running" / f"{stem}@local+0dead0ff.json"
    leftover.write_text(json.dumps({"type": "trace", "id": "done-once"}))
    again = start_daemon(jobTypes=plugins.types)
    wait_until(lambda: not leftover.exists())
    again.drop("probe.json", {"type": "noop", "id": "probe"})
    wait_until(lambda: len(records(again.spool, "completed")) == 2)
    assert len(plugins.calls("done-once")) == 1
    assert job_files(again.spool, "pending") == [] and job_files(again.spool, "failed") == []
    assert record_of(again, "completed", "done-once")["attempts"] == 1
    wait_until(lambda: again.status()["queue"]["completed"] == 2)
    assert again.stop() == 0
