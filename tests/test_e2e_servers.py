"""End to end, the network job types (SPEC 3) through the daemon, against real servers on
127.0.0.1: webhook answers seen from the server's side, email as the SMTP server got it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import DaemonProcess, records, wait_until
from helpers_servers import DROP, SmtpServer, http_server, smtp_server


def only_record(daemon: DaemonProcess, folder: str) -> dict:
    wait_until(lambda: records(daemon.spool, folder), timeout=15)
    [record] = records(daemon.spool, folder)
    return record


def test_a_webhook_answered_503_then_200_completes_on_its_second_attempt(start_daemon):
    with http_server(503, 200) as web:
        daemon = start_daemon(jobs={"maxBackoff": 1})
        payload = {"invoice": 42, "paid": True}
        job = {"type": "webhook", "id": "hook-1", "url": f"{web.url}/paid", "payload": payload}
        daemon.drop("hook.json", job)
        record = only_record(daemon, "completed")
        first, second = web.wait_for(2)
        assert record["attempts"] == 2
        assert record["priority"] == "high", "the webhook type's default"
        assert [(r.method, r.path) for r in (first, second)] == [("POST", "/paid")] * 2
        assert first.json() == second.json() == payload
        # by the wall clock, as the backoff is kept (this host's runs 0.5% fast of monotonic)
        assert second.wall - first.wall >= 1.0, "spaced by the backoff"
        assert len(web.requests) == 2
        assert daemon.stop() == 0


def test_a_webhook_answered_400_fails_after_one_attempt(start_daemon):
    with http_server(400) as web:
        daemon = start_daemon(jobs={"maxBackoff": 0.1})
        job = {"type": "webhook", "id": "hook-2", "url": f"{web.url}/nope", "payload": {}}
        daemon.drop("hook.json", job)
        record = only_record(daemon, "failed")
        assert record["attempts"] == 1
        assert record["maxAttempts"] == 5
        assert "400" in record["error"] and "/nope" in record["error"]
        assert len(web.requests) == 1
        assert daemon.stop() == 0


def test_a_webhook_whose_connection_drops_is_retried(start_daemon):
    with http_server(DROP, 200) as web:
        daemon = start_daemon(jobs={"maxBackoff": 0.2})
        daemon.drop("hook.json", {"type": "webhook", "id": "hook-3", "url": web.url})
        record = only_record(daemon, "completed")
        assert record["attempts"] == 2
        assert len(web.wait_for(2)) == 2
        assert daemon.stop() == 0


def test_a_webhook_to_a_host_not_allowed_is_rejected_before_it_runs(start_daemon):
    with http_server(200) as web:
        daemon = start_daemon(webhook={"allowedHosts": ["hooks.example.com"]})
        daemon.drop("hook.json", {"type": "webhook", "id": "hook-4", "url": web.url})
        wait_until(lambda: (daemon.spool / "failed" / "hook.json.error.json").exists())
        error = (daemon.spool / "failed" / "hook.json.error.json").read_text()
        assert "allowedHosts" in error and "127.0.0.1" in error
        assert web.requests == []
        assert daemon.stop() == 0


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with smtp_server(refuse=["nobody@example.com"]) as server:
        yield server


def test_an_email_arrives_with_subject_to_cc_and_body(start_daemon, smtp):
    daemon = start_daemon(smtp={**smtp.config_section(), "from": "spoold@example.org"})
    job = {
        "type": "send_email",
        "id": "mail-1",
        "to": "ops@example.com",
        "cc": ["Ann <ann@example.com>", "bob@example.com"],
        "subject": "Disk is fine",
        "body": "All volumes below 80 %.\nGrüße",
    }
    daemon.drop("mail.json", job)
    record = only_record(daemon, "completed")
    [mail] = smtp.wait_for(1)
    assert record["attempts"] == 1 and record["id"] == "mail-1"
    message = mail.message
    assert message["Subject"] == "Disk is fine"
    assert message["To"] == "ops@example.com"
    assert message["Cc"] == "Ann <ann@example.com>, bob@example.com"
    assert message["From"] == "spoold@example.org"
    assert message.get_content().rstrip("\n") == "All volumes below 80 %.\nGrüße"
    assert mail.sender == "spoold@example.org"
    assert mail.recipients == ["ops@example.com", "ann@example.com", "bob@example.com"]
    assert daemon.stop() == 0


def test_an_email_the_server_refuses_for_good_fails_at_once(start_daemon, smtp):
    daemon = start_daemon(smtp=smtp.config_section(), jobs={"maxBackoff": 0.1})
    job = {"type": "send_email", "id": "mail-2", "to": "nobody@example.com", "subject": "x"}
    daemon.drop("mail.json", job)
    record = only_record(daemon, "failed")
    assert record["attempts"] == 1
    assert "nobody@example.com" in record["error"] and "550" in record["error"]
    assert smtp.messages == []
    assert daemon.stop() == 0
