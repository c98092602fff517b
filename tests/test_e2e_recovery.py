"""What a restarting daemon does with running files an earlier life left: an attempt
counts only if it had started."""

from __future__ import annotations

import json

from conftest import job_files, records, wait_until

from spoold.names import make_stem
from spoold.spool import Spool


def left_running(spool_root, job: dict, started: bool) -> str:
    """A job claimed by an earlier life of this node (node unset: 'local') that died
    before it could record anything, with or without its start mark."""
    earlier = Spool(spool_root)
    earlier.ensure()
    stem = make_stem("normal", earlier.accept_ns(), job["id"])
    earlier.enqueue(stem, json.dumps(job).encode())
    running = earlier.claim(stem)
    if started:
        earlier.mark_started(running)
    return running


def test_a_job_claimed_but_never_started_runs_after_a_restart(start_daemon, plugins, tmp_path):
    job = {"type": "trace", "id": "once", "maxAttempts": 1}
    left_running(tmp_path / "spool", job, started=False)
    daemon = start_daemon(jobTypes=plugins.types)
    wait_until(lambda: records(daemon.spool, "completed"))
    [record] = records(daemon.spool, "completed")
    assert record["attempts"] == 1 and record["error"] is None
    assert len(plugins.calls("once")) == 1 and job_files(daemon.spool, "failed") == []


def test_a_started_job_with_no_attempt_left_fails_as_interrupted(start_daemon, plugins, tmp_path):
    job = {"type": "trace", "id": "once", "maxAttempts": 1}
    left_running(tmp_path / "spool", job, started=True)
    daemon = start_daemon(jobTypes=plugins.types)
    wait_until(lambda: records(daemon.spool, "failed"))
    [record] = records(daemon.spool, "failed")
    assert record["attempts"] == 1 and "interrupted" in record["error"]
    assert plugins.calls("once") == [] and job_files(daemon.spool, "running") == []
