"""Plug-in job types: the config's ``jobTypes: {name: "package.module:function"}``.

Only the config names code to import, never a job file: a job only picks one
of the names loaded here.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from spoold.config import Config
from spoold.errors import ConfigError
from spoold.jobs import JobType

POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def load_types(config: Config, builtins: set[str]) -> dict[str, JobType]:
    """Every configured plug-in as a JobType (given a JobContext if it takes a second
    parameter); ConfigError lists each one that cannot be used."""
    functions = load_functions(config, builtins)
    return {name: JobType(name, run, context=takes_context(run)) for name, run in functions.items()}


def takes_context(function: Callable[..., None]) -> bool:
    """Whether function takes a second positional argument (or *args): the JobContext.
    Looked at once, when the config is loaded, not per job."""
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):  # some built-in callables have no signature to read
        return False
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters):
        return True
    return len([p for p in parameters if p.kind in POSITIONAL]) >= 2


def load_functions(
    config: Config, builtins: set[str]
) -> dict[str, Callable[[dict[str, Any]], Any]]:
    """Import every configured plug-in; ConfigError lists each one that cannot be used.

    All problems are collected first, because an operator fixing a config wants
    the whole list at once.
    """
    source = str(config.path) if config.path else "<config>"
    functions: dict[str, Callable[[dict[str, Any]], Any]] = {}
    problems: list[str] = []
    for name, target in config.job_types.items():
        try:
            functions[name] = _checked(name, target, builtins)
        except ValueError as e:
            problems.append(f"{source}: jobTypes.{name}: {e}")
    if problems:
        raise ConfigError(problems)
    return functions


def _checked(name: str, target: str, builtins: set[str]) -> Callable[[dict[str, Any]], Any]:
    """The function target names, or ValueError saying why it cannot be a job type."""
    if name in builtins:
        raise ValueError(f"{name!r} is a built-in job type; choose another name")
    function = load_target(target)
    if not callable(function):
        raise ValueError(f"{target!r} is not a function (its type is {type(function).__name__})")
    required = _required_positional(function)
    if required > 2:
        raise ValueError(f"{target!r} needs {required} arguments; a job type is called with the"
                         " job (a dict) and, if it takes a second one, a JobContext")  # fmt: skip
    checked: Callable[..., Any] = function
    return checked


def _required_positional(function: Any) -> int:
    """How many positional arguments function cannot do without (0 if unknown)."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return 0
    return len([p for p in parameters if p.kind in POSITIONAL and p.default is p.empty])


def load_target(target: str) -> Any:
    """Resolve 'package.module:attribute' (the attribute may be dotted); ValueError if not found."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"expected 'package.module:function', got {target!r}")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as e:  # a plug-in's own import errors are config errors too
        raise ValueError(f"cannot import {module_name!r}: {type(e).__name__}: {e}") from e
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as e:
            raise ValueError(f"{target!r}: {module_name!r} has no attribute {attribute!r}") from e
    return obj
