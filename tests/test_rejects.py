"""Rejected files in failed/: never unexplained, whatever their name, and restored by retry
under the name they came with (Spool.reject, Spool.restore_rejected, spoold.rejects)."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from spoold import rejects
from spoold.context import Context
from spoold.dispatch import Dispatcher
from spoold.intake import Intake
from spoold.names import ID_RE
from spoold.spool import Spool

LONG = "high-" + "x" * 245 + ".json"  # 255 bytes: a file name, but no room for .error.json
NOT_UTF8 = os.fsdecode(b"caf\xe9-\xff.json")


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    s = Spool(tmp_path / "spool", "n1", durable=True)
    s.ensure()
    return s


def put(spool: Spool, name: str, data: bytes) -> None:
    with open(os.path.join(spool.dirs["incoming"], name), "wb") as f:
        f.write(data)


def explanation(spool: Spool, name: str) -> dict:
    return json.loads((spool.dirs["failed"] / (name + rejects.ERROR_SUFFIX)).read_bytes())


def failed(spool: Spool) -> list[str]:
    return sorted(os.listdir(spool.dirs["failed"]))


def test_a_name_with_no_room_for_the_suffix_gets_a_safe_name_and_keeps_its_bytes(spool):
    put(spool, LONG, b"one")
    first = spool.reject(LONG, "not valid JSON")
    put(spool, LONG, b"two")
    second = spool.reject(LONG, "not valid JSON")
    assert first and second and first != second
    for name, data in ((first, b"one"), (second, b"two")):
        assert name.startswith("high-xxx") and name.endswith(".json") and ID_RE.match(name)
        assert (spool.dirs["failed"] / name).read_bytes() == data
        said = explanation(spool, name)
        assert said["file"] == LONG and "not valid JSON" in said["error"]
        assert "fileHex" not in said
    assert os.listdir(spool.dirs["incoming"]) == []


def test_a_long_name_that_fits_is_kept_and_its_twin_gets_a_shorter_unique_one(spool):
    name = "y" * 239 + ".json"  # 244 bytes: exactly room for the suffix
    put(spool, name, b"1")
    assert spool.reject(name, "bad") == name
    put(spool, name, b"2")
    twin = spool.reject(name, "bad")
    assert twin is not None and twin.endswith(".1.json") and len(twin) <= 244
    assert explanation(spool, twin)["file"] == name


def test_a_name_that_is_not_utf8_gets_a_safe_name_and_its_bytes_in_the_explanation(spool):
    put(spool, NOT_UTF8, b"\xff not json")
    name = spool.reject(NOT_UTF8, "not UTF-8 text (byte 0)")
    assert name is not None and name.startswith("caf_-_-") and name.endswith(".json")
    assert ID_RE.match(name), "a job id, so that POST /jobs/<name>/retry reaches it"
    said = explanation(spool, name)
    assert said["file"] == "caf\\xe9-\\xff.json"
    assert bytes.fromhex(said["fileHex"]) == b"caf\xe9-\xff.json"
    assert (spool.dirs["failed"] / name).read_bytes() == b"\xff not json"


@pytest.mark.parametrize("name", [LONG, NOT_UTF8, "plain.json"])
def test_retry_puts_a_rejected_file_back_under_the_name_it_came_with(spool, name):
    put(spool, name, b"bytes")
    where = spool.reject(name, "bad")
    assert where is not None
    assert spool.restore_rejected(where) == name
    assert failed(spool) == []
    with open(os.path.join(spool.dirs["incoming"], name), "rb") as f:
        assert f.read() == b"bytes"


EDITED = ['{"file": "../escape.json"}', "{not json", '{"file": ".x.json"}', '{"fileHex": "zz"}']


@pytest.mark.parametrize("edited", EDITED)
def test_an_explanation_edited_into_nonsense_restores_under_the_name_in_failed(spool, edited):
    put(spool, "bad.json", b"x")
    spool.reject("bad.json", "bad")
    (spool.dirs["failed"] / "bad.json.error.json").write_text(edited)
    assert spool.restore_rejected("bad.json") == "bad.json"
    assert not (spool.root / "escape.json").exists()


def test_a_file_gone_before_it_is_rejected_leaves_no_explanation(spool):
    assert spool.reject("never.json", "bad") is None
    assert failed(spool) == []


def test_a_vanished_incoming_file_is_gone_not_an_error(spool):
    assert spool.read_incoming("never.json", 100) is None


@pytest.fixture
def tiny_spool(tmp_path: Path):
    """A spool on a 64 KiB tmpfs (root only), and a function that fills it up."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a small tmpfs (CI runs as root)")
    root = tmp_path / "tiny"
    root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(root)], check=True)
    spool = Spool(root / "spool", "n1", durable=True)
    spool.ensure()
    filler = root / "filler"

    def fill() -> None:
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError as e:
            assert e.errno == errno.ENOSPC
        finally:
            os.close(fd)

    try:
        yield spool, fill, filler
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)


def test_on_a_full_disk_a_bad_file_stays_in_incoming_until_it_can_be_explained(tiny_spool):
    spool, fill, filler = tiny_spool
    put(spool, "bad.json", b"{broken")
    fill()
    with pytest.raises(OSError) as info:
        spool.reject("bad.json", "not valid JSON")
    assert info.value.errno == errno.ENOSPC
    assert failed(spool) == []
    assert (spool.dirs["incoming"] / "bad.json").read_bytes() == b"{broken"
    filler.unlink()
    assert spool.reject("bad.json", "not valid JSON") == "bad.json"
    assert failed(spool) == ["bad.json", "bad.json.error.json"]


def test_the_intake_leaves_a_bad_file_in_incoming_while_the_disk_is_full(tiny_spool, caplog):
    spool, fill, filler = tiny_spool
    context = Context(spool, Dispatcher(), lambda: {}, lambda: ZoneInfo("UTC"))
    intake = Intake(context, 10_000, settle_seconds=0.0)
    put(spool, "bad.json", b"{broken")
    fill()
    with caplog.at_level(logging.ERROR, logger="spoold.intake"):
        assert intake.accept_files(["bad.json"], time.time()) == []
    [record] = [r for r in caplog.records if r.name == "spoold.intake"]
    assert "left there, judged again at the next rescan" in record.getMessage()
    assert "No space left on device" in record.getMessage() and record.exc_info is None
    assert failed(spool) == [] and os.listdir(spool.dirs["incoming"]) == ["bad.json"]
    filler.unlink()
    intake.accept_files(["bad.json"], time.time())
    assert failed(spool) == ["bad.json", "bad.json.error.json"]
    assert "not valid JSON" in explanation(spool, "bad.json")["error"]


def test_retry_with_the_original_name_taken_keeps_that_name_numbered(spool):
    for name in (LONG, NOT_UTF8):
        put(spool, name, b"first")
        where = spool.reject(name, "bad")
        assert where is not None
        put(spool, name, b"second, still waiting")
        restored = spool.restore_rejected(where)
        assert restored is not None and restored != name
        assert os.fsencode(restored).startswith(os.fsencode(name[:-5])[:40])
        with open(os.path.join(spool.dirs["incoming"], restored), "rb") as f:
            assert f.read() == b"first"
