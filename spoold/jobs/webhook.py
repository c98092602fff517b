"""webhook: POST a JSON payload to a URL (urllib), only to hosts the config allows.

2xx is success. 5xx, 429 and network errors may pass, so they are ordinary
exceptions and the job is retried; any other answer (4xx, and 3xx because
redirects are never followed) fails the job at once with PermanentJobError.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import re
import socket
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import SplitResult, urlsplit

from spoold import __version__
from spoold.config import WebhookConfig
from spoold.errors import PermanentJobError
from spoold.jobcontext import JobContext
from spoold.jobs.basic import shown, wrong_field

logger = logging.getLogger(__name__)

SCHEMES = ("http", "https")
HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")  # an RFC 9110 token
UNSAFE_IN_VALUE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]|[^\x00-\xff]")
RETRY_STATUSES = {429}
SNIPPET_BYTES = 200
RESULT_BODY_BYTES = 1024  # of a successful answer's body, kept in the job's result


def validate(config: WebhookConfig, job: dict[str, Any]) -> list[str]:
    """Problems with url, payload and headers, found before the job is accepted."""
    return _url_problems(config, job) + _payload_problems(job) + _header_problems(job)


def _url_problems(config: WebhookConfig, job: dict[str, Any]) -> list[str]:
    url = job.get("url")
    if not isinstance(url, str) or not url:
        return [wrong_field(job, "url", "an http:// or https:// URL string")]
    problem = url_problem(url, config.allowed_hosts)
    return [f"field 'url' {problem}"] if problem else []


def url_problem(url: str, allowed_hosts: tuple[str, ...] | None) -> str | None:
    """Why a webhook may not go to url, or None; checked at accept time and again at run time."""
    if any(ord(c) <= 32 or ord(c) == 127 for c in url):
        return f"must not contain spaces or control characters, got {shown(url)}"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError as e:
        return f"is not a valid URL ({e}): {shown(url)}"
    if parts.scheme.lower() not in SCHEMES:
        return f"must be an http:// or https:// URL, got {shown(url)}"
    if not parts.hostname:
        return f"has no host name: {shown(url)}"
    if not _host_ok(parts.hostname):
        return f"has a host name that cannot be looked up (empty or over-long label): {shown(url)}"
    if not (parts.path + parts.query + parts.fragment).isascii():
        return f"must be ASCII after the host: percent-encode other characters, got {shown(url)}"
    if parts.username is not None or parts.password is not None:
        return "must not contain credentials (user:password@); send them in 'headers'"
    if allowed_hosts is not None and parts.hostname not in allowed_hosts:
        allowed = ", ".join(allowed_hosts) or "none"
        return f"host {parts.hostname!r} is not in webhook.allowedHosts ({allowed})"
    return None


def _host_ok(hostname: str) -> bool:
    """Whether the resolver can be asked for hostname (it is IDNA-encoded first)."""
    try:
        hostname.encode("idna")
    except UnicodeError:
        return False
    return True


def _payload_problems(job: dict[str, Any]) -> list[str]:
    try:
        json.dumps(job.get("payload", {}), allow_nan=False)
    except (TypeError, ValueError):
        return [wrong_field(job, "payload", "a JSON value")]
    return []


def _header_problems(job: dict[str, Any]) -> list[str]:
    headers = job.get("headers")
    if headers is None:
        return []
    expected = "a mapping of header names to one-line Latin-1 string values"
    if not isinstance(headers, dict):
        return [wrong_field(job, "headers", expected)]
    return [
        f"field 'headers' must be {expected}, got {shown(name)}: {shown(value)}"
        for name, value in headers.items()
        if not _header_ok(name, value)
    ]


def _header_ok(name: Any, value: Any) -> bool:
    """An RFC 9110 token for a name; a value of printable Latin-1 (http.client sends
    header values as Latin-1) with no control character but a tab."""
    if not isinstance(name, str) or not HEADER_NAME.match(name) or not isinstance(value, str):
        return False
    return not UNSAFE_IN_VALUE.search(value)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect could lead to a host allowedHosts forbids, so 3xx is answered as an error."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class _HttpHandler(urllib.request.HTTPHandler):
    """Plain HTTP through a connection a cancel can cut (see _cuttable)."""

    def __init__(self, context: JobContext) -> None:
        super().__init__()
        self.job_context = context

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_cuttable(http.client.HTTPConnection, self.job_context), req)


class _HttpsHandler(urllib.request.HTTPSHandler):
    """HTTPS through a connection a cancel can cut (see _cuttable)."""

    def __init__(self, context: JobContext) -> None:
        super().__init__()
        self.job_context = context

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        connection = _cuttable(http.client.HTTPSConnection, self.job_context)
        return self.do_open(connection, req, context=self._context)  # type: ignore[attr-defined]


def _cuttable(kind: type[http.client.HTTPConnection], context: JobContext) -> Any:
    """A connection factory whose connections a cancel shuts down, so that a POST waiting
    for a slow server's answer stops at once rather than at its timeout."""

    def connect(host: str, **options: Any) -> http.client.HTTPConnection:
        connection = kind(host, **options)
        context.on_cancel(lambda: _cut(connection))
        return connection

    return connect


def _cut(connection: http.client.HTTPConnection) -> None:
    """Wake the thread reading the answer (it gets an error: the job is cancelled)."""
    if connection.sock is not None:
        with contextlib.suppress(OSError):  # already closed: nothing to wake
            connection.sock.shutdown(socket.SHUT_RDWR)


def _opener(context: JobContext) -> urllib.request.OpenerDirector:
    """One per attempt: its connections belong to this job's context."""
    return urllib.request.build_opener(_NoRedirects, _HttpHandler(context), _HttpsHandler(context))


def post_webhook(
    config: WebhookConfig, job: dict[str, Any], context: JobContext | None = None
) -> dict[str, Any]:
    """POST the job's payload; PermanentJobError for answers a retry cannot change. A
    cancel stops it before the request, or cuts the connection while it waits.

    The result: the answer's status and the first RESULT_BODY_BYTES of its body as text."""
    context = context or JobContext(str(job.get("id")))
    problems = validate(config, job)  # the config may have changed since the job was accepted
    if problems:
        raise PermanentJobError("; ".join(problems))
    context.check()
    where = _where(urlsplit(job["url"]))
    timeout = min(float(job.get("timeout") or config.timeout), config.timeout)
    try:
        with _opener(context).open(_request(job), timeout=timeout) as response:
            status = response.status
            body = _body_start(response)
    except urllib.error.HTTPError as e:
        raise _failure(where, e.code, e.reason, e.headers, _snippet(e)) from e
    except (OSError, http.client.HTTPException) as e:  # URLError, timeouts, resets, bad answers
        reason = getattr(e, "reason", None) or e
        raise OSError(f"webhook POST {where} failed: {type(e).__name__}: {reason}") from e
    except ValueError as e:  # the URL or a header cannot be sent (InvalidURL, UnicodeError)
        raise PermanentJobError(f"webhook POST {where} cannot be sent: {e}") from e
    logger.info("webhook job %s: POST %s answered %s", job.get("id"), where, status)
    return {"status": status, "body": body.decode("utf-8", "replace")}


def _body_start(response: Any) -> bytes:
    """The start of a successful answer's body for the result; b"" if it cannot be read:
    the POST was answered, so a broken body must not make the job run again."""
    try:
        data: bytes = response.read(RESULT_BODY_BYTES)
    except (OSError, http.client.HTTPException) as e:
        logger.debug("cannot read the answer's body for the result: %s", e)
        return b""
    return data


def _request(job: dict[str, Any]) -> urllib.request.Request:
    """The POST: JSON body, our defaults, then the job's headers (which win)."""
    body = json.dumps(job.get("payload", {}), allow_nan=False).encode()
    request = urllib.request.Request(job["url"], data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    request.add_header("User-Agent", f"spoold/{__version__}")
    for name, value in (job.get("headers") or {}).items():
        request.add_header(name, value)
    return request


def _where(parts: SplitResult) -> str:
    """The URL as messages show it: without the query, which may carry a secret."""
    return f"{parts.scheme}://{parts.netloc}{parts.path or '/'}"


def _failure(where: str, status: int, reason: str, headers: Any, snippet: str) -> Exception:
    """The exception for a non-2xx answer: retried for 5xx and 429, permanent otherwise."""
    message = f"webhook POST {where} answered {status} {reason}".rstrip()
    if 300 <= status < 400:
        location = headers.get("Location", "") if headers else ""
        message += f" (a redirect to {location!r}; redirects are not followed, use the final URL)"
    elif snippet:
        message += f": {snippet}"
    if status >= 500 or status in RETRY_STATUSES:
        return OSError(message)
    return PermanentJobError(message)


def _snippet(error: urllib.error.HTTPError) -> str:
    """The start of an error answer's body, which often says what was wrong; closes the answer."""
    try:
        data = error.read(SNIPPET_BYTES)
    except (OSError, http.client.HTTPException):
        return ""
    finally:
        error.close()
    return " ".join(data.decode("utf-8", "replace").split())
