"""followups.py and the commit of a record with its follow-ups, on a real spool folder."""

from __future__ import annotations

import json
import threading
import time

import pytest
from conftest import wait_until

from spoold import followups
from spoold.commit import Committer, Outcome
from spoold.jobs import JobType
from spoold.names import accepted_ns, make_stem, parse_stem
from spoold.spool import Record, Spool, with_follow_ups

REGISTRY = {"noop": JobType("noop", lambda job: None), "mail": JobType("mail", print, "high")}
PARENT = {"type": "noop", "id": "p", "then": [{"type": "noop"}, {"type": "mail", "n": 2}],
          "onFailure": [{"type": "noop", "priority": "low"}]}  # fmt: skip


@pytest.fixture
def spool(tmp_path):
    s = Spool(tmp_path / "spool", durable=False)
    s.ensure()
    return s


def parent_stem() -> str:
    return make_stem("normal", time.time_ns(), "p")


def exists_in(spool: Spool):
    return lambda stem: spool.job_folder(stem) is not None


def test_follow_ups_get_the_parents_place_in_line_and_their_own_priority(spool):
    stem = parse_stem(parent_stem())
    then = followups.missing(PARENT, "completed", stem, REGISTRY, exists_in(spool))
    assert [parse_stem(r.stem).id for r in then] == ["p.then.0", "p.then.1"]
    assert [parse_stem(r.stem).priority for r in then] == ["normal", "high"], "the type's"
    assert {accepted_ns(parse_stem(r.stem)) for r in then} == {accepted_ns(stem)}
    assert json.loads(then[1].data) == {"type": "mail", "n": 2, "id": "p.then.1"}
    [on_failure] = followups.missing(PARENT, "failed", stem, REGISTRY, exists_in(spool))
    assert parse_stem(on_failure.stem).priority == "low"
    assert followups.missing(PARENT, "pending", stem, REGISTRY, exists_in(spool)) == []


def test_a_follow_up_in_any_folder_is_not_written_again(spool):
    stem = parse_stem(parent_stem())
    first, second = followups.missing(PARENT, "completed", stem, REGISTRY, exists_in(spool))
    spool.commit_all([first])
    spool.claim(first.stem)  # now in running/
    assert followups.missing(PARENT, "completed", stem, REGISTRY, exists_in(spool)) == [second]
    spool.commit_all([second._replace(folder="completed")])
    assert followups.missing(PARENT, "completed", stem, REGISTRY, exists_in(spool)) == []


def test_the_running_file_goes_only_once_every_follow_up_is_in_place(spool):
    stem = parent_stem()
    spool.enqueue(stem, json.dumps(PARENT).encode())
    running = spool.claim(stem)
    follow = followups.missing(PARENT, "completed", parse_stem(stem), REGISTRY, exists_in(spool))
    (spool.dirs["pending"] / f"{follow[-1].stem}.json").mkdir()  # the last one cannot be placed
    records = with_follow_ups(Record("completed", stem, b"{}\n", running), follow)
    errors = spool.commit(records, flush=False)
    assert [type(e) for e in errors] == [type(None), type(None), IsADirectoryError]
    assert (spool.dirs["completed"] / f"{stem}.json").exists()
    assert (spool.dirs["running"] / running).exists(), "kept for recovery to finish"
    (spool.dirs["pending"] / f"{follow[-1].stem}.json").rmdir()
    assert spool.commit(records[-1:], flush=False) == [None]
    assert not (spool.dirs["running"] / running).exists()


def test_with_no_follow_ups_the_record_keeps_its_running_file():
    record = Record("completed", "s", b"", "s@x.json")
    assert with_follow_ups(record, []) == [record]


def test_a_commit_written_again_leaves_out_the_follow_ups_already_placed(spool):
    """A write that fails is kept and written again (commit.py); a follow-up placed by the
    first try is not placed a second time (a worker may have taken it meanwhile)."""
    stem = parent_stem()
    spool.enqueue(stem, json.dumps(PARENT).encode())
    running = spool.claim(stem)
    follow = followups.missing(PARENT, "completed", parse_stem(stem), REGISTRY, exists_in(spool))
    blocker = spool.dirs["pending"] / f"{follow[-1].stem}.json"
    blocker.mkdir()
    done = threading.Event()
    committer = Committer(spool)
    committer.start()
    try:
        committer.submit(
            Outcome(running, stem, "completed", b"{}\n", done.set, follow=tuple(follow))
        )
        wait_until(lambda: not spool.health.ok)
        first = spool.dirs["pending"] / f"{follow[0].stem}.json"
        inode = first.stat().st_ino
        blocker.rmdir()
        assert done.wait(10)
    finally:
        committer.stop()
    assert first.stat().st_ino == inode, "not written again"
    assert (spool.dirs["pending"] / f"{follow[-1].stem}.json").is_file()
    assert not (spool.dirs["running"] / running).exists()
