"""Strict JSON at every door: what Python's json takes beyond JSON, or cannot take at all,
is an InvalidJob that says why, never a traceback or a record other readers refuse."""

from __future__ import annotations

import json
import os

import pytest

from spoold import manage, strictjson
from spoold.errors import InvalidJob, NotRetryable
from spoold.job import decode_object, dump_record
from spoold.names import make_stem
from spoold.spool import Spool

DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (DEEP, "nested too deeply"),
        (b'{"type": "noop", "x": ' + b"[" * 101 + b"]" * 101 + b"}", "at most 100 levels"),
        (b'{"type": "noop", "n": ' + b"9" * 5001 + b"}", "more than 4300 digits"),
        (b'{"type": "noop", "timeout": 1e999}', "1e999 is not finite"),
        (b'{"type": "noop", "n": -1E400}', "-1E400 is not finite"),
        (b'{"type": "noop", "n": NaN}', "NaN is not finite"),
        (b'{"type": "noop", "n": Infinity}', "Infinity is not finite"),
        (b'{"type": "noop", "n": -Infinity}', "-Infinity is not finite"),
        (b'{"type": "noop", "n": "\\ud800"}', "\\ud800, half of a UTF-16 surrogate pair"),
        (b'{"type": "noop", "\\uDFFF": 1}', "\\udfff, half of a UTF-16 surrogate pair"),
        (b'{"type": "noop"}\x00', "not valid JSON: Extra data"),
        (b'{"type": "no\x00op"}', "not valid JSON: Invalid control character"),
        (b'{"type": "noop", "x": "\xc3"}', "not UTF-8 text (byte 23)"),
    ],
)
def test_what_the_parser_cannot_take_is_a_clear_rejection(raw, words):
    with pytest.raises(InvalidJob) as info:
        decode_object(raw)
    assert words in str(info.value)
    assert "set_int_max_str_digits" not in str(info.value)  # Python's advice, not ours


@pytest.mark.parametrize(
    "raw",
    [
        b'{"type": "noop", "x": ' + b"[" * 99 + b"]" * 99 + b"}",  # 100 levels with the job
        b'{"type": "noop", "n": ' + b"9" * 4300 + b"}",
        b'{"type": "noop", "n": 1e308, "m": -1e-999, "o": 0.5}',
        b'{"type": "noop", "s": "\\ud83d\\ude00 \\u0000 \\u2028", "t": "[[[[{{{{"}',
        b'{"type": "noop", "many": [' + b",".join([b"[[1]]"] * 500) + b"]}",  # wide, not deep
    ],
)
def test_what_json_allows_is_taken_and_written_back_unchanged(raw):
    data = decode_object(raw)
    assert json.loads(dump_record(data)) == json.loads(raw)


def test_a_pair_of_surrogate_escapes_is_one_character():
    assert decode_object(b'{"s": "\\ud83d\\ude00"}') == {"s": "\N{GRINNING FACE}"}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_records_are_never_written_with_non_finite_numbers(value):
    with pytest.raises(ValueError):
        dump_record({"id": "x", "n": value})


def test_records_are_never_written_with_strings_that_are_not_unicode():
    with pytest.raises(UnicodeEncodeError):
        strictjson.dumps({"file": "caf\udce9.json"})


@pytest.mark.parametrize("edit", [b'{"id": "x", "n": NaN}', b"[" * 5000 + b"]" * 5000])
def test_a_failed_record_edited_into_what_json_cannot_hold_is_not_retried(tmp_path, edit):
    spool = Spool(tmp_path / "spool")
    spool.ensure()
    stem = make_stem("normal", 1_000_000_000, "edited")
    (spool.dirs["failed"] / f"{stem}.json").write_bytes(edit)
    with pytest.raises(NotRetryable, match="is not a readable record"):
        manage.retry(spool, "edited")
    assert (spool.dirs["failed"] / f"{stem}.json").read_bytes() == edit
    assert os.listdir(spool.dirs["pending"]) == []
