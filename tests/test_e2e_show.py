"""End to end, `spoold show ID`: a job's file wherever it is, beside a running daemon."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from conftest import DaemonProcess, free_port, job_files, rejected, spoold_cli, wait_until
from helpers_api import Client


def show(daemon: DaemonProcess, key: str, cwd: Path):
    return spoold_cli("show", key, "--config", str(daemon.config_path), cwd=cwd)


def test_show_prints_a_jobs_file_in_each_folder(start_daemon, plugins, tmp_path):
    daemon = start_daemon(jobTypes=plugins.types, jobs={"maxBackoff": 0.1})
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    daemon.drop("p.json", {"type": "noop", "id": "s-pending", "runAt": later, "note": "wait"})
    daemon.drop("r.json", {"type": "slow", "id": "s-running"})
    daemon.drop("c.json", {"type": "noop", "id": "s-done"})
    daemon.drop("f.json", {"type": "fail", "id": "s-failed", "maxAttempts": 1})
    wait_until(lambda: plugins.calls("s-running") and plugins.calls("s-failed"))
    wait_until(lambda: len(job_files(daemon.spool, "completed")) == 1)
    wait_until(lambda: len(job_files(daemon.spool, "failed")) == 1)
    expected = {"s-pending": "pending", "s-running": "running", "s-done": "completed",
                "s-failed": "failed"}  # fmt: skip
    for job_id, folder in expected.items():
        result = show(daemon, job_id, tmp_path)
        assert result.returncode == 0, result.stderr
        [name] = [n for n in job_files(daemon.spool, folder) if job_id in n]
        assert result.stderr == f"{folder}/{name}\n"
        shown = json.loads(result.stdout)
        assert shown == json.loads((daemon.spool / folder / name).read_bytes())
        assert shown["id"] == job_id
        assert result.stdout.startswith('{\n  "'), "indented for a person to read"
    assert json.loads(show(daemon, "s-failed", tmp_path).stdout)["error"].startswith("ValueError")
    plugins.release()
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.log()


def test_show_prints_a_rejected_file_as_it_is_with_its_reason(start_daemon, tmp_path):
    daemon = start_daemon()
    daemon.drop("broken.json", b'{"type": "noop",, }')
    wait_until(lambda: rejected(daemon.spool, "broken.json"))
    for key in ("broken.json", "broken"):
        result = show(daemon, key, tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout == '{"type": "noop",, }', "the bytes unchanged"
        assert result.stderr.startswith("failed/broken.json: rejected: not valid JSON")
        assert result.stderr.count("\n") == 1
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.log()


def test_show_describes_a_rejected_file_it_cannot_read(start_daemon, tmp_path):
    daemon = start_daemon()
    (daemon.incoming / "folder.json").mkdir()
    wait_until(lambda: rejected(daemon.spool, "folder.json"))
    result = show(daemon, "folder.json", tmp_path)
    assert result.returncode == 0
    assert result.stdout == ""
    assert "rejected: not a regular file (a folder)" in result.stderr
    assert "(not shown: not a regular file (a folder)" in result.stderr
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.log()


def test_show_of_an_unknown_id_says_so_in_one_line_and_exits_1(tmp_path):
    (tmp_path / "spoold.yaml").write_text("spool: spool\n")
    for key in ("no-such-job", "../etc/passwd", ""):
        result = spoold_cli("show", key, "--config", "spoold.yaml", cwd=tmp_path)
        assert result.returncode == 1
        assert result.stdout == ""
        assert result.stderr.startswith(f"spoold show: no job with id {key!r}")
        assert result.stderr.count("\n") == 1
    assert not (tmp_path / "spool").exists(), "show creates nothing"


def test_show_help_and_a_missing_id(tmp_path):
    result = spoold_cli("show", "--help", cwd=tmp_path)
    assert result.returncode == 0 and "rejected file" in result.stdout
    result = spoold_cli("show", cwd=tmp_path)
    assert result.returncode == 2 and "id" in result.stderr


def test_a_record_swapped_for_a_symlink_or_a_fifo_is_described_never_read(start_daemon, tmp_path):
    """Hostile files put straight into completed/ by someone with access to the spool,
    named as records: a symlink to a secret outside the spool, and a FIFO nobody writes.
    `spoold show` and GET /jobs/{id} neither follow the link (the secret would be shown;
    the daemon often runs as root) nor wait on the FIFO (a request would hang for good)."""
    port = free_port()
    daemon = start_daemon(http={"host": "127.0.0.1", "port": port})
    secret = tmp_path / "secret.json"
    secret.write_bytes(b'{"password": "hunter2"}')
    completed = daemon.spool / "completed"
    (completed / "2-normal-20261205T000000.000000000Z-leak.json").symlink_to(secret)
    os.mkfifo(completed / "2-normal-20261205T000000.000000001Z-pipe.json")
    for job_id, kind in (("leak", "a symlink"), ("pipe", "a FIFO")):
        result = show(daemon, job_id, tmp_path)
        print(f"found: spoold show {job_id}: {result.returncode} {result.stderr.strip()}")
        assert result.returncode == 0 and result.stdout == ""
        assert result.stderr.endswith(f"-{job_id}.json (not shown: not a regular file ({kind}))\n")
        with Client(port) as client:
            reply = client.get(f"/jobs/{job_id}")
        assert reply.status == 200 and reply.json["record"] is None, reply.body
        assert b"hunter2" not in reply.body
    assert secret.read_bytes() == b'{"password": "hunter2"}'
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.log()
