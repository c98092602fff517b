"""Spool folders removed under a running daemon, as a tidy-up of empty folders does
(`find spool -type d -empty -delete`, run for real): the daemon makes them again at its
next housekeeping pass and says so, and no job is lost. Every folder gone at once (an
NFS mount point left empty) is said and not "fixed" on the wrong disk."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

from conftest import records, wait_until

SPOOL_FOLDERS = ("incoming", "pending", "running", "completed", "failed", "tmp")


def test_folders_a_tidy_up_of_empty_ones_removed_are_made_again_and_jobs_flow(start_daemon):
    daemon = start_daemon()
    daemon.drop("before.json", {"type": "noop", "id": "before"})
    wait_until(lambda: [r["id"] for r in records(daemon.spool, "completed")] == ["before"])
    os.unlink(next((daemon.spool / "completed").iterdir()))  # completed/ empty too
    subprocess.run(["find", str(daemon.spool), "-mindepth", "1", "-type", "d", "-empty",
                    "-delete"], check=True)  # fmt: skip
    gone = [f for f in SPOOL_FOLDERS if not (daemon.spool / f).is_dir()]
    print(f"injected: find -empty -delete removed {gone}")
    assert {"incoming", "pending", "completed", "failed"} <= set(gone)
    wait_until(lambda: all((daemon.spool / f).is_dir() for f in SPOOL_FOLDERS), timeout=10)
    for folder in gone:  # the spool as the config names it: "spool"
        assert f"spool/{folder} was gone (removed by hand, or by a clean-up of" in daemon.log()
    daemon.drop("after.json", {"type": "noop", "id": "after"})
    wait_until(lambda: [r["id"] for r in records(daemon.spool, "completed")] == ["after"])
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.log()


def test_a_job_held_while_completed_is_gone_is_recorded_once_it_is_back(start_daemon, plugins):
    """completed/ removed while a job runs: its record cannot be written (ENOENT), the
    outcome is held, the folder made again, and the job recorded completed, once."""
    daemon = start_daemon(jobTypes=plugins.types)
    daemon.drop("slow.json", {"type": "slow", "id": "slow"})
    wait_until(lambda: plugins.order() == ["slow"])
    os.rmdir(daemon.spool / "completed")
    plugins.release()
    wait_until(lambda: [r["id"] for r in records(daemon.spool, "completed")] == ["slow"])
    [done] = records(daemon.spool, "completed")
    assert done["attempts"] == 1 and len(plugins.calls("slow")) == 1
    assert daemon.stop() == 0


def test_every_folder_gone_is_said_and_nothing_is_made_in_its_place(start_daemon):
    """Fault: everything in the spool removed, as a spool whose file system went away
    leaves an empty mount point. Making the folders there would take jobs onto a disk
    no other host sees: the daemon says what it found and makes nothing."""
    daemon = start_daemon()
    for folder in SPOOL_FOLDERS:
        shutil.rmtree(daemon.spool / folder)
    wait_until(lambda: "every spool folder is gone: is its file system unmounted?" in daemon.log())
    time.sleep(1.0)  # proves an absence: two more housekeeping passes make nothing
    assert not any((daemon.spool / f).exists() for f in SPOOL_FOLDERS)
    daemon.stop()
