"""An outcome the spool refuses is kept and written again, never dropped or lied about.

The fault is real but needs no root: the folder a record goes to is removed (ENOENT)
and put back. tests/fault/ does the same with a full disk and a read-only spool."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest
from conftest import wait_until

from spoold.commit import Committer, Outcome
from spoold.names import make_stem
from spoold.spool import Spool


def claimed(tmp_path: Path, durable: bool, job_id: str) -> tuple[Spool, str, str]:
    """A spool with one job claimed: (spool, its stem, its running name)."""
    spool = Spool(tmp_path / "spool", durable=durable)
    spool.ensure()
    stem = make_stem("normal", spool.accept_ns(), job_id)
    spool.enqueue(stem, b"{}")
    running = spool.claim(stem)
    assert running is not None
    return spool, stem, running


@pytest.mark.parametrize("lone", [False, True])  # True: first written in the caller's thread
def test_a_refused_record_is_kept_reported_and_written_once_the_spool_takes_it(
    tmp_path: Path, lone: bool
):
    spool, stem, running = claimed(tmp_path, False, "kept")
    shutil.rmtree(spool.dirs["completed"])
    committer = Committer(spool)
    committer.start()
    done = threading.Event()
    try:
        outcome = Outcome(running, stem, "completed", b'{"status": "completed"}', done.set)
        committer.submit(outcome, lone=lone)
        wait_until(lambda: not spool.health.ok)
        snapshot = spool.health.snapshot()
        assert snapshot["ok"] is False and snapshot["since"]
        assert f"writing completed/{stem}.json failed: ENOENT" in snapshot["error"]
        assert not done.is_set() and os.listdir(spool.dirs["running"]) == [running]
        assert committer.waiting == 1  # kept in memory, the job still held in running/
        spool.dirs["completed"].mkdir()
        assert done.wait(5)
    finally:
        committer.stop()
    assert (spool.dirs["completed"] / f"{stem}.json").read_bytes() == b'{"status": "completed"}'
    assert os.listdir(spool.dirs["running"]) == []
    assert spool.health.snapshot() == {"ok": True, "error": None, "since": None}


def test_a_write_refused_for_a_waiting_caller_is_its_error_and_a_probe_ends_it(tmp_path: Path):
    """A posted job's caller hears of the error (HTTP 503); nothing is kept for it, and
    the committer's test write finds out when the spool takes writes again."""
    spool = Spool(tmp_path / "spool", durable=False)
    spool.ensure()
    shutil.rmtree(spool.dirs["pending"])
    committer = Committer(spool)
    committer.start()
    heard: list[OSError] = []
    try:
        committer.submit(Outcome(None, "new", "pending", b"{}", lambda: None, heard.append))
        wait_until(lambda: heard)
        assert isinstance(heard[0], FileNotFoundError) and not spool.health.ok
        assert committer.waiting == 0
        wait_until(lambda: spool.health.ok, timeout=5)  # tmp/ takes the probe
    finally:
        committer.stop()
    assert os.listdir(spool.dirs["tmp"]) == []


@pytest.mark.parametrize(
    ("durable", "lone", "writer"),
    [
        (False, True, "caller"),  # an idle daemon's job: no thread, no pipe after it runs
        (False, False, "spoold-commit"),  # jobs wait: the committer (and its helper) writes
        (True, True, "spoold-commit"),  # fsync: always the committer, where flushes are shared
    ],
)
def test_who_writes_an_outcome(tmp_path: Path, durable: bool, lone: bool, writer: str):
    spool, stem, running = claimed(tmp_path, durable, "who")
    committer = Committer(spool)
    committer.start()
    threads: list[str] = []
    done = threading.Event()

    def reported() -> None:
        threads.append(threading.current_thread().name)
        done.set()

    try:
        caller = threading.Thread(
            target=committer.submit,
            args=(Outcome(running, stem, "completed", b'{"ok": 1}', reported),),
            kwargs={"lone": lone},
            name="caller",
        )
        caller.start()
        caller.join()
        assert done.wait(5)
    finally:
        committer.stop()
    assert threads == [writer]
    assert (spool.dirs["completed"] / f"{stem}.json").read_bytes() == b'{"ok": 1}'
    assert os.listdir(spool.dirs["running"]) == []
