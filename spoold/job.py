"""The Job value: JSON in and out, validation, and the record of its life.

A job file is judged here and nowhere else, whichever door it came through
(a file in incoming/, an HTTP body, a scheduled task), so every door gives the
same answer with the same words.
"""

from __future__ import annotations

import codecs
import math
import uuid
from dataclasses import dataclass
from functools import partial
from json.encoder import encode_basestring as _quoted  # C: a str as json.dumps writes it
from typing import Any, TypeGuard
from zoneinfo import ZoneInfo

from spoold import followups, strictjson
from spoold.errors import InvalidJob
from spoold.jobs import JobType
from spoold.names import FOLLOW_UP_ID_RE, ID_RE, ID_RULE, PRIORITIES
from spoold.results import RESULT_FIELDS
from spoold.times import iso, iso_or_none, parse_time

# Fields spoold writes itself; a producer setting them would forge the job's history.
STATE_FIELDS = (
    "status", "attempts", "createdAt", "startedAt", "completedAt", "error",
    "durationMs", "previousErrors", "nextAttemptAt", *RESULT_FIELDS,
)  # fmt: skip


@dataclass(slots=True)
class Job:
    """A job and its state. `data` holds the producer's fields, untouched. Slots: the
    dispatcher keeps one per waiting job (a __dict__ each was ~40% of their memory)."""

    data: dict[str, Any]
    id: str
    type: str
    priority: str
    max_attempts: int
    created_at: float
    timeout: float | None = None
    run_at: float | None = None
    attempts: int = 0
    status: str = "pending"
    started_at: float | None = None
    completed_at: float | None = None
    error: str | None = None
    duration_ms: int | None = None
    # Immutable defaults rather than a new list and dict per job (~120 bytes each, for
    # every waiting job): both are only ever replaced, never changed in place.
    previous_errors: tuple[str, ...] = ()
    next_attempt_at: float | None = None
    result: dict[str, Any] | None = None  # see results.result_fields
    # The producer's file, where its record can be those bytes and the state fields after
    # them (see producer_bytes and to_json); None: the record is encoded from `data`.
    source: bytes | None = None

    @property
    def due(self) -> float:
        """Not to be dispatched before this epoch time (runAt, or a retry's backoff)."""
        return max(self.run_at or 0.0, self.next_attempt_at or 0.0)

    def to_record(self) -> dict[str, Any]:
        """The producer's fields plus the state fields, as written to the spool."""
        record = dict(self.data)
        record.update(
            id=self.id,
            type=self.type,
            priority=self.priority,
            status=self.status,
            attempts=self.attempts,
            maxAttempts=self.max_attempts,
            createdAt=iso(self.created_at),
            startedAt=iso_or_none(self.started_at),
            completedAt=iso_or_none(self.completed_at),
            error=self.error,
            durationMs=self.duration_ms,
        )
        if self.previous_errors:
            record["previousErrors"] = list(self.previous_errors)
        if self.next_attempt_at is not None and self.status == "pending":
            record["nextAttemptAt"] = iso(self.next_attempt_at)
        if self.result:
            record.update(self.result)
        return record

    def to_json(self) -> bytes:
        """to_record() as strict JSON on one line. A job from a producer's file whose
        fields spoold keeps as they are (see producer_bytes) is written as those bytes
        with the state fields after them, the same record: encoding the producer's
        fields again was a third of a worker's time per small job, more on big ones."""
        if self.source is None or self.result:
            return dump_record(self.to_record())
        return self.source[:-1] + self._state_tail().encode()

    def _state_tail(self) -> str:
        """`, "status": ...}` and a newline: the keys to_record() adds to `data`, in its
        order, encoded as json.dumps would."""
        data, fields = self.data, []
        if "id" not in data:
            fields.append(f'"id": {_quoted(self.id)}')
        if "priority" not in data:
            fields.append(f'"priority": {_quoted(self.priority)}')
        fields.append(f'"status": {_quoted(self.status)}, "attempts": {self.attempts}')
        if "maxAttempts" not in data:
            fields.append(f'"maxAttempts": {self.max_attempts}')
        fields.append(
            f'"createdAt": "{iso(self.created_at)}", "startedAt": {_time(self.started_at)},'
            f' "completedAt": {_time(self.completed_at)}, "error": {_text(self.error)},'
            f' "durationMs": {"null" if self.duration_ms is None else self.duration_ms}'
        )
        if self.previous_errors:
            errors = ", ".join(_quoted(error) for error in self.previous_errors)
            fields.append(f'"previousErrors": [{errors}]')
        if self.next_attempt_at is not None and self.status == "pending":
            fields.append(f'"nextAttemptAt": "{iso(self.next_attempt_at)}"')
        return ", " + ", ".join(fields) + "}\n"

    def run_args(self, default_timeout: float) -> dict[str, Any]:
        """The dict a job type's run() receives: the job's fields plus id, attempts, timeout."""
        args = dict(self.data)
        args.update(id=self.id, attempts=self.attempts, timeout=self.timeout or default_timeout)
        return args


def producer_bytes(raw: bytes, job: Job) -> bytes | None:
    """The bytes of the JSON object a job was judged from, if its record can be them with
    the state fields after them (Job.to_json): one line (records are), no \\u escape
    (a key so spelled could repeat another), and each field spoold also writes (id,
    type, priority, maxAttempts) there at most once, with the value the job has: else
    None, and the record is encoded from the job's fields."""
    body = raw.strip(b" \t\r\n")
    if not body.endswith(b"}") or b"\n" in body or b"\r" in body or b"\\u" in body:
        return None
    data, keeps = job.data, (job.id, job.type, job.priority, job.max_attempts)
    given = (data.get("id", job.id), data.get("type"), data.get("priority", job.priority),
             data.get("maxAttempts", job.max_attempts))  # fmt: skip
    if given != keeps or body.startswith(codecs.BOM_UTF8):
        return None
    for key in (b'"id"', b'"type"', b'"priority"', b'"maxAttempts"'):
        if body.count(key) > 1:
            return None
    return body


def _text(text: str | None) -> str:
    return "null" if text is None else _quoted(text)


def _time(ts: float | None) -> str:
    return "null" if ts is None else f'"{iso(ts)}"'


def dump_record(record: dict[str, Any]) -> bytes:
    """A record as spoold writes them all: strict JSON on one line (json's C encoder
    serves only indent=None, and this runs for every job)."""
    return strictjson.dumps(record)


def decode_object(raw: bytes) -> dict[str, Any]:
    """Bytes → the job's JSON object, or InvalidJob saying what is wrong and where."""
    data = strictjson.loads(raw)
    if not isinstance(data, dict):
        raise InvalidJob(f"a job must be a JSON object {{...}}, got {_json_kind(data)}")
    return data


def _json_kind(value: Any) -> str:
    kinds = {dict: "an object", list: "a list", str: "a string", bool: "true/false"}
    kinds |= {int: "a number", float: "a number", type(None): "null"}
    return kinds.get(type(value), type(value).__name__)


def new_job(
    data: dict[str, Any],
    registry: dict[str, JobType],
    tz: ZoneInfo,
    now: float,
    name_priority: str | None = None,
    given_id: str | None = None,
) -> Job:
    """Judge a submitted job object; raise InvalidJob with every problem found.
    `given_id`: the id spoold gives it (a follow-up's), not one from its fields."""
    job_type = _job_type(data, registry)
    job_id = given_id or data.get("id") or str(uuid.uuid4())
    problems = _field_problems(data)
    problems += [p for p in job_type.validate(data)] if not problems else []
    if not problems:
        problems += followups.problems(data, job_id, partial(_judge_follow_up, registry, tz, now))
    run_at = _run_at(data, tz, problems)
    if problems:
        raise InvalidJob("; ".join(problems))
    return Job(
        data=data,
        id=job_id,
        type=job_type.name,
        priority=name_priority or data.get("priority") or job_type.priority,
        max_attempts=data.get("maxAttempts") or job_type.max_attempts,
        created_at=now,
        timeout=data.get("timeout"),
        run_at=run_at,
    )


def _judge_follow_up(
    registry: dict[str, JobType], tz: ZoneInfo, now: float, data: dict[str, Any], job_id: str
) -> Job:
    return new_job(data, registry, tz, now, given_id=job_id)


def _job_type(data: dict[str, Any], registry: dict[str, JobType]) -> JobType:
    name = data.get("type")
    if isinstance(name, str) and name in registry:
        return registry[name]
    known = ", ".join(sorted(registry))
    if "type" not in data:
        raise InvalidJob(f"no 'type' field: add one naming the job type, one of: {known}")
    raise InvalidJob(f"unknown job type {_given(name)}: use one of: {known}")


def _field_problems(data: dict[str, Any]) -> list[str]:
    problems = [f"field {key!r} is set by spoold; remove it" for key in STATE_FIELDS if key in data]
    job_id = data.get("id")
    if "id" in data and not (isinstance(job_id, str) and ID_RE.match(job_id)):
        problems.append(f"field 'id' must be {ID_RULE}, got {_given(job_id)}")
    elif isinstance(job_id, str) and FOLLOW_UP_ID_RE.search(job_id):
        problems.append(f"field 'id' must not end in .then.N or .onFailure.N (given to"
                        f" follow-up jobs), got {_given(job_id)}")  # fmt: skip
    priority = data.get("priority")
    if "priority" in data and priority not in PRIORITIES:
        allowed = ", ".join(PRIORITIES)
        problems.append(f"field 'priority' must be one of {allowed}, got {_given(priority)}")
    attempts = data.get("maxAttempts")
    if "maxAttempts" in data and not (_is_int(attempts) and attempts >= 1):
        problems.append(f"field 'maxAttempts' must be a whole number >= 1, got {_given(attempts)}")
    timeout = data.get("timeout")
    if "timeout" in data and not (_is_number(timeout) and timeout > 0):
        problems.append(f"field 'timeout' must be a number of seconds > 0, got {_given(timeout)}")
    return problems


def _given(value: Any, limit: int = 60) -> str:
    """A bad value as the message shows it ('3' is not 3), cut short so that a huge one
    keeps the explanation, the log line and the HTTP answer small."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> TypeGuard[float]:
    """A JSON number a float can hold (an int of 400 digits cannot: it would overflow
    where the worker adds it to a clock)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _run_at(data: dict[str, Any], tz: ZoneInfo, problems: list[str]) -> float | None:
    if "runAt" not in data or data["runAt"] is None:
        return None
    value = data["runAt"]
    try:
        if not isinstance(value, str):
            raise ValueError
        return parse_time(value, tz)
    except ValueError:
        problems.append(
            f"field 'runAt' must be an ISO 8601 time such as 2026-01-31T09:00:00+01:00,"
            f" got {_given(value)}"
        )
        return None


def from_record(
    record: dict[str, Any], job_id: str, priority: str, created_at: float, tz: ZoneInfo,
    registry: dict[str, JobType],
) -> Job:  # fmt: skip
    """Rebuild a Job from a file in pending/ or running/: the producer's bytes or our record.

    The file name carries id, priority and acceptance time; the state fields, when
    present, were written by spoold on a retry or a recovery.
    """
    data = {k: v for k, v in record.items() if k not in STATE_FIELDS}
    job_type = registry.get(str(record.get("type")))
    default_attempts = job_type.max_attempts if job_type else 1
    job = Job(
        data=data,
        id=job_id,
        type=str(record.get("type")),
        priority=priority,
        max_attempts=record.get("maxAttempts") or default_attempts,
        created_at=created_at,
        timeout=record.get("timeout"),
        attempts=int(record.get("attempts") or 0),
        previous_errors=tuple(record.get("previousErrors") or ()),
        error=record.get("error"),
    )
    if record.get("runAt"):
        job.run_at = _safe_time(record["runAt"], tz)
    if record.get("nextAttemptAt"):
        job.next_attempt_at = _safe_time(record["nextAttemptAt"], tz)
    return job


def _safe_time(value: Any, tz: ZoneInfo) -> float | None:
    try:
        return parse_time(str(value), tz)
    except ValueError:
        return None
