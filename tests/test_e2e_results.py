"""End to end, job results (issue 14, part 1): what a job returns, in its record, through
the daemon as a subprocess: plug-ins' return values, a webhook's answer from a real HTTP
server, a send_email's recipients from a real SMTP server; `GET /jobs/<id>` shows them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest import DaemonProcess, free_port, records, wait_until
from helpers_api import Client
from helpers_servers import Answer, http_server, smtp_server

from spoold.results import MAX_RESULT_BYTES

# Plug-ins returning each kind of value, written beside the daemon's config.
RESULT_PLUGINS = """
import math


class Opaque:
    def __str__(self):
        return "an Opaque thing"


def answer(job):
    return {"total": 42, "items": ["a", "b"], "text": job.get("text", "")}


def nothing(job):
    return None


def huge(job):
    return "é" * job["chars"]


def a_set(job):
    return {3}


def an_object(job):
    return Opaque()


def not_a_number(job):
    return {"ratio": math.nan}
"""

TYPES = {
    name: f"result_plugins:{name}"
    for name in ("answer", "nothing", "huge", "a_set", "an_object", "not_a_number")
}


def strict(raw: bytes) -> Any:
    """The bytes as JSON, failing on NaN or Infinity (a record must be strict JSON)."""

    def refuse(constant: str) -> Any:
        raise AssertionError(f"{constant} in a record")

    return json.loads(raw, parse_constant=refuse)


def completed(daemon: DaemonProcess, job_id: str) -> dict[str, Any]:
    """The raw completed record of job_id, read strictly, once it is there."""
    folder = daemon.spool / "completed"
    path = wait_until(lambda: next(folder.glob(f"*-{job_id}.json"), None), timeout=15)
    return strict(path.read_bytes())


def start_with_plugins(start_daemon: Any, tmp_path: Path, **config: Any) -> DaemonProcess:
    (tmp_path / "result_plugins.py").write_text(RESULT_PLUGINS)
    return start_daemon(jobTypes=TYPES, **config)


def test_a_plugins_return_value_is_its_result_and_get_jobs_shows_it(start_daemon, tmp_path):
    port = free_port()
    daemon = start_with_plugins(start_daemon, tmp_path, http={"host": "127.0.0.1", "port": port})
    daemon.drop("a.json", {"type": "answer", "id": "r-1", "text": "grüße"})
    daemon.drop("b.json", {"type": "nothing", "id": "r-2"})
    record = completed(daemon, "r-1")
    assert record["result"] == {"total": 42, "items": ["a", "b"], "text": "grüße"}
    assert "resultNote" not in record and "resultTruncated" not in record
    assert "result" not in completed(daemon, "r-2"), "None: no result key"
    with Client(port) as client:
        reply = client.get("/jobs/r-1")
        assert reply.status == 200
        assert reply.json["record"]["result"] == record["result"]
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.log()


def test_a_huge_result_is_cut_and_the_record_says_so(start_daemon, tmp_path):
    daemon = start_with_plugins(start_daemon, tmp_path)
    chars = MAX_RESULT_BYTES  # two bytes each in UTF-8: twice the cap
    daemon.drop("h.json", {"type": "huge", "id": "r-big", "chars": chars})
    record = completed(daemon, "r-big")
    full = len(json.dumps("é" * chars, ensure_ascii=False).encode())
    assert record["resultTruncated"] is True
    assert record["resultBytes"] == full
    cut = record["result"]
    assert isinstance(cut, str) and cut.startswith('"éé')
    assert MAX_RESULT_BYTES - 2 <= len(cut.encode()) <= MAX_RESULT_BYTES, "no half character"
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.log()


def test_a_result_that_is_not_json_is_recorded_as_its_text_with_a_note(start_daemon, tmp_path):
    daemon = start_with_plugins(start_daemon, tmp_path)
    for job_id, job_type in (("r-set", "a_set"), ("r-obj", "an_object"),
                             ("r-nan", "not_a_number")):  # fmt: skip
        daemon.drop(f"{job_id}.json", {"type": job_type, "id": job_id})
    as_set, as_object, as_nan = (completed(daemon, i) for i in ("r-set", "r-obj", "r-nan"))
    assert as_set["result"] == "{3}" and "set" in as_set["resultNote"]
    assert as_object["result"] == "an Opaque thing" and "Opaque" in as_object["resultNote"]
    assert as_nan["result"] == "{'ratio': nan}", "strict JSON: a NaN is kept as text"
    assert "not JSON" in as_nan["resultNote"]
    assert all(r["status"] == "completed" for r in (as_set, as_object, as_nan))
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.log()


def test_a_webhooks_result_is_the_status_and_the_first_kib_of_the_answer(start_daemon):
    body = b'{"accepted": true}' + b"x" * 3000
    with http_server(Answer(201, body)) as web:
        daemon = start_daemon()
        daemon.drop("hook.json", {"type": "webhook", "id": "hook-r", "url": f"{web.url}/in"})
        record = completed(daemon, "hook-r")
        assert record["result"] == {"status": 201, "body": body[:1024].decode()}
        assert len(web.requests) == 1
        assert daemon.stop() == 0
        assert "Traceback" not in daemon.log()
    assert "Traceback" not in daemon.log()


def test_a_send_emails_result_names_the_accepted_and_the_refused_recipients(start_daemon):
    with smtp_server(refuse=["nobody@example.com"]) as smtp:
        daemon = start_daemon(smtp=smtp.config_section())
        to = ["ops@example.com", "nobody@example.com"]
        job = {"type": "send_email", "id": "mail-r", "to": to, "cc": "Ann <ann@example.com>"}
        daemon.drop("mail.json", job)
        record = completed(daemon, "mail-r")
        [mail] = smtp.wait_for(1)
        assert record["result"]["accepted"] == ["ops@example.com", "ann@example.com"]
        assert mail.recipients == record["result"]["accepted"]
        [(refused, reply)] = record["result"]["refused"].items()
        assert refused == "nobody@example.com" and reply.startswith("550")
        assert daemon.stop() == 0
        assert "Traceback" not in daemon.log()
    assert "Traceback" not in daemon.log()


def test_a_producer_cannot_forge_a_result(start_daemon, tmp_path):
    daemon = start_daemon()
    daemon.drop("forged.json", {"type": "noop", "id": "forged", "result": {"paid": True}})
    explanation = daemon.spool / "failed" / "forged.json.error.json"
    wait_until(explanation.exists)
    assert "field 'result' is set by spoold" in explanation.read_text()
    assert records(daemon.spool, "completed") == []
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.log()
