"""The HTTP API's endpoints: a Request in, an Answer out; no sockets here.

Jobs come in through Intake.submit, the same judge and the same durable write
as a file dropped into incoming/. Retry and cancel are the CLI's verbs from
manage.py, followed by telling the in-memory index what changed.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from spoold import manage, metrics, openapi
from spoold.errors import InvalidJob, TaskBusy, UnknownTask
from spoold.job import ID_RE, ID_RULE, Job, decode_object
from spoold.page import status_page
from spoold.recent import Recent
from spoold.spool import parse_stem

if TYPE_CHECKING:
    from spoold.daemon import Daemon

logger = logging.getLogger(__name__)

LIMIT_RE = re.compile(r"^[0-9]{1,7}$")
JSON = "application/json"


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
        return Answer(self.status, dump({"error": str(self), **self.extra}), JSON, self.headers)


def dump(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def ok(value: Any) -> Answer:
    return Answer(200, dump(value))


class Endpoints:
    """One method per endpoint, bound to one daemon."""

    def __init__(self, daemon: Daemon, token_set: Callable[[], bool]) -> None:
        self.daemon = daemon
        self.token_set = token_set
        self.recent = Recent(daemon.spool, lambda job_id: job_id in daemon.intake.ids)
        self.metrics = metrics.registry_for(daemon)

    def finished(self, job: Job, folder: str) -> None:
        """The worker's on_finish hook: a final record joins the recent lists."""
        if folder in ("completed", "failed"):
            self.recent.add(folder, job.to_record())

    # ----- read-only ---------------------------------------------------------------------

    def page(self, request: Request) -> Answer:
        recent = {f: self.recent.newest(f, 10) for f in ("completed", "failed")}
        html = status_page(self.daemon.snapshot(), recent)
        return Answer(200, html.encode(), "text/html; charset=utf-8")

    def healthz(self, request: Request) -> Answer:
        """200 while the daemon serves; 503 while the spool takes no writes (storage.py)."""
        health = self.daemon.spool.health
        if not health.ok:
            return Answer(503, dump({"status": "storage-error", "error": health.error}))
        return ok({"status": "ok"})

    def metrics_text(self, request: Request) -> Answer:
        return Answer(200, metrics.exposition(self.metrics), metrics.CONTENT_TYPE)

    def openapi(self, request: Request) -> Answer:
        return ok(openapi.document(list(self.daemon.registry), self.token_set()))

    def types(self, request: Request) -> Answer:
        return ok({"types": sorted(self.daemon.registry)})

    def stats(self, request: Request) -> Answer:
        return ok({"queue": self.daemon.queue_stats(), "worker": self.daemon.worker_stats()})

    def completed(self, request: Request) -> Answer:
        return ok({"jobs": self.recent.newest("completed", _limit(request, 10))})

    def failed(self, request: Request) -> Answer:
        return ok({"jobs": self.recent.newest("failed", _limit(request, 100))})

    def scheduler(self, request: Request) -> Answer:
        return ok(self.daemon.scheduler_stats())

    def job(self, request: Request) -> Answer:
        job_id = _job_id(request)
        for _ in range(3):  # the job may move between finding and reading it
            found = manage.locate(self.daemon.spool, job_id)
            if found is None:
                raise ApiError(404, f"no job with id {job_id!r}")
            record = manage.read_record(self.daemon.spool, found)
            if record is not None:
                break
        return ok({"id": job_id, "folder": found.folder, "record": record})

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
        """Intake.submit, with its refusals as ApiErrors."""
        try:
            return self.daemon.intake.submit(data, time.time())
        except InvalidJob as e:
            known, named = self.daemon.registry, data.get("type")
            extra = {} if isinstance(named, str) and named in known else {
                "registeredTypes": sorted(known)}  # fmt: skip
            raise ApiError(400, str(e), **extra) from e
        except OSError as e:
            logger.warning("could not write a job posted over HTTP into the spool: %s", e)
            reason = self.daemon.spool.health.error or e.strerror or e  # storage.py's one line
            raise ApiError(503, f"the spool could not be written: {reason}") from e

    # ----- operator verbs ----------------------------------------------------------------------

    def retry(self, request: Request) -> Answer:
        job_id = _job_id(request)
        daemon = self.daemon
        try:
            where = manage.retry(daemon.spool, job_id)
        except manage.NotRetryable as e:
            raise ApiError(409 if job_id in daemon.intake.ids else 404, str(e)) from e
        folder, _, name = where.partition("/")
        stem = parse_stem(name[:-5]) if folder == "pending" else None
        if stem:
            daemon.dispatcher.add(stem.text, stem.priority, 0.0)
        daemon.stats.changed(failed=-1)
        self.recent.forget(job_id)
        return ok({"success": True, "jobId": job_id, "folder": folder})

    def cancel(self, request: Request) -> Answer:
        job_id = _job_id(request)
        daemon = self.daemon
        try:
            found = manage.cancel(daemon.spool, job_id)
        except LookupError as e:
            raise ApiError(404, str(e.args[0] if e.args else e)) from e
        except manage.NotRetryable as e:
            raise ApiError(409, str(e)) from e
        daemon.dispatcher.discard(found.stem)
        daemon.stats.changed(failed=1)
        record = manage.read_record(daemon.spool, found)
        if record:
            self.recent.add("failed", record, found.name)
        return ok({"success": True, "jobId": job_id, "status": "failed", "error": "cancelled"})

    def run_task(self, request: Request) -> Answer:
        name = request.params["name"]
        if not ID_RE.match(name):
            raise ApiError(400, f"{name!r} is not a task name: names are {ID_RULE}")
        scheduler = getattr(self.daemon, "scheduler", None)
        if scheduler is None:
            raise ApiError(404, f"no scheduled task named {name!r}")
        try:
            job_id = scheduler.run_now(name)
        except UnknownTask as e:
            raise ApiError(404, str(e) or f"no scheduled task named {name!r}") from e
        except TaskBusy as e:
            raise ApiError(409, str(e) or f"task {name!r} is still pending or running") from e
        answer: dict[str, Any] = {"success": True, "task": name}
        if isinstance(job_id, str):
            answer["jobId"] = job_id
        return ok(answer)


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
        data = json.loads(body)
    except UnicodeDecodeError as e:
        raise ApiError(400, f"the body is not UTF-8 text (byte {e.start})") from e
    except json.JSONDecodeError as e:
        raise ApiError(400, f"not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from e
    if isinstance(data, dict) and isinstance(data.get("jobs"), list):
        return data["jobs"]
    if not isinstance(data, list):
        raise ApiError(400, 'a batch must be a JSON list of jobs [...] (or {"jobs": [...]})')
    return data
