"""The operator's verbs on a real spool (manage.py): finding a job wherever it is."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from fault.mounts import read_only

from spoold import manage
from spoold.names import make_stem
from spoold.spool import Spool


class RetriedWhileListed(Spool):
    """A real spool where, while failed/ is listed the first time, another process moves
    the job there back to pending/ (a retry): after pending/ was listed, before failed/."""

    moved = False

    def names(self, folder: str) -> list[str]:
        if folder == "failed" and not self.moved:
            self.moved = True
            for name in os.listdir(self.dirs["failed"]):
                os.rename(self.dirs["failed"] / name, self.dirs["pending"] / name)
        return super().names(folder)


def test_a_job_moving_against_the_search_order_is_still_found(tmp_path: Path) -> None:
    """Before, one pass missed it and GET /jobs/{id}, DELETE and spoold show answered 'no
    job with id' for a job that was there all along."""
    spool = RetriedWhileListed(tmp_path / "spool", durable=False)
    spool.ensure()
    stem = make_stem("normal", time.time_ns(), "mover")
    spool.write("failed", f"{stem}.json", b"{}")
    found = manage.locate(spool, "mover")
    assert spool.moved and found == manage.Found("pending", f"{stem}.json", stem)
    assert manage.locate(spool, "nobody") is None


def spool_with(tmp_path: Path, folder: str, job_id: str, body: bytes) -> tuple[Spool, str]:
    spool = Spool(tmp_path / "spool", durable=False)
    spool.ensure()
    stem = make_stem("normal", time.time_ns(), job_id)
    spool.write(folder, f"{stem}.json", body)
    return spool, stem


def where(spool: Spool, stem: str) -> list[str]:
    folders = ("pending", "running", "completed", "failed")
    return [f for f in folders for n in os.listdir(spool.dirs[f]) if n.startswith(stem)]


FAILED = b'{"type": "noop", "id": "j", "status": "failed", "error": "boom", "attempts": 1}'


def test_a_retry_that_cannot_remove_the_failed_record_takes_its_copy_back(tmp_path):
    """Fault: failed/ read-only (a bind mount): the job is written to pending/, its old
    record cannot be removed. Before, it stayed in both folders and ran twice (once now,
    once at a later retry of the stale record); now the retry fails and changes nothing."""
    spool, stem = spool_with(tmp_path, "failed", "j", FAILED)
    with read_only(spool.dirs["failed"]):
        with pytest.raises(OSError) as info:
            manage.retry(spool, "j")
        print(f"injected: failed/ read-only; found: {info.value!r}, job in {where(spool, stem)}")
        assert where(spool, stem) == ["failed"]


def test_a_cancel_that_cannot_write_its_record_leaves_the_job_pending(tmp_path):
    """Fault: failed/ read-only. Before, the job was left claimed in running/ by the
    command that had ended, until a daemon recovered it; now it is back in pending/."""
    spool, stem = spool_with(tmp_path, "pending", "j", b'{"type": "noop", "id": "j"}')
    with read_only(spool.dirs["failed"]):
        with pytest.raises(OSError):
            manage.cancel(spool, "j")
        assert where(spool, stem) == ["pending"]
        assert (
            spool.dirs["pending"] / f"{stem}.json"
        ).read_bytes() == b'{"type": "noop", "id": "j"}'


def test_cancelling_a_pending_file_that_is_no_job_keeps_its_bytes(tmp_path):
    """Before, a made-up record took the place of the bytes; now the file is moved to
    failed/ as it is, with its reason beside it."""
    spool, stem = spool_with(tmp_path, "pending", "gar", b"precious data, not json")
    found = manage.cancel(spool, "gar")
    assert found.folder == "failed"
    assert (spool.dirs["failed"] / f"{stem}.json").read_bytes() == b"precious data, not json"
    reason = (spool.dirs["failed"] / f"{stem}.json.error.json").read_text()
    assert "cancelled; the file was not a readable job" in reason


def test_a_retry_keeps_previous_errors_edited_into_something_else(tmp_path):
    """A record edited by hand so that previousErrors is no list: retried all the same
    (before, a number ended `retry --all` with a traceback and a string was split into
    its letters)."""
    for kept, expected in ((5, [5, "boom"]), ("abc", ["abc", "boom"])):
        body = FAILED[:-1] + b', "previousErrors": ' + json.dumps(kept).encode() + b"}"
        spool, stem = spool_with(tmp_path / str(kept), "failed", "j", body)
        assert manage.retry(spool, "j") == f"pending/{stem}.json"
        retried = json.loads((spool.dirs["pending"] / f"{stem}.json").read_bytes())
        assert retried["previousErrors"] == expected
