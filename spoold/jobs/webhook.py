"""webhook: POST a JSON payload to a URL (urllib), only to hosts the config allows.

2xx is success. 5xx, 429 and network errors may pass, so they are ordinary
exceptions and the job is retried; any other answer (4xx, and 3xx because
redirects are never followed) fails the job at once with PermanentJobError.

What a webhook job may be is judged here, at intake and again before each run; the
POST itself is webhook_http's, imported at the first run: urllib.request and ssl
are ~6 MB of a daemon's memory, for a daemon that may never send a webhook.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any
from urllib.parse import SplitResult, urlsplit

from spoold.config import WebhookConfig
from spoold.errors import PermanentJobError
from spoold.jobcontext import JobContext
from spoold.jobs.basic import shown, wrong_field

logger = logging.getLogger(__name__)

SCHEMES = ("http", "https")
HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")  # an RFC 9110 token
UNSAFE_IN_VALUE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]|[^\x00-\xff]")


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


def post_webhook(
    config: WebhookConfig, job: dict[str, Any], context: JobContext | None = None
) -> dict[str, Any]:
    """POST the job's payload; PermanentJobError for answers a retry cannot change. A
    cancel stops it before the request, or cuts the connection while it waits.

    The result: the answer's status and the start of its body as text (webhook_http)."""
    from spoold.jobs import webhook_http  # here: see the module's docstring

    context = context or JobContext(str(job.get("id")))
    problems = validate(config, job)  # the config may have changed since the job was accepted
    if problems:
        raise PermanentJobError("; ".join(problems))
    context.check()
    where = _where(urlsplit(job["url"]))
    timeout = min(float(job.get("timeout") or config.timeout), config.timeout)
    status, body = webhook_http.post(job, where, timeout, context)
    logger.info("webhook job %s: POST %s answered %s", job.get("id"), where, status)
    return {"status": status, "body": body.decode("utf-8", "replace")}


def _where(parts: SplitResult) -> str:
    """The URL as messages show it: without the query, which may carry a secret."""
    return f"{parts.scheme}://{parts.netloc}{parts.path or '/'}"
