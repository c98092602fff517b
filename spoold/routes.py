"""The HTTP API's endpoints and the table that routes to them: a Request in, an Answer
out; no sockets here (api.py), and no daemon either: the endpoints ask a Service.

Jobs come in through the Service's submit, the same judge and the same durable write
as a file dropped into incoming/; retry and cancel are the CLI's verbs.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from spoold import __version__, metrics, openapi, strictjson
from spoold.errors import Conflict, InvalidJob, NotFound
from spoold.job import Job, decode_object
from spoold.names import ID_RE, ID_RULE
from spoold.page import ASSETS, HEADERS, HTML, PAGE, static_file
from spoold.service import Service

logger = logging.getLogger(__name__)

LIMIT_RE = re.compile(r"^[0-9]{1,7}$")
JSON = "application/json"
ID, NAME = "{id}", "{name}"
# path pattern → method → (endpoint, takes a JSON body). Fixed names before placeholders:
# a path a fixed pattern matches is never a placeholder's value (DELETE /jobs/stats is 405).
ROUTES: dict[tuple[str, ...], dict[str, tuple[str, bool]]] = {
    (): {"GET": ("page", False)},
    ("healthz",): {"GET": ("healthz", False)},
    ("metrics",): {"GET": ("metrics_text", False)},
    ("openapi.json",): {"GET": ("openapi", False)},
    ("types",): {"GET": ("types", False)},
    ("status",): {"GET": ("status", False)},
    ("jobs",): {"POST": ("submit", True)},
    ("jobs", "batch"): {"POST": ("batch", True)},
    ("jobs", "stats"): {"GET": ("stats", False)},
    ("jobs", "completed"): {"GET": ("completed", False)},
    ("jobs", "failed"): {"GET": ("failed", False)},
    ("jobs", "history"): {"GET": ("history", False)},
    ("jobs", ID): {"GET": ("job", False), "DELETE": ("cancel", False)},
    ("jobs", ID, "retry"): {"POST": ("retry", False)},
    ("scheduler",): {"GET": ("scheduler", False)},
    ("scheduler", NAME, "run"): {"POST": ("run_task", False)},
    ("static", NAME): {"GET": ("asset", False)},
}
QUERY_NAMES = {"completed": {"limit"}, "failed": {"limit"}}  # endpoint → query names it takes


def route(
    method: str, parts: list[str]
) -> tuple[tuple[str, bool] | None, dict[str, str], set[str]]:
    """(endpoint, path parameters, methods the path allows) for a request."""
    allowed: set[str] = set()
    for pattern, methods in ROUTES.items():
        params = _bind(pattern, parts)
        if params is None:
            continue
        if method in methods:
            return methods[method], params, allowed | set(methods)
        allowed |= set(methods)
        if ID not in pattern and NAME not in pattern:
            break
    return None, {}, allowed


def _bind(pattern: tuple[str, ...], parts: list[str]) -> dict[str, str] | None:
    if len(pattern) != len(parts):
        return None
    params = {}
    for expected, part in zip(pattern, parts, strict=True):
        if expected in (ID, NAME):
            params[expected[1:-1]] = part
        elif expected != part:
            return None
    return params


@dataclass
class Request:
    """What an endpoint sees: method, the path's parameters, the query, the body."""

    method: str
    params: dict[str, str] = field(default_factory=dict)
    query: dict[str, list[str]] = field(default_factory=dict)
    body: bytes = b""


@dataclass
class Answer:
    """What goes back: status, body, its type, any extra headers."""

    status: int
    body: bytes
    content_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)


class ApiError(Exception):
    """An answer other than success: status and a JSON {error, ...}."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.extra = extra
        self.headers: dict[str, str] = {}

    def answer(self) -> Answer:
        return Answer(
            self.status, strictjson.dumps({"error": str(self), **self.extra}), JSON, self.headers
        )


def ok(value: Any) -> Answer:
    return Answer(200, strictjson.dumps(value))


class Endpoints:
    """One method per endpoint, answering from one Service."""

    def __init__(self, service: Service, token_set: Callable[[], bool]) -> None:
        self.service = service
        self.token_set = token_set
        self.metrics = metrics.registry_for(service)

    # ----- read-only ---------------------------------------------------------------------

    def page(self, request: Request) -> Answer:
        return Answer(200, static_file(PAGE), HTML, dict(HEADERS))

    def asset(self, request: Request) -> Answer:
        name = request.params["name"]
        if name not in ASSETS:
            raise ApiError(404, f"no such file: /static/{name[:100]}")
        return Answer(200, static_file(name), ASSETS[name], dict(HEADERS))

    def healthz(self, request: Request) -> Answer:
        """200 while the daemon serves; 503 while the spool takes no writes (storage.py)."""
        error = self.service.storage_error()
        if error is not None:
            return Answer(503, strictjson.dumps({"status": "storage-error", "error": error}))
        return ok({"status": "ok"})

    def metrics_text(self, request: Request) -> Answer:
        return Answer(200, metrics.exposition(self.metrics), metrics.CONTENT_TYPE)

    def openapi(self, request: Request) -> Answer:
        return ok(openapi.document(self.service.job_types(), self.token_set()))

    def types(self, request: Request) -> Answer:
        return ok({"types": sorted(self.service.job_types())})

    def stats(self, request: Request) -> Answer:
        snapshot = self.service.snapshot()
        return ok({"queue": snapshot["queue"], "worker": snapshot["worker"]})

    def status(self, request: Request) -> Answer:
        uptime = round(max(time.time() - self.service.started_at, 0.0), 3)
        return ok({**self.service.snapshot(), "version": __version__, "uptimeSeconds": uptime})

    def history(self, request: Request) -> Answer:
        return ok({"minutes": self.service.history(time.time())})

    def completed(self, request: Request) -> Answer:
        return ok({"jobs": self.service.recent("completed", _limit(request, 10))})

    def failed(self, request: Request) -> Answer:
        return ok({"jobs": self.service.recent("failed", _limit(request, 100))})

    def scheduler(self, request: Request) -> Answer:
        return ok(self.service.snapshot()["scheduler"])

    def job(self, request: Request) -> Answer:
        job_id = _job_id(request)
        found = self.service.find(job_id)
        if found is None:
            raise ApiError(404, f"no job with id {job_id!r}")
        folder, record = found
        shown = {"id": job_id, "folder": folder, "record": record}
        if folder == "running":
            shown["progress"] = self.service.progress(job_id)
        return ok(shown)

    # ----- jobs in ---------------------------------------------------------------------------

    def submit(self, request: Request) -> Answer:
        try:
            data = decode_object(request.body)
        except InvalidJob as e:
            raise ApiError(400, str(e)) from e
        job = self._submit(data)
        return ok({"success": True, "jobId": job.id, "type": job.type, "priority": job.priority})

    def batch(self, request: Request) -> Answer:
        items = _batch_items(request.body)
        results = []
        for item in items:
            try:
                if not isinstance(item, dict):
                    raise ApiError(400, "a job must be a JSON object {...}")
                results.append({"jobId": self._submit(item).id, "status": "enqueued"})
            except ApiError as e:
                results.append({"error": str(e), "status": "failed"})
        return ok({"jobs": results})

    def _submit(self, data: dict[str, Any]) -> Job:
        """Service.submit, with its refusals as ApiErrors."""
        try:
            with self._refusals():
                return self.service.submit(data)
        except InvalidJob as e:
            known, named = self.service.job_types(), data.get("type")
            extra = {} if isinstance(named, str) and named in known else {
                "registeredTypes": sorted(known)}  # fmt: skip
            raise ApiError(400, str(e), **extra) from e

    @contextmanager
    def _refusals(self) -> Iterator[None]:
        """A verb's NotFound as 404 and Conflict as 409, with its message; a spool that
        cannot be written (a full disk, a read-only mount) as 503 saying why, in storage.py's
        one line where it has one: the client may try again, and the daemon serves on."""
        try:
            yield
        except NotFound as e:
            raise ApiError(404, str(e)) from e
        except Conflict as e:
            raise ApiError(409, str(e)) from e
        except OSError as e:
            logger.warning("http: could not write the spool: %s", e)
            reason = self.service.storage_error() or e.strerror or e
            raise ApiError(503, f"the spool could not be written: {reason}") from e

    # ----- operator verbs ----------------------------------------------------------------------

    def retry(self, request: Request) -> Answer:
        job_id = _job_id(request)
        with self._refusals():
            folder = self.service.retry(job_id)
        return ok({"success": True, "jobId": job_id, "folder": folder})

    def cancel(self, request: Request) -> Answer:
        job_id = _job_id(request)
        with self._refusals():  # OSError: the request to stop (cancel/) or the record
            status = self.service.cancel(job_id)
        if status == "cancelling":  # asked to stop: its record says so once it has
            return Answer(
                202, strictjson.dumps({"success": True, "jobId": job_id, "status": status})
            )
        return ok({"success": True, "jobId": job_id, "status": "failed", "error": "cancelled"})

    def run_task(self, request: Request) -> Answer:
        name = request.params["name"]
        if not ID_RE.match(name):
            raise ApiError(400, f"{name!r} is not a task name: names are {ID_RULE}")
        with self._refusals():
            job_id = self.service.run_task(name)
        return ok({"success": True, "task": name, "jobId": job_id})


def _job_id(request: Request) -> str:
    job_id = request.params["id"]
    if not ID_RE.match(job_id):
        raise ApiError(400, f"{job_id!r} is not a job id: ids are {ID_RULE}")
    return job_id


def _limit(request: Request, default: int) -> int:
    values = request.query.get("limit")
    if not values:
        return default
    text = values[-1].strip()
    if not LIMIT_RE.match(text) or not 1 <= int(text) <= openapi.MAX_LIMIT:
        raise ApiError(400, f"limit must be a whole number from 1 to {openapi.MAX_LIMIT},"
                            f" got {values[-1][:40]!r}")  # fmt: skip
    return int(text)


def _batch_items(body: bytes) -> list[Any]:
    """A batch body: a JSON list of jobs, or {"jobs": [...]}."""
    try:
        data = strictjson.loads(body)
    except InvalidJob as e:
        raise ApiError(400, str(e)) from e
    if isinstance(data, dict) and isinstance(data.get("jobs"), list):
        jobs: list[Any] = data["jobs"]
        return jobs
    if not isinstance(data, list):
        raise ApiError(400, 'a batch must be a JSON list of jobs [...] (or {"jobs": [...]})')
    return data
