"""An email job's SMTP session (smtplib), and what the server's answers mean for it.

Imported at a daemon's first email run (email.py builds the message), not before:
smtplib and ssl are ~5 MB of resident memory. A 5xx answer is the server saying
"never": PermanentJobError. Connection problems and 4xx answers may pass: OSError,
and the job is retried.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage

from spoold.config import SmtpConfig
from spoold.errors import PermanentJobError
from spoold.jobcontext import JobContext


def deliver(
    smtp: SmtpConfig,
    message: EmailMessage,
    recipients: list[str],
    timeout: float,
    context: JobContext,
) -> dict[str, tuple[int, bytes]]:
    """Send message to recipients in one SMTP session (STARTTLS and login as configured);
    the recipients the server refused (the others took it)."""
    where = server(smtp)
    try:
        with smtplib.SMTP(smtp.host, smtp.port, timeout=timeout) as client:
            if smtp.starttls:
                client.starttls(context=ssl.create_default_context())
            if smtp.username:
                client.login(smtp.username, smtp.password or "")
            context.check()
            return client.send_message(message, smtp.sender, recipients)
    except smtplib.SMTPNotSupportedError as e:
        raise PermanentJobError(f"{where}: {e} (check the smtp section of the config)") from e
    except smtplib.SMTPRecipientsRefused as e:
        raise _refused(where, e) from e
    except smtplib.SMTPResponseException as e:
        raise _rejected(where, e) from e
    except OSError as e:  # smtplib.SMTPException is an OSError too
        raise OSError(f"{where}: {type(e).__name__}: {e}") from e


def _refused(where: str, error: smtplib.SMTPRecipientsRefused) -> Exception:
    """All recipients refused: permanent when every refusal is a 5xx."""
    parts = [
        f"{address} ({reply(code, text)})" for address, (code, text) in error.recipients.items()
    ]
    message = f"{where} refused every recipient: {', '.join(parts)}"
    codes = [code for code, _ in error.recipients.values()]
    return PermanentJobError(message) if all(code >= 500 for code in codes) else OSError(message)


def _rejected(where: str, error: smtplib.SMTPResponseException) -> Exception:
    """A refused sender, message, login or greeting: permanent when the code is a 5xx."""
    what = {
        smtplib.SMTPSenderRefused: "refused the sender",
        smtplib.SMTPDataError: "refused the message",
        smtplib.SMTPAuthenticationError: "refused the login",
        smtplib.SMTPConnectError: "refused the connection",
        smtplib.SMTPHeloError: "refused HELO",
    }.get(type(error), "answered")
    message = f"{where} {what}: {reply(error.smtp_code, error.smtp_error)}"
    return PermanentJobError(message) if error.smtp_code >= 500 else OSError(message)


def server(smtp: SmtpConfig) -> str:
    """The server as messages name it."""
    return f"SMTP server {smtp.host}:{smtp.port}"


def reply(code: int, text: bytes | str) -> str:
    """A server's answer as a record and a log line show it: '550 no such user'."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {text}".strip()
