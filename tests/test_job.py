"""Judging a job: every bad field gives a message a person can act on."""

import json
from zoneinfo import ZoneInfo

import pytest

from spoold.config import Config
from spoold.errors import InvalidJob
from spoold.job import decode_object, from_record, new_job, producer_bytes
from spoold.jobs.registry import build_registry
from spoold.names import priority_from_name

REGISTRY = build_registry(Config(), dict)
UTC = ZoneInfo("UTC")


def judge(data, name_priority=None, tz=UTC):
    return new_job(data, REGISTRY, tz, 1000.0, name_priority)


def test_defaults_come_from_the_type():
    job = judge({"type": "webhook", "url": "http://127.0.0.1/x"})
    assert (job.priority, job.max_attempts) == ("high", 5)
    assert len(job.id) == 36 and job.attempts == 0 and job.status == "pending"


def test_fields_override_type_defaults():
    job = judge({"type": "noop", "id": "a.b_c-1", "priority": "low", "maxAttempts": 4})
    assert (job.id, job.priority, job.max_attempts) == ("a.b_c-1", "low", 4)


def test_name_priority_wins_and_the_record_says_so():
    job = judge({"type": "noop", "priority": "low"}, name_priority="critical")
    assert job.to_record()["priority"] == "critical"


@pytest.mark.parametrize(
    ("name", "priority"),
    [("high-invoice-42.json", "high"), ("low_x.json", "low"), ("critical.a.json", "critical"),
     ("normal-1.json", "normal"), ("highest.json", None), ("High-x.json", None), ("x.json", None)],
)  # fmt: skip
def test_priority_from_name(name, priority):
    assert priority_from_name(name) == priority


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'"text"', "must be a JSON object"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_undecodable_files(raw, words):
    with pytest.raises(InvalidJob, match=words):
        decode_object(raw)


def test_a_utf8_bom_is_skipped_and_a_bad_byte_is_counted_from_the_files_start():
    assert decode_object(b'\xef\xbb\xbf{"type": "noop", "n": "\xc3\xa9"}') == {
        "type": "noop",
        "n": "é",
    }
    with pytest.raises(InvalidJob, match=r"byte 5\)"):
        decode_object(b'\xef\xbb\xbf{"\xff": 1}')
    with pytest.raises(InvalidJob, match=r"byte 2\)"):
        decode_object(b'{"\xff": 1}')


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({}, "no 'type' field"),
        ({"type": "teleport"}, "unknown job type 'teleport'"),
        ({"type": 5}, "unknown job type 5"),
        ({"type": "noop", "id": "../x"}, "field 'id' must be 1-128"),
        ({"type": "noop", "id": ".hidden"}, "field 'id'"),
        ({"type": "noop", "id": "x" * 129}, "field 'id'"),
        ({"type": "noop", "id": 7}, "field 'id'"),
        ({"type": "noop", "id": "a\n"}, "field 'id'"),  # "$" would match before the newline
        ({"type": "noop", "priority": "urgent"}, "field 'priority' must be one of"),
        ({"type": "noop", "maxAttempts": 0}, "field 'maxAttempts'"),
        ({"type": "noop", "maxAttempts": "3"}, "field 'maxAttempts'"),
        ({"type": "noop", "timeout": -1}, "field 'timeout'"),
        ({"type": "noop", "timeout": 10**400}, "field 'timeout'"),  # no float holds it
        ({"type": "noop", "runAt": "tomorrow"}, "field 'runAt' must be an ISO 8601 time"),
        ({"type": "noop", "runAt": 5}, "field 'runAt'"),
        # year 10000 in UTC: status.json would show a time nothing parses
        ({"type": "noop", "runAt": "9999-12-31T23:59:59-14:00"}, "field 'runAt' must be"),
        ({"type": "noop", "runAt": "0001-01-01T00:00:00+14:00"}, "field 'runAt' must be"),
        ({"type": "noop", "attempts": 3}, "field 'attempts' is set by spoold"),
        ({"type": "send_email", "to": 42}, "to"),
        ({"type": "webhook", "url": "ftp://x/y"}, "url"),
        ({"type": "cleanup", "directory": "/tmp"}, "maxAgeDays"),
    ],
)
def test_bad_jobs_are_explained(data, words):
    with pytest.raises(InvalidJob) as info:
        judge(data)
    assert words in str(info.value)


def test_a_huge_bad_value_is_shown_cut_short():
    with pytest.raises(InvalidJob) as info:
        judge({"type": ["x" * 10_000], "id": "y" * 10_000})
    assert len(str(info.value)) < 400


def test_unknown_type_lists_the_known_ones():
    with pytest.raises(InvalidJob) as info:
        judge({"type": "nope"})
    assert "noop" in str(info.value) and "send_email" in str(info.value)


def test_run_at_without_offset_is_read_in_the_zone():
    berlin = judge({"type": "noop", "runAt": "2026-07-01T12:00:00"}, tz=ZoneInfo("Europe/Berlin"))
    utc = judge({"type": "noop", "runAt": "2026-07-01T10:00:00Z"})
    assert berlin.run_at == utc.run_at == berlin.due


def test_record_has_every_state_field_and_round_trips():
    job = judge({"type": "noop", "id": "j1", "extra": [1, 2]})
    record = job.to_record()
    for key in ("id", "type", "priority", "status", "attempts", "maxAttempts", "createdAt",
                "startedAt", "completedAt", "error", "durationMs", "extra"):  # fmt: skip
        assert key in record
    job.attempts, job.error, job.next_attempt_at = 2, "boom", 2000.0
    again = from_record(job.to_record(), "j1", "normal", 1000.0, UTC, REGISTRY)
    assert (again.attempts, again.error, again.next_attempt_at) == (2, "boom", 2000.0)
    assert again.data["extra"] == [1, 2] and again.due == 2000.0


def from_file(raw: bytes, name_priority=None):
    """A job judged from a producer's file as the intake does, its source kept if it can be."""
    job = new_job(decode_object(raw), REGISTRY, UTC, 1000.0, name_priority)
    job.source = producer_bytes(raw, job)
    return job


def finished(job, **state):
    job.attempts, job.started_at, job.completed_at, job.duration_ms = 1, 1001.5, 1002.25, 750
    job.status = "completed"
    for key, value in state.items():
        setattr(job, key, value)
    return job


SPLICED = [
    b'{"type": "noop", "id": "a"}',
    b'{"type":"noop","id":"a"}\n',  # compact, and a final newline
    b'  {\t"type" : "noop" ,"note": "caf\xc3\xa9 \\"quoted\\" \\\\ back"}  ',
    b'{"type": "noop", "priority": "high", "maxAttempts": 2, "runAt": null}',
    b'{"type": "noop", "payload": {"kind": "x", "list": [1, 2.5, true, null]}}',
]
ENCODED = [
    b'{\n  "type": "noop",\n  "id": "a"\n}\n',  # indented: records are one line
    b'{"type": "noop", "n\\u0061me": "x"}',  # an escape could spell a key twice
    b'{"type": "noop", "priority": "low"}',  # the file's name says otherwise (below)
    b'{"type": "noop", "payload": {"type": "inner"}}',  # "type" twice: which is the job's?
    b'{"type": "noop", "id": "a", "id": "b"}',  # a key twice
    b'\xef\xbb\xbf{"type": "noop"}',  # a BOM
]


@pytest.mark.parametrize("raw", SPLICED + ENCODED)
@pytest.mark.parametrize(
    "state",
    [
        {},
        {"status": "failed", "error": 'HTTP 500: "down"\nsee the log \u2603'},
        {"status": "pending", "error": "boom", "previous_errors": ("one", 'tw"o'),
         "next_attempt_at": 1060.125, "completed_at": None},
        {"status": "running", "completed_at": None, "duration_ms": None},
    ],
)  # fmt: skip
def test_a_record_is_the_same_whether_spliced_onto_the_producer_s_bytes_or_encoded(raw, state):
    """The producer's bytes with the state fields after them, where they can be kept
    (SPLICED), else the fields encoded (ENCODED): the same keys, in the same order, with
    the same values, on one line."""
    job = finished(from_file(raw, "high" if b'"low"' in raw else None), **state)
    assert (job.source is not None) == (raw in SPLICED)
    record = job.to_json()
    assert record.endswith(b"}\n") and record.count(b"\n") == 1
    assert list(json.loads(record).items()) == list(job.to_record().items())
    if job.source is not None:
        assert record.startswith(raw.strip()[:-1])  # the producer's very bytes
        job.source = None
        assert json.loads(job.to_json()) == json.loads(record)


def test_a_job_with_a_result_is_encoded_whole():
    job = finished(from_file(b'{"type": "noop", "id": "a"}'), result={"result": {"n": 1}})
    assert job.source is not None
    assert json.loads(job.to_json())["result"] == {"n": 1}
