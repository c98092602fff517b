"""A webhook's POST through urllib (webhook.py judges the job; this sends it).

Imported at a daemon's first webhook run, not before: urllib.request and ssl are
~6 MB of resident memory. Redirects are never followed, and a cancel cuts the
connection of a POST that waits for its answer.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import socket
import urllib.error
import urllib.request
from typing import Any

from spoold import __version__
from spoold.errors import PermanentJobError
from spoold.jobcontext import JobContext

logger = logging.getLogger(__name__)

RETRY_STATUSES = {429}
SNIPPET_BYTES = 200
RESULT_BODY_BYTES = 1024  # of a successful answer's body, kept in the job's result


def post(job: dict[str, Any], where: str, timeout: float, context: JobContext) -> tuple[int, bytes]:
    """POST the job's payload to its url (shown as `where` in messages): the answer's status
    and the first RESULT_BODY_BYTES of its body; PermanentJobError for an answer or a
    request a retry cannot change, OSError for one it may."""
    try:
        with _opener(context).open(_request(job), timeout=timeout) as response:
            return response.status, _body_start(response)
    except urllib.error.HTTPError as e:
        raise _failure(where, e.code, e.reason, e.headers, _snippet(e)) from e
    except (OSError, http.client.HTTPException) as e:  # URLError, timeouts, resets, bad answers
        reason = getattr(e, "reason", None) or e
        raise OSError(f"webhook POST {where} failed: {type(e).__name__}: {reason}") from e
    except ValueError as e:  # the URL or a header cannot be sent (InvalidURL, UnicodeError)
        raise PermanentJobError(f"webhook POST {where} cannot be sent: {e}") from e


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
