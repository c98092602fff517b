"""The command line: argparse, logging set-up, one function per sub-command."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from spoold import __version__, logs, strictjson
from spoold.config import Config, load_config
from spoold.errors import (
    ConfigError,
    CronError,
    InvalidJob,
    NotRetryable,
    Rejected,
    SpoolError,
    TaskBusy,
    UnknownTask,
)
from spoold.jobs.registry import build_registry
from spoold.names import PRIORITIES
from spoold.storage import errno_name

logger = logging.getLogger("spoold")

EXAMPLES = """\
examples:
  spoold                                   run the daemon on config/spoold.yaml
  spoold submit send_email to=ops@example.com subject=Hi body='Disk is fine'
  spoold submit -f job.json --priority high
  spoold status                            what the daemon is doing
  spoold retry --all                       every failed job back to pending/
  spoold show invoice-42                   a job's record (or file) wherever it is
  spoold cancel JOB_ID                     fail a pending job, or stop a running one
"""


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `spoold` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose, args.log_format or "text")
    handler: Callable[[argparse.Namespace], int] = getattr(args, "handler", cmd_run)
    try:
        return handler(args)
    except ConfigError as e:
        print(f"spoold: bad config: {_one_line(e.problems)}", file=sys.stderr)
        return 2
    except SpoolError as e:
        print(f"spoold: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # a file system's surprise: a reason, not a traceback
        print(f"spoold: {_os_error(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _write_out(data: bytes) -> None:
    """Bytes to stdout; a one-line error, not a traceback, when there is none (a command
    started with stdout closed)."""
    if sys.stdout is None:
        raise SystemExit("spoold: stdout is closed: there is nowhere to print to")
    sys.stdout.buffer.write(data)
    sys.stdout.flush()


def _os_error(error: OSError) -> str:
    where = f" at {error.filename}" if error.filename else ""
    return (f"{errno_name(error)} ({error.strerror or error}){where}: check that path and its"
            " file system (mounted, writable, not full), then try again")  # fmt: skip


def _one_line(problems: list[str]) -> str:
    """The first problem, and how many more there are: a reason that fits one line."""
    more = len(problems) - 1
    return problems[0] + (f" (and {more} more: spoold check-config lists them)" if more else "")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spoold",
        description="A job daemon whose queue is a folder: drop JSON files into "
        "spool/incoming/, they are run, retried and recorded in completed/ or failed/.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"spoold {__version__}")
    _global_options(parser, None)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_run(commands)
    _add_submit(commands)
    _add_status(commands)
    _add_retry(commands)
    _add_cancel(commands)
    _add_check_config(commands)
    _add_next(commands)
    _add_run_task(commands)
    _add_show(commands)
    return parser


def _global_options(parser: argparse.ArgumentParser, default: Any) -> None:
    """--config/--node/-v/--log-format on the main parser and again on every sub-command,
    so they go before or after it; the sub-command's copy only overrides when given."""
    kwargs = {"default": argparse.SUPPRESS} if default is argparse.SUPPRESS else {}
    parser.add_argument(
        "--config", metavar="PATH", help="config file (default: config/spoold.yaml)", **kwargs
    )
    parser.add_argument(
        "--node", metavar="NAME", help="this daemon's name when several share a spool", **kwargs
    )
    parser.add_argument(
        "-v", "--verbose", action="count", help="more log output (-vv for debug)", **kwargs
    )
    parser.add_argument(
        "--log-format",
        choices=logs.FORMATS,
        help="text: a line a record, control characters escaped (the default); json: a"
        " JSON object a line (time, level, logger, message, exception) for log shippers",
        **kwargs,
    )


def _command(
    commands: Any, name: str, help_text: str, handler: Callable[[argparse.Namespace], int]
) -> Any:
    sub = commands.add_parser(name, help=help_text, description=help_text)
    _global_options(sub, argparse.SUPPRESS)
    sub.set_defaults(handler=handler)
    return sub


def _setup_logging(verbose: int | None, log_format: str) -> None:
    """Every record to stderr in the chosen format (see logs.py); so are warnings and an
    uncaught error in any thread, which Python would otherwise write raw, unescaped."""
    level = {0: logging.INFO, 1: logging.INFO}.get(verbose or 0, logging.DEBUG)
    logs.setup(level, log_format)
    logging.captureWarnings(True)
    threading.excepthook = _log_thread_death
    sys.excepthook = _log_crash
    if level > logging.DEBUG:
        logging.getLogger("watchdog").setLevel(logging.WARNING)


def _log_thread_death(args: threading.ExceptHookArgs) -> None:
    """threading.excepthook: a thread's death in the log (even by SystemExit, on which
    threading's own hook is silent), as the daemon's health check will notice it."""
    name = args.thread.name if args.thread else "?"
    logger.critical("thread %s died of an uncaught error", name, exc_info=args.exc_value)


def _log_crash(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
    """sys.excepthook: an error nothing caught ends spoold, its traceback in the log."""
    logger.critical("spoold ended on an unexpected error", exc_info=(kind, error, tb))


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config, args.node)


# ----- run ----------------------------------------------------------------------------------


def _add_run(commands: Any) -> None:
    _command(commands, "run", "run the daemon in the foreground (the default)", cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from spoold.daemon import Daemon

    daemon = Daemon(_config(args), node_override=args.node)
    return daemon.run()


# ----- submit -------------------------------------------------------------------------------


def _add_submit(commands: Any) -> None:
    sub = _command(
        commands,
        "submit",
        "drop a job safely into incoming/ (write, fsync, rename) and print its id",
        cmd_submit,
    )
    sub.add_argument("type", nargs="?", help="job type, e.g. send_email, webhook, noop")
    sub.add_argument(
        "fields", nargs="*", metavar="key=value",
        help="job fields; a value that parses as JSON is taken as JSON (7, true, [..])",
    )  # fmt: skip
    sub.add_argument("-f", "--file", metavar="FILE", help="a JSON job file, or - for stdin")
    sub.add_argument("--priority", choices=PRIORITIES, help="the job's priority")
    sub.add_argument("--run-at", metavar="TIME", help="not before this ISO 8601 time")


def cmd_submit(args: argparse.Namespace) -> int:
    from spoold import manage
    from spoold.job import new_job
    from spoold.spool import Spool

    config = _config(args)
    job = _job_from_args(args, config.max_job_bytes)
    job.setdefault("id", str(uuid.uuid4()))
    registry = build_registry(config, dict)
    tz = _zone(config)
    try:
        new_job(job, registry, tz, time.time())
    except (InvalidJob, ValueError) as e:
        print(f"spoold submit: {e}", file=sys.stderr)
        return 2
    try:
        data = strictjson.dumps(job, indent=1)
    except ValueError as e:  # a key=value from a command line that is not valid Unicode
        print(f"spoold submit: the job cannot be written as JSON: {e}", file=sys.stderr)
        return 2
    if len(data) > config.max_job_bytes:  # the daemon would reject it
        print(_too_big("the job", config.max_job_bytes), file=sys.stderr)
        return 2
    spool = Spool(config.spool, config.node, durable=True)
    spool.ensure_for_command()
    found = manage.locate(spool, job["id"], looks=1)  # the daemon would reject a duplicate
    if found is not None:
        where = f"{found.folder}/{found.name}"
        print(f"spoold submit: a job with id {job['id']!r} is already in the spool ({where}):"
              " give this one another id", file=sys.stderr)  # fmt: skip
        return 1
    name = f"{job['id']}.json"
    if not spool.write("incoming", name, data, exclusive=True):
        taken = f"incoming/{name} is already waiting: a job with id {job['id']!r} was just"
        print(f"spoold submit: {taken} submitted; give this one another id", file=sys.stderr)
        return 1
    try:
        print(job["id"], flush=True)
    except OSError as e:  # a closed pipe, a full /dev/full: the job is in all the same
        print(f"spoold submit: job {job['id']} submitted; its id could not be printed: {e}",
              file=sys.stderr)  # fmt: skip
    return 0


def _zone(config: Config) -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo(config.timezone)


def _job_from_args(args: argparse.Namespace, max_bytes: int) -> dict[str, Any]:
    if args.file:
        job = _read_job_file(args.file, max_bytes)
        if args.type:
            raise SystemExit("spoold submit: give either TYPE [key=value ...] or -f FILE, not both")
    elif args.type:
        fields = _parse_fields(args.fields)
        if "type" in fields:
            raise SystemExit(f"spoold submit: the type is given twice ({args.type} and"
                             " type=...): give it once, as TYPE")  # fmt: skip
        job = {"type": args.type, **fields}
    else:
        raise SystemExit("spoold submit: say the job type (spoold submit noop) or -f FILE")
    if args.priority:
        job["priority"] = args.priority
    if args.run_at is not None:  # '' too: an empty "$WHEN" is a mistake, not "now"
        job["runAt"] = args.run_at
    return job


def _too_big(what: str, max_bytes: int) -> str:
    return (f"spoold submit: {what} is over maxJobBytes ({max_bytes} bytes): make the job"
            " smaller or raise maxJobBytes in the config")  # fmt: skip


def _read_job_file(path: str, max_bytes: int) -> dict[str, Any]:
    """The job in a file (or stdin), read no further than maxJobBytes: the daemon would
    reject a larger one, and /dev/zero would never end."""
    from spoold.job import decode_object

    try:
        if path == "-":
            raw = sys.stdin.buffer.read(max_bytes + 1)
        else:
            with open(path, "rb") as file:
                raw = file.read(max_bytes + 1)
        if len(raw) > max_bytes:
            raise SystemExit(_too_big(path, max_bytes))
        return decode_object(raw)
    except OSError as e:
        raise SystemExit(f"spoold submit: cannot read {path}: {e.strerror}") from e
    except InvalidJob as e:
        raise SystemExit(f"spoold submit: {path}: {e}") from e


def _parse_fields(pairs: list[str]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"spoold submit: {pair!r} is not key=value")
        try:
            fields[key] = strictjson.loads(os.fsencode(value))
        except InvalidJob:  # not JSON (NaN and 1e999 neither): the text itself
            fields[key] = value
        if key == "id" and not isinstance(fields[key], str):
            fields[key] = value  # id=42 names the job "42"; an id is text, never a number
    return fields


# ----- status -------------------------------------------------------------------------------


def _add_status(commands: Any) -> None:
    sub = _command(commands, "status", "a readable summary of the daemon's status file", cmd_status)
    sub.add_argument("--json", action="store_true", help="print the status file as it is")


def cmd_status(args: argparse.Namespace) -> int:
    from spoold.fileio import read_file

    config = _config(args)
    name = f"status-{config.node}.json" if config.node else "status.json"
    path = config.spool / name
    try:
        raw = read_file(str(path))  # a FIFO or a link put in its place is not opened
        status = json.loads(raw)
    except FileNotFoundError:
        print(f"spoold status: no {path}: has the daemon ever run on this spool?", file=sys.stderr)
        return 1
    except Rejected as e:
        print(f"spoold status: {path} is {e}: the daemon writes it again", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"spoold status: {path} is not JSON: {e}", file=sys.stderr)
        return 1
    if args.json:
        _write_out(raw)  # as it is, whatever its encoding
        return 0
    try:
        print(format_status(status, path))
    except (TypeError, KeyError, AttributeError, ValueError) as e:  # edited, or not ours
        print(f"spoold status: {path} is not a status file as spoold writes it ({e!r}): the"
              " daemon writes it again; --json prints it as it is", file=sys.stderr)  # fmt: skip
        return 1
    return 0


def format_status(status: dict[str, Any], path: Path) -> str:
    """status.json as a few lines a person reads at a glance."""
    queue, worker = status.get("queue", {}), status.get("worker", {})
    pending = queue.get("pending", {})
    by_priority = ", ".join(f"{p} {pending.get(p, 0)}" for p in PRIORITIES)
    state = "running" if worker.get("isRunning") else "stopped"
    lines = [
        f"spoold on {status.get('node')} (pid {status.get('pid')}): {state},"
        f" updated {status.get('updatedAt')}",
        f"  pending   {pending.get('total', 0)} ({by_priority})",
        f"  running   {queue.get('running', 0)} of {worker.get('concurrency', '?')} workers",
        f"  completed {queue.get('completed', 0)}",
        f"  failed    {queue.get('failed', 0)}",
        f"  processed {worker.get('processedJobs', 0)} since {status.get('startedAt')}",
    ]
    lines += _task_lines(status.get("scheduler", {}))
    config = status.get("config", {})
    if config.get("error"):
        lines.append(f"  CONFIG ERROR (last good config still in use): {config['error']}")
    storage = status.get("storage") or {}
    if storage.get("ok") is False:
        lines.append(f"  STORAGE ERROR since {storage.get('since')}: {storage.get('error')}")
    lines.append(f"  ({path})")
    return "\n".join(lines)


def _task_lines(scheduler: dict[str, Any]) -> list[str]:
    tasks = scheduler.get("tasks") or []
    lines = [f"  tasks     {len(tasks)}"] if tasks else []
    for task in tasks:
        busy = " (a run is pending or running)" if task.get("isRunning") else ""
        lines.append(
            f"    {task.get('name')}: '{task.get('schedule')}' next {task.get('nextRun')},"
            f" runs {task.get('runCount', 0)}, errors {task.get('errorCount', 0)},"
            f" skipped {task.get('skippedCount', 0)}{busy}"
        )
        if task.get("lastError"):
            lines.append(f"      last error: {task['lastError']}")
    return lines


# ----- retry --------------------------------------------------------------------------------


def _add_retry(commands: Any) -> None:
    sub = _command(
        commands,
        "retry",
        "a failed job back to pending/ (attempts reset, errors kept in previousErrors), or a"
        " rejected file back to incoming/; works with or without a running daemon",
        cmd_retry,
    )
    sub.add_argument("id", nargs="?", help="job id, or the name of a rejected file in failed/")
    sub.add_argument("--all", action="store_true", help="every failed job and rejected file")


def cmd_retry(args: argparse.Namespace) -> int:
    from spoold import manage
    from spoold.spool import Spool

    if bool(args.id) == bool(args.all):
        print("spoold retry: give a job id or --all", file=sys.stderr)
        return 2
    config = _config(args)
    spool = Spool(config.spool, config.node, durable=config.fsync)
    spool.ensure_for_command()
    if args.all:
        done = manage.retry_all(spool)
        for line in done:
            print(logs.escape(line))  # a name is a producer's: no terminal codes, one line
        print(f"{len(done)} retried", file=sys.stderr)
        return 0
    try:
        print(logs.escape(manage.retry(spool, args.id)))
    except NotRetryable as e:
        print(f"spoold retry: {e}", file=sys.stderr)
        return 1
    return 0


# ----- cancel -------------------------------------------------------------------------------


def _add_cancel(commands: Any) -> None:
    sub = _command(
        commands,
        "cancel",
        "a pending job to failed/ with error 'cancelled'; a running one is asked to stop (the"
        " daemon running it records it as cancelled); works with or without HTTP",
        cmd_cancel,
    )
    sub.add_argument("id", help="job id")


def cmd_cancel(args: argparse.Namespace) -> int:
    from spoold import manage
    from spoold.spool import Spool

    config = _config(args)
    spool = Spool(config.spool, config.node, durable=config.fsync)
    spool.ensure_for_command()
    try:
        found = manage.cancel(spool, args.id)
    except (LookupError, NotRetryable) as e:
        print(f"spoold cancel: {e.args[0] if e.args else e}", file=sys.stderr)
        return 1
    if found.folder == "running":
        print(f"running/{found.name}: asked to stop; it stops at its next step (or its timeout)")
    else:
        print(f"{found.folder}/{found.name}")
    return 0


# ----- check-config and next ------------------------------------------------------------------


def _add_check_config(commands: Any) -> None:
    sub = _command(
        commands, "check-config", "validate a config file: exit 0, or the errors", cmd_check_config
    )
    sub.add_argument("path", nargs="?", help="the file (default: --config or config/spoold.yaml)")


def cmd_check_config(args: argparse.Namespace) -> int:
    path = args.path or args.config or "config/spoold.yaml"
    try:
        from spoold.scheduler import check_tasks

        config = load_config(path, args.node)
        check_tasks(config, build_registry(config, dict))
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 1
    print(f"{path}: OK ({len(config.schedule)} task(s), {config.workers} worker(s))")
    return 0


def _add_next(commands: Any) -> None:
    sub = _command(commands, "next", "the next run times of a cron expression", cmd_next)
    sub.add_argument("cron", help="e.g. '*/5 * * * *', '@daily', or '30 2 mon-fri'")
    sub.add_argument("-n", type=int, default=5, help="how many (default 5)")
    sub.add_argument("--tz", default=None, help="IANA time zone (default: the config's)")


def cmd_next(args: argparse.Namespace) -> int:
    from spoold.cron import format_next

    if args.n < 1:
        print("spoold next: -n must be at least 1", file=sys.stderr)
        return 2
    tz = args.tz or _config(args).timezone
    try:
        for line in format_next(args.cron, args.n, tz, datetime.now().astimezone()):
            print(line)
    except CronError as e:
        print(f"spoold next: {e}", file=sys.stderr)
        return 2
    return 0


# ----- run-task ------------------------------------------------------------------------------


def _add_run_task(commands: Any) -> None:
    sub = _command(
        commands,
        "run-task",
        "enqueue a run of a scheduled task now, as the HTTP API's POST /scheduler/NAME/run:"
        " refused while the task's last run is pending or running; works with or without a"
        " running daemon (it writes to the spool) and prints the job id",
        cmd_run_task,
    )
    sub.add_argument("name", help="the task's name in the config's schedule")
    sub.add_argument(
        "--at",
        metavar="TIME",
        help="instead, decide the task's scheduled run at TIME (ISO 8601, e.g. one missed"
        " while every daemon was down): fired once, however many daemons or people ask",
    )


def cmd_run_task(args: argparse.Namespace) -> int:
    from spoold.scheduler import standalone

    config = _config(args)
    scheduler = standalone(config)
    try:
        if args.at is not None:
            return _fire_at(scheduler, args.name, args.at)
        print(scheduler.run_now(args.name))
    except (UnknownTask, TaskBusy, InvalidJob) as e:
        print(f"spoold run-task: {e}", file=sys.stderr)
        return 1
    return 0


def _fire_at(scheduler: Any, name: str, text: str) -> int:
    """A scheduled run that is due or past (a missed one, say), decided as the daemon
    would; a time without an offset is read in the task's zone."""
    from datetime import UTC

    from spoold.times import parse_time

    try:
        instant = datetime.fromtimestamp(parse_time(text, scheduler.zone_of(name)), UTC)
        fires = scheduler.is_fire_time(name, instant)
    except (ValueError, OverflowError) as e:
        print(f"spoold run-task: --at {text!r} is not a time to use: {e}", file=sys.stderr)
        return 2
    if not fires:
        when = instant.isoformat()
        print(f"spoold run-task: task {name!r} has no scheduled run at {when}", file=sys.stderr)
        return 2
    if instant > scheduler.clock():
        print(f"spoold run-task: the run at {instant.isoformat()} is still to come and fires"
              " by itself; `spoold run-task NAME` runs the task now", file=sys.stderr)  # fmt: skip
        return 2
    decision = scheduler.fire(name, instant, by_hand=True)
    if decision.outcome != "fired":
        print(f"spoold run-task: {decision.job_id}: {decision.detail}", file=sys.stderr)
        return 1
    print(decision.job_id)
    return 0


# ----- show -----------------------------------------------------------------------------------


def _add_show(commands: Any) -> None:
    sub = _command(
        commands,
        "show",
        "print a job's file wherever it is (pending, running, completed, failed; a record as"
        " indented JSON), or a rejected file in failed/ as it is, with the reason on stderr;"
        " works with or without a running daemon",
        cmd_show,
    )
    sub.add_argument("id", help="job id, or the name of a rejected file in failed/")


def cmd_show(args: argparse.Namespace) -> int:
    from spoold.show import printable, show
    from spoold.spool import Spool

    config = _config(args)
    spool = Spool(config.spool, config.node, durable=False)
    shown = show(spool, args.id)
    if shown is None:
        print(f"spoold show: no job with id {args.id!r} and no rejected file of that name"
              f" in {spool.dirs['failed']}", file=sys.stderr)  # fmt: skip
        return 1
    note = f": rejected: {shown.rejected}" if shown.rejected is not None else ""
    note += f" (not shown: {shown.unshown})" if shown.unshown is not None else ""
    print(logs.escape(f"{shown.where}{note}"), file=sys.stderr)
    _write_out(printable(shown))
    return 0
