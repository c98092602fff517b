"""The sd_notify protocol end to end: the test plays systemd, a real AF_UNIX datagram
socket in tmp_path (or an abstract one), and the daemon a real subprocess with
NOTIFY_SOCKET and WATCHDOG_USEC set."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.request
import uuid
from itertools import pairwise
from pathlib import Path

import pytest
from conftest import free_port, job_files, wait_until

from spoold.notify import Notifier, SystemdLink

WATCHDOG_USEC = 400_000  # a ping every 0.2 s


class ServiceManager:
    """systemd's end of sd_notify: keeps every datagram with the time it arrived."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind("\0" + address[1:] if address.startswith("@") else address)
        self.socket.setblocking(False)
        self.received: list[tuple[float, dict[str, str]]] = []

    def receive(self) -> list[tuple[float, dict[str, str]]]:
        """Everything received so far (what waits in the socket is read now)."""
        while True:
            try:
                data = self.socket.recv(4096)
            except BlockingIOError:
                return self.received
            fields = dict(line.split("=", 1) for line in data.decode().split("\n"))
            self.received.append((time.monotonic(), fields))

    def with_key(self, key: str) -> list[tuple[float, dict[str, str]]]:
        return [(at, fields) for at, fields in self.receive() if key in fields]

    def wait_for(self, key: str, value: str | None = None, timeout: float = 15.0) -> float:
        """When the first message with key (=value) arrived."""

        def arrived() -> float | None:
            for at, fields in self.with_key(key):
                if value is None or fields[key] == value:
                    return at
            return None

        return wait_until(arrived, timeout)

    def statuses(self) -> list[str]:
        return [fields["STATUS"] for _, fields in self.with_key("STATUS")]

    def close(self) -> None:
        self.socket.close()


@pytest.fixture
def manager(tmp_path: Path):
    manager = ServiceManager(str(tmp_path / "notify"))
    yield manager
    manager.close()


def notify_env(manager: ServiceManager, usec: int | str = WATCHDOG_USEC) -> dict[str, str | None]:
    return {"NOTIFY_SOCKET": manager.address, "WATCHDOG_USEC": str(usec)}


def get(port: int, path: str) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
        return answer.status


def test_ready_comes_once_the_api_answers_and_the_spool_is_scanned(manager, start_daemon):
    port = free_port()
    daemon = start_daemon(env=notify_env(manager), http={"host": "127.0.0.1", "port": port})
    manager.wait_for("READY", "1")
    log = daemon.log()  # start() logs these last, before READY is sent
    assert "HTTP API on http://127.0.0.1" in log and " serving " in log
    assert get(port, "/healthz") == 200  # at once: no waiting after READY
    assert daemon.status()["pid"] == daemon.proc.pid  # the start-up scan is done
    [(_, ready)] = manager.with_key("READY")
    assert ready["STATUS"] == "pending 0, running 0, completed 0, failed 0"
    assert daemon.stop() == 0
    assert len(manager.with_key("READY")) == 1


def test_watchdog_pings_come_every_half_period(manager, start_daemon):
    start_daemon(env=notify_env(manager))
    ready = manager.wait_for("READY", "1")
    wait_until(lambda: len(manager.with_key("WATCHDOG")) >= 11)
    pings = [at for at, _ in manager.with_key("WATCHDOG")]
    assert pings[0] - ready < 0.5  # the first one comes with READY, not a period later
    gaps = (pings[-1] - pings[0]) / (len(pings) - 1)
    assert 0.15 <= gaps <= 0.3, f"{gaps:.3f}s between pings, not ~0.2s"
    assert all(fields == {"WATCHDOG": "1"} for _, fields in manager.with_key("WATCHDOG"))


def test_no_watchdog_period_no_pings(manager, start_daemon):
    start_daemon(env={"NOTIFY_SOCKET": manager.address})
    manager.wait_for("READY", "1")
    time.sleep(1.0)  # proves an absence
    assert manager.with_key("WATCHDOG") == []


def test_pings_for_another_process_are_not_ours_to_send(manager, start_daemon):
    env = {**notify_env(manager), "WATCHDOG_PID": "1"}
    start_daemon(env=env)
    manager.wait_for("READY", "1")
    time.sleep(1.0)  # proves an absence
    assert manager.with_key("WATCHDOG") == []


def test_status_shows_the_queue_when_it_changes_at_most_once_a_second(manager, start_daemon):
    daemon = start_daemon(env=notify_env(manager))
    manager.wait_for("READY", "1")
    assert manager.statuses() == ["pending 0, running 0, completed 0, failed 0"]
    began = time.monotonic()
    for n in range(30):  # the queue changes all the time for ~1.5 s
        daemon.drop(f"job-{n}.json", {"type": "noop"})
        time.sleep(0.05)
    daemon.drop("broken.json", b"{not json")
    final = "pending 0, running 0, completed 30, failed 1"
    manager.wait_for("STATUS", final)
    elapsed = time.monotonic() - began
    changes = manager.statuses()[1:]
    assert len(changes) <= elapsed / 1.0 + 1, f"{len(changes)} STATUS in {elapsed:.1f}s"
    statuses = manager.statuses()
    assert all(a != b for a, b in pairwise(statuses))  # each one a change
    time.sleep(1.2)  # proves an absence: no change, no STATUS
    assert manager.statuses()[-1] == final and len(manager.statuses()) == len(changes) + 1


def test_sigterm_sends_stopping_before_the_daemon_exits(manager, start_daemon):
    daemon = start_daemon(env=notify_env(manager), shutdownGrace=3)
    manager.wait_for("READY", "1")
    daemon.proc.send_signal(signal.SIGTERM)
    manager.wait_for("STOPPING", "1")
    assert daemon.stop() == 0
    [(stopped, fields)] = manager.with_key("STOPPING")
    assert fields["STATUS"] == "stopping: running jobs get 3s"
    assert fields["EXTEND_TIMEOUT_USEC"] == str((3 + 15) * 1_000_000)
    assert all(at <= stopped for at, _ in manager.with_key("WATCHDOG"))


def test_an_abstract_socket_name_is_used(start_daemon):
    manager = ServiceManager(f"@spoold-test-{uuid.uuid4().hex}")
    try:
        start_daemon(env=notify_env(manager))
        manager.wait_for("READY", "1")
        manager.wait_for("WATCHDOG", "1")
    finally:
        manager.close()


PLUGIN = '''
def die(job):
    """Ends the worker thread that runs it: SystemExit is no Exception the worker catches."""
    raise SystemExit(3)
'''


def test_a_dead_worker_thread_stops_the_pings_until_it_is_replaced(manager, start_daemon, tmp_path):
    (tmp_path / "notify_plugins.py").write_text(PLUGIN)
    daemon = start_daemon(env=notify_env(manager), jobTypes={"die": "notify_plugins:die"})
    manager.wait_for("READY", "1")
    daemon.drop("dies.json", {"type": "die", "id": "dies", "timeout": 4, "maxAttempts": 1})
    wait_until(lambda: "thread spoold-worker died" in daemon.log())
    unwell = manager.wait_for("STATUS", "pending 0, running 1, completed 0, failed 0;"
                              " UNHEALTHY: workers")  # fmt: skip
    assert "unhealthy: workers; no more watchdog pings" in daemon.log()
    time.sleep(1.0)  # proves an absence: five pings would have come
    assert not [at for at, _ in manager.with_key("WATCHDOG") if at > unwell + 0.1]
    # the job's timeout abandons the dead thread and starts another: healthy again
    healed = manager.wait_for("STATUS", "pending 0, running 0, completed 0, failed 1")
    wait_until(lambda: [at for at, _ in manager.with_key("WATCHDOG") if at > healed])
    assert "healthy again" in daemon.log()
    assert daemon.stop() == 0


def test_stepped_service_pings_half_periods_and_reports_changes_once_a_second(manager):
    """Service driven with given times; a datagram on a local socket is readable as soon
    as it is sent, so what each step sent is read right after it."""
    queue = {"pending": {"total": 2}, "running": 1, "completed": 5, "failed": 0}
    troubles: list[str] = []
    service = SystemdLink(Notifier(manager.address), 1.0, lambda: list(troubles), lambda: queue)

    def sent_at(now: float) -> list[dict[str, str]]:
        service.tick(now)
        sent = [fields for _, fields in manager.receive()]
        manager.received.clear()
        return sent

    service.ready(100.0)
    assert sent_at(100.0) == [
        {"READY": "1", "STATUS": "pending 2, running 1, completed 5, failed 0"},
        {"WATCHDOG": "1"},
    ]
    assert service.wait(100.0) == 0.5
    assert sent_at(100.4) == []
    assert sent_at(100.5) == [{"WATCHDOG": "1"}]
    queue["completed"] = 6
    assert sent_at(100.9) == []  # changed, but the last STATUS is not a second old
    assert sent_at(101.0) == [
        {"STATUS": "pending 2, running 1, completed 6, failed 0"},
        {"WATCHDOG": "1"},
    ]
    assert sent_at(102.0) == [{"WATCHDOG": "1"}]  # no change, no STATUS
    troubles.append("workers")
    assert sent_at(103.0) == [
        {"STATUS": "pending 2, running 1, completed 6, failed 0; UNHEALTHY: workers"}
    ]
    assert sent_at(103.5) == []  # no ping while unhealthy
    troubles.clear()
    assert sent_at(104.0) == [
        {"STATUS": "pending 2, running 1, completed 6, failed 0"},
        {"WATCHDOG": "1"},
    ]
    service.stopping(2.5)
    stopping = {
        "STOPPING": "1",
        "STATUS": "stopping: running jobs get 2.5s",
        "EXTEND_TIMEOUT_USEC": "17500000",
    }
    assert [fields for _, fields in manager.receive()] == [stopping]


# ----- bad input: a socket that is not there, a period that is not a number --------------------


@pytest.mark.parametrize(
    ("env", "warning"),
    [
        ({"NOTIFY_SOCKET": "/nonexistent/notify", "WATCHDOG_USEC": "200000"}, "cannot notify"),
        ({"NOTIFY_SOCKET": "relative/notify"}, "neither a path nor an @abstract"),
    ],
)
def test_a_notify_socket_pointing_nowhere_is_one_warning(start_daemon, env, warning):
    daemon = start_daemon(env=env)
    daemon.drop("job.json", {"type": "noop", "id": "still-served"})
    wait_until(lambda: job_files(daemon.spool, "completed"))
    time.sleep(0.5)  # proves an absence: pings fail again, unlogged
    assert daemon.stop() == 0
    lines = [line for line in daemon.log().splitlines() if "NOTIFY_SOCKET" in line]
    assert len(lines) == 1 and warning in lines[0], daemon.log()
    assert "WARNING" in lines[0] and "Traceback" not in daemon.log()


def test_a_watchdog_period_that_is_no_number_is_a_warning_and_no_pings(manager, start_daemon):
    daemon = start_daemon(env=notify_env(manager, usec="soon"))
    manager.wait_for("READY", "1")
    time.sleep(1.0)  # proves an absence
    assert manager.with_key("WATCHDOG") == []
    assert daemon.stop() == 0
    assert "WATCHDOG_USEC=soon is not a positive number" in daemon.log()


def test_the_variables_are_not_passed_on_to_what_jobs_start(manager, start_daemon, tmp_path):
    (tmp_path / "env_plugins.py").write_text(
        "import json, os\n"
        "def env(job):\n"
        "    open('seen.json', 'w').write(json.dumps(sorted(os.environ)))\n"
    )
    daemon = start_daemon(env=notify_env(manager), jobTypes={"env": "env_plugins:env"})
    manager.wait_for("READY", "1")
    daemon.drop("env.json", {"type": "env"})
    wait_until(lambda: job_files(daemon.spool, "completed"))
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert "PYTHONPATH" in seen and "NOTIFY_SOCKET" not in seen and "WATCHDOG_USEC" not in seen
    assert os.environ.get("NOTIFY_SOCKET") is None  # the test's own environment untouched
    assert daemon.stop() == 0
