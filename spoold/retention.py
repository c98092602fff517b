"""Pruning old records, so completed/ and failed/ do not grow forever."""

from __future__ import annotations

import logging

from spoold.names import ERROR_SUFFIX, stem_of
from spoold.spool import Spool

logger = logging.getLogger(__name__)


def prune(spool: Spool, folder: str, max_age: float, now: float) -> list[str]:
    """Remove records (and rejected files with their .error.json) in folder whose last
    change is older than max_age seconds. Returns the names removed (not .error.json).

    A rejected file is as old as its .error.json: the file keeps the mtime its producer
    gave it (rename does not change it), which can be long before it was rejected.

    Only spoold's own files go: a record (named by its stem) or a rejected file (beside
    its .error.json). Any other name is kept: an operator's note, or, were the folder
    swapped for a link to /etc, everything there (the daemon often runs as root)."""
    removed = []
    names = set(spool.names(folder))
    for name in names:
        if name.endswith(ERROR_SUFFIX):
            continue
        error = name + ERROR_SUFFIX
        if error not in names and stem_of(name) is None:
            continue
        mtime = spool.mtime(folder, error if error in names else name)
        if mtime is None or now - mtime <= max_age:
            continue
        if spool.remove(folder, name):
            spool.remove(folder, name + ERROR_SUFFIX)
            removed.append(name)
    if removed:
        logger.info("pruned %d old record(s) from %s/", len(removed), folder)
    return removed
