"""Two hosts, one spool, real NFSv3 (nfs_rig.py): each job recorded once and run once.

Each host is a network namespace with its own NFS client mount of one export; a
daemon runs in each (`nsenter --net=...`), under its own node name unless the test
is about sharing one. The plug-in job type `mark` appends its job id to a log in
its host's working folder, outside the spool, so a job run twice shows up there.
Each test prints what it injected and what it found (`pytest -s` shows it).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import DaemonProcess, base_config, drop, job_files, records, wait_until

from spoold.names import parse_stem

from .nfs_rig import Host, NfsRig, missing

pytestmark = pytest.mark.slow

LEASE = 5  # leaseSeconds for every daemon here
PLUGIN = '''
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent


def mark(job):
    """Note the run in this host's log, then take job['seconds']."""
    with open(HERE / "runs.log", "a") as f:
        f.write(job["id"] + "\\n")
    threading.Event().wait(job.get("seconds", 0))  # time.sleep fails under libfaketime
'''


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NfsRig]:
    """The NFS server and two hosts, for every test of this module; taken down by
    process id (and `ip netns del`) however the tests end."""
    why = missing()
    if why:
        pytest.skip(f"NFS fault tests: {why}")
    built = NfsRig(tmp_path_factory.mktemp("nfs"))
    try:
        yield built.start()
    finally:
        built.close()


@dataclass
class Cluster:
    """Daemons of one test, on one spool folder of the export, one working folder per
    daemon (its config, log, plug-in and runs.log)."""

    rig: NfsRig
    name: str
    workroot: Path
    daemons: list[DaemonProcess] = field(default_factory=list)

    def spool(self, host: Host) -> Path:
        """The spool as `host` sees it, through its own NFS client."""
        return host.mount / self.name

    def start(
        self, host: Host, node: str, env: dict[str, str] | None = None, wait: bool = True,
        **overrides: Any,
    ) -> DaemonProcess:  # fmt: skip
        workdir = self.workroot / f"{host.name}-{node}-{len(self.daemons)}"
        workdir.mkdir(parents=True)
        (workdir / "nfs_plugins.py").write_text(PLUGIN)
        config = base_config(spool=str(self.spool(host)), node=node, workers=4,
                             leaseSeconds=LEASE, jobTypes={"mark": "nfs_plugins:mark"},
                             **overrides)  # fmt: skip
        daemon = DaemonProcess(workdir, config, [], prefix=host.command([]), env=env)
        self.daemons.append(daemon)
        return daemon.wait_ready(30) if wait else daemon

    def drop_jobs(self, host: Host, ids: list[str], **fields: Any) -> None:
        incoming = self.spool(host) / "incoming"
        incoming.mkdir(parents=True, exist_ok=True)
        for job_id in ids:
            drop(incoming, f"{job_id}.json", {"type": "mark", "id": job_id, **fields})

    def runs(self) -> Counter[str]:
        """How many times each job id ran, over every daemon's log."""
        counts: Counter[str] = Counter()
        for daemon in self.daemons:
            counts.update(runs_of(daemon))
        return counts

    def completed(self) -> list[dict[str, Any]]:
        return records(self.spool(self.rig.a), "completed")

    def report(self) -> None:
        """Print the spool's folders and each daemon's last log lines: pytest shows them
        when the test failed (a rare failure is read from this, not from a rerun)."""
        spool = self.spool(self.rig.a)
        for folder in ("incoming", "pending", "running", "completed", "failed"):
            with contextlib.suppress(OSError):
                print(f"{folder}/: {sorted(p.name for p in (spool / folder).iterdir())}")
        for daemon in self.daemons:
            print(f"--- {daemon.workdir.name} (exit {daemon.proc.poll()}), last lines of its log:")
            print("\n".join(daemon.log().splitlines()[-80:]))


def runs_of(daemon: DaemonProcess) -> list[str]:
    try:
        return (daemon.workdir / "runs.log").read_text().split()
    except FileNotFoundError:
        return []


@pytest.fixture
def cluster(rig: NfsRig, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    made = Cluster(rig, request.node.name.replace("[", "-").rstrip("]"), tmp_path)
    (rig.a.mount / made.name).mkdir()
    yield made
    for daemon in made.daemons:
        daemon.kill()
    made.report()


def held_by(spool: Path, node: str) -> list[str]:
    """Running files a node's daemon holds."""
    return [n for n in job_files(spool, "running") if f"@{node}+" in n]


def job_ids(running: list[str]) -> list[str]:
    """The job ids in running file names."""
    return sorted(parse_stem(name.split("@")[0]).id for name in running)


def assert_each_recorded_once(cluster: Cluster, ids: list[str]) -> list[dict[str, Any]]:
    done = cluster.completed()
    assert sorted(r["id"] for r in done) == sorted(ids)
    assert job_files(cluster.spool(cluster.rig.a), "failed") == []
    return done


def test_two_hosts_share_a_thousand_jobs_and_run_each_once(cluster: Cluster) -> None:
    rig = cluster.rig
    a = cluster.start(rig.a, "host-a")
    b = cluster.start(rig.b, "host-b")
    ids = [f"j{n:04d}" for n in range(1000)]
    began = time.monotonic()
    cluster.drop_jobs(rig.a, ids[::2])
    cluster.drop_jobs(rig.b, ids[1::2])
    print("\ninjected: 1000 jobs, 500 dropped through each host's mount, daemons host-a/b")
    spool = cluster.spool(rig.a)

    def finished() -> int:  # completed or failed: a job wrongly failed fails the test fast
        return len(job_files(spool, "completed")) + len(job_files(spool, "failed"))

    wait_until(lambda: finished() >= 1000, 240, 0.5)
    took = time.monotonic() - began
    assert job_files(spool, "failed") == [], (a.log() + b.log())[-3000:]
    assert_each_recorded_once(cluster, ids)
    runs = cluster.runs()
    per_host = {"host-a": len(runs_of(a)), "host-b": len(runs_of(b))}
    print(f"found: 1000 recorded once in {took:.1f}s, runs per host {per_host},"
          f" ids run twice: {[i for i, n in runs.items() if n > 1]}")  # fmt: skip
    assert sorted(runs) == ids and set(runs.values()) == {1}
    assert per_host["host-a"] > 0 and per_host["host-b"] > 0
    assert "Traceback" not in a.log() + b.log()  # a file the other host took is just gone
    assert a.stop() == 0 and b.stop() == 0


def test_a_killed_host_s_jobs_are_recovered_by_the_other(cluster: Cluster) -> None:
    rig = cluster.rig
    a = cluster.start(rig.a, "host-a")
    cluster.start(rig.b, "host-b")
    ids = [f"k{n:02d}" for n in range(24)]
    cluster.drop_jobs(rig.a, ids, seconds=1.5, maxAttempts=3)
    spool = cluster.spool(rig.b)
    held = wait_until(
        lambda: held_by(spool, "host-a") if len(held_by(spool, "host-a")) >= 2 else [], 30
    )
    a.kill()
    killed = time.monotonic()
    print(f"\ninjected: kill -9 of host-a holding {len(held)} running job(s), leaseSeconds {LEASE}")
    wait_until(lambda: not held_by(spool, "host-a"), LEASE + 10, 0.1)
    recovered = time.monotonic() - killed
    wait_until(lambda: len(job_files(spool, "completed")) >= len(ids), 90, 0.2)
    done = assert_each_recorded_once(cluster, ids)
    runs = cluster.runs()
    twice = sorted(i for i, n in runs.items() if n > 1)
    held_ids = job_ids(held)
    print(
        f"found: host-b took back host-a's running files {recovered:.1f}s after the kill;"
        f" all {len(ids)} recorded once; run twice: {twice} (held at the kill: {held_ids})"
    )
    assert recovered <= LEASE + 2
    assert sorted(runs) == ids and set(twice) <= set(held_ids)
    attempts = {r["id"]: r["attempts"] for r in done}
    assert all(attempts[i] == 2 for i in twice)


def test_a_host_stalled_past_its_lease_loses_its_jobs_and_both_go_on(cluster: Cluster) -> None:
    """A stall (SIGSTOP) longer than leaseSeconds looks like a death to the other host; when
    the stalled one resumes, the jobs it held may run twice, and are still recorded once."""
    rig = cluster.rig
    a = cluster.start(rig.a, "host-a")
    b = cluster.start(rig.b, "host-b")
    ids = [f"p{n:02d}" for n in range(16)]
    cluster.drop_jobs(rig.a, ids, seconds=1.5, maxAttempts=3)
    spool = cluster.spool(rig.b)
    held = wait_until(lambda: held_by(spool, "host-a"), 30)
    os.kill(a.proc.pid, signal.SIGSTOP)
    stalled = time.monotonic()
    try:
        wait_until(lambda: not held_by(spool, "host-a"), LEASE + 10, 0.1)
        taken = time.monotonic() - stalled
    finally:
        os.kill(a.proc.pid, signal.SIGCONT)
    print(f"\ninjected: SIGSTOP of host-a holding {len(held)} running job(s) for {taken:.1f}s"
          f" (leaseSeconds {LEASE}), then SIGCONT")  # fmt: skip
    wait_until(lambda: len(job_files(spool, "completed")) >= len(ids), 90, 0.2)
    wait_until(lambda: not job_files(spool, "running") and not job_files(spool, "pending"), 30)
    assert_each_recorded_once(cluster, ids)
    runs = cluster.runs()
    twice = sorted(i for i, n in runs.items() if n > 1)
    held_ids = job_ids(held)
    print(
        f"found: all {len(ids)} recorded once, none left in pending/ or running/;"
        f" run twice: {twice} (held at the stall: {held_ids}); both still serving"
    )
    assert sorted(runs) == ids and set(twice) <= set(held_ids)
    assert a.proc.poll() is None and b.proc.poll() is None


def test_a_cron_task_fires_once_a_minute_with_two_hosts(cluster: Cluster) -> None:
    rig = cluster.rig
    task = {"name": "tick", "cron": "* * * * *", "job": {"type": "mark"}}
    cluster.start(rig.a, "host-a", schedule=[task])
    cluster.start(rig.b, "host-b", schedule=[task])
    print("\ninjected: task 'tick' every minute on both hosts; waiting for two minutes")
    spool = cluster.spool(rig.a)
    ticks = lambda: [r for r in cluster.completed() if r["id"].startswith("tick.")]  # noqa: E731
    wait_until(lambda: len(ticks()) >= 2, 135, 0.5)
    runs = cluster.runs()
    found = sorted(r["id"] for r in ticks())
    fires = sorted(n for n in os.listdir(spool / "schedule") if n.endswith(".fire"))
    print(f"found: runs {found}, markers {fires}, times run {dict(runs)}")
    assert len(set(found)) == len(found) and all(runs[i] == 1 for i in found)
    assert sorted(runs) == found and len(fires) == len(found)


def test_a_host_whose_clock_is_ten_seconds_ahead_runs_nothing_twice(cluster: Cluster) -> None:
    rig = cluster.rig
    libs = glob.glob("/usr/lib/*/faketime/libfaketime.so.1")
    if not libs:
        pytest.skip("faketime is not installed (.ci/run installs it)")
    # Ten seconds ahead on CLOCK_REALTIME only. FAKE_UTIME=1 leaves a touch without a
    # time to the file system, as a kernel NFS client leaves it to the server.
    skew = {"LD_PRELOAD": libs[0], "FAKETIME": "+10s", "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "FAKE_UTIME": "1"}  # fmt: skip
    a = cluster.start(rig.a, "host-a", env=skew)
    b = cluster.start(rig.b, "host-b")
    offset = _clock_offset(a)
    ids = [f"s{n:03d}" for n in range(160)]
    cluster.drop_jobs(rig.b, ids, seconds=0.3)
    print(
        f"\ninjected: host-a's clock {offset:+.1f}s off (faketime; host-b's"
        f" {_clock_offset(b):+.1f}s), leaseSeconds {LEASE}, {len(ids)} jobs of 0.3s"
    )
    assert 8 < offset < 12
    wait_until(lambda: len(job_files(cluster.spool(rig.a), "completed")) >= len(ids), 120, 0.5)
    assert_each_recorded_once(cluster, ids)
    runs = cluster.runs()
    twice = sorted(i for i, n in runs.items() if n > 1)
    recovered = [line for line in a.log().splitlines() if "recovered job" in line]
    print(
        f"found: all recorded once, runs per host {len(runs_of(a))}/{len(runs_of(b))},"
        f" run twice: {twice}, recoveries by host-a: {len(recovered)}"
    )
    assert twice == [] and recovered == [] and sorted(runs) == ids


def _clock_offset(daemon: DaemonProcess) -> float:
    """How far the daemon's clock is from the file server's: the time it wrote in its
    status file against the time the server stamped on that file."""
    path = daemon.spool / daemon.status_name
    written = datetime.fromisoformat(json.loads(path.read_bytes())["updatedAt"]).timestamp()
    return written - path.stat().st_mtime


def test_a_second_daemon_under_a_served_node_name_is_refused(cluster: Cluster) -> None:
    rig = cluster.rig
    first = cluster.start(rig.a, "twin")
    cluster.drop_jobs(rig.a, ["long"], seconds=6)
    spool = cluster.spool(rig.b)
    wait_until(lambda: held_by(spool, "twin"), 20)
    began = time.monotonic()
    second = cluster.start(rig.b, "twin", wait=False)
    print("\ninjected: a second daemon as node 'twin' through host b's mount")
    code = second.proc.wait(LEASE + 15)
    reason = second.log().strip().splitlines()[-1]
    print(f"found: exit {code} after {time.monotonic() - began:.1f}s: {reason}")
    assert code == 1 and "twin" in reason and "serves" in reason
    assert held_by(spool, "twin") and first.proc.poll() is None
    cluster.drop_jobs(rig.a, ["after"])
    wait_until(lambda: len(job_files(spool, "completed")) >= 2, 30, 0.2)
    assert_each_recorded_once(cluster, ["long", "after"])
    assert cluster.runs() == Counter({"long": 1, "after": 1})
    assert {r["id"]: r["attempts"] for r in cluster.completed()} == {"long": 1, "after": 1}
    assert json.loads((first.spool / first.status_name).read_bytes())["pid"] == first.proc.pid
