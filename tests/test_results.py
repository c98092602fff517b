"""results.result_fields: a job's return value as its record keeps it (pure)."""

from __future__ import annotations

import json

from spoold.results import MAX_RESULT_BYTES, result_fields


def test_none_gives_no_result_field():
    assert result_fields(None) == {}


def test_json_values_are_kept_as_they_are():
    for value in (0, False, "", [], {"a": [1, 2.5, None]}, "grüße"):
        assert result_fields(value) == {"result": value}


def test_a_result_of_exactly_the_cap_is_kept_and_one_byte_more_is_cut():
    fits = "x" * (MAX_RESULT_BYTES - 2)  # plus its two quotes
    assert result_fields(fits) == {"result": fits}
    cut = result_fields(fits + "y")
    assert cut["resultTruncated"] is True and cut["resultBytes"] == MAX_RESULT_BYTES + 1
    assert cut["result"] == '"' + fits + "y", "its JSON's first 64 KiB: all but the last quote"


def test_a_cut_never_splits_a_character():
    fields = result_fields(["€" * MAX_RESULT_BYTES])
    assert fields["result"].startswith('["€€')
    assert len(fields["result"].encode()) <= MAX_RESULT_BYTES
    json.dumps(fields, ensure_ascii=False).encode()  # valid UTF-8 throughout


def test_what_json_cannot_hold_is_kept_as_text_with_a_note():
    assert result_fields(float("inf")) == {
        "result": "inf",
        "resultNote": "not JSON (Out of range float values are not JSON compliant):"
        " recorded as its text",
    }
    fields = result_fields({"when": object})
    assert fields["result"] == "{'when': <class 'object'>}" and "type" in fields["resultNote"]


def test_a_string_json_cannot_encode_is_kept_with_its_bad_character_escaped():
    fields = result_fields("bad \udcff surrogate")
    assert fields["result"] == "bad \\udcff surrogate"
    assert "resultNote" in fields


def test_a_value_whose_str_raises_is_shown_by_its_type():
    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("no")

    fields = result_fields(Broken())
    assert "Broken object at 0x" in fields["result"]
