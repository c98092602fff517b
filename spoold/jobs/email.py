"""send_email: one message through the configured SMTP server (smtplib).

A 5xx answer is the server saying "never": the job fails at once with
PermanentJobError. Connection problems and 4xx answers may pass, so they are
ordinary exceptions and the job is retried.

The message is judged and built here; the SMTP session is email_smtp's, imported at
the first send: smtplib and ssl are ~5 MB of a daemon's memory. This module, which
loads Python's email package, is itself imported at the first email job (see
registry.py).
"""

from __future__ import annotations

import logging
import re
from email.message import EmailMessage
from email.utils import formatdate, getaddresses, make_msgid
from typing import Any

from spoold.config import SmtpConfig
from spoold.errors import PermanentJobError
from spoold.jobcontext import JobContext
from spoold.jobs.basic import wrong_field

logger = logging.getLogger(__name__)

ADDRESSES = "an email address string or a list of them"
UNSAFE_IN_HEADER = re.compile("[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")
ADDRESS_UNSAFE = re.compile(r"[\s\x00-\x1f\x7f]")


def validate(job: dict[str, Any]) -> list[str]:
    """Problems with to, cc, subject and body, found before the job is accepted: all that
    can be judged without a server, so a run fails only for what a server says."""
    problems = []
    if not _addresses_ok(job.get("to"), allow_empty=False):
        problems.append(wrong_field(job, "to", ADDRESSES))
    if job.get("cc") is not None and not _addresses_ok(job["cc"], allow_empty=True):
        problems.append(wrong_field(job, "cc", ADDRESSES))
    subject = job.get("subject")
    if subject is not None and not (isinstance(subject, str) and header_safe(subject)):
        problems.append(
            wrong_field(job, "subject", "a string of one line, without control characters")
        )
    if job.get("body") is not None and not isinstance(job["body"], str):
        problems.append(wrong_field(job, "body", "a string"))
    return problems


def header_safe(text: str) -> bool:
    """Whether text can be a header value as it is: no control character (a tab aside)
    and nothing Python's email takes for a line break (U+2028, U+0085, ...), which
    would inject headers or be refused when the message is built."""
    return not UNSAFE_IN_HEADER.search(text)


def _addresses_ok(value: Any, allow_empty: bool) -> bool:
    """One address string, or a list of them (empty only where the field is optional)."""
    if isinstance(value, str):
        return _is_address(value)
    if isinstance(value, list):
        return (allow_empty or bool(value)) and all(_is_address(v) for v in value)
    return False


def _is_address(value: Any) -> bool:
    """Exactly one address such as 'a@example.com' or 'Ann <a@example.com>': one '@'
    with something on both sides, no space or control character in the address."""
    if not isinstance(value, str) or not header_safe(value):
        return False
    parsed = getaddresses([value])
    if len(parsed) != 1:
        return False
    local, at, domain = parsed[0][1].rpartition("@")
    if not (local and at and domain) or ADDRESS_UNSAFE.search(parsed[0][1]):
        return False
    return _parses_as_header(value)


def _parses_as_header(value: str) -> bool:
    """Whether Python's email takes value as an address header: its parser fails on some
    odd addresses that getaddresses takes ('.@[,') with AttributeError, IndexError or
    TypeError, and would do so at every attempt."""
    try:
        EmailMessage()["To"] = value
    except Exception:  # any of the parser's failures: no retry would change them
        return False
    return True


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def build_message(job: dict[str, Any], sender: str) -> EmailMessage:
    """The message as the recipients will see it; Cc is a header, Bcc does not exist."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(_as_list(job["to"]))
    if job.get("cc"):
        message["Cc"] = ", ".join(_as_list(job["cc"]))
    message["Subject"] = job.get("subject") or ""
    message["Date"] = formatdate(localtime=True)
    domain = sender.rpartition("@")[2] or "localhost"  # never ask DNS for our own name
    message["Message-ID"] = make_msgid(idstring=str(job.get("id", "")) or None, domain=domain)
    message.set_content(job.get("body") or "")
    return message


def envelope_recipients(job: dict[str, Any]) -> list[str]:
    """The bare addresses of to + cc, each once, in order."""
    pairs = getaddresses(_as_list(job["to"]) + _as_list(job.get("cc")))
    return list(dict.fromkeys(address for _, address in pairs))


def send_email(
    smtp: SmtpConfig, job: dict[str, Any], context: JobContext | None = None
) -> dict[str, Any]:
    """Send the job's message; raise PermanentJobError on a 5xx, another error to retry.
    A cancel stops it before it connects, or once connected before the message is sent.

    The result: the recipients the server accepted, and those it refused with its reply."""
    from spoold.jobs import email_smtp  # here: see the module's docstring

    context = context or JobContext(str(job.get("id")))
    problems = validate(job)
    if problems:
        raise PermanentJobError("; ".join(problems))
    try:
        message = build_message(job, smtp.sender)
        recipients = envelope_recipients(job)
    except Exception as e:  # building involves no server: a failure is the job's for good
        raise PermanentJobError(f"the message cannot be built: {type(e).__name__}: {e}") from e
    where = email_smtp.server(smtp)
    context.check()
    refused = email_smtp.deliver(smtp, message, recipients, _timeout(job, smtp.timeout), context)
    if refused:
        logger.warning("%s refused some recipients of job %s: %s", where, job.get("id"), refused)
    logger.info("sent email job %s to %s via %s", job.get("id"), ", ".join(recipients), where)
    accepted = [address for address in recipients if address not in refused]
    result: dict[str, Any] = {"accepted": accepted}
    if refused:
        result["refused"] = {
            address: email_smtp.reply(*answer) for address, answer in refused.items()
        }
    return result


def _timeout(job: dict[str, Any], configured: float) -> float:
    """The attempt's own limit, never longer than the config allows."""
    return min(float(job.get("timeout") or configured), configured)
