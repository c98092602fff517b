"""Shared fixtures: a real spoold subprocess on a tmp_path spool; waiting without sleeps."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from spoold.helper import Helper
from spoold.spool import Spool

FOLDERS = ("incoming", "pending", "running", "completed", "failed", "tmp")


class CountingSpool(Spool):
    """A real spool that counts its flushes (syncfs calls)."""

    flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


def alias_bomb(levels: int = 10) -> str:
    """YAML of about 1 KiB whose aliases expand to 10**levels values (a billion laughs)."""
    first = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
    return first + "".join(
        f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]\n" for n in range(1, levels)
    )


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01) -> Any:
    """Poll predicate until it returns something truthy; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")
        time.sleep(interval)


def children(pid: int) -> list[int]:
    """The child processes of pid (all its threads' children), from /proc."""
    kids = []
    for task in os.listdir(f"/proc/{pid}/task"):
        text = Path(f"/proc/{pid}/task/{task}/children").read_text()
        kids += [int(k) for k in text.split()]
    return kids


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def helper_of(pid: int) -> int:
    """The one helper process that pid started."""
    found: list[int] = []

    def look() -> bool:
        found[:] = [kid for kid in children(pid) if "-m spoold.helper " in cmdline(kid)]
        return len(found) == 1

    wait_until(look, 5)
    return found[0]


def helper_ask(helper: Helper, verb: str, items: list[Any], *more: Any) -> list[Any]:
    """A request to a helper process and its answer, a result per item (the daemon posts
    and collects them apart, see FileWork)."""
    return helper.collect(helper.post(verb, items, *more))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def drop(folder: Path, name: str, job: dict | bytes | str) -> Path:
    """Publish a job the safe way: write a dot-name, then rename it to name."""
    data = job if isinstance(job, bytes) else (job if isinstance(job, str) else json.dumps(job))
    data = data.encode() if isinstance(data, str) else data
    tmp = folder / f".{name}.tmp"
    tmp.write_bytes(data)
    target = folder / name
    os.rename(tmp, target)
    return target


def job_files(spool: Path, folder: str) -> list[str]:
    """Names in a spool folder, without rejected files' .error.json companions and the
    daemon's own dot-files (running/.lease-<owner>): never a job's name."""
    try:
        names = os.listdir(spool / folder)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if not n.endswith(".error.json") and not n.startswith("."))


def rejected(spool: Path, name: str) -> bool:
    """True once the rejected file `name` is in failed/. Wait for this, not for its
    .error.json: the daemon writes the explanation first and moves the file after, so the
    explanation alone is there a moment before the file. lexists: the file may be a
    (dangling) symlink."""
    return os.path.lexists(spool / "failed" / name)


def none_running(spool: Path) -> bool:
    """True once running/ holds no job. Wait for this, not only for a record, before
    asserting on running/: a job's record is placed first and its running file goes just
    after, so for a moment a finished job is in both folders."""
    return job_files(spool, "running") == []


def records(spool: Path, folder: str) -> list[dict[str, Any]]:
    """The JSON records of a folder (completed/ or failed/), rejected files left out."""
    found = []
    for name in job_files(spool, folder):
        try:
            data = json.loads((spool / folder / name).read_bytes())
        except (ValueError, OSError):
            continue
        if isinstance(data, dict) and "status" in data:
            found.append(data)
    return found


class DaemonProcess:
    """spoold run as a real subprocess, its log captured in a file; `env` adds to (or,
    with a None value, takes out of) the environment it runs in."""

    def __init__(
        self,
        workdir: Path,
        config: dict[str, Any],
        args: list[str],
        prefix: list[str] | None = None,
        env: dict[str, str | None] | None = None,
    ) -> None:
        """`prefix` runs the daemon under another command (nsenter, say); `env` adds to
        its environment (None removes a variable)."""
        self.workdir = workdir
        self.config = config
        self.spool = workdir / config.get("spool", "spool")
        self.config_path = workdir / "spoold.yaml"
        self.log_path = workdir / f"daemon-{time.monotonic_ns()}.log"
        self.config_path.write_text(yaml.safe_dump(config))
        self._log = self.log_path.open("wb")
        command = [*(prefix or []), sys.executable, "-m", "spoold", "run", "--config",
                   str(self.config_path), *args]  # fmt: skip
        self.proc = subprocess.Popen(
            command, cwd=workdir, stdout=self._log, stderr=subprocess.STDOUT, env=daemon_env(env)
        )

    @property
    def incoming(self) -> Path:
        return self.spool / "incoming"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 15.0) -> DaemonProcess:
        """Until the daemon has written its status file (its start-up scan is done); on a
        restart, until the file is this process's, not the one a previous daemon left."""
        wait_until(lambda: self._status_pid() == self.proc.pid or self.proc.poll() is not None,
                   timeout)  # fmt: skip
        if self.proc.poll() is not None:
            raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.log()}")
        return self

    def _status_pid(self) -> int | None:
        try:
            return json.loads((self.spool / self.status_name).read_bytes()).get("pid")
        except (OSError, ValueError):
            return None

    @property
    def status_name(self) -> str:
        node = self.config.get("node")
        return f"status-{node}.json" if node else "status.json"

    def status(self) -> dict[str, Any]:
        return json.loads((self.spool / self.status_name).read_bytes())

    def drop(self, name: str, job: dict | bytes | str) -> Path:
        return drop(self.incoming, name, job)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


def daemon_env(extra: dict[str, str | None] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    for name in ("SPOOLD_TOKEN", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        env.pop(name, None)  # a test's daemon answers to no service manager but the test's
    for name, value in (extra or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def base_config(**overrides: Any) -> dict[str, Any]:
    """A config for tests: quick rescans and settles, no HTTP, no schedule."""
    config: dict[str, Any] = {
        "spool": "spool",
        "workers": 2,
        "rescanSeconds": 0.5,
        "settleSeconds": 0.5,
        "leaseSeconds": 5,
        "shutdownGrace": 5,
        "durability": "relaxed",
        "http": None,
    }
    config.update(overrides)
    return config


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    """start_daemon(**config overrides, args=[...], workdir=..., env={...}) → a ready
    DaemonProcess."""
    started: list[DaemonProcess] = []

    def start(
        args: list[str] | None = None,
        workdir: Path | None = None,
        env: dict[str, str | None] | None = None,
        **overrides: Any,
    ):
        daemon = DaemonProcess(workdir or tmp_path, base_config(**overrides), args or [], env=env)
        started.append(daemon)
        return daemon.wait_ready()

    yield start
    for daemon in started:
        daemon.kill()


def spoold_cli(
    *args: str, cwd: Path, input: str | None = None, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """Run `python -m spoold ARGS` in cwd (as a user would), capturing its output."""
    command = [sys.executable, "-m", "spoold", *args]
    return subprocess.run(
        command,
        cwd=cwd,
        input=input,
        capture_output=True,
        text=True,
        env=daemon_env(),
        timeout=timeout,
    )


# Plug-in job types for end-to-end tests, written beside the daemon's config. Each call is
# noted in calls/<id>.log (one JSON line: attempts, time, pid) and calls/order.log.
PLUGIN_SOURCE = '''
import json, os, time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _note(job):
    calls = HERE / "calls"
    calls.mkdir(exist_ok=True)
    note = {"attempts": job["attempts"], "at": time.time(), "pid": os.getpid()}
    with open(calls / (job["id"] + ".log"), "a") as f:
        f.write(json.dumps(note) + "\\n")
    with open(calls / "order.log", "a") as f:
        f.write(job["id"] + "\\n")
    return len((calls / (job["id"] + ".log")).read_text().splitlines())


def block(job):
    """Runs until release/<id> or release/all exists, or for job['seconds']."""
    _note(job)
    deadline = time.monotonic() + job.get("seconds", 3600)
    while time.monotonic() < deadline:
        if (HERE / "release" / job["id"]).exists() or (HERE / "release" / "all").exists():
            return
        time.sleep(0.01)


def flaky(job):
    """Fails its first job['failTimes'] calls, then succeeds."""
    n = _note(job)
    if n <= job["failTimes"]:
        raise RuntimeError(f"flaky failure {n} of {job['failTimes']}")


def fail(job):
    _note(job)
    raise ValueError(job.get("message", "the ledger is locked"))


def trace(job):
    _note(job)
    time.sleep(0.003)  # so that consecutive jobs get distinct startedAt milliseconds
'''


class Plugins:
    """The e2e plug-in types in a daemon's working folder, and what their calls left."""

    types = {
        "slow": "e2e_plugins:block",
        "flaky": "e2e_plugins:flaky",
        "fail": "e2e_plugins:fail",
        "trace": "e2e_plugins:trace",
    }

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        (workdir / "e2e_plugins.py").write_text(PLUGIN_SOURCE)

    def calls(self, job_id: str) -> list[dict[str, Any]]:
        """One entry per call of the job: its attempts, time and the daemon's pid."""
        try:
            lines = (self.workdir / "calls" / f"{job_id}.log").read_text().splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines]

    def order(self) -> list[str]:
        """Job ids in the order the plug-ins were called."""
        try:
            return (self.workdir / "calls" / "order.log").read_text().split()
        except FileNotFoundError:
            return []

    def release(self, job_id: str = "all") -> None:
        """Let a blocking job (or every one) return."""
        (self.workdir / "release").mkdir(exist_ok=True)
        (self.workdir / "release" / job_id).touch()


@pytest.fixture
def plugins(tmp_path: Path) -> Plugins:
    """Plug-in types for start_daemon(jobTypes=plugins.types); python -m puts the daemon's
    working folder (tmp_path) on sys.path, so no PYTHONPATH is needed."""
    return Plugins(tmp_path)


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """A test that leaves threads running (a daemon not stopped) fails."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        leaked = [
            t for t in threading.enumerate()
            if t not in before and t.is_alive() and t.name.startswith("spoold")
        ]  # fmt: skip
        if not leaked:
            return
        time.sleep(0.05)
    raise AssertionError(f"threads left running: {[t.name for t in leaked]}")
