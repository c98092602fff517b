"""The daemon as a subprocess: a dropped job completes and status.json says so."""

from conftest import daemon_env, job_files, records, wait_until


def test_dropped_job_completes_and_status_counts_it(start_daemon):
    daemon = start_daemon()
    daemon.drop("hello.json", {"type": "noop", "id": "hello-1"})
    wait_until(lambda: records(daemon.spool, "completed"))
    [record] = records(daemon.spool, "completed")
    assert record["id"] == "hello-1"
    assert record["status"] == "completed"
    assert record["attempts"] == 1
    assert job_files(daemon.spool, "incoming") == []
    wait_until(lambda: daemon.status()["queue"]["completed"] == 1)
    assert daemon.stop() == 0


def test_a_second_daemon_under_the_same_node_name_is_refused(start_daemon, tmp_path):
    """Two daemons with `node` unset on one spool would recover each other's jobs."""
    import subprocess
    import sys

    first = start_daemon()
    second = subprocess.run(
        [sys.executable, "-m", "spoold", "run", "--config", str(first.config_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, env=daemon_env(),
    )  # fmt: skip
    assert second.returncode != 0
    assert f"pid {first.proc.pid}" in second.stderr and "--node" in second.stderr
    first.drop("after.json", {"type": "noop", "id": "after"})
    wait_until(lambda: records(first.spool, "completed"))
    assert first.stop() == 0
