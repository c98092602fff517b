"""Cancelling a running job and its progress (issue 14, parts 3 and 4), end to end: the
daemon as a subprocess, plug-ins that take a JobContext, DELETE /jobs/<id> and
`spoold cancel`, with and without HTTP, and with two daemons on one spool."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from conftest import free_port, job_files, records, spoold_cli, wait_until
from helpers_api import Client
from helpers_servers import HANG, http_server, smtp_server

# Plug-ins that take the context, written beside the daemon's config (its working folder
# is on sys.path). Each leaves a file saying what it saw, so a test asserts on files.
CANCEL_PLUGINS = '''
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def patient(job, context):
    """Reports job['fraction'] and job['text'] once, then works until asked to stop."""
    context.progress(job.get("fraction", 0.5), job.get("text", "halfway"))
    steps = 0
    while not context.cancelled():
        steps += 1
        time.sleep(0.01)
    (HERE / (job["id"] + ".stopped")).write_text(str(steps))


def deaf(job, context):
    """Never looks at the context: runs until its timeout whatever anyone asks."""
    with open(HERE / (job["id"] + ".started"), "a") as f:
        f.write(str(job["attempts"]) + "\\n")
    time.sleep(3600)


def overshoot(job, context):
    """Reports a fraction past 1, which is refused."""
    context.progress(1.5, "too far")


def plain(job):
    """An old plug-in that takes only the job: it keeps working."""
    (HERE / (job["id"] + ".ran")).write_text(str(job["attempts"]))
'''
TYPES = {name: f"cancel_plugins:{name}" for name in ("patient", "deaf", "overshoot", "plain")}


def started(workdir: Path, job_id: str) -> bool:
    """True once `deaf` has written its line: the file exists a moment before that, and a
    kill -9 in that moment would leave it empty."""
    path = workdir / (job_id + ".started")
    return path.exists() and path.read_text().endswith("\n")


def write_plugins(workdir: Path) -> dict[str, str]:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "cancel_plugins.py").write_text(CANCEL_PLUGINS)
    return TYPES


def http(port: int) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": port}


def record_in(spool: Path, folder: str, job_id: str) -> dict[str, Any] | None:
    found = [r for r in records(spool, folder) if r["id"] == job_id]
    return found[0] if found else None


def running_in_status(daemon: Any, job_id: str) -> dict[str, Any] | None:
    running = daemon.status()["jobs"]["running"]
    return next((job for job in running if job["id"] == job_id), None)


def progress_in_status(daemon: Any, job_id: str) -> dict[str, Any] | None:
    shown = running_in_status(daemon, job_id)
    return shown["progress"] if shown else None


def cancel_requests(spool: Path) -> list[str]:
    folder = spool / "cancel"  # made with the first request
    return os.listdir(folder) if folder.exists() else []


def cancel_cli(workdir: Path, job_id: str) -> Any:
    return spoold_cli("cancel", job_id, "--config", str(workdir / "spoold.yaml"), cwd=workdir)


def test_a_running_plugin_reports_progress_and_stops_when_cancelled_over_http(
    start_daemon, tmp_path
):
    port = free_port()
    daemon = start_daemon(jobTypes=write_plugins(tmp_path), http=http(port), workers=1)
    with Client(port) as client:
        long_text = "<b>copying</b>\n" + "x" * 300
        job = {"type": "patient", "id": "long", "fraction": 0.25, "text": long_text}
        assert client.post("/jobs", job).status == 200
        shown = wait_until(lambda: client.get("/jobs/long").json.get("progress"))
        assert shown["fraction"] == 0.25
        assert shown["text"] == ("<b>copying</b> " + "x" * 300)[:200]  # one line, cut to 200
        assert client.get("/jobs/long").json["folder"] == "running"
        assert wait_until(lambda: progress_in_status(daemon, "long")) == shown
        assert running_in_status(daemon, "long")["cancelling"] is False

        reply = client.delete("/jobs/long")
        assert reply.status == 202
        assert reply.json == {"success": True, "jobId": "long", "status": "cancelling"}
        record = wait_until(lambda: record_in(daemon.spool, "failed", "long"))
        assert record["status"] == "failed" and record["error"] == "cancelled"
        assert record["attempts"] == 1 and record["maxAttempts"] > 1  # and not retried:
        assert (tmp_path / "long.stopped").exists()
        assert record_in(daemon.spool, "pending", "long") is None
        assert client.get("/jobs/long").json["folder"] == "failed"
        assert "progress" not in client.get("/jobs/long").json  # only a running job has one

        finished = client.delete("/jobs/long")
        assert finished.status == 409 and "failed" in finished.error
        assert client.delete("/jobs/never-was").status == 404
        assert client.post("/jobs", {"type": "noop", "id": "after"}).status == 200
        wait_until(lambda: record_in(daemon.spool, "completed", "after"))
    assert not (daemon.spool / "cancel").exists()  # the daemon running it needs no file
    assert daemon.stop() == 0


def test_a_plugin_that_ignores_the_cancel_stops_at_its_timeout_and_is_not_retried(
    start_daemon, tmp_path
):
    port = free_port()
    daemon = start_daemon(jobTypes=write_plugins(tmp_path), http=http(port))
    with Client(port) as client:
        client.post("/jobs", {"type": "deaf", "id": "deaf", "timeout": 2, "maxAttempts": 3})
        wait_until(lambda: started(tmp_path, "deaf"))
        assert client.delete("/jobs/deaf").status == 202
        [running] = client.get("/status").json["jobs"]["running"]
        assert running["id"] == "deaf" and running["cancelling"] is True
        record = wait_until(lambda: record_in(daemon.spool, "failed", "deaf"), 10)
        assert record["error"] == "cancelled" and record["attempts"] == 1
        assert record["durationMs"] >= 1900  # it ran on after the request, to its timeout
        assert client.delete("/jobs/deaf").status == 409
    assert daemon.stop() == 0


def test_a_job_asked_to_stop_that_outlives_the_shutdown_grace_is_recorded_cancelled(
    start_daemon, tmp_path
):
    port = free_port()
    daemon = start_daemon(jobTypes=write_plugins(tmp_path), http=http(port), shutdownGrace=0.5)
    with Client(port) as client:
        client.post("/jobs", {"type": "deaf", "id": "stubborn", "timeout": 60})
        wait_until(lambda: started(tmp_path, "stubborn"))
        assert client.delete("/jobs/stubborn").status == 202
    assert daemon.stop() == 0
    record = record_in(daemon.spool, "failed", "stubborn")
    assert record and record["error"] == "cancelled" and record["attempts"] == 1
    assert job_files(daemon.spool, "pending") == job_files(daemon.spool, "running") == []


def test_a_cancel_asked_while_no_daemon_runs_the_job_is_honoured_at_recovery(
    start_daemon, tmp_path
):
    daemon = start_daemon(jobTypes=write_plugins(tmp_path))
    daemon.drop("d.json", {"type": "deaf", "id": "orphan", "maxAttempts": 3})
    wait_until(lambda: started(tmp_path, "orphan"))
    daemon.kill()  # kill -9: the job stays in running/, held by no one
    result = cancel_cli(tmp_path, "orphan")
    assert result.returncode == 0 and "asked to stop" in result.stdout, result.stderr
    assert cancel_requests(daemon.spool) == ["orphan"]

    again = start_daemon(jobTypes=TYPES)  # recovers its own node's running files at start
    record = record_in(again.spool, "failed", "orphan")
    assert record and record["error"] == "cancelled" and record["attempts"] == 1
    assert job_files(again.spool, "pending") == job_files(again.spool, "running") == []
    assert cancel_requests(again.spool) == []
    assert (tmp_path / "orphan.started").read_text() == "1\n"  # never run again
    assert again.stop() == 0


def test_a_plugin_that_takes_only_the_job_and_a_bad_progress_report(start_daemon, tmp_path):
    daemon = start_daemon(jobTypes=write_plugins(tmp_path))
    daemon.drop("p.json", {"type": "plain", "id": "plain"})
    daemon.drop("o.json", {"type": "overshoot", "id": "over", "maxAttempts": 1})
    wait_until(lambda: record_in(daemon.spool, "completed", "plain"))
    assert (tmp_path / "plain.ran").read_text() == "1"
    record = wait_until(lambda: record_in(daemon.spool, "failed", "over"))
    assert "progress fraction must be from 0 to 1, got 1.5" in record["error"]
    assert daemon.stop() == 0


def test_spoold_cancel_without_http_for_pending_running_and_finished_jobs(start_daemon, tmp_path):
    daemon = start_daemon(jobTypes=write_plugins(tmp_path))
    daemon.drop("later.json", {"type": "noop", "id": "later", "runAt": "2999-01-01T00:00:00Z"})
    daemon.drop("now.json", {"type": "patient", "id": "now"})
    wait_until(lambda: any("-later" in name for name in job_files(daemon.spool, "pending")))
    wait_until(lambda: running_in_status(daemon, "now"))

    pending = cancel_cli(tmp_path, "later")
    assert pending.returncode == 0, pending.stderr
    assert pending.stdout.startswith("failed/") and "later" in pending.stdout
    assert record_in(daemon.spool, "failed", "later")["error"] == "cancelled"

    running = cancel_cli(tmp_path, "now")
    assert running.returncode == 0, running.stderr
    assert "asked to stop" in running.stdout
    record = wait_until(lambda: record_in(daemon.spool, "failed", "now"))
    assert record["error"] == "cancelled" and record["attempts"] == 1
    assert (tmp_path / "now.stopped").exists()
    wait_until(lambda: cancel_requests(daemon.spool) == [])

    finished = cancel_cli(tmp_path, "now")
    assert finished.returncode == 1 and "failed" in finished.stderr
    unknown = cancel_cli(tmp_path, "no-such-job")
    assert unknown.returncode == 1 and "no-such-job" in unknown.stderr
    assert daemon.stop() == 0


def test_a_cancel_reaches_the_daemon_holding_the_job_through_another_daemon(start_daemon, tmp_path):
    port = free_port()
    spool = str(tmp_path / "spool")
    holder = start_daemon(
        workdir=tmp_path / "a", spool=spool, node="a", jobTypes=write_plugins(tmp_path / "a")
    )
    holder.drop("j.json", {"type": "patient", "id": "elsewhere"})
    wait_until(lambda: running_in_status(holder, "elsewhere"))
    other = start_daemon(
        workdir=tmp_path / "b",
        spool=spool,
        node="b",
        workers=1,
        http=http(port),
        jobTypes=write_plugins(tmp_path / "b"),
    )
    with Client(port) as client:
        assert client.get("/jobs/elsewhere").json["progress"] is None  # not running on b
        reply = client.delete("/jobs/elsewhere")
        assert reply.status == 202, reply.body
    record = wait_until(lambda: record_in(holder.spool, "failed", "elsewhere"))
    assert record["error"] == "cancelled"
    assert (tmp_path / "a" / "elsewhere.stopped").exists()  # a ran it, and a stopped it
    wait_until(lambda: cancel_requests(holder.spool) == [])
    assert holder.stop() == 0 and other.stop() == 0


@contextmanager
def held_proxy(port: int, release: threading.Event) -> Iterator[tuple[int, threading.Event]]:
    """A TCP proxy on 127.0.0.1 to `port` that accepts one client and passes nothing on
    until `release` is set: a server that is slow to greet. Yields its port and an event
    set once the client has connected."""
    listener = socket.create_server(("127.0.0.1", 0))
    connected = threading.Event()

    def pipe(source: socket.socket, target: socket.socket) -> None:
        with source, target:
            while data := source.recv(65536):
                target.sendall(data)

    def serve() -> None:
        client, _ = listener.accept()
        connected.set()
        release.wait(30)
        server = socket.create_connection(("127.0.0.1", port))
        threading.Thread(target=pipe, args=(server, client.dup()), daemon=True).start()
        pipe(client, server.dup())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], connected
    finally:
        release.set()
        listener.close()


def test_send_email_asked_to_stop_while_connecting_sends_nothing(start_daemon, tmp_path):
    release = threading.Event()
    with smtp_server() as smtp, held_proxy(smtp.port, release) as (port, connected):
        section = {**smtp.config_section(), "port": port, "from": "spoold@example.org"}
        daemon = start_daemon(smtp=section)
        daemon.drop("m.json", {"type": "send_email", "id": "mail", "to": ["a@example.com"],
                               "subject": "hi", "body": "x"})  # fmt: skip
        assert connected.wait(10)  # the job is running: connected, waiting for the greeting
        result = cancel_cli(tmp_path, "mail")
        assert result.returncode == 0 and "asked to stop" in result.stdout, result.stderr
        wait_until(lambda: (running_in_status(daemon, "mail") or {}).get("cancelling"))
        release.set()  # the greeting comes; the job's next step is the message: not sent
        record = wait_until(lambda: record_in(daemon.spool, "failed", "mail"))
        assert record["error"] == "cancelled" and record["attempts"] == 1
        assert smtp.messages == []
        assert daemon.stop() == 0


def test_a_webhook_waiting_for_a_slow_answer_stops_at_once_when_cancelled(start_daemon, tmp_path):
    port = free_port()
    with http_server(HANG) as web:  # takes the POST, answers nothing until it stops
        daemon = start_daemon(http=http(port), webhook={"timeout": 60})
        with Client(port) as client:
            job = {"type": "webhook", "id": "hook", "url": f"{web.url}/slow", "payload": {}}
            assert client.post("/jobs", job).status == 200
            web.wait_for(1)
            asked = time.monotonic()
            assert client.delete("/jobs/hook").status == 202
            record = wait_until(lambda: record_in(daemon.spool, "failed", "hook"))
        assert time.monotonic() - asked < 10  # not at its 60 s timeout
        assert record["error"] == "cancelled" and record["attempts"] == 1
        assert record["maxAttempts"] == 5 and record["durationMs"] < 10_000
        assert daemon.stop() == 0


def test_only_stale_requests_are_dropped_from_cancel_never_other_files(start_daemon):
    """A request for a job no daemon runs is dropped a lease long after it was made. Any
    other old file in cancel/ is not spoold's and stays: one with content, one whose name
    is no job id, a folder (before, every old name there was removed: were the folder
    swapped for a link to /etc, its files)."""
    daemon = start_daemon(leaseSeconds=2)
    cancel = daemon.spool / "cancel"
    cancel.mkdir(exist_ok=True)
    (cancel / "stale-one").write_bytes(b"")
    (cancel / "passwd").write_bytes(b"root:x:0:0::/root:/bin/sh\n")
    (cancel / "not an id").write_bytes(b"")
    (cancel / "dir").mkdir()
    for name in os.listdir(cancel):
        os.utime(cancel / name, (time.time() - 3600, time.time() - 3600))
    wait_until(lambda: not (cancel / "stale-one").exists(), timeout=15)
    time.sleep(1.5)  # proves an absence: three more housekeeping passes (every 0.5 s)
    assert sorted(os.listdir(cancel)) == ["dir", "not an id", "passwd"]
    assert (cancel / "passwd").read_bytes() == b"root:x:0:0::/root:/bin/sh\n"
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.log()


def test_a_housekeeping_step_that_fails_does_not_keep_the_others_from_running(start_daemon):
    """Fault: a folder in tmp/ named as a dead daemon's temporary file, which the clean-up
    of tmp/ cannot unlink (EISDIR) at each pass. Before, that error ended the whole pass,
    so stale cancel requests and old records were never dropped again; now the step's
    failure is logged and the steps after it run."""
    daemon = start_daemon(leaseSeconds=2)
    stuck = daemon.spool / "tmp" / "gone+host.7.3.tmp"
    stuck.mkdir()
    os.utime(stuck, (time.time() - 3600, time.time() - 3600))
    cancel = daemon.spool / "cancel"
    cancel.mkdir(exist_ok=True)
    (cancel / "stale-one").write_bytes(b"")
    os.utime(cancel / "stale-one", (time.time() - 3600, time.time() - 3600))
    wait_until(lambda: not (cancel / "stale-one").exists(), timeout=15)
    wait_until(lambda: "housekeeping: cleaning tmp/ failed, trying again later:" in daemon.log())
    print(f"found in the log: {daemon.log().splitlines()[-1]}")
    assert stuck.is_dir()
    assert daemon.stop() == 0


def at_once(calls: list[Any]) -> list[Any]:
    """Run the calls on threads released together; their results in order."""
    start, results = threading.Barrier(len(calls)), [None] * len(calls)

    def run(n: int) -> None:
        start.wait()
        results[n] = calls[n]()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def test_retries_of_one_job_at_once_enqueue_it_once(start_daemon, plugins):
    """Eight POST /jobs/{id}/retry of one failed job at the same moment (a double click,
    a script beside the dashboard): one is taken, the others answer 409 (the job is
    pending, running or done), the job runs once more, and the counts stay true. Before,
    several answered 200, and the failed count went below zero."""
    port = free_port()
    daemon = start_daemon(jobTypes=plugins.types, http={"host": "127.0.0.1", "port": port})
    daemon.drop("f.json", {"type": "flaky", "id": "f", "failTimes": 1, "maxAttempts": 1})
    wait_until(lambda: record_in(daemon.spool, "failed", "f"))
    clients = [Client(port) for _ in range(8)]
    try:
        replies = at_once([lambda c=c: c.post("/jobs/f/retry") for c in clients])
        codes = sorted(reply.status for reply in replies)
        print(f"found: 8 retries at once answered {codes}")
        assert codes == [200] + [409] * 7
        wait_until(lambda: record_in(daemon.spool, "completed", "f"))
        time.sleep(1.0)  # proves an absence: no third run
        assert len(plugins.calls("f")) == 2 and records(daemon.spool, "failed") == []
        queue = clients[0].get("/jobs/stats").json["queue"]
        assert (queue["failed"], queue["completed"]) == (0, 1)
    finally:
        for client in clients:
            client.close()
    assert daemon.stop() == 0


def test_cancels_of_one_pending_job_at_once_leave_no_request_behind(start_daemon):
    """Six DELETE /jobs/{id} of one pending job at once: one cancels it, the others answer
    409 (it has finished), and no request is left in cancel/ to stop the job later.
    Before, some answered 202 'cancelling' and left requests behind."""
    port = free_port()
    daemon = start_daemon(http={"host": "127.0.0.1", "port": port})
    daemon.drop("p.json", {"type": "noop", "id": "p", "runAt": "2999-01-01T00:00:00Z"})
    clients = [Client(port) for _ in range(6)]
    try:
        wait_until(lambda: clients[0].get("/jobs/p").status == 200)
        replies = at_once([lambda c=c: c.delete("/jobs/p") for c in clients])
        codes = sorted(reply.status for reply in replies)
        print(f"found: 6 cancels at once answered {codes}")
        assert codes == [200] + [409] * 5
        assert cancel_requests(daemon.spool) == []
    finally:
        for client in clients:
            client.close()
    assert daemon.stop() == 0


def test_a_request_to_cancel_left_from_before_does_not_stop_a_retried_job(start_daemon, tmp_path):
    """A stale cancel/<id> (left by a cancel that raced the job's end, say) is dropped
    when the job is retried. Before, the retried run was cancelled by it at once."""
    daemon = start_daemon(jobTypes=write_plugins(tmp_path))
    daemon.drop("now.json", {"type": "patient", "id": "now"})
    wait_until(lambda: running_in_status(daemon, "now"))
    assert cancel_cli(tmp_path, "now").returncode == 0
    wait_until(lambda: record_in(daemon.spool, "failed", "now"))
    wait_until(lambda: cancel_requests(daemon.spool) == [])
    (daemon.spool / "cancel" / "now").write_bytes(b"")  # left from before
    retried = spoold_cli("retry", "now", "--config", str(tmp_path / "spoold.yaml"), cwd=tmp_path)
    assert retried.returncode == 0, retried.stderr
    wait_until(lambda: running_in_status(daemon, "now"))
    time.sleep(1.5)  # proves an absence: three polls of cancel/ (every 0.5 s) stop nothing
    assert running_in_status(daemon, "now") and record_in(daemon.spool, "failed", "now") is None
    assert cancel_cli(tmp_path, "now").returncode == 0  # a request made now still works
    record = wait_until(lambda: record_in(daemon.spool, "failed", "now"))
    assert record["error"] == "cancelled" and record["previousErrors"] == ["cancelled"]
    assert daemon.stop() == 0
