"""End to end, incoming/: how files are dropped, which names are ignored, and what bad
input becomes (SPEC 1 and 2), against the daemon as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from datetime import datetime

from conftest import DaemonProcess, job_files, none_running, records, rejected, wait_until


def completed_ids(daemon: DaemonProcess) -> set[str]:
    return {record["id"] for record in records(daemon.spool, "completed")}


def error_of(daemon: DaemonProcess, name: str) -> dict:
    return json.loads((daemon.spool / "failed" / f"{name}.error.json").read_bytes())


def still_serves(daemon: DaemonProcess, job_id: str) -> None:
    """A good job dropped now completes: the daemon survived whatever came before."""
    daemon.drop(f"{job_id}.json", {"type": "noop", "id": job_id})
    wait_until(lambda: job_id in completed_ids(daemon))


# ----- ways of dropping a file -----------------------------------------------------------------


def test_a_job_renamed_into_incoming_completes(start_daemon):
    daemon = start_daemon()
    daemon.drop("renamed.json", {"type": "noop", "id": "renamed-1"})
    wait_until(lambda: "renamed-1" in completed_ids(daemon))
    [record] = records(daemon.spool, "completed")
    assert record["status"] == "completed"
    assert record["type"] == "noop"
    assert job_files(daemon.spool, "incoming") == []
    assert job_files(daemon.spool, "pending") == []
    wait_until(lambda: none_running(daemon.spool))


def test_the_record_is_the_job_plus_every_state_field(start_daemon):
    daemon = start_daemon(durability="fsync")  # the default durability, end to end
    job = {"type": "noop", "id": "fields-1", "maxAttempts": 2, "timeout": 9, "mine": {"a": [1]}}
    daemon.drop("fields.json", job)
    wait_until(lambda: "fields-1" in completed_ids(daemon))
    [record] = records(daemon.spool, "completed")
    state = {"id", "type", "priority", "status", "attempts", "maxAttempts", "createdAt"}
    state |= {"startedAt", "completedAt", "error", "durationMs"}
    assert set(record) == state | {"timeout", "mine"}
    assert record["mine"] == {"a": [1]} and record["timeout"] == 9
    assert (record["priority"], record["maxAttempts"], record["attempts"]) == ("normal", 2, 1)
    times = [datetime.fromisoformat(record[k]) for k in ("createdAt", "startedAt", "completedAt")]
    assert all(t.utcoffset() is not None for t in times)
    assert times == sorted(times)
    assert isinstance(record["durationMs"], int) and record["durationMs"] >= 0
    assert daemon.stop() == 0


def test_a_job_copied_in_with_cp_completes(start_daemon, tmp_path):
    daemon = start_daemon()
    source = tmp_path / "outside.json"
    source.write_text(json.dumps({"type": "noop", "id": "copied-1"}))
    subprocess.run(["cp", str(source), str(daemon.incoming / "copied.json")], check=True)
    wait_until(lambda: "copied-1" in completed_ids(daemon))
    assert source.exists(), "cp's source is the producer's, never touched"
    assert records(daemon.spool, "failed") == []


def test_a_job_written_slowly_in_place_completes_and_is_not_judged_half_written(start_daemon):
    daemon = start_daemon(settleSeconds=1.0)
    job = {"type": "noop", "id": "slow-writer-1", "note": "x" * 200}
    data = json.dumps(job).encode()
    chunks = [data[i : i + 40] for i in range(0, len(data), 40)]
    assert len(chunks) >= 5

    def write_slowly() -> None:
        with open(daemon.incoming / "inplace.json", "wb", buffering=0) as f:
            for chunk in chunks:
                f.write(chunk)
                time.sleep(0.1)  # the writer is slow, but pauses less than settleSeconds

    writer = threading.Thread(target=write_slowly)
    writer.start()
    writer.join()
    wait_until(lambda: "slow-writer-1" in completed_ids(daemon))
    [record] = records(daemon.spool, "completed")
    assert record["note"] == "x" * 200
    assert job_files(daemon.spool, "failed") == []


def test_names_that_are_not_jobs_are_left_alone(start_daemon):
    daemon = start_daemon()
    good = json.dumps({"type": "noop"})
    ignored = ["notes.txt", "job.JSON", "job.json.tmp", ".hidden.json", "README"]
    for name in ignored:
        (daemon.incoming / name).write_text(good)
    still_serves(daemon, "after-ignored")
    time.sleep(3 * daemon.config["rescanSeconds"])  # several rescans: prove nothing is taken
    assert sorted(os.listdir(daemon.incoming)) == sorted(ignored)
    for name in ignored:
        assert (daemon.incoming / name).read_text() == good
    assert job_files(daemon.spool, "failed") == []
    assert completed_ids(daemon) == {"after-ignored"}


# ----- bad input (SPEC 2) -----------------------------------------------------------------------

BAD_JOBS: dict[str, tuple[bytes, list[str]]] = {
    # name: (bytes, words the error must contain, case-insensitive)
    "not-json.json": (b'{"type": "noop", ', ["not valid json", "line 1"]),
    "not-utf8.json": (b'{"type": "noop", "x": "\xff"}', ["utf-8"]),
    "empty.json": (b"", ["not valid json"]),
    "a-list.json": (b'[{"type": "noop"}]', ["json object", "list"]),
    "a-string.json": (b'"noop"', ["json object", "string"]),
    "no-type.json": (b'{"id": "no-type"}', ["no 'type'", "noop"]),
    "unknown-type.json": (b'{"type": "sendmail"}', ["unknown job type", "sendmail", "send_email"]),
    "type-not-string.json": (b'{"type": 7}', ["unknown job type", "7"]),
    "attempts-string.json": (b'{"type": "noop", "maxAttempts": "3"}', ["maxattempts", "'3'"]),
    "attempts-zero.json": (b'{"type": "noop", "maxAttempts": 0}', ["maxattempts", ">= 1"]),
    "attempts-float.json": (b'{"type": "noop", "maxAttempts": 2.5}', ["maxattempts", "whole"]),
    "attempts-bool.json": (b'{"type": "noop", "maxAttempts": true}', ["maxattempts"]),
    "timeout-string.json": (b'{"type": "noop", "timeout": "fast"}', ["timeout", "seconds"]),
    "timeout-negative.json": (b'{"type": "noop", "timeout": -1}', ["timeout", "> 0"]),
    "priority-unknown.json": (b'{"type": "noop", "priority": "urgent"}', ["priority", "urgent"]),
    "priority-number.json": (b'{"type": "noop", "priority": 1}', ["priority", "critical"]),
    "runat-words.json": (b'{"type": "noop", "runAt": "tomorrow"}', ["runat", "iso 8601"]),
    "runat-number.json": (b'{"type": "noop", "runAt": 1700000000}', ["runat", "iso 8601"]),
    "runat-bad-date.json": (b'{"type": "noop", "runAt": "2026-02-30T10:00:00Z"}', ["runat"]),
    "id-dotdot.json": (b'{"type": "noop", "id": "../x"}', ["'id'", "../x"]),
    "id-hidden.json": (b'{"type": "noop", "id": ".hidden"}', ["'id'", "not starting with ."]),
    "id-long.json": (b'{"type": "noop", "id": "%s"}' % (b"a" * 129), ["'id'", "1-128"]),
    "id-space.json": (b'{"type": "noop", "id": "a b"}', ["'id'"]),
    "id-empty.json": (b'{"type": "noop", "id": ""}', ["'id'"]),
    "id-number.json": (b'{"type": "noop", "id": 42}', ["'id'", "42"]),
    "id-slash.json": (b'{"type": "noop", "id": "a/b"}', ["'id'"]),
    "forged-state.json": (b'{"type": "noop", "status": "completed"}', ["status", "set by spoold"]),
    "email-to-number.json": (b'{"type": "send_email", "to": 42}', ["'to'", "email address"]),
    "email-no-to.json": (b'{"type": "send_email", "subject": "Hi"}', ["'to'", "required"]),
    "email-cc-string-list.json": (
        b'{"type": "send_email", "to": "a@example.com", "cc": [1]}',
        ["'cc'"],
    ),
    "webhook-ftp.json": (b'{"type": "webhook", "url": "ftp://example.com/x"}', ["url", "http"]),
    "webhook-headers.json": (
        b'{"type": "webhook", "url": "http://127.0.0.1/", "headers": ["X: y"]}',
        ["headers"],
    ),
    "log-no-message.json": (b'{"type": "log"}', ["message"]),
}


def test_every_kind_of_bad_job_goes_to_failed_unchanged_with_a_readable_error(start_daemon):
    daemon = start_daemon()
    for name, (data, _) in BAD_JOBS.items():
        daemon.drop(name, data)
    wait_until(lambda: not job_files(daemon.spool, "incoming"), timeout=15)
    problems = []
    for name, (data, words) in BAD_JOBS.items():
        kept = daemon.spool / "failed" / name
        if not kept.exists():
            problems.append(f"{name}: not in failed/ under its own name")
            continue
        if kept.read_bytes() != data:
            problems.append(f"{name}: bytes changed")
        explanation = error_of(daemon, name)
        message = explanation.get("error", "")
        if explanation.get("file") != name:
            problems.append(f"{name}: error.json names {explanation.get('file')!r}")
        missing = [w for w in words if w.lower() not in message.lower()]
        if missing:
            problems.append(f"{name}: error {message!r} lacks {missing}")
    assert problems == []
    assert sorted(job_files(daemon.spool, "failed")) == sorted(BAD_JOBS)
    assert completed_ids(daemon) == set()
    still_serves(daemon, "good-after-bad")
    wait_until(lambda: daemon.status()["queue"]["failed"] == len(BAD_JOBS))


def test_a_second_job_with_an_id_already_in_the_spool_is_rejected(start_daemon):
    daemon = start_daemon()
    daemon.drop("first.json", {"type": "noop", "id": "twin"})
    wait_until(lambda: "twin" in completed_ids(daemon))
    second = b'{"type": "noop", "id": "twin", "note": "the second"}'
    daemon.drop("second.json", second)
    wait_until(lambda: rejected(daemon.spool, "second.json"))
    assert (daemon.spool / "failed" / "second.json").read_bytes() == second
    message = error_of(daemon, "second.json")["error"]
    assert "twin" in message and "already" in message
    [record] = records(daemon.spool, "completed")
    assert "note" not in record, "the first job's record is untouched"
    # two files with one id dropped together: whichever is accepted first wins
    later = "2999-01-01T00:00:00Z"
    daemon.drop("third.json", {"type": "noop", "id": "pair", "runAt": later})
    daemon.drop("fourth.json", {"type": "noop", "id": "pair", "runAt": later})
    failed = daemon.spool / "failed"
    wait_until(lambda: not job_files(daemon.spool, "incoming"))
    wait_until(lambda: {"third.json", "fourth.json"} & set(job_files(daemon.spool, "failed")))
    [loser] = {"third.json", "fourth.json"} & set(job_files(daemon.spool, "failed"))
    assert "already in the spool" in error_of(daemon, loser)["error"]
    assert json.loads((failed / loser).read_bytes())["id"] == "pair"
    [winner] = [n for n in job_files(daemon.spool, "pending") if n.endswith("-pair.json")]
    still_serves(daemon, "after-duplicates")
    assert (daemon.spool / "pending" / winner).exists(), "the accepted one still waits"


def test_two_bad_files_with_the_same_name_are_both_kept(start_daemon):
    daemon = start_daemon()
    daemon.drop("bad.json", b"first {")
    wait_until(lambda: rejected(daemon.spool, "bad.json"))
    daemon.drop("bad.json", b"second [")
    wait_until(lambda: not (daemon.incoming / "bad.json").exists())
    wait_until(lambda: len(job_files(daemon.spool, "failed")) == 2)
    failed = daemon.spool / "failed"
    assert (failed / "bad.json").read_bytes() == b"first {"
    [other] = [n for n in job_files(daemon.spool, "failed") if n != "bad.json"]
    assert other.endswith(".json") and other.startswith("bad")
    assert (failed / other).read_bytes() == b"second ["
    explanation = json.loads((failed / f"{other}.error.json").read_bytes())
    assert explanation["file"] == "bad.json"
    assert "not valid JSON" in explanation["error"]
    still_serves(daemon, "after-collision")


# ----- files that must not be read (SPEC 1) ----------------------------------------------------


def test_a_folder_named_like_a_job_is_moved_whole_to_failed(start_daemon):
    daemon = start_daemon()
    folder = daemon.incoming / ".staging"
    folder.mkdir()
    (folder / "inside.txt").write_text("keep me")
    os.rename(folder, daemon.incoming / "folder.json")
    wait_until(lambda: rejected(daemon.spool, "folder.json"))
    kept = daemon.spool / "failed" / "folder.json"
    assert kept.is_dir()
    assert (kept / "inside.txt").read_text() == "keep me"
    assert "folder" in error_of(daemon, "folder.json")["error"]
    still_serves(daemon, "after-folder")


def test_a_symlink_is_rejected_without_being_followed(start_daemon, tmp_path):
    daemon = start_daemon()
    target = tmp_path / "real-job.json"
    target_bytes = json.dumps({"type": "noop", "id": "behind-the-link"}).encode()
    target.write_bytes(target_bytes)
    old = time.time() - 3600
    os.utime(target, (old, old))
    (daemon.incoming / ".link").symlink_to(target)
    os.rename(daemon.incoming / ".link", daemon.incoming / "link.json")
    wait_until(lambda: rejected(daemon.spool, "link.json"))
    kept = daemon.spool / "failed" / "link.json"
    assert kept.is_symlink()
    assert os.readlink(kept) == str(target)
    assert target.read_bytes() == target_bytes
    assert target.stat().st_mtime == old
    message = error_of(daemon, "link.json")["error"]
    assert "symlink" in message and "regular file" in message
    still_serves(daemon, "after-symlink")
    assert "behind-the-link" not in completed_ids(daemon)


def test_a_dangling_symlink_is_rejected_too(start_daemon, tmp_path):
    daemon = start_daemon()
    (daemon.incoming / "dangling.json").symlink_to(tmp_path / "nowhere.json")
    wait_until(lambda: rejected(daemon.spool, "dangling.json"))
    assert os.readlink(daemon.spool / "failed" / "dangling.json") == str(tmp_path / "nowhere.json")
    still_serves(daemon, "after-dangling")


def test_a_fifo_is_rejected_and_does_not_hang_the_daemon(start_daemon):
    daemon = start_daemon()
    os.mkfifo(daemon.incoming / "pipe.json")
    wait_until(lambda: rejected(daemon.spool, "pipe.json"))
    assert (daemon.spool / "failed" / "pipe.json").is_fifo()
    assert "FIFO" in error_of(daemon, "pipe.json")["error"]
    still_serves(daemon, "after-fifo")


def test_an_oversized_file_is_rejected_unread(start_daemon):
    daemon = start_daemon(maxJobBytes=1000)
    data = json.dumps({"type": "noop", "id": "big", "pad": "p" * 2000}).encode()
    daemon.drop("big.json", data)
    just_fits = json.dumps({"type": "noop", "id": "fits", "pad": "p" * 900}).encode()
    assert len(just_fits) <= 1000
    daemon.drop("fits.json", just_fits)
    wait_until(lambda: rejected(daemon.spool, "big.json"))
    assert (daemon.spool / "failed" / "big.json").read_bytes() == data
    message = error_of(daemon, "big.json")["error"]
    assert "maxJobBytes" in message and str(len(data)) in message
    wait_until(lambda: "fits" in completed_ids(daemon))
    still_serves(daemon, "after-big")
