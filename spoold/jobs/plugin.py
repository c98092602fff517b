"""Plug-in job types: the config's ``jobTypes: {name: "package.module:function"}``.

Only the config names code to import, never a job file: a job only picks one
of the names loaded here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from spoold.config import Config
from spoold.errors import ConfigError


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
    checked: Callable[[dict[str, Any]], Any] = function
    return checked


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
