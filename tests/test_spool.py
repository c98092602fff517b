"""The spool protocol on real folders: names, atomic moves, lost races, rejects."""

import os
import subprocess
import threading
import time

import pytest

from spoold.errors import Rejected
from spoold.names import make_stem, parse_stem, running_stem
from spoold.spool import Spool


@pytest.fixture
def spool(tmp_path):
    s = Spool(tmp_path / "spool", "n1", durable=True)
    s.ensure()
    return s


def test_ensure_creates_every_folder(spool):
    assert sorted(os.listdir(spool.root)) == sorted(
        ["incoming", "pending", "running", "completed", "failed", "tmp"]
    )


def test_a_file_where_the_spool_should_be_is_unusable(tmp_path):
    from spoold.errors import SpoolUnusable

    (tmp_path / "spool").write_text("oops")
    with pytest.raises(SpoolUnusable, match="is not a folder"):
        Spool(tmp_path / "spool").ensure()


def test_stems_sort_in_dispatch_order_and_round_trip():
    names = [
        make_stem("low", 1, "a"),
        make_stem("normal", 3, "b"),
        make_stem("normal", 2, "c"),
        make_stem("critical", 9, "d"),
        make_stem("high", 5, "e-f.g"),
    ]
    assert [parse_stem(n).id for n in sorted(names)] == ["d", "e-f.g", "c", "b", "a"]
    stem = parse_stem(make_stem("high", 1_764_000_000_123_456_789, "x"))
    assert stem.priority == "high" and stem.accepted == pytest.approx(1_764_000_000.123456789)
    assert parse_stem("not-a-stem") is None


def test_accept_keeps_the_producers_bytes(spool):
    raw = b'{"type": "noop",   "note": "spacing kept"}'
    (spool.dirs["incoming"] / "a.json").write_bytes(raw)
    incoming = spool.read_incoming("a.json", 1000)
    assert incoming.raw == raw
    stem = make_stem("normal", spool.accept_ns(), "id1")
    assert spool.accept("a.json", stem)
    assert (spool.dirs["pending"] / f"{stem}.json").read_bytes() == raw
    assert spool.accept("a.json", stem)  # made before: found done
    assert not spool.accept("a.json", make_stem("normal", spool.accept_ns(), "id1"))  # gone


def test_claim_is_won_once(spool):
    stem = make_stem("normal", spool.accept_ns(), "j")
    spool.enqueue(stem, b"{}")
    other = Spool(spool.root, "n2")
    results = []
    barrier = threading.Barrier(2)

    def claim(s):
        barrier.wait()
        results.append(s.claim(stem))

    threads = [threading.Thread(target=claim, args=(s,)) for s in (spool, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if r]
    assert len(winners) == 1
    assert os.listdir(spool.dirs["running"]) == winners
    assert running_stem(winners[0])[0] == stem


def test_finish_writes_the_record_then_drops_the_running_file(spool):
    stem = make_stem("normal", spool.accept_ns(), "j")
    spool.enqueue(stem, b"{}")
    running = spool.claim(stem)
    spool.finish(running, stem, "completed", b'{"status": "completed"}')
    assert os.listdir(spool.dirs["running"]) == []
    assert (spool.dirs["completed"] / f"{stem}.json").read_bytes() == b'{"status": "completed"}'
    assert spool.has_record(stem)
    [spare] = os.listdir(spool.dirs["tmp"])  # no one else can reach it: kept to rewrite
    assert (spool.dirs["tmp"] / spare).read_bytes() == b"{}"
    spool.ownership.end_lease()
    assert os.listdir(spool.dirs["tmp"]) == []


def test_finished_files_no_one_else_can_reach_are_rewritten_not_reallocated(spool):
    """The running file of one job becomes the record of the next (same inode)."""
    inodes = []
    for n in range(3):
        stem = make_stem("normal", spool.accept_ns(), f"j{n}")
        spool.enqueue(stem, b"{}")
        spool.finish(spool.claim(stem), stem, "completed", f'{{"n": {n}}}'.encode())
        inodes.append(os.stat(spool.dirs["completed"] / f"{stem}.json").st_ino)
        assert len(os.listdir(spool.dirs["tmp"])) == 1
    assert len(set(inodes[1:])) == 2 and inodes[1] != inodes[0]


def test_a_job_file_its_producer_holds_open_is_never_written_into(spool):
    first = make_stem("normal", spool.accept_ns(), "held")
    spool.enqueue(first, b'{"type": "mine"}')
    with open(spool.dirs["pending"] / f"{first}.json", "rb") as producer:
        spool.finish(spool.claim(first), first, "completed", b'{"first": 1}')
        assert os.listdir(spool.dirs["tmp"]) == []  # deleted, not kept as a spare
        second = make_stem("normal", spool.accept_ns(), "next")
        spool.enqueue(second, b"{}")
        spool.finish(spool.claim(second), second, "completed", b'{"second": 2}')
        assert producer.read() == b'{"type": "mine"}'


def test_a_hard_linked_job_file_is_never_written_into(spool, tmp_path):
    """A producer may have published a hard link: the inode a job came in is dropped
    with its running file, never reused for another job's record."""
    outside = tmp_path / "archive.json"
    outside.write_bytes(b'{"type": "mine"}')
    first = make_stem("normal", spool.accept_ns(), "linked")
    os.link(outside, spool.dirs["pending"] / f"{first}.json")
    spool.finish(spool.claim(first), first, "completed", b'{"first": 1}')
    for n in range(3):
        stem = make_stem("normal", spool.accept_ns(), f"j{n}")
        spool.enqueue(stem, b"{}")
        spool.finish(spool.claim(stem), stem, "completed", f'{{"n": {n}}}'.encode())
    assert outside.read_bytes() == b'{"type": "mine"}' and outside.stat().st_nlink == 1
    records = sorted(
        (spool.dirs["completed"] / n).read_bytes() for n in os.listdir(spool.dirs["completed"])
    )
    assert records == [b'{"first": 1}', b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']
    assert len(os.listdir(spool.dirs["tmp"])) == 1  # the last job's file, spoold's own


def test_clean_tmp_removes_only_earlier_lives_of_this_node(spool):
    tmp = spool.dirs["tmp"]
    for name in ("n1+dead.1.0.tmp", "n2+other.1.0.tmp", f"{spool.owner}.1.9.tmp"):
        (tmp / name).write_bytes(b"x")
    spool.clean_tmp()
    assert sorted(os.listdir(tmp)) == sorted(["n2+other.1.0.tmp", f"{spool.owner}.1.9.tmp"])


def test_tmp_files_go_once_their_writer_provably_stopped(spool):
    """A killed helper's files (this node, its pid gone), a dead node's (lease expired)."""
    gone = _exited_pid()
    me = os.getpid()
    spool.ownership.renew_lease()
    (spool.dirs["running"] / ".lease-n2+stale").touch()
    os.utime(spool.dirs["running"] / ".lease-n2+stale", (0, 0))
    (spool.dirs["running"] / ".lease-n3+alive").touch()
    names = [f"{spool.owner}.{gone}.0.tmp", f"{spool.owner}.{me}.1.tmp"]
    names += [f"{spool.owner}.{me}.reserve", f"n2+stale.{me}.0.tmp", "n2+nolease.7.3.tmp"]
    names += [f"n3+alive.{gone}.0.tmp", "other.json", "n4+starting.7.0.tmp"]
    for name in names:
        (spool.dirs["tmp"] / name).write_bytes(b"x")
    for name in names[3:5]:  # written long ago; n4's is new: its daemon is starting, no lease yet
        os.utime(spool.dirs["tmp"] / name, (0, 0))
    removed = spool.ownership.clean_dead_tmp(time.time(), lease=30)
    assert sorted(removed) == sorted([names[0], names[3], names[4]])
    kept = [names[1], names[2], names[5], names[6], names[7]]
    assert sorted(os.listdir(spool.dirs["tmp"])) == sorted(kept)


def _exited_pid() -> int:
    """The pid of a process that ran and was reaped."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_exclusive_enqueue_refuses_a_taken_name(spool):
    assert spool.enqueue("s", b"1", exclusive=True)
    assert not spool.enqueue("s", b"2", exclusive=True)
    assert (spool.dirs["pending"] / "s.json").read_bytes() == b"1"
    assert os.listdir(spool.dirs["tmp"]) == []


def test_reject_moves_unread_and_explains(spool):
    (spool.dirs["incoming"] / "bad.json").write_bytes(b"\x00garbage")
    assert spool.reject("bad.json", "not valid JSON") == "bad.json"
    (spool.dirs["incoming"] / "bad.json").write_bytes(b"second")
    assert spool.reject("bad.json", "again") == "bad.1.json"
    failed = spool.dirs["failed"]
    assert (failed / "bad.json").read_bytes() == b"\x00garbage"
    assert (failed / "bad.1.json").read_bytes() == b"second"
    assert b"not valid JSON" in (failed / "bad.json.error.json").read_bytes()


@pytest.mark.parametrize("kind", ["symlink", "folder", "fifo", "big"])
def test_files_that_must_not_be_read(spool, tmp_path, kind):
    path = spool.dirs["incoming"] / "x.json"
    target = tmp_path / "secret.json"
    target.write_text('{"type": "noop"}')
    if kind == "symlink":
        path.symlink_to(target)
    elif kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.write_bytes(b" " * 101)
    with pytest.raises(Rejected) as info:
        spool.read_incoming("x.json", 100)
    words = {"symlink": "a symlink", "folder": "a folder", "fifo": "a FIFO", "big": "maxJobBytes"}
    assert words[kind] in str(info.value)
    spool.reject("x.json", str(info.value))
    assert os.path.lexists(spool.dirs["failed"] / "x.json")
    assert target.read_text() == '{"type": "noop"}'


def test_stale_running_files(spool):
    """At start our node's earlier lives are stale; others only when their lease lapsed."""
    running = spool.dirs["running"]
    for owner in ("n1+old", "n2+alive", "n3+dead", "n4+nolease"):
        (running / f"s-{owner[:2]}@{owner}.json").write_bytes(b"{}")
    for owner in ("n2+alive", "n3+dead"):
        (running / f".lease-{owner}").write_bytes(b"")
    os.utime(running / ".lease-n3+dead", (0, 0))
    now = os.stat(running / ".lease-n2+alive").st_mtime + 1
    at_start = sorted(spool.ownership.stale_running(now, 30, own_node_too=True))
    assert at_start == ["s-n1@n1+old.json", "s-n3@n3+dead.json", "s-n4@n4+nolease.json"]
    later = sorted(spool.ownership.stale_running(now, 30, own_node_too=False))
    assert later == ["s-n1@n1+old.json", "s-n3@n3+dead.json", "s-n4@n4+nolease.json"]


def test_lease_is_one_file_per_daemon(spool):
    spool.ownership.renew_lease()
    assert os.listdir(spool.dirs["running"]) == [spool.ownership.lease_name]
    spool.ownership.end_lease()
    assert os.listdir(spool.dirs["running"]) == []


def test_dead_leases_are_dropped_once_old(spool):
    running = spool.dirs["running"]
    spool.ownership.renew_lease()
    (running / ".lease-n9+gone").write_bytes(b"")
    (running / ".lease-n8+recent").write_bytes(b"")
    os.utime(running / ".lease-n9+gone", (0, 0))
    spool.ownership.drop_dead_leases(os.stat(running / ".lease-n8+recent").st_mtime, 120)
    assert sorted(os.listdir(running)) == sorted([".lease-n8+recent", spool.ownership.lease_name])


def test_folder_syncs_are_shared_between_threads(tmp_path):
    """Group commit: many threads asking at once are served by fewer real fsyncs."""
    from spoold.spool import GroupSync

    group = GroupSync(str(tmp_path))
    barrier = threading.Barrier(8)

    def ask():
        barrier.wait()
        for _ in range(20):
            group.sync()

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    assert 20 <= group._started < 160


def test_a_cancel_request_replaces_a_symlink_left_under_its_name(spool, tmp_path):
    """Hostile: cancel/<id> made a symlink to a path outside the spool before the job is
    cancelled. The request must not create a file there (the daemon often runs as root:
    an empty /etc/nologin, say); it replaces the link with its own empty file."""
    spool.ensure_extra("cancel")
    target = tmp_path / "made-through-the-link"
    (spool.dirs["cancel"] / "job1").symlink_to(target)
    spool.request_cancel("job1")
    assert not target.exists() and not target.is_symlink()
    request = spool.dirs["cancel"] / "job1"
    assert not request.is_symlink() and request.read_bytes() == b""
    assert spool.cancel_requests() == ["job1"]
