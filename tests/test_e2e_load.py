"""End to end, many jobs and status.json (SPEC 5, 8): thousands dropped at once all complete
exactly once, and status.json is always whole and counts right."""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from pathlib import Path

from conftest import DaemonProcess, job_files, none_running, records, wait_until


def drop_many(daemon: DaemonProcess, staging: Path, jobs: dict[str, dict]) -> None:
    """Write every job beside the spool first, then rename them all in as fast as we can."""
    staging.mkdir()
    for name, job in jobs.items():
        (staging / name).write_text(json.dumps(job))
    for name in jobs:
        os.rename(staging / name, daemon.incoming / name)


def completed_ids(daemon: DaemonProcess) -> Counter[str]:
    """Each completed record's id, counted (from the names: <stem>-<id>.json)."""
    return Counter(n[:-5].split("Z-", 1)[1] for n in job_files(daemon.spool, "completed"))


def test_five_thousand_files_dropped_at_once_all_complete_once(start_daemon, tmp_path):
    """About 9 s on 2 cores: not marked slow, it runs with the rest."""
    daemon = start_daemon(workers=4)
    jobs = {f"bulk-{i:04d}.json": {"type": "noop", "id": f"bulk-{i:04d}"} for i in range(5000)}
    drop_many(daemon, tmp_path / "staging", jobs)
    wait_until(lambda: len(job_files(daemon.spool, "completed")) >= 5000, timeout=120)
    assert completed_ids(daemon) == Counter({name[:-5]: 1 for name in jobs})
    wait_until(lambda: none_running(daemon.spool))
    for folder in ("incoming", "pending", "running", "failed"):
        assert job_files(daemon.spool, folder) == [], folder
    sample = records(daemon.spool, "completed")[:50]
    assert all(r["status"] == "completed" and r["attempts"] == 1 for r in sample)
    wait_until(lambda: daemon.status()["queue"]["completed"] == 5000)
    status = daemon.status()
    assert status["queue"]["pending"]["total"] == 0
    assert status["worker"]["processedJobs"] == 5000
    assert daemon.stop() == 0


def test_every_job_runs_exactly_once_while_the_pending_rescan_runs_often(
    start_daemon, plugins, tmp_path
):
    """The index of pending/ is rescanned every 0.05 s while workers take jobs from it: a
    stem found twice must still be claimed once (it once ran jobs twice)."""
    daemon = start_daemon(jobTypes=plugins.types, workers=4, rescanSeconds=0.05)
    jobs = {f"t{i}.json": {"type": "trace", "id": f"t{i}"} for i in range(1200)}
    drop_many(daemon, tmp_path / "staging", jobs)
    wait_until(lambda: len(job_files(daemon.spool, "completed")) >= 1200, timeout=60)
    calls = Counter(plugins.order())
    assert {job_id: n for job_id, n in calls.items() if n != 1} == {}
    assert len(calls) == 1200
    assert "already gone" not in daemon.log()
    assert daemon.stop() == 0


def test_status_json_is_never_half_written_while_a_thousand_jobs_run(start_daemon, tmp_path):
    daemon = start_daemon(workers=3)
    path = daemon.spool / "status.json"
    reads: list[dict] = []
    bad: list[bytes] = []
    done = threading.Event()

    def read_tightly() -> None:
        while not done.is_set():
            raw = path.read_bytes()
            try:
                reads.append(json.loads(raw))
            except ValueError:
                bad.append(raw)

    reader = threading.Thread(target=read_tightly, name="test-status-reader")
    reader.start()
    try:
        jobs = {f"s{i}.json": {"type": "noop", "id": f"s{i}"} for i in range(1000)}
        drop_many(daemon, tmp_path / "staging", jobs)
        wait_until(lambda: daemon.status()["queue"]["completed"] == 1000, timeout=60)
    finally:
        done.set()
        reader.join()
    reads.append(daemon.status())  # the reader may have stopped before reading the last one
    assert bad == []
    assert len(reads) > 100
    updates = {r["updatedAt"] for r in reads}
    assert len(updates) >= 2, "rewritten while things change"
    completed = [r["queue"]["completed"] for r in reads]
    assert completed == sorted(completed), "counts only grow while nothing fails or is pruned"
    assert daemon.stop() == 0


def test_status_counts_pending_per_priority_running_completed_and_failed(start_daemon, plugins):
    daemon = start_daemon(jobTypes=plugins.types, workers=1)
    daemon.drop("gate.json", {"type": "slow", "id": "gate"})
    wait_until(lambda: plugins.calls("gate"))
    wanted = {"critical": 2, "high": 1, "normal": 3, "low": 1}
    for priority, count in wanted.items():
        for i in range(count):
            daemon.drop(f"{priority}-{i}.json", {"type": "noop", "id": f"{priority}-{i}"})
    daemon.drop("broken.json", b"{ not json")

    def queue() -> dict:
        return daemon.status()["queue"]

    want_pending = {"total": 7, **wanted}
    wait_until(lambda: queue()["pending"] == want_pending and queue()["failed"] == 1, timeout=15)
    status = daemon.status()
    assert status["queue"]["running"] == 1
    assert status["queue"]["completed"] == 0
    assert status["worker"]["activeJobs"] == 1
    assert status["worker"]["isRunning"] is True
    assert status["worker"]["concurrency"] == 1
    assert status["pid"] == daemon.proc.pid
    assert status["config"]["path"] == str(daemon.config_path)
    assert status["config"]["error"] is None
    plugins.release("gate")
    zero = {"total": 0, "critical": 0, "high": 0, "normal": 0, "low": 0}
    wait_until(lambda: queue()["completed"] == 8 and queue()["pending"] == zero, timeout=15)
    assert queue()["failed"] == 1 and queue()["running"] == 0
    assert len(records(daemon.spool, "completed")) == 8
    assert daemon.stop() == 0


def test_status_counts_start_from_the_spool_after_a_restart(start_daemon):
    daemon = start_daemon()
    for i in range(3):
        daemon.drop(f"ok-{i}.json", {"type": "noop", "id": f"ok-{i}"})
    daemon.drop("bad.json", b"[]")
    wait_until(lambda: daemon.status()["queue"]["completed"] == 3)
    wait_until(lambda: daemon.status()["queue"]["failed"] == 1)
    assert daemon.stop() == 0
    again = start_daemon()
    assert again.status()["pid"] == again.proc.pid
    queue = again.status()["queue"]
    assert (queue["completed"], queue["failed"]) == (3, 1)
    assert again.status()["worker"]["processedJobs"] == 0
    assert again.stop() == 0
