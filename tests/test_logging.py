"""Logs that cannot be forged, in text and in JSON (--log-format): names and other user
text are escaped, one record a line; a traceback's lines are indented below it."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from subprocess import PIPE

import pytest
from conftest import daemon_env, free_port, job_files, spoold_cli, wait_until

from spoold.cli import build_parser
from spoold.helper import receive, send
from spoold.logs import INDENT, JsonFormatter, TextFormatter, escape
from spoold.spool import Spool

FORGED = "2026-12-04 12:00:00,000 ERROR spoold.daemon: FORGED"
# A record starts with its time and level; anything else on a line of its own is forged.
RECORD = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")
BREAKS = ["\n", "\r", "\x1b[2K\r", "\u2028", "\x85", "\x0b"]
EVIL_NAMES = [f"evil{n}{brk}{FORGED}.json" for n, brk in enumerate(BREAKS)]

PLUGIN = '''
def die(job):
    """Ends its worker thread; the error's text is the job's."""
    raise SystemExit(job["why"])
'''


def drop_evil_input(daemon, tmp_path: Path) -> None:
    """Files whose names hold line breaks (rejected: their content is no JSON), a log job
    whose message holds one, and a job whose error kills a thread with one in its text."""
    for name in EVIL_NAMES:
        daemon.drop(name, b"{not json")
    daemon.drop("said.json", {"type": "log", "message": f"hello\n{FORGED}"})
    daemon.drop(
        "dies.json", {"type": "die", "why": f"bye\n{FORGED}", "timeout": 1, "maxAttempts": 1}
    )
    wait_until(lambda: len(job_files(daemon.spool, "failed")) == len(EVIL_NAMES) + 1)
    wait_until(lambda: "said.json" not in job_files(daemon.spool, "incoming"))
    wait_until(lambda: "hello" in daemon.log())


def start_evil(start_daemon, tmp_path: Path, args: list[str]):
    (tmp_path / "log_plugins.py").write_text(PLUGIN)
    return start_daemon(args=args, jobTypes={"die": "log_plugins:die"})


def test_names_with_line_breaks_cannot_forge_a_text_log_line(start_daemon, tmp_path):
    daemon = start_evil(start_daemon, tmp_path, [])
    drop_evil_input(daemon, tmp_path)
    assert daemon.stop() == 0
    log = daemon.log()
    for char in ("\r", "\x1b", "\u2028", "\x85", "\x0b"):
        assert char not in log
    lines = log.rstrip("\n").split("\n")
    forged = [line for line in lines if not RECORD.match(line) and not line.startswith(INDENT)]
    assert forged == [], log
    assert not any(line.lstrip().startswith(FORGED) and RECORD.match(line) for line in lines)
    assert f"incoming/evil0\\n{FORGED}.json → failed/" in log
    assert f"incoming/evil2\\x1b[2K\\r{FORGED}.json" in log
    assert f"incoming/evil3\\u2028{FORGED}.json" in log
    assert f"spoold.jobs.log: hello\\n{FORGED}\n" in log


def test_a_traceback_is_indented_below_its_record(start_daemon, tmp_path):
    daemon = start_evil(start_daemon, tmp_path, [])
    drop_evil_input(daemon, tmp_path)
    assert daemon.stop() == 0
    lines = daemon.log().split("\n")
    [start] = [i for i, line in enumerate(lines) if "thread spoold-worker died" in line]
    assert RECORD.match(lines[start])
    body = lines[start + 1 : start + 1 + lines[start + 1 :].index(INDENT + FORGED) + 1]
    assert body[0] == INDENT + "Traceback (most recent call last):"
    assert INDENT + "SystemExit: bye" in body
    assert all(line.startswith(INDENT) for line in body)


def test_json_logs_are_one_object_a_line_and_keep_the_text_exact(start_daemon, tmp_path):
    daemon = start_evil(start_daemon, tmp_path, ["--log-format", "json"])
    drop_evil_input(daemon, tmp_path)
    assert daemon.stop() == 0
    raw = daemon.log_path.read_bytes()
    assert raw.isascii()
    entries = [json.loads(line) for line in raw.decode().rstrip("\n").split("\n")]
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= set(entry)
        assert entry["time"].endswith("Z") and datetime.fromisoformat(
            entry["time"]
        ).utcoffset() == timedelta(0)
        assert entry["level"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
    messages = [entry["message"] for entry in entries]
    for name in EVIL_NAMES:
        assert any(m.startswith(f"rejected incoming/{name} → failed/") for m in messages)
    assert f"hello\n{FORGED}" in messages
    [died] = [
        e for e in entries if e["message"] == "thread spoold-worker died of an uncaught error"
    ]
    assert died["level"] == "CRITICAL" and died["logger"] == "spoold"
    assert died["exception"].startswith("Traceback (most recent call last):\n")
    assert died["exception"].endswith(f"SystemExit: bye\n{FORGED}")
    assert any(e["logger"] == "spoold.daemon" and "serving" in e["message"] for e in entries)


CRASH = f"""
from spoold.cli import _setup_logging
_setup_logging(0, FORMAT)
raise ValueError("first\\n{FORGED}")
"""


def crash(tmp_path: Path, log_format: str) -> subprocess.CompletedProcess[str]:
    """A process that sets up logging as spoold does, then dies of an uncaught error."""
    command = [sys.executable, "-c", CRASH.replace("FORMAT", repr(log_format))]
    return subprocess.run(command, capture_output=True, text=True, env=daemon_env(), cwd=tmp_path)


def test_a_crash_is_logged_in_the_chosen_format_too(tmp_path):
    text = crash(tmp_path, "text")
    first, *rest = text.stderr.rstrip("\n").split("\n")
    assert text.returncode == 1
    assert RECORD.match(first) and first.endswith("spoold ended on an unexpected error")
    assert rest[-2:] == [INDENT + "ValueError: first", INDENT + FORGED]
    assert all(line.startswith(INDENT) for line in rest)
    [entry] = [json.loads(line) for line in crash(tmp_path, "json").stderr.splitlines()]
    assert entry["level"] == "CRITICAL"
    assert entry["exception"].endswith(f"ValueError: first\n{FORGED}")


def test_an_http_request_line_cannot_forge_a_log_line(start_daemon, tmp_path):
    port = free_port()
    daemon = start_daemon(args=["-vv"], http={"host": "127.0.0.1", "port": port})
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(f"GET /a\x1b[2K\r{FORGED} HTTP/1.1\r\n\r\n".encode())
        assert client.recv(100).startswith(b"HTTP/1.1 400")
    wait_until(lambda: f'"GET /a\\x1b[2K\\r{FORGED} HTTP/1.1" 400' in daemon.log())
    assert daemon.stop() == 0
    log = daemon.log()
    assert "\r" not in log and "\x1b" not in log
    assert all(RECORD.match(line) for line in log.rstrip("\n").split("\n"))


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_helper_process_logs_as_the_daemon_does(tmp_path, log_format):
    """The helpers write to the daemon's stderr: same format, same escaping. A request
    for a verb it does not know is a bug it logs, with the verb's text."""
    Spool(tmp_path / "spool", None).ensure()
    command = [sys.executable, "-m", "spoold.helper", str(tmp_path / "spool"), "",
               str(os.getpid()), "local+test"]  # fmt: skip
    env = daemon_env({"SPOOLD_LOG_FORMAT": log_format})
    helper = subprocess.Popen(command, stdin=PIPE, stdout=PIPE, stderr=PIPE, env=env)
    assert helper.stdin and helper.stdout and helper.stderr
    send(helper.stdin, (f"evil\n{FORGED}", ([("completed", "s", b"", None, False)], True)))
    [error] = receive(helper.stdout)
    helper.stdin.close()
    stderr = helper.stderr.read().decode()
    assert helper.wait(10) == 0 and "internal error in the helper" in str(error)
    lines = stderr.rstrip("\n").split("\n")
    if log_format == "json":
        [entry] = [json.loads(line) for line in lines]
        assert entry["message"] == f"helper: evil\n{FORGED} of 1 file(s) failed"
        assert entry["exception"].startswith("Traceback")
    else:
        assert lines[0].endswith(f"helper: evil\\n{FORGED} of 1 file(s) failed")
        assert RECORD.match(lines[0]) and all(line.startswith(INDENT) for line in lines[1:])


# ----- the formatters on their own ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("a\nb", "a\\nb"),
        ("a\r\tb", "a\\r\\tb"),
        ("\x00\x07\x1b[31m\x7f", "\\x00\\x07\\x1b[31m\\x7f"),
        ("\x85\x9b", "\\x85\\x9b"),
        ("\u2028\u2029", "\\u2028\\u2029"),
        ("\u202eevil\u2066", "\\u202eevil\\u2066"),
        ("café 日本 \\n ok", "café 日本 \\n ok"),
    ],
)
def test_escape_spells_out_control_characters_only(text, escaped):
    assert escape(text) == escaped


def test_every_control_character_is_escaped():
    controls = [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]
    escaped = escape("".join(map(chr, controls)))
    assert escaped.isprintable() and escaped.isascii()
    assert len(escaped.split("\\")) == len(controls) + 1


def record(message: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc else None
    return logging.LogRecord("spoold.test", logging.ERROR, __file__, 1, message, args, exc_info)


def failure() -> BaseException:
    try:
        raise ValueError(f"first\n{FORGED}")
    except ValueError as e:
        return e


def test_text_format_escapes_the_message_and_indents_the_traceback():
    text = TextFormatter().format(record("bad %s", f"x\n{FORGED}", exc=failure()))
    first, *rest = text.split("\n")
    assert RECORD.match(first) and first.endswith(f"ERROR spoold.test: bad x\\n{FORGED}")
    assert rest[0] == INDENT + "Traceback (most recent call last):"
    assert rest[-2:] == [INDENT + "ValueError: first", INDENT + FORGED]


def test_json_format_is_one_line_with_the_exception():
    line = JsonFormatter().format(record("bad %s", "x\u2028y", exc=failure()))
    assert "\n" not in line and line.isascii()
    entry = json.loads(line)
    assert entry["message"] == "bad x\u2028y"
    assert entry["exception"].endswith(f"ValueError: first\n{FORGED}")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"])


# ----- the option ---------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["--log-format", "json", "run"], ["run", "--log-format", "json"]])
def test_log_format_goes_before_or_after_the_command(argv):
    assert build_parser().parse_args(argv).log_format == "json"


def test_text_is_the_default():
    assert build_parser().parse_args(["run"]).log_format is None


@pytest.mark.parametrize("before", [True, False])
def test_a_wrong_log_format_is_a_clear_error(tmp_path, before):
    args = ["--log-format", "xml", "status"] if before else ["status", "--log-format", "xml"]
    result = spoold_cli(*args, cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert "argument --log-format: invalid choice: 'xml' (choose from" in result.stderr
    assert "'text'" in result.stderr and "'json'" in result.stderr


@pytest.mark.parametrize("command", [[], ["run"]])
def test_help_documents_the_log_format(tmp_path, command):
    result = spoold_cli(*command, "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "--log-format {text,json}" in result.stdout
    assert "JSON object a line" in " ".join(result.stdout.split())
