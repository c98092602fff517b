"""Storage faults, for real, while jobs run: a full disk (a 2 MiB tmpfs spool filled
with a ballast file) and a read-only spool (a read-only bind mount over it).

While records cannot be written the daemon keeps each outcome, claims nothing new,
and says so (status.json where it can be written, /healthz, /metrics, POST /jobs);
once the fault is gone it resumes by itself and records every job once, with its
true outcome.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import (
    DaemonProcess,
    Plugins,
    base_config,
    free_port,
    job_files,
    none_running,
    records,
    spoold_cli,
    wait_until,
)
from helpers_api import Client

from .mounts import fill, read_only, small_disk

JOBS = 12
WORKERS = 2


def storage(daemon: DaemonProcess) -> dict:
    try:
        return daemon.status().get("storage") or {}
    except (OSError, ValueError):
        return {}


def called(plugins: Plugins) -> int:
    return len(plugins.order())


def metric(client: Client, name: str) -> float | None:
    for line in client.get("/metrics").body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


@pytest.mark.parametrize("durability", ["relaxed", "fsync"])
def test_a_full_disk_pauses_the_daemon_and_every_job_keeps_its_true_outcome(
    tmp_path: Path, plugins: Plugins, durability: str
) -> None:
    with small_disk(tmp_path / "spool"):
        port = free_port()
        config = base_config(jobTypes=plugins.types, workers=WORKERS, durability=durability,
                             http={"host": "127.0.0.1", "port": port})  # fmt: skip
        daemon = DaemonProcess(tmp_path, config, []).wait_ready()
        client = Client(port)
        try:
            for n in range(JOBS):
                daemon.drop(f"j{n}.json", {"type": "slow", "id": f"j{n}"})
            wait_until(lambda: called(plugins) == WORKERS)  # two run, the rest wait
            # written before the disk fills, published (renamed) while it is full
            late = {"late.json": b'{"type": "slow", "id": "late"}', "bad.json": b"{not json"}
            for name, data in late.items():
                (daemon.incoming / f".{name}").write_bytes(data)
            ballast = daemon.spool / "ballast"
            filled = fill(ballast)
            print(f"injected: a ballast of {filled} bytes fills the 2 MiB spool ({durability})")
            for job_id in plugins.order():  # they succeed; their records cannot be written
                plugins.release(job_id)

            wait_until(lambda: storage(daemon).get("ok") is False, timeout=15)
            found = storage(daemon)
            print(f"found in status.json: {found}")
            assert "ENOSPC" in found["error"] and str(daemon.spool) in found["error"]
            assert found["since"]
            shown = spoold_cli("status", "--config", str(daemon.config_path), cwd=tmp_path)
            assert f"STORAGE ERROR since {found['since']}: {found['error']}" in shown.stdout
            health = client.get("/healthz")
            assert health.status == 503
            assert health.json == {"status": "storage-error", "error": found["error"]}
            assert metric(client, "spoold_storage_ok") == 0
            posted = client.post("/jobs", {"type": "slow", "id": "posted"})
            assert posted.status == 503 and "ENOSPC" in posted.error
            print(f"found: /healthz 503, spoold_storage_ok 0, POST /jobs {posted.status}")

            plugins.release()  # any job claimed before the first failure ends too
            for name in late:
                (daemon.incoming / f".{name}").rename(daemon.incoming / name)
            claimed = called(plugins)
            time.sleep(1.0)  # proving an absence: nothing new is claimed while writes fail
            assert called(plugins) == claimed <= 2 * WORKERS
            assert job_files(daemon.spool, "failed") == []  # the bad file waits for room
            assert (daemon.incoming / "bad.json").read_bytes() == late["bad.json"]
            assert job_files(daemon.spool, "completed") == []
            held = job_files(daemon.spool, "running")
            print(f"found: {claimed} job(s) run, {len(held)} outcome(s) held, failed/ empty")

            freed_at = time.monotonic()
            ballast.unlink()
            wait_until(lambda: len(job_files(daemon.spool, "completed")) == JOBS + 1, timeout=20)
            resumed = time.monotonic() - freed_at
            print(f"found: every job completed {resumed:.1f}s after the ballast went")
            assert resumed < 10
            wait_until(lambda: storage(daemon).get("ok") is True, timeout=5)
            assert storage(daemon) == {"ok": True, "error": None, "since": None}
            assert client.get("/healthz").status == 200
            assert metric(client, "spoold_storage_ok") == 1

            done = records(daemon.spool, "completed")
            ids = [f"j{n}" for n in range(JOBS)] + ["late"]
            assert sorted(r["id"] for r in done) == sorted(ids)
            assert all(r["attempts"] == 1 and r["error"] is None for r in done)
            assert all(len(plugins.calls(job_id)) == 1 for job_id in ids)
            wait_until(lambda: job_files(daemon.spool, "failed") == ["bad.json"])
            assert (daemon.spool / "failed" / "bad.json").read_bytes() == late["bad.json"]
            assert (daemon.spool / "failed" / "bad.json.error.json").exists()
            wait_until(lambda: none_running(daemon.spool))
            assert "Traceback" not in daemon.log()
            assert daemon.stop() == 0
            status = json.loads((daemon.spool / "status.json").read_bytes())
            assert status["storage"]["ok"] is True
        finally:
            client.close()
            daemon.kill()


def test_operator_verbs_on_a_full_disk_answer_503_or_work_never_500(
    tmp_path: Path, plugins: Plugins
) -> None:
    """Fault: a 2 MiB tmpfs spool filled by a ballast file, then a run of a task and the
    retry of a failed job asked over HTTP. A run needs a new file written: it answers 503
    with the disk's words (before, a 500 "internal error" and a traceback in the log) and
    enqueues nothing. A retry may still find room in the spool's spare files: it either
    works or answers 503 with the job still failed. Once the ballast is gone both work."""
    with small_disk(tmp_path / "spool"):
        port = free_port()
        task = {"name": "t", "cron": "0 0 1 1 *", "job": {"type": "noop"}}
        config = base_config(jobTypes=plugins.types, schedule=[task],
                             http={"host": "127.0.0.1", "port": port})  # fmt: skip
        daemon = DaemonProcess(tmp_path, config, []).wait_ready()
        client = Client(port)
        try:
            daemon.drop("f.json", {"type": "fail", "id": "f", "maxAttempts": 1})
            wait_until(lambda: [r["id"] for r in records(daemon.spool, "failed")] == ["f"])
            ballast = daemon.spool / "ballast"
            print(f"injected: a ballast of {fill(ballast)} bytes fills the 2 MiB spool")
            ran = client.post("/scheduler/t/run")
            print(f"found: POST /scheduler/t/run {ran.status} {ran.body!r}")
            assert ran.status == 503
            assert ran.error.startswith("the spool could not be written: writing pending/")
            assert "ENOSPC (No space left on device)" in ran.error
            assert client.get("/scheduler").json["tasks"][0]["isRunning"] is False
            retried = client.post("/jobs/f/retry")
            print(f"found: POST /jobs/f/retry {retried.status} {retried.body!r}")
            assert retried.status in (200, 503)
            if retried.status == 503:
                assert "No space left on device" in retried.error
                assert [r["id"] for r in records(daemon.spool, "failed")] == ["f"]
            ballast.unlink()
            wait_until(lambda: client.get("/healthz").status == 200, timeout=15)
            if retried.status == 503:
                assert client.post("/jobs/f/retry").status == 200
            ran = client.post("/scheduler/t/run")
            assert ran.status == 200, ran.body
            done = lambda: [r["id"] for r in records(daemon.spool, "completed")]  # noqa: E731
            wait_until(lambda: ran.json["jobId"] in done())
            wait_until(lambda: len(plugins.calls("f")) == 2)
            assert "Traceback" not in daemon.log()
            assert daemon.stop() == 0
        finally:
            client.close()
            daemon.kill()


def test_a_read_only_spool_pauses_the_daemon_until_it_is_writable_again(
    tmp_path: Path, plugins: Plugins
) -> None:
    port = free_port()
    config = base_config(jobTypes=plugins.types, workers=WORKERS,
                         http={"host": "127.0.0.1", "port": port})  # fmt: skip
    daemon = DaemonProcess(tmp_path, config, []).wait_ready()
    client = Client(port)
    try:
        for n in range(JOBS):
            daemon.drop(f"j{n}.json", {"type": "slow", "id": f"j{n}"})
        wait_until(lambda: called(plugins) == WORKERS)
        with read_only(daemon.spool) as writable_again:
            print("injected: the spool made read-only (a read-only bind mount over it)")
            plugins.release()

            wait_until(lambda: client.get("/healthz").status == 503, timeout=15)
            health = client.get("/healthz").json
            print(f"found: /healthz {health}")
            assert health["status"] == "storage-error" and "EROFS" in health["error"]
            assert "remount that file system read-write" in health["error"]
            assert metric(client, "spoold_storage_ok") == 0
            claimed = called(plugins)
            time.sleep(1.0)  # proving an absence: nothing new is claimed while writes fail
            assert called(plugins) == claimed <= 2 * WORKERS
            assert job_files(daemon.spool, "failed") == []

            writable_again()
            wait_until(lambda: len(job_files(daemon.spool, "completed")) == JOBS, timeout=20)
            wait_until(lambda: client.get("/healthz").status == 200, timeout=5)
            done = records(daemon.spool, "completed")
            assert all(r["attempts"] == 1 and r["error"] is None for r in done)
            assert all(len(plugins.calls(f"j{n}")) == 1 for n in range(JOBS))
            wait_until(lambda: storage(daemon).get("ok") is True, timeout=5)
            print(f"found: {len(done)} jobs completed once once it was writable again")
            assert daemon.stop() == 0
    finally:
        client.close()
        daemon.kill()


def test_while_writes_fail_the_daemon_keeps_its_lease_and_no_other_recovers_its_jobs(
    tmp_path: Path,
) -> None:
    lease = 1.0
    with small_disk(tmp_path / "spool") as spool:
        homes = {node: tmp_path / node for node in ("a", "b")}
        for home in homes.values():
            home.mkdir()
        plugins = Plugins(homes["a"])
        Plugins(homes["b"])  # the same job types for b, should it take a job

        def start(node: str) -> DaemonProcess:
            config = base_config(jobTypes=plugins.types, workers=WORKERS, spool=str(spool),
                                 node=node, leaseSeconds=lease, rescanSeconds=0.2)  # fmt: skip
            return DaemonProcess(homes[node], config, []).wait_ready()

        a = start("a")
        b = None
        try:
            for n in range(WORKERS):
                a.drop(f"j{n}.json", {"type": "slow", "id": f"j{n}"})
            wait_until(lambda: called(plugins) == WORKERS)  # a holds both
            b = start("b")
            filled = fill(spool / "ballast")
            plugins.release()
            wait_until(lambda: storage(a).get("ok") is False, timeout=15)
            print(f"injected: a {filled}-byte ballast while node a held {WORKERS} jobs")
            time.sleep(4 * lease)  # proving an absence: b recovers nothing of a's
            assert "recovered job" not in b.log()
            assert len(job_files(spool, "running")) == WORKERS
            assert all(n.endswith(f"@{a.status()['worker']['workerId']}.json")
                       for n in job_files(spool, "running"))  # fmt: skip

            (spool / "ballast").unlink()
            wait_until(lambda: len(job_files(spool, "completed")) == WORKERS, timeout=20)
            done = records(spool, "completed")
            assert all(r["attempts"] == 1 and r["error"] is None for r in done)
            assert all(len(plugins.calls(f"j{n}")) == 1 for n in range(WORKERS))
            print(f"found: b recovered nothing in {4 * lease:.0f}s; a recorded both once")
        finally:
            a.kill()
            if b is not None:
                b.kill()
