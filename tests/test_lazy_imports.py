"""What a running daemon imports (issue 15, RSS): the network and mail modules only once a
job or the config needs them. A plain daemon without `http:` that runs no email or webhook
job must not carry ssl, smtplib, urllib.request or http.server (~9 MB resident together).

The daemon runs as a real subprocess with PYTHONPROFILEIMPORTTIME=1: Python then writes a
line to stderr (the daemon's log) for every module it imports, at start and later. Its
helper inherits the variable and writes to the same log, so what is asserted absent
is absent from both processes. The helper alone (`python -m spoold.helper`) must
import no more than Spool.commit needs."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import DaemonProcess, free_port, helper_ask, records, rejected, wait_until
from helpers_servers import http_server, smtp_server

from spoold.helper import Helper
from spoold.spool import Record, Spool

# A self time can be negative: two threads importing at once (a webhook and an email job)
# share the interpreter's nesting count.
IMPORT_LINE = re.compile(r"^import time:\s+-?\d+ \|\s+-?\d+ \|\s+(\S+)$", re.MULTILINE)
NETWORK_AND_MAIL = ("ssl", "smtplib", "urllib.request", "http.server", "http.client")
TRACE = {"PYTHONPROFILEIMPORTTIME": "1"}
# What the daemon needs and its helper does not (~4 MB of the helper's 18 before).
NOT_FOR_THE_HELPER = ("subprocess", "dataclasses", "calendar", "datetime", "zoneinfo", "shutil",
                      "uuid", "pickle", "hashlib", "yaml", "watchdog")  # fmt: skip


def imported(daemon: DaemonProcess) -> set[str]:
    """Every module the daemon (and its helper) imported, from its log."""
    return set(IMPORT_LINE.findall(daemon.log()))


def run_to_the_end(daemon: DaemonProcess, folder: str, count: int) -> set[str]:
    """Wait for `count` records in `folder`, stop the daemon cleanly, and say what it imported."""
    wait_until(lambda: len(records(daemon.spool, folder)) == count, timeout=15)
    assert daemon.stop() == 0
    return imported(daemon)


def test_a_daemon_without_http_email_or_webhook_jobs_loads_no_network_or_mail_module(
    start_daemon,
):
    daemon = start_daemon(env=TRACE)
    daemon.drop("a.json", {"type": "noop"})
    daemon.drop("b.json", {"type": "log", "message": "hello"})
    modules = run_to_the_end(daemon, "completed", 2)
    assert "spoold.daemon" in modules, "the trace is read (else this test proves nothing)"
    loaded = [name for name in NETWORK_AND_MAIL if name in modules]
    assert loaded == [], f"loaded without a use: {loaded}"
    assert not {"email", "hashlib", "prometheus_client", "spoold.api"} & modules


def test_judging_email_and_webhook_jobs_loads_neither_smtplib_nor_urllib(start_daemon):
    """Validation at intake needs Python's email package for addresses, nothing more."""
    daemon = start_daemon(env=TRACE)
    daemon.drop("mail.json", {"type": "send_email", "to": "not an address"})
    daemon.drop("hook.json", {"type": "webhook", "url": "ftp://example.com/"})
    wait_until(lambda: rejected(daemon.spool, "mail.json") and rejected(daemon.spool, "hook.json"))
    assert daemon.stop() == 0
    modules = imported(daemon)
    assert "email.utils" in modules, "the email job was judged by its type (which reads addresses)"
    assert [name for name in NETWORK_AND_MAIL if name in modules] == []


def test_sending_a_webhook_and_an_email_loads_their_clients_then(start_daemon):
    """The other side of the two tests above: the modules load when a job needs them, and
    the jobs run as before."""
    with http_server(200) as web, smtp_server() as smtp:
        daemon = start_daemon(env=TRACE, smtp={**smtp.config_section(), "from": "s@example.org"})
        daemon.drop("hook.json", {"type": "webhook", "id": "hook", "url": f"{web.url}/x"})
        daemon.drop("mail.json", {"type": "send_email", "id": "mail", "to": "a@example.com"})
        modules = run_to_the_end(daemon, "completed", 2)
        assert web.wait_for(1)[0].path == "/x"
        assert smtp.wait_for(1)[0].recipients == ["a@example.com"]
    assert {"spoold.jobs.webhook_http", "urllib.request", "spoold.jobs.email_smtp", "smtplib"} <= (
        modules
    )
    assert "http.server" not in modules, "no API was configured"


def test_a_daemon_with_http_loads_the_api(start_daemon):
    daemon = start_daemon(env=TRACE, http={"host": "127.0.0.1", "port": free_port()})
    assert daemon.stop() == 0
    assert {"spoold.api", "http.server"} <= imported(daemon)


def test_the_commit_helper_imports_only_what_a_commit_needs(tmp_path: Path, monkeypatch, capfd):
    """Started as the daemon starts it; its stderr is the test's, captured."""
    spool = Spool(tmp_path / "spool", None)
    spool.ensure()
    monkeypatch.setenv("PYTHONPROFILEIMPORTTIME", "1")  # inherited by the helper only
    helper = Helper.spawn(spool)
    assert helper is not None
    try:
        assert helper_ask(helper, "commit", [Record("completed", "job-1", b"{}")], True) == [None]
    finally:
        helper.close()
    assert helper.process.returncode == 0
    modules = set(IMPORT_LINE.findall(capfd.readouterr().err))
    assert (spool.root / "completed" / "job-1.json").read_bytes() == b"{}"
    assert "spoold.spool" in modules, "the trace is read (else this test proves nothing)"
    assert [name for name in NOT_FOR_THE_HELPER if name in modules] == []
