"""Follow-up jobs: `then` (enqueued when a job completes) and `onFailure` (when it fails
for good), judged with their parent and written with its record.

A follow-up's id names its parent (`<parent id>.then.0`) and its pending name takes the
parent's acceptance time, so its file name is known before it is written: whoever
enqueues it first looks for that name in every folder, and a name found means it was
enqueued already. The worker writes the follow-ups in the same commit as the parent's
record, placed after it, and the parent's running file is dropped only once all are in
place; recovery (worker.recover_running) finds a running file whose record is written
and enqueues the follow-ups still missing. So a crash anywhere in between neither loses
nor doubles one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from spoold import strictjson
from spoold.errors import InvalidJob
from spoold.jobs import JobType
from spoold.jobs.basic import shown
from spoold.names import ID_RE, PRIORITIES, Stem, accepted_ns, follow_up_id, make_stem
from spoold.spool import Record

# judge(job, its id) raises InvalidJob for what is not a valid job
Judge = Callable[[dict[str, Any], str], Any]
KEYS = {"completed": "then", "failed": "onFailure"}  # the folder of the outcome → its key


def problems(data: dict[str, Any], parent_id: str, judge: Judge) -> list[str]:
    """What is wrong with a job's follow-ups, each problem naming `then[1]` or the like;
    `judge` raises InvalidJob for a follow-up that is not a valid job."""
    found = []
    for key in KEYS.values():
        if key not in data:
            continue
        items = data[key]
        if not isinstance(items, list):
            found.append(f"field {key!r} must be a list of job objects, got {shown(items)}")
            continue
        found += [p for i, item in enumerate(items) for p in _item(key, i, item, parent_id, judge)]
    return found


def _item(key: str, index: int, item: Any, parent_id: str, judge: Judge) -> list[str]:
    where = f"{key}[{index}]"
    if not isinstance(item, dict):
        return [f"{where} must be a job object {{...}}, got {shown(item)}"]
    child_id = follow_up_id(parent_id, key, index)
    if "id" in item:
        return [f"{where}: field 'id' is given by spoold to a follow-up ({child_id}); remove it"]
    if not ID_RE.match(child_id):
        return [f"{where}: its id {child_id} would be longer than 128 characters: give the"
                " parent a shorter id"]  # fmt: skip
    try:
        judge(item, child_id)
    except InvalidJob as e:
        return [f"{where}: {e}"]
    return []


def missing(
    data: dict[str, Any], folder: str, stem: Stem, registry: dict[str, JobType],
    exists: Callable[[str], bool],
) -> list[Record]:  # fmt: skip
    """The pending files of the follow-ups a job whose outcome went to `folder` calls for,
    leaving out those `exists` (given a pending stem) says are in the spool already."""
    key = KEYS.get(folder)
    items = data.get(key) if key else None
    if not isinstance(items, list):
        return []
    records = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        child = {**item, "id": follow_up_id(stem.id, key or "", index)}
        child_stem = make_stem(_priority(child, registry), accepted_ns(stem), child["id"])
        if not exists(child_stem):
            records.append(Record("pending", child_stem, strictjson.dumps(child)))
    return records


def _priority(child: dict[str, Any], registry: dict[str, JobType]) -> str:
    """The follow-up's priority as intake would give it: its own, else its type's."""
    if child.get("priority") in PRIORITIES:
        return str(child["priority"])
    job_type = registry.get(str(child.get("type")))
    return job_type.priority if job_type else "normal"
