"""One live daemon per node name, kept by lease files alone (no flock): lease.py on a
real spool, and a daemon that finds an earlier instance of its node."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
from conftest import DaemonProcess, base_config, job_files, records, wait_until

from spoold.errors import SpoolUnusable
from spoold.lease import NodeGuard, whoami
from spoold.spool import Spool


def spool_of(root: Path, node: str = "n1") -> Spool:
    spool = Spool(root, node, durable=False)
    spool.ensure()
    return spool


def lease_of(spool: Spool, **info) -> float:
    """Start `spool`'s lease by hand, saying `info` (this process, serving, unless told);
    returns the time it started, by the file system's clock."""
    started = spool.ownership.renew_lease()
    spool.ownership.describe_lease({**whoami(), "started": started, "serving": True, **info})
    return started


class Pauses:
    """A real pause that notes each call, and runs `during` at each (another daemon's
    renewal, say)."""

    def __init__(self, during=lambda: None) -> None:
        self.calls = 0
        self.during = during

    def __call__(self, seconds: float) -> None:
        self.calls += 1
        threading.Event().wait(seconds)
        self.during()


def test_the_lease_says_who_holds_it_and_renewing_gives_the_file_server_s_time(tmp_path):
    spool = spool_of(tmp_path)
    NodeGuard(spool, lambda: 5).claim_node()
    info = spool.ownership.lease_info(spool.owner)
    assert info["pid"] == os.getpid() and info["host"] == whoami()["host"]
    assert isinstance(info["started"], float) and info["serving"] is True
    lease = spool.dirs["running"] / spool.ownership.lease_name
    assert spool.ownership.renew_lease() == os.stat(lease).st_mtime
    assert spool.ownership.leases() == {spool.owner: os.stat(lease).st_mtime}


def test_a_lease_swapped_for_a_symlink_is_renewed_as_the_link_not_its_target(tmp_path):
    """Hostile: our lease replaced by a symlink to a file outside the spool. Renewing
    touches the link (whose time is the lease others judge) and never the target."""
    spool = spool_of(tmp_path)
    NodeGuard(spool, lambda: 5).claim_node()
    outside = tmp_path / "outside"
    outside.write_bytes(b"not the spool's")
    os.utime(outside, (1000, 1000))
    lease = spool.dirs["running"] / spool.ownership.lease_name
    lease.unlink()
    lease.symlink_to(outside)
    renewed = spool.ownership.renew_lease()
    assert renewed == os.lstat(lease).st_mtime and renewed > time.time() - 60
    assert os.stat(outside).st_mtime == 1000
    assert spool.ownership.lease_info(spool.owner) == {}  # a link is read as nothing


def test_a_lease_removed_under_a_live_daemon_comes_back_as_it_was(tmp_path):
    """Another daemon drops a lease it judged dead (a long stall): renewing writes it
    again, with the same start time, so the rule of who started first still holds."""
    spool = spool_of(tmp_path)
    NodeGuard(spool, lambda: 5).claim_node()
    before = spool.ownership.lease_info(spool.owner)
    (spool.dirs["running"] / spool.ownership.lease_name).unlink()
    spool.ownership.renew_lease()
    assert spool.ownership.lease_info(spool.owner) == before


def test_a_start_is_refused_while_another_instance_renews_the_node_s_lease(tmp_path):
    first = spool_of(tmp_path)
    NodeGuard(first, lambda: 5).claim_node()
    second = spool_of(tmp_path)
    pauses = Pauses(during=first.ownership.renew_lease)
    with pytest.raises(SpoolUnusable) as refused:
        NodeGuard(second, lambda: 5, pauses).claim_node()
    reason = str(refused.value)
    assert "'n1'" in reason and first.owner in reason and f"pid {os.getpid()}" in reason
    assert "\n" not in reason and pauses.calls == 1
    assert set(first.ownership.leases()) == {first.owner}  # the refused one withdrew its lease


@pytest.mark.parametrize(
    ("other", "refused"),
    [
        ({"serving": True, "started": 4e9}, True),  # serving: whenever it started
        ({"serving": False, "started": 0.0}, True),  # starting too, before us
        ({"serving": False, "started": None}, True),  # starting too, in the same second
        ({"serving": False, "started": 4e9}, False),  # starting too, after us: it yields
    ],
)
def test_who_a_start_yields_to_among_instances_renewing_the_node_s_lease(tmp_path, other, refused):
    spool, rival = spool_of(tmp_path), spool_of(tmp_path)
    guard = NodeGuard(spool, lambda: 5, Pauses(during=rival.ownership.renew_lease))
    guard.started = spool.ownership.renew_lease()
    lease_of(rival, **{**other, "started": other["started"] or guard.started})
    watched = {h.owner: h for h in guard._others()}
    if refused:
        with pytest.raises(SpoolUnusable):
            guard._wait_out(watched)
    else:
        guard._wait_out(watched)


def test_a_start_waits_out_a_lease_that_is_not_renewed(tmp_path):
    crashed = spool_of(tmp_path)
    crashed.ownership.renew_lease()  # a lease with nothing in it: who left it cannot be checked
    spool = spool_of(tmp_path)
    pauses = Pauses()
    NodeGuard(spool, lambda: 1, pauses).claim_node()
    assert 3 <= pauses.calls <= 12  # about a lease's time in quarter seconds
    assert spool.owner in spool.ownership.leases()


def test_a_lease_left_by_a_process_of_this_host_that_ended_is_not_waited_for(tmp_path):
    ended = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True, check=True)
    crashed = spool_of(tmp_path)
    lease_of(crashed, pid=int(ended.stdout))
    pauses = Pauses()
    NodeGuard(spool_of(tmp_path), lambda: 30, pauses).claim_node()
    assert pauses.calls == 0


def test_a_lease_left_by_a_killed_process_not_yet_reaped_is_not_waited_for(tmp_path):
    killed = subprocess.Popen(["sleep", "60"])
    try:
        crashed = spool_of(tmp_path)
        lease_of(crashed, pid=killed.pid)
        killed.kill()
        wait_until(lambda: Path(f"/proc/{killed.pid}/stat").read_text().split()[2] == "Z")
        pauses = Pauses()
        NodeGuard(spool_of(tmp_path), lambda: 30, pauses).claim_node()
        assert pauses.calls == 0
    finally:
        killed.kill()
        killed.wait()


def test_a_lease_held_by_a_live_process_of_this_host_is_waited_for(tmp_path):
    alive = subprocess.Popen(["sleep", "60"])
    try:
        lease_of(spool_of(tmp_path), pid=alive.pid)
        pauses = Pauses()
        NodeGuard(spool_of(tmp_path), lambda: 1, pauses).claim_node()
        assert pauses.calls >= 3
    finally:
        alive.kill()
        alive.wait()


def test_a_lease_from_another_kernel_is_waited_for_even_if_its_pid_is_free_here(tmp_path):
    ended = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True, check=True)
    elsewhere = spool_of(tmp_path)
    lease_of(elsewhere, kernel="another-boot/1", pid=int(ended.stdout))
    pauses = Pauses()
    NodeGuard(spool_of(tmp_path), lambda: 1, pauses).claim_node()
    assert pauses.calls >= 3


def test_other_nodes_leases_are_not_this_node_s_business(tmp_path):
    other = spool_of(tmp_path, node="n2")
    NodeGuard(other, lambda: 5).claim_node()
    pauses = Pauses(during=other.ownership.renew_lease)
    NodeGuard(spool_of(tmp_path), lambda: 5, pauses).claim_node()
    assert pauses.calls == 0


def test_of_two_serving_instances_the_later_one_sees_a_conflict(tmp_path):
    early, late = spool_of(tmp_path), spool_of(tmp_path)
    early_guard, late_guard = NodeGuard(early, lambda: 5), NodeGuard(late, lambda: 5)
    early_guard.claim_node()
    late_guard.started = lease_of(late) + 1  # both got past the start check
    assert early_guard.conflict() is None and late_guard.conflict() is None  # first looks
    for spool in (early, late):
        os.utime(spool.dirs["running"] / spool.ownership.lease_name, (1, early_guard.started + 2))
    assert early_guard.conflict() is None
    reason = late_guard.conflict()
    assert reason and early.owner in reason and "started first" in reason


def test_an_instance_still_starting_is_left_to_its_own_start_check(tmp_path):
    spool, starting = spool_of(tmp_path), spool_of(tmp_path)
    guard = NodeGuard(spool, lambda: 5)
    guard.claim_node()
    lease_of(starting, started=0.0, serving=False)
    assert guard.conflict() is None
    os.utime(starting.dirs["running"] / starting.ownership.lease_name, (1, guard.started + 2))
    assert guard.conflict() is None


def test_a_daemon_exits_when_an_earlier_instance_of_its_node_renews_its_lease(start_daemon):
    daemon = start_daemon(node="n1")
    lease = daemon.spool / "running" / ".lease-n1+earlier"
    lease.write_text(json.dumps({"host": "elsewhere", "pid": 7, "started": 0}))

    def renewed_and_exited() -> bool:
        os.utime(lease)
        return daemon.proc.poll() is not None

    wait_until(renewed_and_exited, 20, 0.2)
    log = daemon.log()
    assert daemon.proc.returncode == 1
    assert "instance n1+earlier, pid 7 on elsewhere" in log and "stops claiming" in log
    assert not (
        daemon.spool / "running" / f".lease-{daemon.status()['worker']['workerId']}"
    ).exists()


FAKETIME = glob.glob("/usr/lib/*/faketime/libfaketime.so.1")


@pytest.mark.skipif(not FAKETIME, reason="needs libfaketime (Debian faketime; .ci/run installs it)")
def test_a_daemon_whose_clock_is_ten_seconds_ahead_takes_no_live_job(
    start_daemon, plugins, tmp_path
):
    """Leases are judged by the file system's clock: a touch without a time, read back.
    Under the old rule (this host's clock) the daemon ahead took both jobs at once."""
    holder = start_daemon(node="n2", jobTypes=plugins.types)
    for n in (1, 2):
        holder.drop(f"hold{n}.json", {"type": "slow", "id": f"hold{n}"})
    wait_until(lambda: plugins.calls("hold1") and plugins.calls("hold2"))
    # CLOCK_REALTIME only; FAKE_UTIME=1 leaves a touch without a time to the file system.
    skew = {"LD_PRELOAD": FAKETIME[0], "FAKETIME": "+10s", "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "FAKE_UTIME": "1"}  # fmt: skip
    (tmp_path / "ahead").mkdir()
    config = base_config(spool=str(holder.spool), node="n1")
    ahead = DaemonProcess(tmp_path / "ahead", config, [], env=skew)
    try:
        ahead.wait_ready()
        status = ahead.spool / ahead.status_name
        written = datetime.fromisoformat(json.loads(status.read_bytes())["updatedAt"])
        assert 9 < written.timestamp() - status.stat().st_mtime < 11
        time.sleep(3)  # proving an absence: six rescans, and over a lease by the skewed clock
        running = job_files(holder.spool, "running")
        assert len(running) == 2 and all("@n2+" in name for name in running)
        assert "recovered" not in ahead.log()
    finally:
        ahead.kill()
    plugins.release()
    wait_until(lambda: len(records(holder.spool, "completed")) == 2)
    assert len(plugins.calls("hold1")) == 1 and len(plugins.calls("hold2")) == 1
