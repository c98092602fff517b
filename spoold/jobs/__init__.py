"""The job types a spool can run: what a type is (``JobType``).

Built-ins and a user's ``package.module:function`` plug-ins are the same thing
to the worker: a ``JobType`` whose ``run`` raises on failure. Each built-in
lives in its own small module; ``registry`` binds them to the config. This module
imports none of them, so that knowing what a job type is does not load smtplib.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from spoold.jobcontext import JobContext

Job = dict[str, Any]

# The built-in types' names, for what checks a config before building the registry.
BUILTIN_TYPES = ("send_email", "webhook", "cleanup", "log", "queue_stats", "noop")


def no_problems(job: Job) -> list[str]:
    """The validator of types that take no fields of their own (and of plug-ins)."""
    return []


@dataclass(frozen=True)
class JobType:
    """A runnable kind of job, with the defaults a job file may override. `context`:
    whether run takes a JobContext after the job (to hear of a cancel, report progress)."""

    name: str
    run: Callable[..., Any]  # its return value is the job's result (results.py)
    priority: str = "normal"
    max_attempts: int = 3
    validate: Callable[[Job], list[str]] = no_problems
    context: bool = False

    def call(self, job: Job, context: JobContext) -> Any:
        """Run one attempt, handing the context to a type that takes one; its result."""
        if self.context:
            return self.run(job, context)
        return self.run(job)
