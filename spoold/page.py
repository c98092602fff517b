"""GET /: a small HTML status page. Every value is escaped; the page runs no script."""

from __future__ import annotations

from html import escape
from typing import Any

STYLE = (
    "body{font:14px system-ui,sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0 1.5em}"
    "td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}"
    "th{background:#f4f4f4}.bad{color:#a00}"
)


def status_page(snapshot: dict[str, Any], recent: dict[str, list[dict[str, Any]]]) -> str:
    """The page for one status snapshot and the newest finished jobs per folder."""
    queue, worker = snapshot["queue"], snapshot["worker"]
    pending = queue["pending"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>spoold</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>spoold on {_e(snapshot.get('node'))}</h1>",
        f"<p>pid {_e(snapshot.get('pid'))}, started {_e(snapshot.get('startedAt'))},"
        f" updated {_e(snapshot.get('updatedAt'))}</p>",
        _config_line(snapshot.get("config") or {}),
        "<h2>Queue</h2>",
        _table(["pending", *(p for p in pending if p != "total"), "running", "completed",
                "failed"],
               [[pending.get("total"), *(v for p, v in pending.items() if p != "total"),
                 queue["running"], queue["completed"], queue["failed"]]]),
        "<h2>Workers</h2>",
        _table(["worker", "running", "active", "processed", "concurrency"],
               [[worker["workerId"], worker["isRunning"], worker["activeJobs"],
                 worker["processedJobs"], worker["concurrency"]]]),
        "<h2>Scheduled tasks</h2>",
        _tasks(snapshot.get("scheduler") or {}),
    ]  # fmt: skip
    for folder, jobs in recent.items():
        parts.append(f"<h2>Newest {_e(folder)}</h2>")
        parts.append(_jobs(jobs))
    parts.append("<p><a href='/metrics'>metrics</a> · <a href='/openapi.json'>API</a></p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _config_line(config: dict[str, Any]) -> str:
    line = f"<p>config {_e(config.get('path') or '(built-in defaults)')}"
    line += f", loaded {_e(config.get('loadedAt'))}</p>"
    if config.get("error"):
        line += f"<p class='bad'>config error: {_e(config['error'])}</p>"
    return line


def _tasks(scheduler: dict[str, Any]) -> str:
    tasks = [t for t in scheduler.get("tasks") or [] if isinstance(t, dict)]
    if not tasks:
        return "<p>none</p>"
    keys = ["name", "schedule", "isRunning", "runCount", "errorCount", "lastRun", "nextRun",
            "lastError"]  # fmt: skip
    return _table(keys, [[t.get(k) for k in keys] for t in tasks])


def _jobs(jobs: list[dict[str, Any]]) -> str:
    if not jobs:
        return "<p>none</p>"
    keys = ["id", "type", "priority", "attempts", "completedAt", "durationMs", "error"]
    return _table(keys, [[job.get(k) for k in keys] for job in jobs])
