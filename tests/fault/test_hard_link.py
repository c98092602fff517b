"""A job published as a hard link (`ln outside/archive.json spool/incoming/job.json`):
the producer's file is never written into, however many jobs follow it."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from conftest import DaemonProcess, job_files, records, wait_until

MORE_JOBS = 200


def test_a_hard_linked_job_file_keeps_its_bytes_after_many_more_jobs(
    tmp_path: Path, start_daemon: Callable[..., DaemonProcess]
) -> None:
    daemon = start_daemon(workers=2)
    outside = tmp_path / "outside"
    outside.mkdir()
    archive = outside / "archive.json"
    original = b'{"type": "noop", "id": "archived", "note": "the producer keeps this file"}\n'
    archive.write_bytes(original)
    os.link(archive, daemon.incoming / "job.json")
    wait_until(lambda: job_files(daemon.spool, "completed"))
    for n in range(MORE_JOBS):
        daemon.drop(f"more-{n}.json", {"type": "noop", "id": f"more-{n}"})
    wait_until(lambda: len(job_files(daemon.spool, "completed")) == MORE_JOBS + 1, timeout=60)
    print(f"injected: a hard link of {archive}, then {MORE_JOBS} more jobs")
    assert archive.read_bytes() == original
    assert archive.stat().st_nlink == 1  # the spool let go of its link, wrote nothing in it
    ids = sorted(r["id"] for r in records(daemon.spool, "completed"))
    assert ids == sorted(["archived", *(f"more-{n}" for n in range(MORE_JOBS))])
    print(f"found: {archive.name} unchanged ({len(original)} bytes), {len(ids)} records")
    assert daemon.stop() == 0
