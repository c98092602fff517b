"""End to end, follow-up jobs (issue 14, part 5): `then` and `onFailure`, judged at intake,
enqueued once when the parent completes or fails for good, also across a kill -9."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    DaemonProcess,
    Plugins,
    free_port,
    job_files,
    none_running,
    records,
    wait_until,
)
from helpers_api import Client

from spoold.names import accepted_ns, make_stem, parse_stem


def record_of(daemon: DaemonProcess, folder: str, job_id: str) -> dict[str, Any]:
    found = wait_until(lambda: [r for r in records(daemon.spool, folder) if r["id"] == job_id],
                       timeout=15)  # fmt: skip
    return found[0]


def everywhere(spool: Path, job_id: str) -> list[str]:
    """Every file of job_id in the job folders, as folder/name."""
    mine = (f"Z-{job_id}.json", f"Z-{job_id}@")
    return [f"{folder}/{name}" for folder in ("pending", "running", "completed", "failed")
            for name in job_files(spool, folder)
            if name.endswith(mine[0]) or mine[1] in name]  # fmt: skip


def test_then_jobs_run_once_after_the_parent_completes(start_daemon, plugins):
    daemon = start_daemon(jobTypes=plugins.types)
    then = [{"type": "trace", "step": 1}, {"type": "trace", "priority": "high"}]
    parent = {"type": "noop", "id": "fu-1", "onFailure": [{"type": "trace"}], "then": then}
    daemon.drop("parent.json", parent)
    first = record_of(daemon, "completed", "fu-1.then.0")
    second = record_of(daemon, "completed", "fu-1.then.1")
    assert first["step"] == 1 and first["priority"] == "normal"
    assert second["priority"] == "high"
    assert record_of(daemon, "completed", "fu-1")["then"] == parent["then"], "kept in the record"
    wait_until(lambda: none_running(daemon.spool))
    [parent_file] = everywhere(daemon.spool, "fu-1")
    [child_file] = everywhere(daemon.spool, "fu-1.then.0")
    assert parse_stem(child_file[10:-5]).accepted == parse_stem(parent_file[10:-5]).accepted
    assert len(plugins.calls("fu-1.then.0")) == len(plugins.calls("fu-1.then.1")) == 1
    assert everywhere(daemon.spool, "fu-1.onFailure.0") == []
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.log()


def test_on_failure_jobs_run_once_after_the_parents_last_attempt(start_daemon, plugins):
    daemon = start_daemon(jobTypes=plugins.types, jobs={"maxBackoff": 0.1})
    parent = {"type": "fail", "id": "fu-2", "maxAttempts": 2, "then": [{"type": "trace"}],
              "onFailure": [{"type": "trace", "why": "cleanup"}]}  # fmt: skip
    daemon.drop("parent.json", parent)
    child = record_of(daemon, "completed", "fu-2.onFailure.0")
    assert child["why"] == "cleanup"
    assert record_of(daemon, "failed", "fu-2")["attempts"] == 2
    assert len(plugins.calls("fu-2")) == 2, "not enqueued after the first, retried, attempt"
    assert len(plugins.calls("fu-2.onFailure.0")) == 1
    assert everywhere(daemon.spool, "fu-2.then.0") == []
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.log()


BAD_FOLLOW_UPS = [
    ({"then": [{"type": "noop"}, {"type": "nope"}]}, "then[1]: unknown job type 'nope'"),
    ({"then": {"type": "noop"}}, "field 'then' must be a list of job objects"),
    ({"onFailure": ["noop"]}, 'onFailure[0] must be a job object {...}, got "noop"'),
    ({"then": [{"type": "noop", "id": "mine"}]}, "then[0]: field 'id' is given by spoold"),
    ({"then": [{"type": "log"}]}, "then[0]: field 'message' is required"),
    ({"then": [{"type": "noop", "then": [{"type": "noop", "status": "completed"}]}]},
     "then[0]: then[0]: field 'status' is set by spoold"),
    ({"id": "invoice.onFailure.0"}, "field 'id' must not end in .then.N or .onFailure.N"),
    ({"id": "p" * 118, "onFailure": [{"type": "noop"}]},
     "onFailure[0]: its id " + "p" * 118 + ".onFailure.0 would be longer than 128 characters"),
]  # fmt: skip


def test_an_invalid_follow_up_rejects_its_parent_at_intake(start_daemon):
    daemon = start_daemon()
    for n, (fields, _) in enumerate(BAD_FOLLOW_UPS):
        daemon.drop(f"bad-{n}.json", {"type": "noop", **fields})
    for n, (_, words) in enumerate(BAD_FOLLOW_UPS):
        explanation = daemon.spool / "failed" / f"bad-{n}.json.error.json"
        wait_until(explanation.exists)
        assert words in json.loads(explanation.read_bytes())["error"]
    assert job_files(daemon.spool, "pending") == job_files(daemon.spool, "completed") == []
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.log()


def test_follow_ups_over_http_are_judged_with_the_parent(start_daemon, plugins):
    port = free_port()
    daemon = start_daemon(jobTypes=plugins.types, http={"host": "127.0.0.1", "port": port})
    with Client(port) as client:
        for fields, words in BAD_FOLLOW_UPS:
            reply = client.post("/jobs", {"type": "noop", **fields})
            assert reply.status == 400 and words in reply.error
        reply = client.post("/jobs", {"type": "noop", "id": "fu-http", "then": [{"type": "trace"}]})
        assert reply.status == 200, reply.body
        record_of(daemon, "completed", "fu-http.then.0")
        assert client.get("/jobs/fu-http.then.0").json["folder"] == "completed"
    assert len(plugins.calls("fu-http.then.0")) == 1
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.log()


def plant_crash(spool: Path, parent: dict[str, Any]) -> str:
    """The spool as a kill -9 leaves it after the parent's record was placed and before its
    follow-ups' files were: the record in completed/, the running file still there."""
    for folder in ("incoming", "pending", "running", "completed", "failed", "tmp"):
        (spool / folder).mkdir(parents=True, exist_ok=True)
    stem = make_stem("normal", time.time_ns() - 10**9, parent["id"])
    running = spool / "running" / f"{stem}@local+deadbeef.json"
    running.write_text(json.dumps(parent))
    os.utime(running, ns=(0, 0))  # its attempt had started
    at = "2026-12-04T10:00:00.000Z"
    record = {**parent, "status": "completed", "attempts": 1, "maxAttempts": 1, "createdAt": at,
              "startedAt": at, "completedAt": at, "error": None, "durationMs": 0}  # fmt: skip
    (spool / "completed" / f"{stem}.json").write_text(json.dumps(record))
    return stem


def test_follow_ups_a_crash_left_unwritten_are_enqueued_once(start_daemon, tmp_path):
    plugins = Plugins(tmp_path)
    parent = {"type": "noop", "id": "fu-crash", "then": [{"type": "trace"}, {"type": "trace"}]}
    stem = plant_crash(tmp_path / "spool", parent)
    parsed = parse_stem(stem)
    done = make_stem("normal", accepted_ns(parsed), "fu-crash.then.0")  # made before the crash
    child = {"type": "trace", "id": "fu-crash.then.0", "status": "completed", "attempts": 1}
    (tmp_path / "spool" / "completed" / f"{done}.json").write_text(json.dumps(child))
    daemon = start_daemon(jobTypes=plugins.types)
    record_of(daemon, "completed", "fu-crash.then.1")
    wait_until(lambda: none_running(daemon.spool))
    assert len(plugins.calls("fu-crash.then.1")) == 1
    assert plugins.calls("fu-crash.then.0") == [], "already done before the crash"
    assert [len(everywhere(daemon.spool, f"fu-crash{s}")) for s in ("", ".then.0", ".then.1")] == [
        1,
        1,
        1,
    ]
    assert "enqueued 1 follow-up(s)" in daemon.log()
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.log()


@pytest.mark.parametrize("max_attempts", [1, 2])
def test_follow_ups_after_a_kill_9_mid_run_are_enqueued_once(start_daemon, plugins, max_attempts):
    """kill -9 while the parent runs: with no attempt left recovery fails it (onFailure);
    with one left it runs again and completes (then). Either way, each follow-up once."""
    daemon = start_daemon(jobTypes=plugins.types)
    parent = {"type": "slow", "id": "fu-kill", "maxAttempts": max_attempts,
              "then": [{"type": "trace"}], "onFailure": [{"type": "trace"}]}  # fmt: skip
    daemon.drop("parent.json", parent)
    wait_until(lambda: plugins.calls("fu-kill"))
    daemon.kill()
    plugins.release()
    daemon = start_daemon(jobTypes=plugins.types)
    fired, other = ("onFailure", "then") if max_attempts == 1 else ("then", "onFailure")
    record_of(daemon, "completed", f"fu-kill.{fired}.0")
    wait_until(lambda: none_running(daemon.spool))
    assert len(plugins.calls(f"fu-kill.{fired}.0")) == 1
    assert everywhere(daemon.spool, f"fu-kill.{other}.0") == []
    assert len(everywhere(daemon.spool, "fu-kill")) == 1
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.log()
