"""The file work the daemon hands to its helper process (group commits, batches of moves
into pending/), and it; a lone file is moved in by the daemon itself."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import site
import subprocess
import sys
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import (
    CountingSpool,
    children,
    cmdline,
    daemon_env,
    helper_ask,
    helper_of,
    job_files,
    wait_until,
)

from spoold import helper as helper_module
from spoold.commit import Committer, Outcome
from spoold.context import Context
from spoold.dispatch import Dispatcher
from spoold.errors import HelperGone, Rejected
from spoold.fileio import Incoming
from spoold.helper import Helper, accept_files, read_files
from spoold.intake import Intake
from spoold.jobs import JobType
from spoold.names import make_stem
from spoold.spool import Record, Spool

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


def records(spool: Spool, folder: str = "completed") -> dict[str, bytes]:
    """Each file's bytes in a folder of the spool (completed/ unless said)."""
    path = spool.dirs[folder]
    return {name: (path / name).read_bytes() for name in os.listdir(path)}


def not_dot(spool: Spool, folder: str) -> list[str]:
    return [n for n in os.listdir(spool.dirs[folder]) if not n.startswith(".")]


def test_a_batch_is_placed_and_its_running_files_dropped(spool):
    claimed = running_jobs(spool, 3)
    items = [Record("completed", stem, f"r{stem}".encode(), running) for stem, running in claimed]
    assert spool.commit(items, flush=True) == [None, None, None]
    assert records(spool) == {f"{stem}.json": f"r{stem}".encode() for stem, _ in claimed}
    assert not_dot(spool, "running") == []


def test_one_item_that_cannot_be_placed_fails_alone_and_keeps_its_running_file(spool):
    (stem_a, running_a), (stem_b, running_b) = running_jobs(spool, 2)
    shutil.rmtree(spool.dirs["failed"])
    items = [Record("failed", stem_a, b"a", running_a)]
    items.append(Record("completed", stem_b, b"b", running_b))
    errors = spool.commit(items, flush=True)
    assert isinstance(errors[0], FileNotFoundError) and errors[1] is None
    assert records(spool) == {f"{stem_b}.json": b"b"}
    assert not_dot(spool, "running") == [running_a]  # found again at the next start
    assert len(not_dot(spool, "tmp")) == 1  # b's running file, kept as a spare


def test_the_helper_commits_a_batch_and_leaves_no_file_when_closed(spool):
    claimed = running_jobs(spool, 5)
    helper = Helper.spawn(spool)
    assert helper is not None
    items = [Record("completed", stem, b"done", running) for stem, running in claimed]
    items.append(Record("pending", make_stem("high", spool.accept_ns(), "new"), b"{}"))
    assert helper_ask(helper, "commit", items, True) == [None] * 6
    assert len(records(spool)) == 5 and not_dot(spool, "running") == []
    assert len(not_dot(spool, "pending")) == 1
    helper.close()
    assert helper.process.returncode == 0
    assert not_dot(spool, "tmp") == []  # its spares are gone with it


def test_the_helper_s_errors_come_back_as_the_daemon_s_own_would(spool):
    """Each error crosses the pipe as its errno, text and file names: its class (by errno)
    and its message are those the same commit made in the daemon would have."""
    [(stem_a, running_a), (stem_b, running_b)] = running_jobs(spool, 2)
    spool.write("completed", f"{stem_a}.json", b"first")
    shutil.rmtree(spool.dirs["failed"])
    helper = Helper.spawn(spool)
    assert helper is not None
    try:
        taken = Record("completed", stem_a, b"second", running_a, exclusive=True)
        no_folder = Record("failed", stem_b, b"b", running_b)
        exists, missing = helper_ask(helper, "commit", [taken, no_folder], True)
    finally:
        helper.close()
    assert isinstance(exists, FileExistsError)
    assert exists.filename2 == str(spool.dirs["completed"] / f"{stem_a}.json")
    assert isinstance(missing, FileNotFoundError) and missing.strerror == os.strerror(2)
    assert str(missing).endswith(f" -> '{spool.dirs['failed'] / stem_b}.json'")
    assert records(spool) == {f"{stem_a}.json": b"first"}
    assert sorted(not_dot(spool, "running")) == sorted([running_a, running_b])


def test_the_helper_ignores_the_signals_meant_for_the_daemon(spool):
    helper = Helper.spawn(spool)
    assert helper is not None
    try:
        assert helper_ask(helper, "commit", [], True) == []  # up and serving
        helper.process.send_signal(signal.SIGTERM)
        helper.process.send_signal(signal.SIGINT)
        [(stem, running)] = running_jobs(spool, 1)
        record = Record("completed", stem, b"ok", running)
        assert helper_ask(helper, "commit", [record], True) == [None]
    finally:
        helper.close()
    assert records(spool) == {f"{stem}.json": b"ok"}


def test_a_helper_that_died_is_an_error_not_a_hang(spool):
    helper = Helper.spawn(spool)
    assert helper is not None
    helper.process.kill()
    helper.process.wait()
    with pytest.raises(HelperGone):
        helper_ask(helper, "commit", [Record("pending", "s", b"{}")], True)
    helper.close()


def test_the_committer_goes_on_without_a_helper_that_died(spool, caplog):
    committer = Committer(spool, helper=True)
    committer.start()
    helper = helper_of(os.getpid())
    os.kill(helper, signal.SIGKILL)
    claimed = running_jobs(spool, 3)
    done = []
    try:
        with caplog.at_level(logging.ERROR, logger="spoold.helper"):
            for stem, running in claimed:
                committer.submit(Outcome(running, stem, "completed", b"r",
                                         lambda s=stem: done.append(s)))  # fmt: skip
            wait_until(lambda: len(done) == 3)
    finally:
        committer.stop()
    assert done == [stem for stem, _ in claimed]
    assert len(records(spool)) == 3 and not_dot(spool, "running") == []
    assert "the helper stopped" in caplog.text


PARENT = """
import os, sys
from pathlib import Path
from spoold.errors import HelperGone, Rejected
from spoold.fileio import Incoming
from spoold.helper import Helper, accept_files, read_files
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


@pytest.mark.parametrize("durability", ["fsync", "relaxed"])
def test_a_daemon_works_through_one_helper_and_takes_it_down_on_kill_9(start_daemon, durability):
    daemon = start_daemon(durability=durability)
    helpers = children(daemon.proc.pid)
    assert ["-m spoold.helper " in cmdline(pid) for pid in helpers] == [True]
    for n in range(20):
        daemon.drop(f"j{n}.json", {"type": "noop", "id": f"j{n}"})
    wait_until(lambda: len(job_files(daemon.spool, "completed")) == 20)
    wait_until(lambda: job_files(daemon.spool, "running") == [])  # dropped after the records
    assert job_files(daemon.spool, "incoming") == []
    daemon.kill()
    wait_until(lambda: not any(_alive(pid) for pid in helpers), 10)


@pytest.mark.parametrize("durability", ["fsync", "relaxed"])
def test_a_clean_stop_leaves_tmp_empty_with_helpers(start_daemon, durability):
    daemon = start_daemon(durability=durability)
    for n in range(10):
        daemon.drop(f"j{n}.json", {"type": "noop", "id": f"j{n}"})
    wait_until(lambda: len(job_files(daemon.spool, "completed")) == 10)
    assert daemon.stop() == 0
    assert job_files(daemon.spool, "tmp") == [] and job_files(daemon.spool, "running") == []


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


# ----- moving admitted files in: a batch in the helper, a lone file in the daemon -------


def incoming(spool: Spool, *names: str) -> list[tuple[str, str]]:
    """Drop each name in incoming/ (its bytes: its name) and give it a pending stem."""
    moves = []
    for name in names:
        (spool.dirs["incoming"] / name).write_bytes(name.encode())
        moves.append((name, make_stem("normal", spool.accept_ns(), name[:-5])))
    return moves


@pytest.mark.parametrize("where", ["here", "helper"])
def test_files_are_moved_in_unchanged_and_each_move_says_how_it_went(spool, where):
    (a, stem_a), (b, stem_b), (c, stem_c) = incoming(spool, "a.json", "b.json", "c.json")
    os.unlink(spool.dirs["incoming"] / b)  # its producer took it back
    (spool.dirs["pending"] / f"{stem_c}.json").mkdir()  # a folder where c must go
    (spool.dirs["pending"] / f"{stem_c}.json" / "x").write_bytes(b"")
    helper = Helper.spawn(spool) if where == "helper" else None
    accept = partial(helper_ask, helper, "accept") if helper else partial(accept_files, spool)
    try:
        results = accept([(a, stem_a), (b, stem_b), (c, stem_c)])
        assert results[:2] == [True, False] and isinstance(results[2], OSError)
        assert accept([(a, stem_a)]) == [True]  # a move already made is found done
    finally:
        if helper:
            helper.close()
    assert (spool.dirs["pending"] / f"{stem_a}.json").read_bytes() == b"a.json"
    assert sorted(os.listdir(spool.dirs["incoming"])) == [c]  # left for the rescan


@pytest.mark.parametrize("where", ["here", "helper"])
def test_files_are_read_for_the_intake_with_what_kept_each_from_being_read(spool, where):
    incoming = spool.dirs["incoming"]
    (incoming / "a.json").write_bytes(b'{"type": "noop"}')
    os.symlink("/etc/passwd", incoming / "link.json")
    (incoming / "big.json").write_bytes(b"x" * 101)
    names = ["a.json", "gone.json", "link.json", "big.json"]
    helper = Helper.spawn(spool) if where == "helper" else None
    read = partial(helper_ask, helper, "read") if helper else partial(read_files, spool)
    try:
        a, gone, link, big = read([(name,) for name in names], 100)
    finally:
        if helper:
            helper.close()
    assert a == Incoming(b'{"type": "noop"}', os.lstat(incoming / "a.json").st_mtime)
    assert gone is None  # its producer took it back
    assert isinstance(link, Rejected) and "not a regular file (a symlink)" in str(link)
    assert isinstance(big, Rejected) and "larger than maxJobBytes (100)" in str(big)


class MovesCounted(Spool):
    """A real spool counting the reads of incoming files and the moves into pending/
    made in this process."""

    moves = reads = 0

    def accept(self, name: str, stem: str) -> bool:
        self.moves += 1
        return super().accept(name, stem)

    def read_incoming(self, name: str, max_bytes: int) -> Incoming | None:
        self.reads += 1
        return super().read_incoming(name, max_bytes)


@contextlib.contextmanager
def running_intake(tmp_path: Path, durable: bool) -> Iterator[Intake]:
    """An intake whose committer runs, with its helper process."""
    spool = MovesCounted(tmp_path / "spool", durable=durable)
    spool.ensure()
    registry = {"noop": JobType("noop", lambda args: None)}
    committer = Committer(spool, helper=True)
    context = Context(spool, Dispatcher(), lambda: registry, lambda: ZoneInfo("UTC"), committer)
    committer.start()
    try:
        yield Intake(context, 10_000, 0.0)
    finally:
        committer.stop()


@pytest.fixture
def intake(tmp_path: Path) -> Iterator[Intake]:
    with running_intake(tmp_path, durable=False) as intake:
        yield intake


def drop_jobs(spool: Spool, *ids: str) -> list[str]:
    for job_id in ids:
        job = json.dumps({"type": "noop", "id": job_id})
        (spool.dirs["incoming"] / f"{job_id}.json").write_text(job)
    return [f"{job_id}.json" for job_id in ids]


@pytest.mark.parametrize("durable", [False, True], ids=["relaxed", "fsync"])
def test_a_batch_is_read_and_moved_in_by_the_helper_and_a_lone_file_by_the_daemon(
    tmp_path, durable
):
    with running_intake(tmp_path, durable) as intake:
        spool = intake.spool
        assert isinstance(spool, MovesCounted)
        assert intake.accept_files(drop_jobs(spool, "a", "b"), 0.0) == []
        pending = records(spool, "pending")
        assert sorted(n.rsplit("-", 1)[1] for n in pending) == ["a.json", "b.json"]
        assert pending[min(pending)] == json.dumps({"type": "noop", "id": "a"}).encode()
        assert (spool.reads, spool.moves) == (0, 0)  # the helper read and moved both
        assert intake.accept_files(drop_jobs(spool, "c"), 0.0) == []
        assert (spool.reads, spool.moves) == (1, 1)  # a lone file: no round trip
        assert intake.dispatcher.counts()["total"] == 3
        assert os.listdir(spool.dirs["incoming"]) == []


def test_a_bad_file_in_a_batch_read_by_the_helper_is_rejected_with_its_reason(intake):
    spool = intake.spool
    names = drop_jobs(spool, "a")
    os.symlink("/etc/passwd", spool.dirs["incoming"] / "link.json")
    assert intake.accept_files([*names, "link.json"], 0.0) == []
    explanation = json.loads((spool.dirs["failed"] / "link.json.error.json").read_text())
    assert "not a regular file (a symlink)" in explanation["error"]
    assert intake.dispatcher.counts()["total"] == 1 and intake.rejected == 1


@pytest.mark.parametrize("ids", [("a",), ("a", "b")], ids=["lone", "batch"])
def test_a_file_that_cannot_be_moved_in_stays_and_its_id_stays_free(intake, ids):
    spool = intake.spool
    names = drop_jobs(spool, *ids)
    spool.dirs["pending"].rmdir()
    spool.dirs["pending"].write_bytes(b"")  # not a folder: the rename fails (ENOTDIR)
    assert intake.accept_files(names, 0.0) == []
    spool.dirs["pending"].unlink()
    spool.dirs["pending"].mkdir()
    assert sorted(os.listdir(spool.dirs["incoming"])) == names
    assert not spool.health.ok
    assert f"moving incoming/{ids[-1]}.json to pending/ failed: ENOTDIR" in str(
        spool.health.error
    )  # the helper's error, with its errno, as the daemon's own would be
    assert not any(job_id in intake.ids for job_id in ids)  # the rescan can admit them
    assert intake.accept_files(names, 0.0) == []
    assert intake.dispatcher.counts()["total"] == len(ids)


@pytest.mark.parametrize("ids", [("a",), ("a", "b")], ids=["lone", "batch"])
def test_a_file_system_error_reading_a_file_is_told_as_a_read_and_the_file_judged_again(
    intake, ids
):
    spool = intake.spool
    names = drop_jobs(spool, *ids)
    kept = spool.dirs["incoming"].rename(spool.root / "kept")
    spool.dirs["incoming"].write_bytes(b"")  # not a folder: reading fails (ENOTDIR)
    later = intake.accept_files(names, 100.0)
    assert sorted(name for _, name in later) == names  # to be judged again, not rejected
    assert all(again > 100.0 for again, _ in later)
    assert f"reading incoming/{ids[-1]}.json failed: ENOTDIR" in str(spool.health.error)
    assert intake.rejected == 0 and os.listdir(spool.dirs["failed"]) == []
    spool.dirs["incoming"].unlink()
    kept.rename(spool.dirs["incoming"])
    assert intake.accept_files(names, 100.0) == []
    assert intake.dispatcher.counts()["total"] == len(ids)


def test_without_flush_a_batch_is_placed_and_nothing_is_flushed(tmp_path):
    spool = CountingSpool(tmp_path / "spool", durable=False)
    spool.ensure()
    claimed = running_jobs(spool, 3)
    items = [Record("completed", stem, b"r", running) for stem, running in claimed]
    assert spool.commit(items, flush=False) == [None] * 3
    assert len(records(spool)) == 3 and not_dot(spool, "running") == []
    assert spool.flushes == 0


def test_a_source_checkout_goes_first_on_the_helpers_import_path(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    here = str(Path(helper_module.__file__).resolve().parent.parent)
    assert helper_module._same_spoold()["PYTHONPATH"] == f"{here}{os.pathsep}/elsewhere"


def test_an_installed_spoold_is_not_put_before_the_standard_library(monkeypatch):
    here = str(Path(helper_module.__file__).resolve().parent.parent)
    monkeypatch.setattr(site, "getsitepackages", lambda: ["/usr/lib/x", here])
    monkeypatch.delenv("PYTHONPATH", raising=False)
    assert "PYTHONPATH" not in helper_module._same_spoold()


def test_requests_sent_before_their_answers_are_read_never_block_either_end(spool):
    """Eight reads of big files under long names, each sent before any answer is read:
    the helper soon blocks writing an answer no one reads, and the requests could fill
    its pipe too (64 KiB, ~16 KiB each). The channel reads answers early when its pipe
    could fill, so both ends go on; the answers come back by ticket, in any order."""
    body = b'{"type": "noop", "pad": "' + b"x" * 200_000 + b'"}'
    batches = []
    for batch in range(8):
        names = [f"{batch}-{n:02d}-{'n' * 240}.json" for n in range(64)]
        for name in names[:2]:  # two files per batch: 8 x 400 KB of answers
            (spool.dirs["incoming"] / name).write_bytes(body)
        batches.append(names)
    helper = Helper.spawn(spool)
    assert helper is not None
    answers: dict[int, list[object]] = {}

    def ask_all() -> None:
        tickets = [helper.post("read", [(name,) for name in names], 1 << 20) for names in batches]
        for number, ticket in reversed(list(enumerate(tickets))):
            answers[number] = helper.collect(ticket)

    asking = threading.Thread(target=ask_all, daemon=True)
    asking.start()
    asking.join(30)
    blocked = asking.is_alive()
    if blocked:  # end the deadlock, so that the test fails instead of hanging
        helper.process.kill()
        asking.join(10)
    helper.close()
    assert not blocked, "the daemon and the helper block each other"
    for number in range(8):
        files, gone = answers[number][:2], answers[number][2:]
        assert [file.raw for file in files if isinstance(file, Incoming)] == [body, body]
        assert gone == [None] * 62


def test_the_room_for_requests_is_half_the_pipe_and_a_page_where_it_is_unknown(tmp_path):
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "rb") as reader, os.fdopen(write_end, "wb") as writer:
        import fcntl

        fcntl.fcntl(writer.fileno(), fcntl.F_SETPIPE_SZ, 8192)
        assert helper_module.pipe_room(writer) == 4096
    with (tmp_path / "file").open("wb") as not_a_pipe:
        assert helper_module.pipe_room(not_a_pipe) == 4096
    assert reader.closed


@pytest.mark.parametrize("durable", [False, True], ids=["relaxed", "fsync"])
def test_a_backlog_is_judged_batch_after_batch_while_the_helper_reads_and_moves(tmp_path, durable):
    """Batches handed over together: each is read by the helper before the one before is
    judged, and taken from the caller only then; all are moved in and indexed, a bad file
    in the last one rejected."""
    with running_intake(tmp_path, durable) as intake:
        spool = intake.spool
        assert isinstance(spool, MovesCounted)
        first, second = drop_jobs(spool, "a", "b"), drop_jobs(spool, "c", "d", "e")
        third = [*drop_jobs(spool, "f", "g"), "link.json"]
        os.symlink("/etc/passwd", spool.dirs["incoming"] / "link.json")
        taken: list[int] = []

        def more() -> Iterator[list[str]]:
            for number, names in ((2, second), (3, third)):
                taken.append(number)
                yield names

        assert intake.accept_files(first, 0.0, more()) == []
        assert taken == [2, 3]
        assert (spool.reads, spool.moves) == (0, 0)  # all in the helper
        assert intake.dispatcher.counts()["total"] == 7 and intake.rejected == 1
        assert sorted(n.rsplit("-", 1)[1] for n in records(spool, "pending")) == [
            f"{job_id}.json" for job_id in "abcdefg"
        ]
        assert os.listdir(spool.dirs["incoming"]) == []


def test_a_helper_killed_while_a_backlog_is_judged_leaves_the_work_to_the_daemon(intake):
    spool = intake.spool
    assert isinstance(spool, MovesCounted)
    first, second = drop_jobs(spool, "a", "b"), drop_jobs(spool, "c", "d")

    def more() -> Iterator[list[str]]:
        os.kill(helper_of(os.getpid()), signal.SIGKILL)  # its read of c, d is lost
        yield second

    assert intake.accept_files(first, 0.0, more()) == []
    assert intake.dispatcher.counts()["total"] == 4
    assert len(records(spool, "pending")) == 4 and os.listdir(spool.dirs["incoming"]) == []
    assert spool.moves == 4  # every move was asked for after the kill: made here
    assert spool.reads >= 2  # c and d read here (a and b too, if their answer was lost)


@pytest.mark.parametrize("where", ["here", "helper"])
def test_a_batch_of_reads_stops_once_it_holds_read_bytes(spool, where):
    """Six files of 1 MiB: four fill a batch (READ_BYTES, 4 MiB); the others are LATER,
    not read, so a batch never holds 64 big files at once."""
    names = [f"big{n}.json" for n in range(6)]
    body = b'{"type": "noop", "pad": "' + b"x" * ((1 << 20) - 27) + b'"}'  # 1 MiB
    for name in names:
        (spool.dirs["incoming"] / name).write_bytes(body)
    helper = Helper.spawn(spool) if where == "helper" else None
    read = partial(helper_ask, helper, "read") if helper else partial(read_files, spool)
    try:
        results = read([(name,) for name in names], 2 << 20)
    finally:
        if helper:
            helper.close()
    assert helper_module.READ_BYTES == 4 << 20
    assert [r.raw == body for r in results[:4] if isinstance(r, Incoming)] == [True] * 4
    assert results[4:] == [helper_module.LATER] * 2


def test_files_left_out_of_a_full_batch_are_judged_again_at_once_and_admitted(intake):
    spool = intake.spool
    names = [f"big{n}.json" for n in range(6)]
    for n, name in enumerate(names):
        pad = "x" * (1 << 20)
        (spool.dirs["incoming"] / name).write_text(
            json.dumps({"type": "noop", "id": f"b{n}", "pad": pad})
        )
    intake.max_bytes = 2 << 20
    later = intake.accept_files(names, 100.0)
    assert later == [(100.0, "big4.json"), (100.0, "big5.json")]  # now: in the next batch
    assert intake.dispatcher.counts()["total"] == 4 and intake.rejected == 0
    assert intake.accept_files([name for _, name in later], 100.0) == []
    assert intake.dispatcher.counts()["total"] == 6
    assert os.listdir(spool.dirs["incoming"]) == []


def test_a_name_offered_again_in_the_next_batch_is_admitted_once_not_judged_twice(intake):
    """A rescan may offer a name again while its batch is being judged: the next batch is
    read before this one is moved, so the file would be read again, still in incoming/, and
    rejected as a duplicate of itself (found on a shared spool over NFS)."""
    spool = intake.spool
    first, second = drop_jobs(spool, "a", "b"), [*drop_jobs(spool, "c"), "b.json"]
    judged: list[str] = []
    judge = intake.judge
    intake.judge = lambda data, *args: judged.append(data["id"]) or judge(data, *args)  # type: ignore[method-assign]
    assert intake.accept_files(first, 0.0, iter([second, ["b.json", "a.json"]])) == []
    assert judged == ["a", "b", "c"]  # b not read and judged again before its move
    assert intake.rejected == 0 and os.listdir(spool.dirs["failed"]) == []
    assert intake.dispatcher.counts()["total"] == 3
    assert os.listdir(spool.dirs["incoming"]) == []


def test_a_name_offered_again_two_batches_on_is_not_read_before_its_move_is_done(intake):
    """Two batches on, a lone file is read here at once, not after the helper's move of
    the batch that admitted it: so no name is read again while its move is outstanding."""
    spool = intake.spool
    assert isinstance(spool, MovesCounted)
    first, second = drop_jobs(spool, "a", "b"), drop_jobs(spool, "c", "d")
    assert intake.accept_files(first, 0.0, iter([second, ["a.json"]])) == []
    assert spool.reads == 0  # a.json, offered again alone, was left out, not read here
    assert intake.rejected == 0 and intake.dispatcher.counts()["total"] == 4
    assert os.listdir(spool.dirs["incoming"]) == []
