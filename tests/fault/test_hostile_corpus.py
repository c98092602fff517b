"""A hostile corpus against one real daemon: files dropped into incoming/ and HTTP bodies that
a parser, a file system or a job type can choke on, each with its expected outcome.

Every file is dropped at once; once incoming/ holds nothing the daemon takes, each case is
checked: which folder it is in, its bytes unchanged, an explanation beside a rejected file
whose reason names the problem. Then the same daemon answers every hostile body with a
400 and a clear {error}, never a 500, and its log holds no traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    DaemonProcess,
    base_config,
    free_port,
    job_files,
    records,
    spoold_cli,
    wait_until,
)
from helpers_api import Client

MAX_BYTES = 256 * 1024  # room for the deep and long-number cases
DEEP = b"[" * 100_000 + b"]" * 100_000
LONG_NAME = "low-" + "z" * 246 + ".json"  # 255 bytes: no room left for ".error.json"
NOT_UTF8 = os.fsdecode(b"caf\xe9-\xff.json")


def job(job_id: str, **fields: Any) -> bytes:
    return json.dumps({"type": "noop", "id": job_id, **fields}).encode()


@dataclass(frozen=True)
class Case:
    """One hostile file: how it is made in incoming/, and what must become of it."""

    name: str  # as os.listdir gives it (bytes that are not UTF-8 as surrogates)
    make: Callable[[Path, Path], None]  # (its path, the work folder)
    outcome: str  # "completed", "failed" or "ignored" (left in incoming/)
    words: str = ""  # in the explanation's error (failed) or the record's id (completed)
    failed_as: str | None = None  # how its (safe) name in failed/ starts, when not its own
    data: bytes | None = None  # its bytes, when they must be found unchanged


def content(name: str, data: bytes, outcome: str, words: str, **kw: Any) -> Case:
    """A regular file published the safe way (written elsewhere, renamed in)."""

    def make(path: Path, work: Path) -> None:
        staged = work / "staging" / f"{len(os.listdir(work / 'staging'))}"
        staged.write_bytes(data)
        os.rename(staged, path)

    return Case(name, make, outcome, words, data=data, **kw)


def bad(name: str, data: bytes, words: str, **kw: Any) -> Case:
    return content(name, data, "failed", words, **kw)


def good(name: str, job_id: str, **fields: Any) -> Case:
    return content(name, job(job_id, **fields), "completed", job_id)


def symlink(path: Path, work: Path) -> None:
    path.symlink_to(work / "outside" / "secret.json")


def dangling(path: Path, work: Path) -> None:
    path.symlink_to(work / "outside" / "no-such-file.json")


def fifo(path: Path, work: Path) -> None:
    os.mkfifo(path)


def folder(path: Path, work: Path) -> None:
    path.mkdir()
    (path / "inside.json").write_bytes(job("inside-folder"))


def unix_socket(path: Path, work: Path) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))


def device(path: Path, work: Path) -> None:
    os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))  # what /dev/null is


def hard_link(path: Path, work: Path) -> None:
    os.link(work / "outside" / "archive.json", path)


ARCHIVE = job("hard-linked", note="the producer's archive copy")
# fmt: off
CASES = [
    # What the JSON parser cannot take, or takes beyond JSON.
    bad("deep.json", DEEP, "nested too deeply"),
    bad("deep-101.json", b'{"type": "noop", "x": ' + b"[" * 100 + b"]" * 100 + b"}", "100 levels"),
    bad("big-int.json", b'{"type": "noop", "n": ' + b"7" * 5001 + b"}", "more than 4300 digits"),
    bad("inf-timeout.json", b'{"type": "noop", "timeout": 1e999}', "1e999 is not finite"),
    bad("nan.json", b'{"type": "noop", "n": NaN}', "NaN is not finite"),
    bad("infinity.json", b'{"type": "noop", "n": Infinity}', "Infinity is not finite"),
    bad("minus-infinity.json", b'{"type": "noop", "n": -Infinity}', "-Infinity is not"),
    bad("surrogate.json", b'{"type": "noop", "s": "\\udc80"}', "surrogate pair"),
    bad("nul-after.json", job("nul-after") + b"\x00", "Extra data"),
    bad("nul-inside.json", b'{"type": "noop", "s": "a\x00b"}', "Invalid control character"),
    bad("latin1.json", b'{"type": "noop", "s": "caf\xe9"}', "not UTF-8 text (byte 26)"),
    bad("utf16.json", '{"type": "noop"}'.encode("utf-16"), "not UTF-8 text"),
    bad("empty.json", b"", "not valid JSON"),
    bad("list.json", b"[1, 2]", "must be a JSON object"),
    bad("huge-timeout.json", b'{"type": "noop", "timeout": 1' + b"0" * 400 + b"}", "'timeout'"),
    bad("id-newline.json", b'{"type": "noop", "id": "a\\n"}', "field 'id' must be"),
    bad("forged.json", b'{"type": "noop", "attempts": 0}', "'attempts' is set by spoold"),
    # What a job type can judge without running it.
    bad(
        "mail.json",
        b'{"type": "send_email", "to": "a@x.test", "subject": "a\\u2028b"}',
        "field 'subject' must be a string of one line",
    ),
    bad("mail-to.json", b'{"type": "send_email", "to": "a@x.test\\u0085"}', "field 'to'"),
    bad("hook.json", '{"type": "webhook", "url": "http://127.0.0.1/é"}'.encode(), "ASCII"),
    bad(
        "hook-header.json",
        b'{"type": "webhook", "url": "http://127.0.0.1/", "headers": {"X": "\\u20ac"}}',
        "field 'headers'",
    ),
    bad("clean.json", b'{"type": "cleanup", "directory": "/", "maxAgeDays": 1}', "allowedRoots"),
    # What JSON allows is taken.
    good("nul-escaped.json", "nul-escaped", s="a\u0000b\u2028c"),
    good("pair.json", "pair", s="\U0001f600"),
    good("deep-99.json", "deep-99", x=json.loads("[" * 98 + "]" * 98)),
    content("bom.json", b"\xef\xbb\xbf" + job("bom"), "completed", "bom"),
    content(
        "twice.json", b'{"type": "teleport", "type": "noop", "id": "twice"}', "completed", "twice"
    ),
    # Names.
    good("ctl-\x01\t-ok.json", "control-name"),
    bad("ctl-\x1b[31m-\n.json", b"{broken", "not valid JSON"),
    good(LONG_NAME[:-6] + "k.json", "long-name"),  # 255 bytes, a good job: the name is moot
    bad(LONG_NAME, b"{too long a name", "not valid JSON", failed_as="low-zzz"),
    good(os.fsdecode(b"ok-\xff.json"), "not-utf8-name"),
    bad(NOT_UTF8, b"{\xff", "not UTF-8 text", failed_as="caf_-_-"),
    content("SHOUT.JSON", job("shout"), "ignored", ""),
    content(".hidden.json", job("hidden"), "ignored", ""),
    # What is not a regular file, or too big: rejected unread, never followed.
    Case("link.json", symlink, "failed", "not a regular file (a symlink)"),
    Case("dangling.json", dangling, "failed", "not a regular file (a symlink)"),
    Case("pipe.json", fifo, "failed", "not a regular file (a FIFO)"),
    Case("folder.json", folder, "failed", "not a regular file (a folder)"),
    Case("sock.json", unix_socket, "failed", "not a regular file (a socket)"),
    Case("device.json", device, "failed", "not a regular file (a device)"),
    bad("oversize.json", job("oversize", pad="x" * MAX_BYTES), "larger than maxJobBytes"),
    Case("hardlink.json", hard_link, "completed", "hard-linked"),
]
# fmt: on
SLOW_GOOD = job("slow-writer", pad="y" * 300)
SLOW_BAD = b'{"type": "noop", "id": "slow-stalled", "pad": "'


def write_slowly(path: Path, data: bytes, pause: float) -> None:
    """An in-place writer: opens the file in incoming/ and writes it a piece at a time."""
    with open(path, "wb") as f:
        for start in range(0, len(data), 50):
            f.write(data[start : start + 50])
            f.flush()
            time.sleep(pause)


@dataclass
class Corpus:
    daemon: DaemonProcess
    work: Path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corpus]:
    """One daemon, every hostile file dropped at once, and incoming/ judged to the end."""
    work = tmp_path_factory.mktemp("corpus")
    for sub in ("staging", "outside", "allowed"):
        (work / sub).mkdir()
    (work / "outside" / "secret.json").write_bytes(job("secret"))
    (work / "outside" / "archive.json").write_bytes(ARCHIVE)
    config = base_config(
        http={"host": "127.0.0.1", "port": free_port()},
        maxJobBytes=MAX_BYTES,
        settleSeconds=0.5,
        cleanup={"allowedRoots": [str(work / "allowed")]},
    )
    daemon = DaemonProcess(work, config, [])
    try:
        daemon.wait_ready()
        drop_everything(daemon.incoming, work)
        ignored = sorted(c.name for c in CASES if c.outcome == "ignored")
        done = {c.words for c in CASES if c.outcome == "completed"} | {"slow-writer"}
        with contextlib.suppress(AssertionError):  # then each case says what became of it
            wait_until(lambda: sorted(os.listdir(daemon.incoming)) == ignored, timeout=30)
            wait_until(lambda: done <= completed_ids(daemon.spool), timeout=30)
        yield Corpus(daemon, work)
    finally:
        daemon.kill()


def drop_everything(incoming: Path, work: Path) -> None:
    """Every case at once, and the two in-place writers meanwhile."""
    writers = [
        threading.Thread(target=write_slowly, args=(incoming / "slow.json", SLOW_GOOD, 0.05)),
        threading.Thread(target=write_slowly, args=(incoming / "stalled.json", SLOW_BAD, 0.05)),
    ]
    for writer in writers:
        writer.start()
    for case in CASES:
        if case.make is not device or os.geteuid() == 0:
            case.make(incoming / case.name, work)
    for writer in writers:
        writer.join()


def completed_ids(spool: Path) -> set[str]:
    return {r["id"] for r in records(spool, "completed")}


@pytest.fixture
def client(corpus: Corpus) -> Iterator[Client]:
    """A connection of the test's own: the daemon closes one idle for 10 s."""
    with Client(corpus.daemon.config["http"]["port"]) as c:
        yield c


def failed_entry(spool: Path, case: Case) -> str:
    """The case's name in failed/ (own, or a safe one starting with failed_as)."""
    names = job_files(spool, "failed")
    if case.failed_as is None:
        assert case.name in names, f"{case.name!r} not in failed/: {names}"
        return case.name
    [name] = [n for n in names if n.startswith(case.failed_as)]
    return name


@pytest.mark.parametrize("case", CASES, ids=[repr(c.name)[1:41] for c in CASES])
def test_each_file_has_its_expected_outcome(corpus: Corpus, case: Case) -> None:
    if case.make is device and os.geteuid() != 0:
        pytest.skip("mknod of a device needs root (CI runs as root)")
    spool = corpus.daemon.spool
    judged = case.outcome == "ignored" or not os.path.lexists(spool / "incoming" / case.name)
    assert judged, f"{case.name!r} was never judged: still in incoming/"
    if case.outcome == "ignored":
        assert (spool / "incoming" / case.name).read_bytes() == case.data
        return
    if case.outcome == "completed":
        [record] = [r for r in records(spool, "completed") if r["id"] == case.words]
        assert record["status"] == "completed" and record["attempts"] == 1
        return
    name = failed_entry(spool, case)
    path = spool / "failed" / name
    if case.data is not None:
        assert path.read_bytes() == case.data, "a rejected file keeps its bytes"
    explanation = json.loads((spool / "failed" / (name + ".error.json")).read_bytes())
    assert case.words in explanation["error"]
    assert explanation["file"] == os.fsencode(case.name).decode(errors="backslashreplace")


def test_in_place_writers_are_waited_for_and_a_stalled_one_is_judged(corpus: Corpus) -> None:
    spool = corpus.daemon.spool
    assert "slow-writer" in completed_ids(spool)
    assert (spool / "failed" / "stalled.json").read_bytes() == SLOW_BAD
    explanation = json.loads((spool / "failed" / "stalled.json.error.json").read_bytes())
    assert "not valid JSON" in explanation["error"]


def test_nothing_outside_the_spool_was_followed_or_touched(corpus: Corpus) -> None:
    assert (corpus.work / "outside" / "secret.json").read_bytes() == job("secret")
    assert "secret" not in completed_ids(corpus.daemon.spool)
    assert (corpus.daemon.spool / "failed" / "folder.json" / "inside.json").exists()


def test_a_name_that_is_not_utf8_keeps_its_exact_bytes_in_the_explanation(corpus: Corpus) -> None:
    [name] = [n for n in job_files(corpus.daemon.spool, "failed") if n.startswith("caf_-_-")]
    said = json.loads((corpus.daemon.spool / "failed" / f"{name}.error.json").read_bytes())
    assert bytes.fromhex(said["fileHex"]) == b"caf\xe9-\xff.json"


def explained(spool: Path, prefix: str) -> dict[str, Any] | None:
    """The newest explanation of a rejected file whose name in failed/ starts with prefix."""
    found = []
    for name in job_files(spool, "failed"):
        path = spool / "failed" / f"{name}.error.json"
        if name.startswith(prefix) and path.exists():
            found.append({**json.loads(path.read_bytes()), "name": name})
    return max(found, key=lambda e: e["rejectedAt"]) if found else None


def rejected_again(corpus: Corpus, prefix: str, retry: Callable[[str], None]) -> None:
    """Retry the rejected file whose name in failed/ starts with prefix; it goes back to
    incoming/ under its original name and, still bad, is rejected again, explained anew
    (under a name made unique if the daemon was faster than the retry's removal of the
    old explanation)."""
    spool = corpus.daemon.spool
    first = explained(spool, prefix)
    assert first is not None
    retry(first["name"])
    wait_until(lambda: (e := explained(spool, prefix)) and e["rejectedAt"] > first["rejectedAt"])
    again = explained(spool, prefix)
    assert again is not None and (again["file"], again["error"]) == (first["file"], first["error"])
    assert len([n for n in job_files(spool, "failed") if n.startswith(prefix)]) == 1
    assert (spool / "failed" / again["name"]).exists()


def test_a_rejected_file_with_a_safe_name_is_retried_over_http(corpus: Corpus, client) -> None:
    def retry(name: str) -> None:
        reply = client.post(f"/jobs/{name}/retry")
        assert reply.status == 200 and reply.json["folder"] == "incoming", reply.body

    rejected_again(corpus, "caf_-_-", retry)
    assert client.get("/jobs/failed?limit=1000").status == 200
    [name] = [n for n in job_files(corpus.daemon.spool, "failed") if n.startswith("caf_-_-")]
    assert client.get(f"/jobs/{name}").status == 404  # a rejected file is no job


def test_a_rejected_file_with_a_long_name_is_retried_by_the_cli(corpus: Corpus) -> None:
    def retry(name: str) -> None:
        config = str(corpus.daemon.config_path)
        result = spoold_cli("retry", name, "--config", config, cwd=corpus.work)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"incoming/{LONG_NAME}"

    rejected_again(corpus, "low-zzz", retry)


HTTP_BODIES = [
    (DEEP, "nested too deeply"),
    (b'{"type": "noop", "n": ' + b"7" * 5001 + b"}", "more than 4300 digits"),
    (b'{"type": "noop", "timeout": 1e999}', "1e999 is not finite"),
    (b'{"type": "noop", "n": NaN}', "NaN is not finite"),
    (b'{"type": "noop", "n": Infinity}', "Infinity is not finite"),
    (b'{"type": "noop", "n": -Infinity}', "-Infinity is not finite"),
    (b'{"type": "noop", "s": "\\ud800"}', "surrogate pair"),
    (b'{"type": "noop"}\x00', "Extra data"),
    (b'{"type": "noop", "s": "\xff"}', "not UTF-8 text"),
    (b"", "not valid JSON"),
    (b"[]", "must be a JSON object"),
    (b'{"type": "noop", "id": "a\\n"}', "field 'id'"),
    (b'{"type": "send_email", "to": "a@x.test", "subject": "a\\u2028b"}', "field 'subject'"),
    (b'{"type": "webhook", "url": "http://a..b/"}', "cannot be looked up"),
    (b'{"type": "cleanup", "directory": "/", "maxAgeDays": 1}', "allowedRoots"),
    (b'{"type": "noop", "timeout": 1' + b"0" * 400 + b"}", "field 'timeout'"),
]


@pytest.mark.parametrize("path", ["/jobs", "/jobs/batch"])
@pytest.mark.parametrize(("body", "words"), HTTP_BODIES, ids=[w for _, w in HTTP_BODIES])
def test_each_hostile_body_is_a_400_with_a_clear_error(client: Client, path, body, words) -> None:
    parsed_as_job = words.startswith("field") or words in ("cannot be looked up", "allowedRoots")
    if path == "/jobs/batch" and parsed_as_job:
        body = b"[" + body + b"]"  # a well-formed batch of one bad job
    if path == "/jobs/batch" and words == "must be a JSON object":
        body, words = b"{}", "a batch must be a JSON list"
    reply = client.post(path, body, headers={"Content-Type": "application/json"})
    if path == "/jobs/batch" and parsed_as_job:
        assert reply.status == 200
        [result] = reply.json["jobs"]
        assert result["status"] == "failed" and words in result["error"]
        return
    assert reply.status == 400, reply.body[:300]
    assert words in reply.error


def test_the_daemon_still_serves_and_logged_no_traceback(corpus: Corpus, client: Client) -> None:
    reply = client.post("/jobs", {"type": "noop", "id": "after-corpus"})
    assert reply.status == 200
    spool = corpus.daemon.spool
    wait_until(lambda: "after-corpus" in completed_ids(spool))
    assert client.get("/healthz").status == 200
    log = corpus.daemon.log()
    assert "Traceback" not in log and "internal error" not in log
    assert "left for the rescan" not in log


def test_a_hard_linked_job_leaves_the_outside_file_unchanged_after_many_jobs(corpus: Corpus):
    assert "hard-linked" in completed_ids(corpus.daemon.spool)
    ids = {f"after-link-{n}" for n in range(40)}
    for job_id in ids:
        corpus.daemon.drop(f"{job_id}.json", job(job_id))
    spool = corpus.daemon.spool
    wait_until(lambda: ids <= completed_ids(spool))
    assert (corpus.work / "outside" / "archive.json").read_bytes() == ARCHIVE
