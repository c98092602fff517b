"""Names and explanations of rejected files in failed/ (the moves are Spool.reject's).

A rejected file keeps its own name in failed/, beside <that name>.error.json,
whenever that can be: SPEC 2. Two kinds of name cannot: one that is not valid
UTF-8 (no JSON text can name it, so no explanation could say which file it
explains) and one so long that the suffix does not fit in a file name. Such a
file gets a safe name instead (one that is also a job id, ending in .json).
Its bytes are never changed, and its original name is kept in the explanation
(`file`, and `fileHex` with the exact bytes where they are not UTF-8), from
where `spoold retry` restores it.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterator
from typing import Any

from spoold import strictjson
from spoold.names import ERROR_SUFFIX
from spoold.times import iso

NAME_MAX = 255  # bytes in one file name (ext4, xfs, btrfs, tmpfs, NFS)
ROOM = NAME_MAX - len(ERROR_SUFFIX)  # the longest name that leaves room for the suffix
SAFE_BYTES = 200  # a name this long leaves room for a '.<n>' that makes it unique
SAFE_STEM = 100  # a safe name is at most 118 characters, '.<n>' included less than 128
NOT_ID_CHARACTER = re.compile(r"[^A-Za-z0-9._\-]")
ESCAPED_BYTE = re.compile("[\udc80-\udcff]")  # how os.fsdecode carries a byte that is not UTF-8


def failed_names(name: str) -> Iterator[str]:
    """Names for the file `name` in failed/, in the order to try them: its own name and
    name.1.json, name.2.json, ...; or, for a name that cannot be kept, safe ones."""
    own = _fits(name)
    if own:
        yield name
    base = name if own and _size(name) <= SAFE_BYTES else safe_name(name)
    if not own:
        yield base
    for n in itertools.count(1):
        yield numbered(base, n)


def restored_names(failed_name: str, original: str | None) -> Iterator[str]:
    """Names for a retried file in incoming/, in the order to try them: the one it came
    with (`original`, from its explanation), else a numbered variant that fits."""
    base = original or failed_name
    yield base
    for n in itertools.count(1):
        candidate = numbered(base, n)
        yield candidate if _size(candidate) <= NAME_MAX else numbered(failed_name, n)


def numbered(name: str, n: int) -> str:
    """'bad.json', 3 → 'bad.3.json': '.json' kept at the end."""
    base = name[:-5] if name.endswith(".json") else name
    return f"{base}.{n}.json"


def safe_name(name: str) -> str:
    """A name for failed/ that is also a job id (so `POST /jobs/<name>/retry` reaches it):
    the name's id characters, each other character as '_', cut short, and a hash of the
    whole name so that two names made alike stay apart."""
    import hashlib  # here: it loads OpenSSL (~3.5 MB resident), and the helper process
    # imports this module but never needs a safe name

    digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:12]
    stem = name[:-5] if name.endswith(".json") else name
    return f"{NOT_ID_CHARACTER.sub('_', stem)[:SAFE_STEM]}-{digest}.json"


def explanation(name: str, reason: str, node: str, now: float) -> bytes:
    """The <name>.error.json of a rejected file: which file, why, when, by whom."""
    raw = os.fsencode(name)
    value: dict[str, Any] = {"file": readable(name), "error": readable(reason)}
    if ESCAPED_BYTE.search(name):
        value["fileHex"] = raw.hex()
    value.update(rejectedAt=iso(now), node=node)
    return strictjson.dumps(value, indent=1)


def readable(text: str) -> str:
    """Text any JSON can carry: a byte that is not UTF-8 (in a name from os.listdir)
    shown as \\xNN, any other lone surrogate as \\udNNN."""
    try:
        raw = os.fsencode(text)
    except UnicodeEncodeError:
        raw = text.encode(errors="backslashreplace")
    return raw.decode(errors="backslashreplace")


def original_name(value: dict[str, Any] | None) -> str | None:
    """The name a rejected file had in incoming/, from its explanation; None when the
    explanation is unreadable or its name is not one incoming/ could hold."""
    if value is None:
        return None
    hex_name, name = value.get("fileHex"), value.get("file")
    try:
        encoded = bytes.fromhex(hex_name) if isinstance(hex_name, str) else None
    except ValueError:
        return None
    if encoded is None:
        encoded = name.encode() if isinstance(name, str) else b""
    usable = encoded.endswith(b".json") and not encoded.startswith(b".")
    usable = usable and len(encoded) <= NAME_MAX and b"/" not in encoded and b"\0" not in encoded
    return os.fsdecode(encoded) if usable else None


def _fits(name: str) -> bool:
    """Whether `name` and its explanation's name are both file names (UTF-8, short enough)."""
    return not ESCAPED_BYTE.search(name) and _size(name) <= ROOM


def _size(name: str) -> int:
    return len(os.fsencode(name))
