"""send_email against a real SMTP server (aiosmtpd) on 127.0.0.1."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from helpers_servers import SmtpServer, TlsFiles, closed_port, smtp_server, tls_files

from spoold.config import Config, SmtpConfig
from spoold.errors import PermanentJobError
from spoold.jobs.email import send_email, validate
from spoold.jobs.registry import build_registry

ONE_LINE = "field 'subject' must be a string of one line, without control characters"
REFUSE = {
    "nobody@example.com": "550 5.1.1 No such user here",
    "busy@example.com": "450 4.2.1 Mailbox busy, try later",
}


def email_job(**fields: Any) -> dict[str, Any]:
    return {"type": "send_email", "id": "mail-1", "attempts": 1, "timeout": 5.0, **fields}


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with smtp_server(refuse=REFUSE) as server:
        yield server


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_server(certificate: TlsFiles, monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpServer]:
    """A server offering STARTTLS and requiring login as robot/s3cret; the client trusts it."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate.cert))
    with smtp_server(tls=certificate.server_context(), login=("robot", "s3cret")) as server:
        yield server


def test_the_message_arrives_with_its_headers_body_and_envelope(smtp: SmtpServer) -> None:
    config = Config(smtp=smtp.config(sender="spoold@example.org"))
    run = build_registry(config, dict)["send_email"].run
    to = ["ann@example.com", "Bea Smith <bea@example.com>"]
    run(email_job(to=to, cc=["cy@example.com"], subject="Invoice 42", body="Hello,\nthere"))
    mail = smtp.wait_for(1)[0]
    assert mail.sender == "spoold@example.org"
    assert mail.recipients == ["ann@example.com", "bea@example.com", "cy@example.com"]
    assert mail.message["From"] == "spoold@example.org"
    assert mail.message["To"] == "ann@example.com, Bea Smith <bea@example.com>"
    assert mail.message["Cc"] == "cy@example.com"
    assert mail.message["Subject"] == "Invoice 42"
    assert mail.message.get_content() == "Hello,\nthere\n"
    assert "mail-1" in mail.message["Message-ID"]
    assert (mail.tls, mail.login) == (False, None)


def test_a_single_address_string_is_one_recipient_without_cc(smtp: SmtpServer) -> None:
    send_email(smtp.config(), email_job(to="ann@example.com", subject="Hi", body="x"))
    mail = smtp.wait_for(1)[0]
    assert mail.recipients == ["ann@example.com"]
    assert mail.message["Cc"] is None


def test_a_refused_recipient_is_a_permanent_failure_naming_it(smtp: SmtpServer) -> None:
    with pytest.raises(PermanentJobError, match=r"nobody@example\.com \(550 5\.1\.1"):
        send_email(smtp.config(), email_job(to="nobody@example.com"))
    assert smtp.messages == []


def test_a_temporarily_refused_recipient_is_retried(smtp: SmtpServer) -> None:
    with pytest.raises(OSError, match="450") as caught:
        send_email(smtp.config(), email_job(to="busy@example.com"))
    assert not isinstance(caught.value, PermanentJobError)


def test_one_refused_recipient_among_others_still_delivers_to_the_rest(smtp: SmtpServer) -> None:
    send_email(smtp.config(), email_job(to=["ann@example.com", "nobody@example.com"]))
    assert smtp.wait_for(1)[0].recipients == ["ann@example.com"]


def test_a_closed_port_is_retried_and_the_message_names_host_and_port() -> None:
    with closed_port() as port, pytest.raises(OSError, match=f"127.0.0.1:{port}") as caught:
        send_email(SmtpConfig(host="127.0.0.1", port=port), email_job(to="ann@example.com"))
    assert not isinstance(caught.value, PermanentJobError)


def test_the_job_timeout_bounds_the_wait_for_a_silent_server() -> None:
    with socket.socket() as silent:  # listens, never answers the greeting
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        config = SmtpConfig(host="127.0.0.1", port=silent.getsockname()[1], timeout=30)
        started = time.monotonic()
        with pytest.raises(OSError, match="timed out"):
            send_email(config, email_job(to="ann@example.com", timeout=0.2))
    assert time.monotonic() - started < 5


def test_starttls_against_a_server_without_it_fails_permanently_saying_so(smtp: SmtpServer) -> None:
    with pytest.raises(PermanentJobError, match="STARTTLS"):
        send_email(smtp.config(starttls=True), email_job(to="ann@example.com"))


def test_login_against_a_server_without_auth_fails_permanently(smtp: SmtpServer) -> None:
    with pytest.raises(PermanentJobError, match="AUTH"):
        send_email(smtp.config(username="u", password="p"), email_job(to="ann@example.com"))


def test_starttls_and_login_deliver_over_tls(tls_server: SmtpServer) -> None:
    config = tls_server.config(starttls=True, username="robot", password="s3cret")
    send_email(config, email_job(to="ann@example.com", subject="Secure"))
    mail = tls_server.wait_for(1)[0]
    assert (mail.tls, mail.login) == (True, "robot")
    assert mail.message["Subject"] == "Secure"


def test_a_wrong_password_is_a_permanent_failure(tls_server: SmtpServer) -> None:
    config = tls_server.config(starttls=True, username="robot", password="wrong")
    with pytest.raises(PermanentJobError, match="refused the login: 535"):
        send_email(config, email_job(to="ann@example.com"))
    assert tls_server.messages == []


def test_an_untrusted_certificate_is_not_accepted(certificate: TlsFiles) -> None:
    with smtp_server(tls=certificate.server_context()) as server:
        with pytest.raises(OSError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            send_email(server.config(starttls=True), email_job(to="ann@example.com"))
        assert server.messages == []


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({}, "field 'to' is required: an email address string or a list of them"),
        ({"to": 42}, "field 'to' must be an email address string or a list of them, got 42"),
        ({"to": "not an address"}, "field 'to' must be an email address"),
        ({"to": []}, "field 'to' must be an email address string or a list of them, got []"),
        ({"to": ["a@example.com", 7]}, "field 'to' must be"),
        ({"to": "a@example.com, b@example.com"}, "field 'to' must be"),
        ({"to": "a@example.com\nBcc: x@evil.test"}, "field 'to' must be"),
        ({"to": "a@example.com", "cc": {"b": 1}}, "field 'cc' must be an email address string"),
        ({"to": "a@example.com", "subject": 3}, "field 'subject' must be a string of one line"),
        ({"to": "a@example.com", "subject": "a\r\nBcc: x@evil.test"}, "field 'subject' must be"),
        ({"to": "a@example.com", "body": ["x"]}, "field 'body' must be a string, got [\"x\"]"),
        # What Python's email takes for a line break, or no header may hold: refused at
        # intake, not three failed attempts at run time (each escaped in the message).
        ({"to": "a@example.com", "subject": "a\u2028b"}, ONE_LINE + ', got "a\\u2028b"'),
        ({"to": "a@example.com", "subject": "a\x85b"}, "field 'subject' must be"),
        ({"to": "a@example.com", "subject": "a\x0bb"}, "field 'subject' must be"),
        ({"to": "a@example.com", "subject": "a\x00b"}, "field 'subject' must be"),
        ({"to": "a@example.com\u2029"}, "field 'to' must be"),
        ({"to": "a@example.com", "cc": ["b@example.com\x0c"]}, "field 'cc' must be"),
        ({"to": "a@"}, "field 'to' must be"),
        ({"to": "@example.com"}, "field 'to' must be"),
        ({"to": "Ann <a@exa\x00mple.com>"}, "field 'to' must be"),
        # getaddresses takes these, Python's header parser fails on them (a stdlib bug)
        ({"to": ".@[,"}, "field 'to' must be"),
        ({"to": " :.é@.[["}, "field 'to' must be"),
        ({"to": "(;) .@\\"}, "field 'to' must be"),
    ],
)  # fmt: skip
def test_validate_names_the_field_and_what_it_must_be(fields: dict[str, Any], problem: str) -> None:
    problems = validate({"type": "send_email", **fields})
    assert len(problems) == 1
    assert problems[0].startswith(problem)


def test_validate_accepts_a_well_formed_job() -> None:
    job = {"to": ["Ann <a@example.com>"], "cc": [], "subject": "Hi\tthere é", "body": "x\ny"}
    assert validate(job) == []


def test_a_subject_python_would_refuse_to_send_is_refused_before_any_attempt(
    smtp: SmtpServer,
) -> None:
    with pytest.raises(PermanentJobError, match="field 'subject'"):
        send_email(smtp.config(), email_job(to="a@example.com", subject="a\u2028b"))
    assert smtp.messages == []


def test_run_refuses_a_job_that_would_not_validate(smtp: SmtpServer) -> None:
    with pytest.raises(PermanentJobError, match="field 'to'"):
        send_email(smtp.config(), email_job(to=42))
