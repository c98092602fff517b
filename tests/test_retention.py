"""Pruning (retention.py) on a real spool: only spoold's own files go, however old the
rest; the daemon's pass over it is tested end to end in test_e2e_retention.py."""

from __future__ import annotations

import os
import time
from pathlib import Path

from spoold.names import make_stem
from spoold.retention import prune
from spoold.spool import Spool

MONTH = 30 * 86400.0


def aged(path: Path, seconds: float = MONTH) -> Path:
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)
    return path


def test_old_records_and_rejected_files_go_other_names_stay(tmp_path):
    spool = Spool(tmp_path / "spool", durable=False)
    spool.ensure()
    failed = spool.dirs["failed"]
    record = f"{make_stem('normal', time.time_ns(), 'old')}.json"
    (failed / record).write_bytes(b"{}")
    aged(failed / record)
    (failed / "bad.json").write_bytes(b"junk")
    (failed / "bad.json.error.json").write_bytes(b"{}")
    aged(failed / "bad.json.error.json")
    (failed / "notes.txt").write_bytes(b"an operator's")
    aged(failed / "notes.txt")
    assert sorted(prune(spool, "failed", 3600, time.time())) == sorted([record, "bad.json"])
    assert sorted(os.listdir(failed)) == ["notes.txt"]


def test_a_folder_swapped_for_a_link_to_elsewhere_loses_nothing_there(tmp_path):
    """Hostile: completed/ replaced by a symlink to a folder of old files that are not
    spoold's (as /etc would be, to a daemon running as root). Before, every name there
    older than the retention was deleted; now only names spoold gives its files go."""
    spool = Spool(tmp_path / "spool", durable=False)
    spool.ensure()
    elsewhere = tmp_path / "etc"
    elsewhere.mkdir()
    for name in ("passwd", "hosts.json", "notes.json.error"):
        (elsewhere / name).write_bytes(b"not spoold's")
        aged(elsewhere / name)
    os.rmdir(spool.dirs["completed"])
    spool.dirs["completed"].symlink_to(elsewhere, target_is_directory=True)
    assert prune(spool, "completed", 3600, time.time()) == []
    assert sorted(os.listdir(elsewhere)) == ["hosts.json", "notes.json.error", "passwd"]
