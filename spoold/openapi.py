"""GET /openapi.json: the HTTP API (SPEC section 6) as an OpenAPI 3 document.

Written out as data, one entry per endpoint; document() fills in the job types
the daemon has registered, so a client (or schemathesis) sees the real choices.
"""

from __future__ import annotations

from typing import Any

from spoold import __version__
from spoold.names import PRIORITIES
from spoold.page import ASSETS

ID_PATTERN = r"^[A-Za-z0-9_\-][A-Za-z0-9._\-]{0,127}$"
MAX_LIMIT = 1000
# Names of fixed paths under /jobs/ (routes.ROUTES): never a job id in /jobs/<id>.
RESERVED_IDS = ["batch", "stats", "completed", "failed", "history"]

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    return {**schema, "nullable": True}


def json_answer(description: str, schema: Schema) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def error(description: str) -> Schema:
    return json_answer(description, ref("Error"))


def json_body(schema: Schema, description: str) -> Schema:
    return {"required": True, "description": description,
            "content": {"application/json": {"schema": schema}}}  # fmt: skip


COMMON_ERRORS = {
    "401": error("The token is set and the request lacks it (or it is wrong)."),
    "403": error(
        "The API listens on loopback and the Host is not a loopback name; or a"
        " web page's Origin, not allowed by http.corsOrigins, asks for a change."
    ),
}
BODY_ERRORS = {
    "400": error("Bad JSON, or not what the endpoint expects."),
    "411": error("No Content-Length (chunked bodies are not accepted)."),
    "413": error("The body is larger than http.maxBodyBytes."),
    "415": error("The body is not sent as application/json."),
}
JOB_ID = {"type": "string", "pattern": ID_PATTERN, "maxLength": 128}
ID_PARAM = {"name": "id", "in": "path", "required": True, "schema": JOB_ID,
            "description": "A job id: 1-128 of A-Z a-z 0-9 . _ - (not starting .)"}  # fmt: skip
PATH_ID_PARAM = {**ID_PARAM, "schema": {**JOB_ID, "not": {"enum": RESERVED_IDS}}}
TASK_PARAM = {"name": "name", "in": "path", "required": True, "schema": JOB_ID,
              "description": "A scheduled task's name."}  # fmt: skip


def limit_param(default: int) -> Schema:
    return {"name": "limit", "in": "query", "required": False,
            "description": f"How many jobs, newest first (1-{MAX_LIMIT}).",
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                       "default": default}}  # fmt: skip


def job_list(description: str, default: int) -> Schema:
    return {"get": {
        "summary": description, "parameters": [limit_param(default)],
        "responses": {"200": json_answer("The jobs, newest first.", ref("JobList")),
                      "400": error("limit is not a whole number from 1 to 1000."),
                      **COMMON_ERRORS},
    }}  # fmt: skip


def paths() -> Schema:
    return {
        "/": {"get": {
            "summary": "The live dashboard: a page whose script polls this API.",
            "responses": {"200": {"description": "The page.",
                                  "content": {"text/html": {"schema": {"type": "string"}}}},
                          "401": {"description": "The token is set and the request lacks it:"
                                                 " the page, which asks for it.",
                                  "content": {"text/html": {"schema": {"type": "string"}}}},
                          "403": COMMON_ERRORS["403"]},
        }},
        "/static/{name}": {"get": {
            "summary": "The dashboard's script and style (no token needed).", "security": [],
            "parameters": [{"name": "name", "in": "path", "required": True,
                            "schema": {"type": "string", "enum": sorted(ASSETS)}}],
            "responses": {"200": {"description": "The file.", "content": {
                              media.split(";")[0]: {"schema": {"type": "string"}}
                              for media in ASSETS.values()}},
                          "403": COMMON_ERRORS["403"], "404": error("No such file.")},
        }},
        "/healthz": {"get": {
            "summary": "200 while the daemon serves (needs no token).", "security": [],
            "responses": {"200": json_answer("Serving.", ref("Health")),
                          "403": COMMON_ERRORS["403"],
                          "503": json_answer("The spool takes no writes (full disk, ...):"
                                             " `error` says what failed and what to do.",
                                             ref("Health"))},
        }},
        "/metrics": {"get": {
            "summary": "The daemon's counters in the Prometheus text format.",
            "responses": {"200": {"description": "Prometheus exposition format 0.0.4.",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}},
                          **COMMON_ERRORS},
        }},
        "/openapi.json": {"get": {
            "summary": "This document.",
            "responses": {"200": json_answer("OpenAPI 3.", {"type": "object"}), **COMMON_ERRORS},
        }},
        "/types": {"get": {
            "summary": "The registered job types.",
            "responses": {"200": json_answer("Their names.", ref("Types")), **COMMON_ERRORS},
        }},
        "/jobs": {"post": {
            "summary": "Enqueue one job; it is in the spool, durably, when the answer comes.",
            "requestBody": json_body(ref("Job"), "A job as in a job file (SPEC section 2)."),
            "responses": {
                "200": json_answer("Enqueued.", ref("Accepted")),
                **BODY_ERRORS,
                "400": json_answer("Not a job spoold can run (registeredTypes when the type"
                                   " is missing or unknown).", ref("Rejected")),
                "503": error("The spool could not be written (disk full?); nothing enqueued."),
                **COMMON_ERRORS,
            },
        }},
        "/jobs/batch": {"post": {
            "summary": "Enqueue several jobs, each judged on its own.",
            "requestBody": json_body(ref("Batch"), "A list of jobs, or {jobs: [...]}."),
            "responses": {"200": json_answer("One result per job, in order.",
                                             ref("BatchResult")),
                          **BODY_ERRORS, **COMMON_ERRORS},
        }},
        "/jobs/stats": {"get": {
            "summary": "Queue and worker statistics, as in status.json.",
            "responses": {"200": json_answer("Statistics.", ref("Stats")), **COMMON_ERRORS},
        }},
        "/jobs/history": {"get": {
            "summary": "Jobs this daemon finished per minute over the last hour, oldest first.",
            "responses": {"200": json_answer("60 minutes, every one present.", ref("History")),
                          **COMMON_ERRORS},
        }},
        "/status": {"get": {
            "summary": "The daemon's current status.json, with its version and uptime.",
            "responses": {"200": json_answer("The snapshot.", ref("Status")), **COMMON_ERRORS},
        }},
        "/jobs/completed": job_list("The newest completed jobs.", 10),
        "/jobs/failed": job_list("The newest failed jobs.", 100),
        "/jobs/{id}": {
            "get": {
                "summary": "Which folder a job is in, and its record.",
                "parameters": [PATH_ID_PARAM],
                "responses": {"200": json_answer("Found.", ref("JobInfo")),
                              "400": error("Not a job id."), "404": error("No such job."),
                              **COMMON_ERRORS},
            },
            "delete": {
                "summary": "Cancel a job. A pending one moves to failed/ with error"
                           " 'cancelled' (200); a running one is asked to stop (202): it"
                           " stops at its next step, or at its timeout if it does not"
                           " listen, and its record then says error 'cancelled'.",
                "parameters": [PATH_ID_PARAM],
                "responses": {"200": json_answer("Cancelled.", ref("Cancelled")),
                              "202": json_answer("Asked to stop.", ref("Cancelling")),
                              "400": error("Not a job id."), "404": error("No such job."),
                              "409": error("The job has finished (completed or failed)."),
                              **COMMON_ERRORS},
            },
        },
        "/jobs/{id}/retry": {"post": {
            "summary": "A failed job back to pending/ (attempts reset), as `spoold retry`.",
            "parameters": [ID_PARAM],
            "responses": {"200": json_answer("Retried.", ref("Retried")),
                          "400": error("Not a job id."),
                          "404": error("No such job and no rejected file of that name."),
                          "409": error("The job is not failed."),
                          "413": error("The body is larger than http.maxBodyBytes."),
                          **COMMON_ERRORS},
        }},
        "/scheduler": {"get": {
            "summary": "The scheduled tasks.",
            "responses": {"200": json_answer("The scheduler.", ref("Scheduler")),
                          **COMMON_ERRORS},
        }},
        "/scheduler/{name}/run": {"post": {
            "summary": "Enqueue a run of a scheduled task now.",
            "parameters": [TASK_PARAM],
            "responses": {"200": json_answer("Enqueued.", ref("TaskRun")),
                          "400": error("Not a task name."), "404": error("No such task."),
                          "409": error("The task's last run is still pending or running."),
                          "413": error("The body is larger than http.maxBodyBytes."),
                          **COMMON_ERRORS},
        }},
    }  # fmt: skip


FOLLOW_UPS = {"type": "array", "items": {"type": "object"},
              "description": "Jobs (without an id) enqueued after this one (README: Follow-up"
                             " jobs); one that is not a valid job rejects this one."}  # fmt: skip


def schemas(types: list[str]) -> Schema:
    integer, string = {"type": "integer", "minimum": 0}, {"type": "string"}
    time = {"type": "string", "description": "ISO 8601"}
    record = {
        "type": "object",
        "additionalProperties": True,
        "description": "The job's fields plus spoold's state fields (SPEC section 2).",
        "properties": {
            "id": string,
            "type": string,
            "priority": {"type": "string", "enum": list(PRIORITIES)},
            "status": {"type": "string", "enum": ["pending", "running", "completed", "failed"]},
            "attempts": integer,
            "maxAttempts": integer,
            "createdAt": time,
            "startedAt": nullable(time),
            "completedAt": nullable(time),
            "error": nullable(string),
            "durationMs": nullable(integer),
            "result": {"description": "What the job returned (README: Results)."},
            "resultTruncated": {"type": "boolean", "enum": [True]},
            "resultBytes": integer,
            "resultNote": string,
        },
    }
    pending = {
        "type": "object",
        "required": ["total", *PRIORITIES],
        "properties": {name: integer for name in ("total", *PRIORITIES)},
    }
    stats = {
        "queue": {"type": "object",
                  "required": ["pending", "running", "completed", "failed"],
                  "properties": {"pending": pending, "running": integer,
                                 "completed": integer, "failed": integer}},
        "worker": {"type": "object", "required": [
            "workerId", "isRunning", "activeJobs", "processedJobs", "concurrency"],
            "properties": {"workerId": string, "isRunning": {"type": "boolean"},
                           "activeJobs": integer, "processedJobs": integer,
                           "concurrency": integer}},
    }  # fmt: skip
    status = {
        "node": string, "pid": integer, "startedAt": time, "updatedAt": time, **stats,
        "scheduler": ref("Scheduler"),
        "config": {"type": "object", "required": ["path", "loadedAt", "error"], "properties": {
            "path": nullable(string), "loadedAt": time, "error": nullable(string)}},
        "version": string, "uptimeSeconds": {"type": "number", "minimum": 0},
        "jobs": {"type": "object", "description": "For the dashboard.", "properties": {
            "running": {"type": "array", "items": {"type": "object", "properties": {
                "id": string, "type": string, "priority": string, "attempts": integer,
                "startedAt": nullable(time), "progress": nullable(ref("Progress")),
                "cancelling": {"type": "boolean"}}}},
            "nextPending": {"type": "array", "items": {"type": "object", "properties": {
                "id": string, "priority": string, "acceptedAt": time,
                "dueAt": nullable(time)}}},
            "oldestDueAt": nullable(time)}},
    }  # fmt: skip
    minute = {
        "type": "object",
        "required": ["minute", "completed", "failed"],
        "properties": {"minute": time, "completed": integer, "failed": integer},
    }
    return {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": string}},
        "Rejected": {"type": "object", "required": ["error"], "properties": {
            "error": string, "registeredTypes": {"type": "array", "items": string}}},
        "Job": {
            "type": "object", "required": ["type"], "additionalProperties": True,
            "properties": {
                "type": {"type": "string", "enum": sorted(types)},
                "id": JOB_ID,
                "priority": {"type": "string", "enum": list(PRIORITIES)},
                "maxAttempts": {"type": "integer", "minimum": 1},
                "timeout": {"type": "number", "exclusiveMinimum": True, "minimum": 0},
                "runAt": nullable({"type": "string", "format": "date-time"}),
                "then": FOLLOW_UPS,
                "onFailure": FOLLOW_UPS,
            },
        },
        "Accepted": {"type": "object", "required": ["success", "jobId", "type", "priority"],
                     "properties": {"success": {"type": "boolean", "enum": [True]},
                                    "jobId": string, "type": string, "priority": string}},
        "Batch": {"oneOf": [
            {"type": "array", "items": {}},
            {"type": "object", "required": ["jobs"],
             "properties": {"jobs": {"type": "array", "items": {}}}},
        ]},
        "BatchResult": {"type": "object", "required": ["jobs"], "properties": {"jobs": {
            "type": "array", "items": {"oneOf": [
                {"type": "object", "required": ["jobId", "status"], "properties": {
                    "jobId": string, "status": {"type": "string", "enum": ["enqueued"]}}},
                {"type": "object", "required": ["error", "status"], "properties": {
                    "error": string, "status": {"type": "string", "enum": ["failed"]}}},
            ]}}}},
        "Stats": {"type": "object", "required": ["queue", "worker"], "properties": stats},
        "Status": {"type": "object", "required": sorted(status), "properties": status},
        "History": {"type": "object", "required": ["minutes"], "properties": {"minutes": {
            "type": "array", "minItems": 60, "maxItems": 60, "items": minute}}},
        "Record": record,
        "JobList": {"type": "object", "required": ["jobs"],
                    "properties": {"jobs": {"type": "array", "items": ref("Record")}}},
        "JobInfo": {"type": "object", "required": ["id", "folder", "record"], "properties": {
            "id": string,
            "folder": {"type": "string", "enum": ["pending", "running", "completed", "failed"]},
            "record": nullable(ref("Record")),
            "progress": {**nullable(ref("Progress")),
                         "description": "A running job's last report (in memory only)."}}},
        "Progress": {"type": "object", "required": ["fraction", "text", "at"], "properties": {
            "fraction": {"type": "number", "minimum": 0, "maximum": 1},
            "text": {"type": "string", "maxLength": 200}, "at": time}},
        "Cancelling": {"type": "object", "required": ["success", "jobId", "status"],
                       "properties": {"success": {"type": "boolean"}, "jobId": string,
                                      "status": {"type": "string", "enum": ["cancelling"]}}},
        "Cancelled": {"type": "object", "required": ["success", "jobId", "status", "error"],
                      "properties": {"success": {"type": "boolean"}, "jobId": string,
                                     "status": {"type": "string", "enum": ["failed"]},
                                     "error": {"type": "string", "enum": ["cancelled"]}}},
        "Retried": {"type": "object", "required": ["success", "jobId", "folder"],
                    "properties": {"success": {"type": "boolean"}, "jobId": string,
                                   "folder": {"type": "string",
                                              "enum": ["pending", "incoming"]}}},
        "Scheduler": {"type": "object", "required": ["isRunning", "taskCount", "tasks"],
                      "properties": {"isRunning": {"type": "boolean"}, "taskCount": integer,
                                     "tasks": {"type": "array", "items": ref("Task")}}},
        "Task": {"type": "object", "additionalProperties": True, "properties": {
            "name": string, "schedule": string, "isRunning": {"type": "boolean"},
            "runCount": integer, "errorCount": integer, "lastRun": nullable(time),
            "nextRun": nullable(time), "lastError": nullable(string)}},
        "TaskRun": {"type": "object", "required": ["success", "task"], "properties": {
            "success": {"type": "boolean"}, "task": string, "jobId": string}},
        "Types": {"type": "object", "required": ["types"],
                  "properties": {"types": {"type": "array", "items": string}}},
        "Health": {"type": "object", "required": ["status"],
                   "properties": {"status": {"type": "string", "enum": ["ok", "storage-error"]},
                                  "error": {"type": "string"}}},
    }  # fmt: skip


def document(types: list[str], secured: bool) -> Schema:
    """The whole document, with `types` as the job types a job may name; `secured` when a
    token is set (then every operation but GET /healthz needs it)."""
    doc: Schema = {
        "openapi": "3.0.3",
        "info": {
            "title": "spoold",
            "version": __version__,
            "description": "A job daemon whose queue is a folder. JSON in and out; CORS for"
            " the origins in http.corsOrigins only. When a token is set (http.token or"
            " SPOOLD_TOKEN), every request but OPTIONS and GET /healthz needs"
            " `Authorization: Bearer <token>`.",
        },
        "paths": paths(),
        "components": {
            "schemas": schemas(types),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
    if secured:
        doc["security"] = [{"bearer": []}]
    return doc
