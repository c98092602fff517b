"""The daemon as a subprocess: a dropped job completes and status.json says so."""

from conftest import job_files, records, wait_until


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
