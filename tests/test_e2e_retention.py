"""End to end, retention (issue 2 #10): old records in completed/ and failed/ are pruned.

The daemon prunes on its first housekeeping pass (rescanSeconds after start) and then every
RETENTION_EVERY (600) seconds, so these tests age files with os.utime while the daemon is
stopped and watch the next daemon prune them.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from conftest import DaemonProcess, job_files, records, rejected, wait_until

HOUR = 3600.0


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


def named(daemon: DaemonProcess, folder: str, job_id: str) -> Path:
    [name] = [n for n in job_files(daemon.spool, folder) if n.endswith(f"-{job_id}.json")]
    return daemon.spool / folder / name


def test_records_older_than_retention_are_pruned_and_younger_ones_kept(start_daemon, plugins):
    retention = {"completed": "1h", "failed": "3h"}
    daemon = start_daemon(jobTypes=plugins.types, retention=retention)
    for job_id in ("old-done", "new-done"):
        daemon.drop(f"{job_id}.json", {"type": "noop", "id": job_id})
    for job_id in ("old-failed", "new-failed"):
        daemon.drop(f"{job_id}.json", {"type": "fail", "id": job_id, "maxAttempts": 1})
    daemon.drop("old-junk.json", b"junk")
    wait_until(lambda: len(job_files(daemon.spool, "completed")) == 2)
    wait_until(lambda: len(job_files(daemon.spool, "failed")) == 3)
    assert daemon.stop() == 0

    age(named(daemon, "completed", "old-done"), 2 * HOUR)  # past 1h: goes
    age(named(daemon, "completed", "new-done"), 0.5 * HOUR)  # within 1h: stays
    age(named(daemon, "failed", "old-failed"), 4 * HOUR)  # past 3h: goes
    age(named(daemon, "failed", "new-failed"), 2 * HOUR)  # past 1h but within 3h: stays
    failed = daemon.spool / "failed"
    age(failed / "old-junk.json", 4 * HOUR)
    age(failed / "old-junk.json.error.json", 4 * HOUR)  # a rejected file and its reason

    again = start_daemon(jobTypes=plugins.types, retention=retention)
    wait_until(lambda: len(job_files(again.spool, "completed")) == 1)
    wait_until(lambda: len(job_files(again.spool, "failed")) == 1)
    assert [r["id"] for r in records(again.spool, "completed")] == ["new-done"]
    assert [r["id"] for r in records(again.spool, "failed")] == ["new-failed"]
    assert not (failed / "old-junk.json.error.json").exists(), "its reason goes with it"
    wait_until(lambda: again.status()["queue"]["completed"] == 1)
    wait_until(lambda: again.status()["queue"]["failed"] == 1)
    # a pruned job's id is free again; a kept one's is not
    again.drop("reuse.json", {"type": "noop", "id": "old-done"})
    again.drop("clash.json", {"type": "noop", "id": "new-done"})
    wait_until(lambda: len(job_files(again.spool, "completed")) == 2)
    wait_until(lambda: (failed / "clash.json.error.json").exists())
    assert again.stop() == 0


def test_a_just_rejected_file_is_kept_however_old_its_own_mtime(start_daemon, tmp_path):
    """A producer may drop a file written long ago (cp -p, mv from an archive): rename keeps
    its mtime. Its time in failed/ starts when it was rejected, not when it was written."""
    retention = {"completed": "1d", "failed": "1d"}
    daemon = start_daemon(retention=retention)
    staging = tmp_path / "archive.json"
    staging.write_bytes(b'{"type": "retired_type"}')
    age(staging, 60 * 24 * HOUR)
    os.rename(staging, daemon.incoming / "archive.json")
    wait_until(lambda: rejected(daemon.spool, "archive.json"))
    assert daemon.stop() == 0
    again = start_daemon(retention=retention)
    again.drop("probe.json", {"type": "noop", "id": "probe"})
    wait_until(lambda: records(again.spool, "completed"))
    time.sleep(3 * again.config["rescanSeconds"])  # proves something does not happen: a prune
    kept = again.spool / "failed" / "archive.json"
    assert kept.read_bytes() == b'{"type": "retired_type"}'
    explanation = json.loads((again.spool / "failed" / "archive.json.error.json").read_bytes())
    assert "retired_type" in explanation["error"]
    assert again.stop() == 0
