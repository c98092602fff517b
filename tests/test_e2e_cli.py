"""End to end, the command line (SPEC 7): submit, status, retry, check-config, --help,
global options on either side of the sub-command, and the one-line reasons of a daemon
that cannot start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml
from conftest import (
    DaemonProcess,
    base_config,
    daemon_env,
    job_files,
    records,
    rejected,
    spoold_cli,
    wait_until,
)


def write_config(workdir: Path, **overrides) -> Path:
    path = workdir / "spoold.yaml"
    path.write_text(yaml.safe_dump(base_config(**overrides)))
    return path


def cli(workdir: Path, *args: str, input: str | None = None):
    return spoold_cli(*args, "--config", str(workdir / "spoold.yaml"), cwd=workdir, input=input)


def record_of(spool: Path, folder: str, job_id: str) -> dict:
    [record] = [r for r in records(spool, folder) if r["id"] == job_id]
    return record


# ----- submit -------------------------------------------------------------------------------


def test_submit_prints_only_the_id_and_the_job_completes(start_daemon, tmp_path):
    daemon = start_daemon()
    result = cli(tmp_path, "submit", "log", "message=hello from submit", "--priority", "high")
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip()
    assert result.stdout == job_id + "\n"
    assert uuid.UUID(job_id).version == 4
    wait_until(lambda: records(daemon.spool, "completed"))
    record = record_of(daemon.spool, "completed", job_id)
    assert record["message"] == "hello from submit"
    assert record["priority"] == "high"
    wait_until(lambda: "hello from submit" in daemon.log())
    assert daemon.stop() == 0


def test_submit_takes_json_values_and_an_explicit_id(start_daemon, tmp_path):
    daemon = start_daemon()
    result = cli(tmp_path, "submit", "noop", "id=chosen-1", "maxAttempts=2", "tags=[1,2]")
    assert (result.returncode, result.stdout) == (0, "chosen-1\n"), result.stderr
    wait_until(lambda: records(daemon.spool, "completed"))
    record = record_of(daemon.spool, "completed", "chosen-1")
    assert record["maxAttempts"] == 2 and record["tags"] == [1, 2]
    assert daemon.stop() == 0


def test_submit_reads_a_job_from_stdin(start_daemon, tmp_path):
    daemon = start_daemon()
    job = {"type": "noop", "id": "from-stdin", "note": "piped"}
    result = cli(tmp_path, "submit", "-f", "-", input=json.dumps(job))
    assert (result.returncode, result.stdout) == (0, "from-stdin\n"), result.stderr
    wait_until(lambda: records(daemon.spool, "completed"))
    assert record_of(daemon.spool, "completed", "from-stdin")["note"] == "piped"
    assert daemon.stop() == 0


def test_submit_without_a_daemon_drops_a_file_that_a_later_daemon_runs(start_daemon, tmp_path):
    write_config(tmp_path)
    run_at = "2001-01-01T00:00:00Z"
    result = cli(tmp_path, "submit", "noop", "id=offline", "--run-at", run_at)
    assert result.returncode == 0, result.stderr
    [name] = job_files(tmp_path / "spool", "incoming")
    written = json.loads((tmp_path / "spool" / "incoming" / name).read_bytes())
    assert written == {"type": "noop", "id": "offline", "runAt": run_at}
    assert job_files(tmp_path / "spool", "tmp") == []
    daemon = start_daemon()
    wait_until(lambda: records(daemon.spool, "completed"))
    assert record_of(daemon.spool, "completed", "offline")["runAt"] == run_at
    assert daemon.stop() == 0


def test_commands_on_an_empty_spool_folder_refuse_and_make_nothing(tmp_path):
    """The spool's folder empty, as an NFS mount point is while its file system is not
    mounted. Before, submit, retry, cancel and run-task made a new spool there (and a
    daemon that had stopped claiming on the empty mount point went on in it). A spool
    folder that is not there yet is made (see the test above)."""
    write_config(tmp_path, schedule=[{"name": "t", "cron": "0 0 1 1 *", "job": {"type": "noop"}}])
    (tmp_path / "spool").mkdir()
    for args in (("submit", "noop"), ("retry", "x"), ("retry", "--all"), ("cancel", "x"),
                 ("run-task", "t")):  # fmt: skip
        result = cli(tmp_path, *args)
        assert result.returncode == 1, (args, result.stderr)
        assert result.stderr == (f"spoold: {tmp_path / 'spool'} is an empty folder, as a mount"
                                 " point is while its file system is not mounted: mount it, or"
                                 " start the daemon there once (spoold run)\n")  # fmt: skip
    assert os.listdir(tmp_path / "spool") == []


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["submit", "sendmail"], ["unknown job type", "sendmail"]),
        (["submit", "noop", "id=../x"], ["id", "../x"]),
        (["submit", "noop", "maxAttempts=zero"], ["maxAttempts"]),
        (["submit", "noop", "--run-at", "soon"], ["field 'runAt' must be an ISO 8601", "soon"]),
        (["submit", "noop", "--run-at", ""], ["field 'runAt' must be an ISO 8601", "''"]),
        (["submit", "-f", "missing.json"], ["missing.json"]),
        (["submit"], ["type"]),
        (["submit", "noop", "timeout=1e999"], ["field 'timeout'", "1e999"]),  # not inf
        (["submit", "noop", "timeout=NaN"], ["field 'timeout'", "NaN"]),
    ],
    ids=[
        "unknown-type",
        "bad-id",
        "bad-field",
        "bad-run-at",
        "empty-run-at",
        "no-file",
        "nothing",
        "inf",
        "nan",
    ],
)
def test_submit_refuses_a_bad_job_and_writes_nothing(tmp_path, args, words):
    write_config(tmp_path)
    result = cli(tmp_path, *args)
    assert result.returncode != 0
    assert result.stdout == ""
    for word in words:
        assert word in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert job_files(tmp_path / "spool", "incoming") == []


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('{"type": "noop",', "not valid JSON"),
        ('{"type": "noop", "timeout": NaN}', "NaN is not finite"),
        ('{"type": "noop", "n": 1e999}', "1e999 is not finite"),
        ('{"type": "noop", "x": ' + "[" * 5000 + "]" * 5000 + "}", "nested too deeply"),
        ('{"type": "noop", "n": ' + "1" * 5000 + "}", "more than 4300 digits"),
    ],
)
def test_submit_bad_json_on_stdin_is_refused(tmp_path, text, words):
    write_config(tmp_path)
    result = cli(tmp_path, "submit", "-f", "-", input=text)
    assert result.returncode != 0 and words in result.stderr
    assert "Traceback" not in result.stderr
    assert job_files(tmp_path / "spool", "incoming") == []


def test_submit_never_replaces_a_job_still_waiting_in_incoming(tmp_path):
    """Two submits with one explicit id before a daemon takes the first: the first job is
    a producer's dropped job and must not be silently replaced."""
    write_config(tmp_path)
    first = cli(tmp_path, "submit", "noop", "id=twice", "note=first")
    assert first.returncode == 0, first.stderr
    second = cli(tmp_path, "submit", "noop", "id=twice", "note=second")
    assert second.returncode != 0
    assert "twice" in second.stderr and second.stdout == ""
    [name] = job_files(tmp_path / "spool", "incoming")
    kept = json.loads((tmp_path / "spool" / "incoming" / name).read_bytes())
    assert kept["note"] == "first"
    assert job_files(tmp_path / "spool", "tmp") == []


# ----- status -------------------------------------------------------------------------------


def test_status_summarises_the_status_file_and_json_prints_it(start_daemon, tmp_path):
    daemon = start_daemon()
    daemon.drop("ok.json", {"type": "noop", "id": "ok"})
    daemon.drop("bad.json", b"nope")
    wait_until(lambda: daemon.status()["queue"]["completed"] == 1)
    wait_until(lambda: daemon.status()["queue"]["failed"] == 1)
    summary = cli(tmp_path, "status")
    assert summary.returncode == 0, summary.stderr
    assert f"pid {daemon.proc.pid}" in summary.stdout
    assert "running" in summary.stdout
    lines = {line.split()[0]: line for line in summary.stdout.splitlines()[1:] if line.strip()}
    assert lines["completed"].split()[1] == "1"
    assert lines["failed"].split()[1] == "1"
    assert lines["pending"].split()[1] == "0"
    as_json = cli(tmp_path, "status", "--json")
    assert as_json.returncode == 0
    assert json.loads(as_json.stdout)["queue"]["completed"] == 1
    assert daemon.stop() == 0
    stopped = cli(tmp_path, "status")
    assert "stopped" in stopped.stdout.splitlines()[0]


def test_status_without_a_status_file_says_so(tmp_path):
    write_config(tmp_path)
    result = cli(tmp_path, "status")
    assert result.returncode != 0
    assert "status.json" in result.stderr and "daemon" in result.stderr


def test_status_of_a_fifo_put_as_the_status_file_says_so_and_does_not_wait(tmp_path):
    """Hostile: a FIFO where status.json should be; before, `spoold status` waited on it
    until its 30 s timeout here (for ever at a terminal)."""
    write_config(tmp_path)
    (tmp_path / "spool").mkdir()
    os.mkfifo(tmp_path / "spool" / "status.json")
    result = cli(tmp_path, "status")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.endswith("status.json is not a regular file (a FIFO): the daemon"
                                  " writes it again\n")  # fmt: skip


# ----- retry --------------------------------------------------------------------------------


def test_retry_puts_a_failed_job_back_with_attempts_reset_and_errors_kept(
    start_daemon, plugins, tmp_path
):
    daemon = start_daemon(jobTypes=plugins.types)
    daemon.drop("flaky.json", {"type": "flaky", "id": "again", "failTimes": 1, "maxAttempts": 1})
    wait_until(lambda: records(daemon.spool, "failed"))
    assert daemon.stop() == 0
    result = cli(tmp_path, "retry", "again")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("pending/") and "again" in result.stdout
    assert job_files(daemon.spool, "failed") == []
    [name] = job_files(daemon.spool, "pending")
    waiting = json.loads((daemon.spool / "pending" / name).read_bytes())
    assert waiting["attempts"] == 0
    assert waiting["status"] == "pending"
    assert waiting["previousErrors"] == ["RuntimeError: flaky failure 1 of 1"]
    assert waiting["error"] is None
    again = start_daemon(jobTypes=plugins.types)
    wait_until(lambda: records(again.spool, "completed"))
    record = record_of(again.spool, "completed", "again")
    assert record["attempts"] == 1
    assert record["previousErrors"] == ["RuntimeError: flaky failure 1 of 1"]
    assert again.stop() == 0


def test_retry_while_the_daemon_runs(start_daemon, plugins, tmp_path):
    daemon = start_daemon(jobTypes=plugins.types)
    daemon.drop("flaky.json", {"type": "flaky", "id": "live", "failTimes": 1, "maxAttempts": 1})
    wait_until(lambda: records(daemon.spool, "failed"))
    assert cli(tmp_path, "retry", "live").returncode == 0
    wait_until(lambda: records(daemon.spool, "completed"))
    assert record_of(daemon.spool, "completed", "live")["attempts"] == 1
    assert len(plugins.calls("live")) == 2
    assert daemon.stop() == 0


def test_retry_sends_a_rejected_file_back_to_be_judged_again(start_daemon, plugins, tmp_path):
    daemon = start_daemon()
    data = b'{"type": "later", "id": "judged-twice"}'
    daemon.drop("later.json", data)
    wait_until(lambda: rejected(daemon.spool, "later.json"))
    assert daemon.stop() == 0
    again = start_daemon(jobTypes={"later": plugins.types["trace"]})  # now the type exists
    result = cli(tmp_path, "retry", "later")  # as `spoold show` takes it: .json may go
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "incoming/later.json"
    wait_until(lambda: records(again.spool, "completed"))
    assert record_of(again.spool, "completed", "judged-twice")["type"] == "later"
    assert job_files(again.spool, "failed") == []
    assert not (again.spool / "failed" / "later.json.error.json").exists()
    assert again.stop() == 0


def test_retry_all_and_what_cannot_be_retried(start_daemon, plugins, tmp_path):
    daemon = start_daemon(jobTypes=plugins.types)
    daemon.drop("f1.json", {"type": "fail", "id": "f1", "maxAttempts": 1})
    daemon.drop("f2.json", {"type": "fail", "id": "f2", "maxAttempts": 1})
    daemon.drop("ok.json", {"type": "noop", "id": "ok"})
    daemon.drop("junk.json", b"junk")
    wait_until(lambda: len(job_files(daemon.spool, "failed")) == 3)
    wait_until(lambda: records(daemon.spool, "completed"))
    assert daemon.stop() == 0
    completed = cli(tmp_path, "retry", "ok")
    assert completed.returncode != 0 and "completed" in completed.stderr
    unknown = cli(tmp_path, "retry", "no-such-job")
    assert unknown.returncode != 0 and "no-such-job" in unknown.stderr
    neither = cli(tmp_path, "retry")
    assert neither.returncode != 0 and "--all" in neither.stderr
    result = cli(tmp_path, "retry", "--all")
    assert result.returncode == 0, result.stderr
    assert sorted(line.split("/")[0] for line in result.stdout.split()) == [
        "incoming",
        "pending",
        "pending",
    ]
    assert "3 retried" in result.stderr
    assert job_files(daemon.spool, "failed") == []
    assert (daemon.spool / "incoming" / "junk.json").read_bytes() == b"junk"


# ----- check-config ---------------------------------------------------------------------------


def test_check_config_accepts_a_good_file(tmp_path):
    path = write_config(tmp_path, workers=4)
    result = spoold_cli("check-config", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert str(path) in result.stdout and "OK" in result.stdout


def test_check_config_accepts_the_shipped_config(tmp_path):
    shipped = Path(__file__).resolve().parent.parent / "config" / "spoold.yaml"
    result = spoold_cli("check-config", str(shipped), cwd=tmp_path)
    assert result.returncode == 0, result.stderr


BAD_CONFIGS = {
    "typo": ("spool: spool\nworkers: 2\nwrkers: 3\n", 3, "wrkers", "workers"),
    "kind": ("spool: spool\n\nworkers: many\n", 3, "workers", "many"),
    "nested": ("jobs:\n  timeout: 5\n  maxBackof: 3\n", 3, "jobs.maxBackof", "maxBackoff"),
    "value": ("durability: sometimes\n", 1, "durability", "fsync"),
    "yaml": ("workers: 2\nspool: [unclosed\n", 3, "YAML", "YAML"),
    "plugin": ("jobTypes:\n  x: no_such_module_here:run\n", 2, "jobTypes.x", "no_such_module_here"),
    "zone": ("timezone: Mars/Olympus\n", 1, "timezone", "Mars/Olympus"),
}


@pytest.mark.parametrize("case", BAD_CONFIGS, ids=list(BAD_CONFIGS))
def test_check_config_names_file_line_and_key(tmp_path, case):
    text, line, key, hint = BAD_CONFIGS[case]
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = spoold_cli("check-config", str(path), cwd=tmp_path)
    assert result.returncode != 0
    if case == "plugin":  # plug-ins are found by import, after the YAML: no line to name
        assert f"{path}: {key}" in result.stderr
    else:
        assert f"{path}:{line}" in result.stderr
    assert key in result.stderr and hint in result.stderr
    assert result.stdout == ""


def test_check_config_lists_every_problem(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("wrkers: 2\nrescanSeconds: soon\nretention: {completed: forever}\n")
    result = spoold_cli("check-config", str(path), cwd=tmp_path)
    assert result.returncode != 0
    for where in (f"{path}:1", f"{path}:2", f"{path}:3"):
        assert where in result.stderr


# ----- a daemon that cannot start -------------------------------------------------------------


def one_line_failure(tmp_path: Path, *args: str) -> str:
    result = spoold_cli("run", *args, cwd=tmp_path, timeout=20)
    assert result.returncode not in (0, None)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_bad_config_stops_the_daemon_with_one_line_naming_file_line_and_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("spool: spool\nworkers: 2\nshutdownGrace: later\n")
    line = one_line_failure(tmp_path, "--config", str(path))
    assert f"{path}:3" in line and "shutdownGrace" in line and "later" in line
    assert not (tmp_path / "spool").exists(), "nothing was created"
    path.write_text("spool: spool\nworkers: 2\nshutdownGrace: later\nwrkers: 1\n")
    line = one_line_failure(tmp_path, "--config", str(path))
    assert f"{path}:" in line and "1 more" in line, "one named, the other counted"


def test_a_file_where_the_spool_should_be_stops_the_daemon(tmp_path):
    (tmp_path / "spool").write_text("not a folder")
    write_config(tmp_path)
    line = one_line_failure(tmp_path, "--config", str(tmp_path / "spoold.yaml"))
    assert "spool" in line and "not a folder" in line
    assert (tmp_path / "spool").read_text() == "not a folder"


def test_a_file_where_a_spool_folder_should_be_stops_the_daemon(tmp_path):
    (tmp_path / "spool").mkdir()
    (tmp_path / "spool" / "pending").write_text("in the way")
    write_config(tmp_path)
    line = one_line_failure(tmp_path, "--config", str(tmp_path / "spoold.yaml"))
    assert str(tmp_path / "spool" / "pending") in line or "spool/pending" in line
    assert "not a folder" in line


def test_a_spool_below_a_file_stops_the_daemon(tmp_path):
    (tmp_path / "blocker").write_text("a file")
    write_config(tmp_path, spool="blocker/spool")
    line = one_line_failure(tmp_path, "--config", str(tmp_path / "spoold.yaml"))
    assert "blocker/spool" in line


def test_a_missing_config_file_stops_the_daemon(tmp_path):
    line = one_line_failure(tmp_path, "--config", str(tmp_path / "nowhere.yaml"))
    assert "nowhere.yaml" in line


# ----- help and global options ----------------------------------------------------------------

COMMANDS = ["run", "submit", "status", "retry", "cancel", "check-config", "next", "run-task"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_sub_command_has_help(tmp_path, command):
    result = spoold_cli(command, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: spoold {command}")
    assert "--config" in result.stdout


def test_the_main_help_lists_the_sub_commands(tmp_path):
    result = spoold_cli("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout


def test_global_options_go_before_or_after_the_sub_command(start_daemon, tmp_path):
    daemon = start_daemon()
    config = str(daemon.config_path)
    before = spoold_cli("--config", config, "status", "--json", cwd=tmp_path)
    after = spoold_cli("status", "--json", "--config", config, cwd=tmp_path)
    assert before.returncode == after.returncode == 0, before.stderr + after.stderr
    assert json.loads(before.stdout)["pid"] == json.loads(after.stdout)["pid"] == daemon.proc.pid
    for args in (["--node", "elsewhere", "status"], ["status", "--node", "elsewhere"]):
        result = spoold_cli("--config", config, *args, cwd=tmp_path)
        assert result.returncode != 0 and "status-elsewhere.json" in result.stderr
    submitted = spoold_cli("submit", "noop", "--config", config, cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stderr
    wait_until(lambda: records(daemon.spool, "completed"))
    assert daemon.stop() == 0


def test_the_node_option_names_the_status_file_and_the_running_files(plugins, tmp_path):
    # not start_daemon: it waits for the status file the config names, and --node renames it
    daemon = DaemonProcess(tmp_path, base_config(jobTypes=plugins.types), ["--node", "blue"])
    try:
        wait_until(lambda: (daemon.spool / "status-blue.json").exists() or daemon.proc.poll())
        status = json.loads((daemon.spool / "status-blue.json").read_bytes())
        assert status["node"] == "blue" and status["pid"] == daemon.proc.pid
        daemon.drop("n.json", {"type": "slow", "id": "on-blue"})
        wait_until(lambda: job_files(daemon.spool, "running"))
        [held] = job_files(daemon.spool, "running")
        assert "-on-blue@blue+" in held
        plugins.release()
        wait_until(lambda: records(daemon.spool, "completed"))
        config = str(daemon.config_path)
        result = spoold_cli("status", "--node", "blue", "--config", config, cwd=tmp_path)
        assert result.returncode == 0 and "blue" in result.stdout
        assert not (daemon.spool / "status.json").exists()
        assert daemon.stop() == 0
    finally:
        daemon.kill()


@pytest.mark.parametrize("body", [b"[]", b'{"queue": []}', b'{"scheduler": {"tasks": [1]}}'])
def test_status_of_a_status_file_of_another_shape_says_so_in_a_line(tmp_path, body):
    """Before, valid JSON of another shape (edited by hand, or another program's) ended
    `spoold status` in a traceback."""
    write_config(tmp_path)
    (tmp_path / "spool").mkdir()
    (tmp_path / "spool" / "status.json").write_bytes(body)
    result = cli(tmp_path, "status")
    assert result.returncode == 1 and result.stdout == "", result.stderr
    expected = "spoold status: spool/status.json is not a status file as spoold writes it"
    assert result.stderr.startswith(expected)
    assert result.stderr.count("\n") == 1
    assert cli(tmp_path, "status", "--json").stdout == body.decode()


@pytest.mark.parametrize("verb", ["show", "retry", "cancel"])
def test_an_id_too_long_for_a_file_name_is_no_such_job(start_daemon, tmp_path, verb):
    """Before, an id over 255 bytes was answered ENAMETOOLONG and 'check that path and
    its file system', as if the spool were broken."""
    assert start_daemon().stop() == 0
    result = cli(tmp_path, verb, "x" * 300)
    assert result.returncode == 1 and "ENAMETOOLONG" not in result.stderr, result.stderr
    assert "no job with id" in result.stderr


def test_a_rejected_name_with_terminal_codes_is_printed_spelled_out(start_daemon, tmp_path):
    """A producer's file name holding an escape sequence and a line break: `show` and
    `retry` print it spelled out on one line, as the log does, never the raw codes that
    a terminal would act on (before, they were printed as they were)."""
    daemon = start_daemon()
    name = "e\x1b[31mRED\nx.json"
    daemon.drop(name, b"not json")
    wait_until(lambda: (daemon.spool / "failed" / f"{name}.error.json").exists())
    assert daemon.stop() == 0
    shown = cli(tmp_path, "show", name)
    assert shown.returncode == 0 and "\x1b" not in shown.stderr, shown.stderr
    assert shown.stderr.startswith("failed/e\\x1b[31mRED\\nx.json: rejected:")
    assert shown.stderr.count("\n") == 1
    retried = cli(tmp_path, "retry", "--all")
    assert retried.stdout == "incoming/e\\x1b[31mRED\\nx.json\n", retried.stdout


def test_submit_refuses_a_job_over_max_job_bytes_and_reads_no_further(start_daemon, tmp_path):
    """Before, a job too big for the daemon was written (and rejected later), and
    `submit -f /dev/zero` read until memory ran out."""
    assert start_daemon(maxJobBytes=4096).stop() == 0
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"type": "noop", "pad": "x" * 5000}))
    for args in (("-f", str(big)), ("-f", "/dev/zero"), ("noop", "pad=" + "x" * 5000)):
        result = cli(tmp_path, "submit", *args)
        assert result.returncode != 0, args
        assert "is over maxJobBytes (4096 bytes): make the job smaller" in result.stderr, args
    assert job_files(tmp_path / "spool", "incoming") == []


def test_submit_whose_id_cannot_be_printed_still_says_it_submitted(start_daemon, tmp_path):
    """Fault: stdout is /dev/full (ENOSPC on write), as a closed pipe fails too. The job
    is written: exit 0, and stderr says so (before, exit 1 and 'then start again', so a
    script would submit it a second time)."""
    assert start_daemon().stop() == 0
    command = [sys.executable, "-m", "spoold", "submit", "noop", "id=full", "--config",
               str(tmp_path / "spoold.yaml")]  # fmt: skip
    with open("/dev/full", "wb") as full:
        result = subprocess.run(command, cwd=tmp_path, env=daemon_env(), stdout=full,
                                stderr=subprocess.PIPE, text=True, timeout=30)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "job full submitted; its id could not be printed" in result.stderr
    assert job_files(tmp_path / "spool", "incoming") == ["full.json"]


def test_submit_key_values_that_surprised(start_daemon, tmp_path):
    """id=42 names the job "42" (before: refused, read as a number), and type=... beside
    TYPE is refused (before: it silently replaced TYPE)."""
    assert start_daemon().stop() == 0
    result = cli(tmp_path, "submit", "noop", "id=42")
    assert (result.returncode, result.stdout) == (0, "42\n"), result.stderr
    assert json.loads((tmp_path / "spool" / "incoming" / "42.json").read_bytes())["id"] == "42"
    twice = cli(tmp_path, "submit", "log", "message=hi", "type=noop")
    assert twice.returncode != 0 and "the type is given twice" in twice.stderr
    assert job_files(tmp_path / "spool", "incoming") == ["42.json"]


def test_submit_of_an_id_already_in_the_spool_is_refused_at_once(start_daemon, tmp_path):
    """Before, exit 0 and an id printed, and the daemon then rejected the file as a
    duplicate: the producer was told it had been taken."""
    daemon = start_daemon()
    daemon.drop("a.json", {"type": "noop", "id": "taken"})
    wait_until(lambda: records(daemon.spool, "completed"))
    assert daemon.stop() == 0
    result = cli(tmp_path, "submit", "noop", "id=taken")
    assert result.returncode == 1 and result.stdout == ""
    assert "a job with id 'taken' is already in the spool (completed/" in result.stderr
    assert job_files(tmp_path / "spool", "incoming") == []


@pytest.mark.parametrize("args", [("show", "done"), ("status", "--json")])
def test_a_command_started_with_stdout_closed_says_so_in_a_line(start_daemon, tmp_path, args):
    """Fault: stdout closed at start (`>&-`), so Python has no sys.stdout. Before, a
    traceback ('NoneType' object has no attribute 'buffer')."""
    daemon = start_daemon()
    daemon.drop("d.json", {"type": "noop", "id": "done"})
    wait_until(lambda: records(daemon.spool, "completed"))
    command = [sys.executable, "-m", "spoold", *args, "--config", str(tmp_path / "spoold.yaml")]
    result = subprocess.run(command, cwd=tmp_path, env=daemon_env(), stdout=None,
                            stderr=subprocess.PIPE, text=True, timeout=30,
                            preexec_fn=lambda: os.close(1))  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.endswith("spoold: stdout is closed: there is nowhere to print to\n")
    assert daemon.stop() == 0
