"""The few exceptions spoold raises, each a message a person can act on."""


class SpoolError(Exception):
    """Base of every spoold error."""


class ConfigError(SpoolError):
    """The config file is unreadable or invalid; the message names file, line and key."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class InvalidJob(SpoolError):
    """A job file or body is not a job spoold can run; the message says what to fix."""


class SpoolUnusable(SpoolError):
    """The spool folder cannot be used (not a folder, not writable)."""


class PermanentJobError(SpoolError):
    """A job attempt failed in a way a retry cannot fix (e.g. a webhook's 4xx)."""


class UnknownTask(SpoolError, LookupError):
    """No scheduled task has that name."""


class TaskBusy(SpoolError):
    """A task's previous run is still pending or running, so it is not run again now."""


class CronError(SpoolError, ValueError):
    """A cron string or time zone spoold cannot schedule by; the message says what to fix."""


class Rejected(SpoolError):
    """An incoming file that must go to failed/ unread; the message says why."""


class NotRetryable(SpoolError):
    """The job cannot be retried; the message says why."""


class HelperGone(SpoolError):
    """A helper process stopped answering (it died, or its pipe broke)."""


class JobCancelled(PermanentJobError):
    """A job stopped because an operator cancelled it (its record's error: 'cancelled')."""

    def __init__(self) -> None:
        super().__init__("cancelled")


class NotFound(SpoolError, LookupError):
    """No job (or task) has that name; the message says which (HTTP 404)."""


class Conflict(SpoolError):
    """The job or task is not in a state the verb needs; the message says why (HTTP 409)."""
