"""`kill -9` of a daemon while its intake works through a backlog in a pipeline (files
read by the helper, judged, moved to pending/ by the helper, indexed; the next batch
already asked for): at the restart every job runs to one record, none is rejected or
left in a folder, whichever step each batch was at. A job whose attempt the kill cut
short (its outcome not yet written) counts that attempt and runs again (SPEC 8)."""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import DaemonProcess, job_files, records, wait_until

from fault.procs import helpers_of, kill9, wait_gone

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux helpers")

JOBS = 10_000


def preload(incoming: Path) -> set[str]:
    """The backlog, published the safe way before the daemon starts."""
    incoming.mkdir(parents=True)
    ids = {f"job-{n:05d}" for n in range(JOBS)}
    for job_id in ids:
        job = f'{{"type": "noop", "id": "{job_id}", "maxAttempts": 3}}'  # a kill costs one
        (incoming / f".{job_id}").write_text(job)
        os.rename(incoming / f".{job_id}", incoming / f"{job_id}.json")
    return ids


def test_a_daemon_killed_mid_backlog_loses_and_duplicates_nothing(
    start_daemon: Callable[..., DaemonProcess], tmp_path: Path
) -> None:
    ids = preload(tmp_path / "spool" / "incoming")
    first = start_daemon(workers=1)
    spool = first.spool
    wait_until(lambda: job_files(spool, "completed"), timeout=30, interval=0.001)
    helpers = helpers_of(first.proc.pid)
    kill9([first.proc.pid])
    wait_gone(helpers)  # they die with it
    left = {folder: len(job_files(spool, folder)) for folder in ("incoming", "pending",
            "running", "completed")}  # fmt: skip
    print(f"injected: kill -9 of the daemon (its {len(helpers)} helper(s) with it) while"
          f" {JOBS} jobs were taken in; left {left}")  # fmt: skip
    assert left["incoming"] > 0 and left["completed"] < JOBS  # mid-backlog

    second = start_daemon(workers=1)
    wait_until(lambda: len(job_files(spool, "completed")) == JOBS, timeout=120)
    done = Counter(record["id"] for record in records(spool, "completed"))
    print(f"found: {len(done)} jobs recorded, {sum(done.values()) - len(done)} twice, "
          f"{len(job_files(spool, 'failed'))} failed")  # fmt: skip
    assert set(done) == ids and max(done.values()) == 1
    assert [job_files(spool, f) for f in ("failed", "incoming", "pending", "running")] == [[]] * 4
    assert second.stop() == 0
