"""The file work of a group commit, and the helper process that does it for the daemon."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import daemon_env, job_files, wait_until

from spoold.commit import Committer, Outcome
from spoold.flusher import Helper, HelperGone, commit_files
from spoold.spool import Spool, make_stem

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux helper")


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    spool = Spool(tmp_path / "spool", durable=True)
    spool.ensure()
    return spool


def running_jobs(spool: Spool, count: int) -> list[tuple[str, str]]:
    """(stem, running name) of `count` claimed jobs."""
    claimed = []
    for n in range(count):
        stem = make_stem("normal", spool.accept_ns(), f"j{n}")
        spool.enqueue(stem, b"{}")
        claimed.append((stem, spool.claim(stem)))
    return claimed


def records(spool: Spool) -> dict[str, bytes]:
    folder = spool.dirs["completed"]
    return {name: (folder / name).read_bytes() for name in os.listdir(folder)}


def not_dot(spool: Spool, folder: str) -> list[str]:
    return [n for n in os.listdir(spool.dirs[folder]) if not n.startswith(".")]


def test_a_batch_is_placed_and_its_running_files_dropped(spool):
    claimed = running_jobs(spool, 3)
    items = [(running, stem, "completed", f"r{stem}".encode()) for stem, running in claimed]
    assert commit_files(spool, items) == [None, None, None]
    assert records(spool) == {f"{stem}.json": f"r{stem}".encode() for stem, _ in claimed}
    assert not_dot(spool, "running") == []


def test_one_item_that_cannot_be_placed_fails_alone_and_keeps_its_running_file(spool):
    (stem_a, running_a), (stem_b, running_b) = running_jobs(spool, 2)
    shutil.rmtree(spool.dirs["failed"])
    items = [(running_a, stem_a, "failed", b"a"), (running_b, stem_b, "completed", b"b")]
    errors = commit_files(spool, items)
    assert isinstance(errors[0], FileNotFoundError) and errors[1] is None
    assert records(spool) == {f"{stem_b}.json": b"b"}
    assert not_dot(spool, "running") == [running_a]  # found again at the next start
    assert len(not_dot(spool, "tmp")) == 1  # b's running file, kept as a spare


def test_the_helper_commits_a_batch_and_leaves_no_file_when_closed(spool):
    claimed = running_jobs(spool, 5)
    helper = Helper.spawn(spool)
    assert helper is not None
    items = [(running, stem, "completed", b"done") for stem, running in claimed]
    items.append((None, make_stem("high", spool.accept_ns(), "new"), "pending", b"{}"))
    assert helper.commit(items) == [None] * 6
    assert len(records(spool)) == 5 and not_dot(spool, "running") == []
    assert len(not_dot(spool, "pending")) == 1
    helper.close()
    assert helper.process.returncode == 0
    assert not_dot(spool, "tmp") == []  # its spares are gone with it


def test_the_helper_ignores_the_signals_meant_for_the_daemon(spool):
    helper = Helper.spawn(spool)
    assert helper is not None
    try:
        assert helper.commit([]) == []  # up and serving
        helper.process.send_signal(signal.SIGTERM)
        helper.process.send_signal(signal.SIGINT)
        [(stem, running)] = running_jobs(spool, 1)
        assert helper.commit([(running, stem, "completed", b"ok")]) == [None]
    finally:
        helper.close()
    assert records(spool) == {f"{stem}.json": b"ok"}


def test_a_helper_that_died_is_an_error_not_a_hang(spool):
    helper = Helper.spawn(spool)
    assert helper is not None
    helper.process.kill()
    helper.process.wait()
    with pytest.raises(HelperGone):
        helper.commit([(None, "s", "pending", b"{}")])
    helper.close()


def test_the_committer_goes_on_without_a_helper_that_died(spool, caplog):
    committer = Committer(spool, helper=True)
    committer.start()
    [helper] = [p for p in _children(os.getpid()) if str(spool.root) in _cmdline(p)]
    os.kill(helper, signal.SIGKILL)
    claimed = running_jobs(spool, 3)
    done = []
    try:
        with caplog.at_level(logging.ERROR, logger="spoold.commit"):
            for stem, running in claimed:
                committer.submit(Outcome(running, stem, "completed", b"r",
                                         lambda s=stem: done.append(s)))  # fmt: skip
            wait_until(lambda: len(done) == 3)
    finally:
        committer.stop()
    assert done == [stem for stem, _ in claimed]
    assert len(records(spool)) == 3 and not_dot(spool, "running") == []
    assert "the commit helper stopped" in caplog.text


PARENT = """
import os, sys
from pathlib import Path
from spoold.flusher import Helper
from spoold.spool import Spool
helper = Helper.spawn(Spool(Path(sys.argv[1]), durable=True))
print(helper.process.pid, flush=True)
sys.stdin.read()
"""


def test_the_helper_dies_with_the_daemon(spool):
    """kill -9 of the daemon must not leave its helper finishing jobs beside the next
    daemon's recovery."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(spool.root)], env=daemon_env(),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    helper_pid = int(parent.stdout.readline())
    assert Path(f"/proc/{helper_pid}").exists()
    parent.kill()
    parent.wait()
    wait_until(lambda: not _alive(helper_pid), 10)
    parent.stdout.close()
    parent.stdin.close()


def _alive(pid: int) -> bool:
    """True while pid runs (a zombie, reaped by nobody here, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_a_fsync_daemon_commits_through_its_helper_and_takes_it_down_on_kill_9(start_daemon):
    daemon = start_daemon(durability="fsync")
    helpers = _children(daemon.proc.pid)
    assert len(helpers) == 1 and "spoold.flusher" in _cmdline(helpers[0])
    for n in range(20):
        daemon.drop(f"j{n}.json", {"type": "noop", "id": f"j{n}"})
    wait_until(lambda: len(job_files(daemon.spool, "completed")) == 20)
    daemon.kill()
    wait_until(lambda: not _alive(helpers[0]), 10)


def test_a_relaxed_daemon_starts_no_helper(start_daemon):
    daemon = start_daemon()
    daemon.drop("j.json", {"type": "noop", "id": "j"})
    wait_until(lambda: job_files(daemon.spool, "completed"))
    assert _children(daemon.proc.pid) == []


def test_a_clean_stop_leaves_tmp_empty_with_a_helper(start_daemon):
    daemon = start_daemon(durability="fsync")
    for n in range(10):
        daemon.drop(f"j{n}.json", {"type": "noop", "id": f"j{n}"})
    wait_until(lambda: len(job_files(daemon.spool, "completed")) == 10)
    assert daemon.stop() == 0
    assert job_files(daemon.spool, "tmp") == [] and job_files(daemon.spool, "running") == []


def _children(pid: int) -> list[int]:
    kids = []
    for task in os.listdir(f"/proc/{pid}/task"):
        text = Path(f"/proc/{pid}/task/{task}/children").read_text()
        kids += [int(k) for k in text.split()]
    return kids


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def test_posts_from_threads_share_the_helper(spool):
    """Outcomes submitted from many threads at once all come back done."""
    committer = Committer(spool, helper=True)
    committer.start()
    done = threading.Semaphore(0)
    try:
        stems = [make_stem("normal", spool.accept_ns(), f"p{n}") for n in range(40)]
        threads = [threading.Thread(target=committer.submit,
                                    args=(Outcome(None, s, "pending", b"{}", done.release),))
                   for s in stems]  # fmt: skip
        for thread in threads:
            thread.start()
        for _ in stems:
            assert done.acquire(timeout=10)
    finally:
        committer.stop()
    assert sorted(not_dot(spool, "pending")) == sorted(f"{s}.json" for s in stems)
