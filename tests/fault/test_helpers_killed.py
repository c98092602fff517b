"""`kill -9` of the helper while jobs flow: the daemon does its work itself from
then on, nothing is lost or recorded twice, and the files the helper kept in tmp/
(spares, a write cut short) are removed once its pid is gone
(Ownership.clean_dead_tmp)."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable

import pytest
from conftest import DaemonProcess, Plugins, helper_of, job_files, records, wait_until

from fault.procs import freeze

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux helpers")

BEFORE, AFTER = 200, 100


@pytest.mark.parametrize("durability", ["relaxed", "fsync"])
def test_a_killed_helper_loses_nothing_and_its_tmp_files_go(
    start_daemon: Callable[..., DaemonProcess], plugins: Plugins, durability: str
) -> None:
    daemon = start_daemon(jobTypes=plugins.types, workers=2, durability=durability)
    owner = daemon.status()["worker"]["workerId"]
    tmp = daemon.spool / "tmp"
    for n in range(BEFORE):
        daemon.drop(f"a{n}.json", {"type": "trace", "id": f"a{n}"})
    wait_until(lambda: len(job_files(daemon.spool, "completed")) >= 10)
    commit = helper_of(daemon.proc.pid)

    def files_of(pid: int) -> list[str]:  # tmp/<owner>.<pid>.<n>.tmp: what pid wrote
        return [n for n in os.listdir(tmp) if n.startswith(f"{owner}.{pid}.")]

    wait_until(lambda: files_of(commit))  # its spares: finished jobs' files it keeps
    # Stopped first: after a bare SIGKILL it may finish the write or rename it is in
    # after we look, and once it is dead the daemon may clean up before we look.
    freeze(commit)
    left = files_of(commit)
    os.kill(commit, signal.SIGKILL)
    print(f"injected: kill -9 of the helper ({len(left)} file(s) of its own in tmp/),"
          f" mid-flow ({durability})")  # fmt: skip
    for n in range(AFTER):
        daemon.drop(f"b{n}.json", {"type": "trace", "id": f"b{n}"})

    total = BEFORE + AFTER
    wait_until(lambda: len(job_files(daemon.spool, "completed")) == total, timeout=60)
    ids = sorted(r["id"] for r in records(daemon.spool, "completed"))
    assert ids == sorted([*(f"a{n}" for n in range(BEFORE)), *(f"b{n}" for n in range(AFTER))])
    assert job_files(daemon.spool, "failed") == [] and job_files(daemon.spool, "incoming") == []

    wait_until(lambda: files_of(commit) == [], timeout=10)
    if left:  # the daemon logs the removal just after it: wait for the line, not only the files
        wait_until(lambda: "whose writer stopped" in daemon.log())
    log = daemon.log()
    assert "the helper stopped" in log
    assert ("whose writer stopped" in log) == bool(left)  # it had some: see the wait above
    print(f"found: {len(ids)} records, each once; the helper's files gone from tmp/")
    assert daemon.stop() == 0
    assert [n for n in os.listdir(tmp) if not n.startswith(".")] == []
